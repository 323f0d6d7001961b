"""The shared pieces: strict config tree with overrides, atomic writes, manifests with checksums."""
from __future__ import annotations

import json

import pytest

from orpr_ray.config import OrprConfig, load_config
from orpr_ray.core.artifacts import (
    atomic_path,
    read_manifest,
    write_json_atomic,
    write_manifest,
    write_text_atomic,
)
from orpr_ray.core.errors import ConfigError, InputError


def test_overrides_parse_yaml_values_and_nest(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("seed: 5\ndata:\n  synth:\n    units: 40\n")
    cfg = load_config(cfg_file, ["data.synth.days=120", "seed=7", "data.fill_missing_days=true"])
    assert cfg.seed == 7
    assert cfg.data.synth.units == 40
    assert cfg.data.synth.days == 120
    assert cfg.data.fill_missing_days is True


def test_config_round_trips_through_plain_dict():
    cfg = load_config(overrides=["label.v_max=30"])
    again = OrprConfig.model_validate(json.loads(json.dumps(cfg.model_dump(mode="json"))))
    assert again == cfg


@pytest.mark.parametrize("override, field", [
    ("data.synth.bogus=1", "data.synth.bogus"),
    ("nosuchsection.x=1", "nosuchsection"),
    ("data.synth.units=-3", "data.synth.units"),
    ("data.synth.units=many", "data.synth.units"),
])
def test_bad_config_names_the_field(override, field):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert f"field '{field}'" in str(info.value)


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(overrides=["no_equals_sign"])
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(info.value)


def test_yaml_top_level_must_be_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_input_error_message_names_everything():
    err = InputError("sales is negative (-2)", file="demand.csv", field="sales", where="row 7")
    assert str(err) == "file demand.csv, field 'sales', row 7: sales is negative (-2)"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = write_text_atomic(tmp_path / "a.txt", "first")
    write_text_atomic(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_manifest_detects_changed_or_missing_outputs(tmp_path):
    write_json_atomic(tmp_path / "table.json", {"x": 1})
    write_manifest(tmp_path, stage="test", config={"a": 1}, inputs={}, outputs=["table.json"])
    manifest = read_manifest(tmp_path)
    assert manifest is not None and manifest["stage"] == "test"
    assert "package" in manifest["code_version"]
    (tmp_path / "table.json").write_text('{"x": 2}\n')
    assert read_manifest(tmp_path) is None
    (tmp_path / "table.json").unlink()
    assert read_manifest(tmp_path) is None
    assert read_manifest(tmp_path, verify=False) is not None


def test_unfinished_stage_has_no_manifest(tmp_path):
    assert read_manifest(tmp_path) is None


def test_invalid_yaml_value_in_override_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(overrides=["data.synth.start_date=2024-02-30"])
    assert "data.synth.start_date" in str(info.value)


def test_atomic_files_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
