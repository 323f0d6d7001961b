"""``orpr baseline``: tune the classic policies and backtest them on the held-out window."""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from orpr_ray.cli import add_config_arguments
from orpr_ray.config import load_config
from orpr_ray.data.io import load_from_config
from orpr_ray.sim.baseline import POLICY_NAMES, SUMMARY_FILE, format_table, write_baseline


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "baseline", help="tune classic policies before the test window and backtest them on it",
        description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset folder (demand + units files); default: data.path, "
                                       "else the synthetic catalogue of data.synth")
    parser.add_argument("--policy", choices=(*POLICY_NAMES, "all"), default="all")
    parser.add_argument("--out", required=True, help="folder for the metrics tables and the manifest")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.data:
        cfg.data.path = args.data
    dataset = load_from_config(cfg.data, cfg.seed)
    policies = POLICY_NAMES if args.policy == "all" else (args.policy,)
    manifest = write_baseline(dataset, cfg, args.out, source=cfg.data.path or "synthetic", policies=policies)
    windows = manifest["windows"]
    print(f"classic policies on days {windows['score_from']}..{dataset.n_days - 1} ({dataset.n_units} units), "
          f"tuned on days {windows['tune'][0]}..{windows['tune'][1] - 1}:")
    print(format_table(pd.read_csv(Path(args.out) / f"{SUMMARY_FILE}.csv")))
    print(f"written to {args.out}")
    return 0
