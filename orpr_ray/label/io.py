"""Read a finished labelling run back (the model stage's entry point to the labels)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from orpr_ray.core.artifacts import MANIFEST_NAME, read_manifest
from orpr_ray.core.errors import InputError


def _finished(out_dir: str | Path) -> tuple[Path, dict]:
    out = Path(out_dir)
    manifest = read_manifest(out)
    if manifest is None or manifest.get("stage") != "label":
        raise InputError("no finished label run here (manifest missing, of another stage, or an output changed "
                         "since it was written): run `orpr label` into this folder",
                         file=str(out / MANIFEST_NAME))
    return out, manifest


def load_labels(out_dir: str | Path) -> pd.DataFrame:
    """Every label row of a verified run, sorted by (unit, day), one row per (unit, decision date)."""
    out, manifest = _finished(out_dir)
    shards = sorted(name for name in manifest["outputs"] if name.startswith("labels/"))
    frames = [pd.read_parquet(out / name) for name in shards]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).sort_values(["unit", "day"], kind="stable").reset_index(drop=True)


def load_groups(out_dir: str | Path) -> pd.DataFrame:
    """The per-group solver records (status, objective, gap, time, alpha, turnover) of a verified run."""
    out, _ = _finished(out_dir)
    return pd.read_parquet(out / "groups.parquet")
