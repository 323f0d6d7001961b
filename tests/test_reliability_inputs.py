"""The bad-input corpus (tests/bad_inputs/cases.yaml): every malformed config, demand/attribute folder
and M5 folder is refused by the CLI with exit code 2, a message naming the file/field/row and the
problem, and nothing written. The HTTP part of the corpus is sent over real HTTP in
tests/test_reliability_serve.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orpr_ray.cli import main

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(argv: list[str], out: Path, fragments: list[str], capsys) -> str:
    """Exit code 2, every fragment in the one error line, no output folder, the corpus untouched."""
    before = _snapshot(CORPUS)
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"orpr {argv[0]}: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not out.exists()
    assert _snapshot(CORPUS) == before
    return err


@pytest.mark.parametrize("name", sorted(CASES["configs"]))
def test_bad_config_is_refused_before_any_work(name, tmp_path, capsys):
    out = tmp_path / "labels"
    _refused(["label", "--config", str(CORPUS / "configs" / name), "--data", str(CORPUS / "valid_data"),
              "--out", str(out), "--no-progress"], out, CASES["configs"][name], capsys)


@pytest.mark.parametrize("name", sorted(CASES["data"]))
def test_bad_dataset_folder_is_refused(name, tmp_path, capsys):
    out = tmp_path / "dataset"
    _refused(["data", "validate", str(CORPUS / "data" / name), "--out", str(out)], out, CASES["data"][name],
             capsys)


@pytest.mark.parametrize("name", sorted(CASES["m5"]))
def test_bad_m5_folder_is_refused(name, tmp_path, capsys):
    out = tmp_path / "dataset"
    _refused(["data", "import-m5", str(CORPUS / "m5" / name), "--out", str(out)], out, CASES["m5"][name], capsys)


def test_every_corpus_file_has_a_case():
    """A file added to the corpus without an expected message would never be checked."""
    on_disk = {"configs": {p.name for p in (CORPUS / "configs").iterdir()},
               "data": {p.name for p in (CORPUS / "data").iterdir()},
               "m5": {p.name for p in (CORPUS / "m5").iterdir()},
               "http": {p.stem for p in (CORPUS / "http").iterdir()}}
    assert on_disk == {kind: set(CASES[kind]) for kind in on_disk}


def test_the_valid_folder_the_config_cases_use_is_valid(tmp_path, capsys):
    """So the config cases fail because of the config, not the data."""
    assert main(["data", "validate", str(CORPUS / "valid_data")]) == 0
