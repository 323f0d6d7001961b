"""``orpr rl``, ``orpr sweep`` and ``orpr promo``: RLOO alignment, its omega/beta sweep on Ray Tune, and
the expert-guided promotion fine-tune.

    orpr rl --checkpoint runs/demo/finetune --out runs/demo/rl --set rl.omega=0.5 --set rl.beta=0.05
    orpr sweep --space tune_configs/rloo_sweep.yaml --checkpoint runs/demo/finetune --out runs/demo/sweep
    orpr promo --checkpoint runs/demo/rl --out runs/demo/promo [--expert expert.csv]

The config starts from the one the start policy was trained with (its manifest), unless --config
is given; --set overrides either. Re-running a command resumes an interrupted run.
"""
from __future__ import annotations

import argparse
import json

from orpr_ray.cli import add_config_arguments
from orpr_ray.config import OrprConfig, apply_overrides, load_config, validate_config


def register(subparsers) -> None:
    rl = subparsers.add_parser("rl", help="RLOO alignment of a fine-tuned network (hybrid reward, KL anchor)",
                               description=__doc__.splitlines()[0])
    _add_common(rl)
    rl.add_argument("--workers", type=int, help="Ray Train workers (0 = this process); default rl.num_workers")
    rl.set_defaults(func=run_rl_command)

    sweep = subparsers.add_parser("sweep", help="sweep omega / beta of the RLOO learner on Ray Tune",
                                  description=__doc__.splitlines()[0])
    sweep.add_argument("--space", required=True, help="YAML search space, e.g. tune_configs/rloo_sweep.yaml")
    sweep.add_argument("--storage", help="Tune storage path or URI (default rl.sweep.storage_path, else <out>/tune)")
    _add_common(sweep)
    sweep.set_defaults(func=run_sweep_command)

    promo = subparsers.add_parser("promo", help="expert-guided secondary fine-tune on promotion decision points",
                                  description=__doc__.splitlines()[0])
    promo.add_argument("--expert", help="CSV/Parquet of expert labels (sku, dc, date, v); default: the synthetic "
                                        "expert, written to <out>/expert_labels.csv")
    _add_common(promo)
    promo.set_defaults(func=run_promo_command)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="start policy: an output folder of finetune / rl "
                                                            "(its manifest names data and labels) or a checkpoint "
                                                            "folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--data", help="dataset folder (default: the one the start policy names)")
    parser.add_argument("--labels", help="labels folder (default: the one the start policy names)")
    add_config_arguments(parser)


def run_config(args: argparse.Namespace, extra: list[str] = ()) -> OrprConfig:
    """The start policy's config (or --config), then the --set overrides and flags."""
    from orpr_ray.core.artifacts import read_manifest

    overrides = [*args.overrides, *extra]
    manifest = read_manifest(args.checkpoint, verify=False) or {}
    if args.config or "config" not in manifest:
        return load_config(args.config, overrides)
    return validate_config(apply_overrides(json.loads(json.dumps(manifest["config"])), overrides),
                           source=f"{args.checkpoint}/manifest.json")


def run_rl_command(args: argparse.Namespace) -> int:
    from orpr_ray.rl.driver import run_rl

    cfg = run_config(args, [] if args.workers is None else [f"rl.num_workers={args.workers}"])
    manifest = run_rl(cfg, args.checkpoint, args.out, data_dir=args.data, labels_dir=args.labels)
    print(f"orpr rl: done, {args.out}/manifest.json\n{json.dumps(manifest['figures'], indent=2)}")
    return 0


def run_sweep_command(args: argparse.Namespace) -> int:
    from orpr_ray.rl.tune import read_space, run_sweep

    space = read_space(args.space)  # a bad space fails before anything starts
    cfg = run_config(args, [] if args.storage is None else [f"rl.sweep.storage_path={json.dumps(args.storage)}"])
    manifest = run_sweep(cfg, space, args.checkpoint, args.out, data_dir=args.data, labels_dir=args.labels)
    print(f"orpr sweep: done, {args.out}/manifest.json\n{json.dumps(manifest['figures'], indent=2)}")
    return 0


def run_promo_command(args: argparse.Namespace) -> int:
    from orpr_ray.rl.promo import run_promo

    cfg = run_config(args)
    manifest = run_promo(cfg, args.checkpoint, args.out, expert_file=args.expert, data_dir=args.data,
                         labels_dir=args.labels)
    print(f"orpr promo: done, {args.out}/manifest.json\n{json.dumps(manifest['figures'], indent=2)}")
    return 0
