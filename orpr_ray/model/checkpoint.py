"""Checkpoints that describe themselves: weights, model config, feature statistics, grid and sources.

One file, ``model.pt``, written with ``torch.save`` of plain tensors, numbers, strings, lists and
dicts, and read back with ``torch.load(..., weights_only=True)`` (no pickled code is ever run).
A model is rebuilt from the checkpoint alone; a checkpoint trained with another model config or
grid than the one a stage expects is refused with the differences spelled out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from orpr_ray.core.artifacts import atomic_path
from orpr_ray.core.errors import ConfigError, InputError
from orpr_ray.model.config import ModelConfig
from orpr_ray.model.features import FeatureStats
from orpr_ray.model.network import OrprNet, build_model

CHECKPOINT_FILE = "model.pt"
FORMAT = "orpr-checkpoint/1"


@dataclass
class CheckpointMeta:
    """Everything in a checkpoint except the weights.

    grid: the inventory-days targets the logits index, in order (logit i -> grid[i] days).
    sources: where the training inputs came from (data / labels / previous-stage manifests).
    training: stage bookkeeping (epoch, metrics history, optimizer state for resuming).
    decision_quantile: how a target is read from the logits (network.target_index): None = the
    mode, q = the q-quantile of the predicted distribution over the grid.
    """

    model_config: ModelConfig
    stats: FeatureStats
    grid: list[int]
    stage: str
    sources: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    decision_quantile: float | None = None


def checkpoint_file(directory: str | Path) -> Path:
    """``model.pt`` of a checkpoint folder, or of the ``policy/`` folder of a stage's output folder."""
    directory = Path(directory)
    for candidate in (directory / CHECKPOINT_FILE, directory / "policy" / CHECKPOINT_FILE):
        if candidate.is_file():
            return candidate
    raise InputError(f"no {CHECKPOINT_FILE} here nor in its policy/ folder", file=str(directory))


def save_checkpoint(directory: str | Path, model: OrprNet, meta: CheckpointMeta) -> Path:
    """Write ``directory/model.pt`` atomically (a reader never sees half a checkpoint)."""
    payload = {
        "format": FORMAT,
        "stage": meta.stage,
        "state_dict": {name: tensor.detach().clone() for name, tensor in model.state_dict().items()},
        "model_config": meta.model_config.model_dump(mode="json"),
        "grid": [int(v) for v in meta.grid],
        "feature_stats": meta.stats.to_dict(),
        "sources": meta.sources,
        "training": meta.training,
        "decision_quantile": meta.decision_quantile,
    }
    path = Path(directory) / CHECKPOINT_FILE
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """The weights and the metadata of a checkpoint folder, loaded without running pickled code."""
    path = checkpoint_file(directory)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise InputError(f"not a readable checkpoint: {exc}", file=str(path)) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(f"checkpoint format {found!r}, expected {FORMAT!r}", file=str(path), field="format")
    try:
        model_config = ModelConfig.model_validate(payload["model_config"])
    except ValidationError as exc:
        raise InputError(f"the stored model config is invalid for this code version: {exc}", file=str(path),
                         field="model_config") from exc
    meta = CheckpointMeta(model_config=model_config, stats=FeatureStats.from_dict(payload["feature_stats"]),
                          grid=list(payload["grid"]), stage=payload["stage"], sources=payload["sources"],
                          training=payload["training"], decision_quantile=payload.get("decision_quantile"))
    return payload["state_dict"], meta


def _differences(stored: Any, current: Any, prefix: str) -> list[str]:
    """Dotted keys whose values differ between two nested dicts, with both values."""
    if isinstance(stored, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in sorted(set(stored) | set(current)):
            out += _differences(stored.get(key), current.get(key), f"{prefix}.{key}")
        return out
    return [] if stored == current else [f"{prefix}: {stored!r} in the checkpoint, {current!r} now"]


def check_compatible(meta: CheckpointMeta, *, model_config: ModelConfig | None = None,
                     grid: list[int] | None = None, source: str = "checkpoint") -> None:
    """Refuse a checkpoint trained with another model config or inventory-days grid than expected."""
    problems = []
    if model_config is not None:
        problems += _differences(meta.model_config.model_dump(mode="json"), model_config.model_dump(mode="json"),
                                 "model")
    if grid is not None and list(grid) != list(meta.grid):
        problems.append(f"grid: {_grid_text(meta.grid)} in the checkpoint, {_grid_text(grid)} now "
                        f"(label.v_min / label.v_max)")
    if problems:
        raise ConfigError("checkpoint was trained with another config: " + "; ".join(problems)
                          + ". Use the config it was trained with, or train again.", file=source)


def _grid_text(grid: list[int]) -> str:
    return f"{grid[0]}..{grid[-1]} ({len(grid)} targets)" if grid else "empty"


def model_for(meta: CheckpointMeta, seed: int = 0) -> OrprNet:
    """A freshly initialised network of the shape the metadata describes (config, extras, grid)."""
    return build_model(meta.model_config, grid_size=len(meta.grid), n_extra_numeric=len(meta.stats.extra_numeric),
                       n_extra_categorical=len(meta.stats.extra_categorical), seed=seed)


def build_from_checkpoint(state_dict: dict[str, torch.Tensor], meta: CheckpointMeta) -> OrprNet:
    """The network described by the metadata, with the stored weights, in eval mode."""
    model = model_for(meta)
    model.load_state_dict(state_dict)
    return model.eval()
