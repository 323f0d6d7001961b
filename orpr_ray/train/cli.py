"""``orpr pretrain`` and ``orpr finetune``: the supervised stages of the ORPR network on Ray Train.

``orpr pretrain --data DIR --labels DIR --out DIR`` trains the forecaster (stage 1) and the decision
head on the OR labels (stage 2); ``orpr finetune --pretrained DIR --out DIR`` fine-tunes the whole
network (stage 3), reading the data, labels and config of the pretrain run from its manifest.
Re-running a command resumes an interrupted run; a finished one is not redone.
"""
from __future__ import annotations

import argparse
import json

from orpr_ray.cli import add_config_arguments
from orpr_ray.config import OrprConfig, apply_overrides, load_config, validate_config


def register(subparsers) -> None:
    pre = subparsers.add_parser("pretrain", help="train the forecaster, then the decision head on OR labels",
                                description=__doc__.splitlines()[0])
    pre.add_argument("--data", required=True, help="dataset folder (demand + units files)")
    pre.add_argument("--labels", required=True, help="output folder of `orpr label`")
    pre.add_argument("--out", required=True, help="output folder (checkpoints, report.json, manifest.json)")
    _add_common(pre)
    pre.set_defaults(func=run_pretrain)

    fine = subparsers.add_parser("finetune", help="fine-tune a pretrained network on the decision loss",
                                 description=__doc__.splitlines()[0])
    fine.add_argument("--pretrained", required=True, help="output folder of `orpr pretrain` (its manifest "
                                                          "names the data, labels and config)")
    fine.add_argument("--out", required=True, help="output folder")
    fine.add_argument("--data", help="dataset folder (default: the one the pretrain run used)")
    fine.add_argument("--labels", help="labels folder (default: the one the pretrain run used)")
    _add_common(fine)
    fine.set_defaults(func=run_finetune)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, help="Ray Train workers (0 = in this process without Ray); "
                                                    "default train.num_workers")
    add_config_arguments(parser)


def _worker_override(args: argparse.Namespace) -> list[str]:
    return [] if args.workers is None else [f"train.num_workers={args.workers}"]


def run_pretrain(args: argparse.Namespace) -> int:
    from orpr_ray.train.runner import pretrain

    cfg = load_config(args.config, [*args.overrides, *_worker_override(args)])
    manifest = pretrain(cfg, args.data, args.labels, args.out)
    print(f"orpr pretrain: done, {args.out}/manifest.json\n{json.dumps(manifest['figures'], indent=2)}")
    return 0


def finetune_config(args: argparse.Namespace, pretrained_config: dict) -> OrprConfig:
    """The pretrain run's config (or the --config file instead), then the --set overrides and flags."""
    overrides = [*args.overrides, *_worker_override(args)]
    if args.config:
        return load_config(args.config, overrides)
    return validate_config(apply_overrides(json.loads(json.dumps(pretrained_config)), overrides),
                           source=f"{args.pretrained}/manifest.json")


def run_finetune(args: argparse.Namespace) -> int:
    from orpr_ray.train.runner import finetune, pretrained_inputs

    cfg = finetune_config(args, pretrained_inputs(args.pretrained)["config"])
    manifest = finetune(cfg, args.pretrained, args.out, data_dir=args.data, labels_dir=args.labels)
    print(f"orpr finetune: done, {args.out}/manifest.json\n{json.dumps(manifest['figures'], indent=2)}")
    return 0
