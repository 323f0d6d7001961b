"""Atomic writes, checksums and manifests: no half-written file is ever read as complete.

Every stage writes its outputs first (each one atomically: a temporary file in the same folder,
then ``os.replace``) and its manifest last. A stage is finished exactly when its manifest exists
and every output it lists still has the recorded checksum.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

MANIFEST_NAME = "manifest.json"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates owner-only files; artifacts get the usual umask-based mode (shared run folders).
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_parquet_atomic(path: str | os.PathLike, frame) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (_dt.date, _dt.datetime)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> dict[str, str]:
    """Package version plus the git commit when run from a checkout (dirty flag included)."""
    from orpr_ray import __version__

    info = {"package": __version__}
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        info["git_commit"] = commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def write_manifest(out_dir: str | os.PathLike, *, stage: str, config: dict, inputs: dict,
                   outputs: list[str], figures: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``out_dir/manifest.json`` last: outputs are listed with their checksums."""
    out_dir = Path(out_dir)
    manifest = {
        "stage": stage,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "config": config,
        "inputs": inputs,
        "outputs": {name: sha256_file(out_dir / name) for name in sorted(outputs)},
        "figures": figures or {},
    }
    if extra:
        manifest.update(extra)
    return write_json_atomic(out_dir / MANIFEST_NAME, manifest)


def read_manifest(out_dir: str | os.PathLike, *, verify: bool = True) -> dict | None:
    """The manifest of a finished stage, or None when the stage has not finished.

    With ``verify``, a listed output that is missing or whose checksum changed makes the stage
    count as unfinished (it will be redone), never as complete.
    """
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    if verify:
        for name, digest in manifest.get("outputs", {}).items():
            target = out_dir / name
            if not target.is_file() or sha256_file(target) != digest:
                return None
    return manifest
