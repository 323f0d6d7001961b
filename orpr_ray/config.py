"""The one typed config tree: sections live beside the stage that owns them.

Loaded from YAML, overridden with ``--set a.b=value`` (the value is parsed as YAML, so numbers,
booleans and lists work), and passed across Ray boundaries as a plain dict
(``cfg.model_dump(mode="json")``) that ``OrprConfig.model_validate`` turns back into the tree.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import Field, ValidationError

from orpr_ray.classic.config import ClassicConfig
from orpr_ray.core.errors import ConfigError
from orpr_ray.core.schema import Strict
from orpr_ray.data.config import DataConfig
from orpr_ray.evaluate.config import EvaluateConfig
from orpr_ray.label.config import LabelConfig
from orpr_ray.model.config import ModelConfig
from orpr_ray.rl.config import RLConfig
from orpr_ray.serve.config import ServeConfig
from orpr_ray.sim.config import SimConfig
from orpr_ray.train.config import TrainConfig


class OrprConfig(Strict):
    seed: int = Field(0, description="root seed: every generator in a run derives from it")
    data: DataConfig = Field(default_factory=DataConfig)
    sim: SimConfig = Field(default_factory=SimConfig)
    label: LabelConfig = Field(default_factory=LabelConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    classic: ClassicConfig = Field(default_factory=ClassicConfig)


# The config sections a trained network depends on; the RL stages add "rl". A stage compares (and
# hashes) only its own sections, so changing how a later stage runs never retrains an earlier one.
TRAINING_SECTIONS = ("seed", "data", "sim", "label", "model", "train")
RL_SECTIONS = (*TRAINING_SECTIONS, "rl")


def sections(tree: dict | None, names: tuple[str, ...]) -> dict | None:
    """The named top-level sections of a dumped config (None stays None)."""
    return None if tree is None else {name: tree.get(name) for name in names}


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (['a', 'b'], parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.path=value", field="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError) as exc:  # the YAML date parser raises ValueError on 2024-02-30
        raise ConfigError(f"value {raw!r} is not valid YAML: {exc}", field=key) from exc
    return key.strip().split("."), value


def apply_overrides(tree: dict, overrides: Iterable[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"'{part}' is a value, not a section", field=".".join(path))
            node = child
        node[path[-1]] = value
    return tree


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> OrprConfig:
    """Read YAML (or start from the defaults), apply overrides, validate strictly."""
    tree: dict = {}
    source = str(path) if path else None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError("config file not found", file=source)
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", file=source) from exc
        if not isinstance(tree, dict):
            raise ConfigError("the top level must be a mapping of sections", file=source)
    apply_overrides(tree, overrides)
    return validate_config(tree, source=source)


def validate_config(tree: dict, source: str | None = None) -> OrprConfig:
    try:
        return OrprConfig.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{first['msg']} (got {first.get('input')!r})", file=source,
                          field=field) from exc
