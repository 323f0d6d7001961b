"""``orpr label``: simulation-augmented OR labels for every unit and decision date, on Ray."""
from __future__ import annotations

import argparse
import json

from orpr_ray.cli import add_config_arguments
from orpr_ray.config import load_config


def register(subparsers) -> None:
    parser = subparsers.add_parser("label", help="compute OR labels (knapsack per group, calibrated) on Ray",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset folder; default data.path, else the synthetic catalogue")
    parser.add_argument("--out", required=True, help="output folder (re-running into it resumes)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: all); ignored on a cluster")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orpr_ray.data.io import load_from_config
    from orpr_ray.label.driver import run_labels

    data = [f"data.path={json.dumps(args.data)}"] if args.data else []  # JSON is YAML: the flag wins
    cfg = load_config(args.config, [*args.overrides, *data])
    ds = load_from_config(cfg.data, cfg.seed)
    manifest = run_labels(ds, args.out, label=cfg.label, sim=cfg.sim, config=cfg.model_dump(mode="json"),
                          source=cfg.data.path or "synthetic", progress=not args.no_progress,
                          num_cpus=args.num_cpus)
    counts, solver = manifest["counts"], manifest.get("solver", {})
    print(f"{counts['labels']} labels in {counts['groups']} groups, {counts['shards']} shards "
          f"({counts['resumed_shards']} resumed); fallback labels {counts['fallback_labels']}; "
          f"status {solver.get('status', {})}; max gap {solver.get('max_mip_gap')}")
    print(f"written to {args.out} (calibration.csv: target vs achieved turnover per category)")
    return 0
