"""``orpr classic``: optimal and heuristic costs of one classic lost-sales instance.

Example: ``orpr classic --demand poisson:5 --lead-time 2 --holding 1 --penalty 9 --policy all --json``.
Solver and simulation settings come from the ``classic`` config section (``--set classic.sim_periods=...``);
``--periods``, ``--replications`` and ``--seed`` are shortcuts for the most used ones.
"""
from __future__ import annotations

import argparse
import json
import math

from orpr_ray.classic.benchmark import POLICY_NAMES, PolicyReport, run_policies
from orpr_ray.classic.distributions import parse_demand
from orpr_ray.classic.model import LostSalesProblem
from orpr_ray.cli import add_config_arguments
from orpr_ray.config import load_config

EVALUATIONS = ("both", "exact", "simulate")


def register(subparsers) -> None:
    parser = subparsers.add_parser("classic", help="exact optimum and classic heuristics of a lost-sales instance",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--demand", default="poisson:5",
                        help="per-period demand: poisson:MEAN, geometric:MEAN, negbin:MEAN:DISPERSION "
                             "(variance/mean), pmf:P0,P1,..., empirical:FILE[:COLUMN] (default poisson:5)")
    parser.add_argument("--lead-time", type=int, required=True, help="lead time L >= 1 in periods")
    parser.add_argument("--holding", type=float, default=1.0, help="holding cost h per unit left at period end")
    parser.add_argument("--penalty", type=float, required=True, help="penalty p per unit of lost demand")
    parser.add_argument("--policy", default="all", choices=(*POLICY_NAMES, "all"),
                        help="which policy to evaluate (default all; 'learned' first trains the network "
                             "of classic.learned: seconds to a minute)")
    parser.add_argument("--evaluate", default="both", choices=EVALUATIONS,
                        help="exact (where the state space allows), simulate, or both (default)")
    parser.add_argument("--periods", type=int, help="simulated periods per replication; default classic.sim_periods")
    parser.add_argument("--replications", type=int, help="simulated replications; default classic.sim_replications")
    parser.add_argument("--seed", type=int, help="simulation seed; default the config's root seed")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    add_config_arguments(parser)
    parser.set_defaults(func=run_classic)


def run_classic(args: argparse.Namespace) -> int:
    flags = {"classic.sim_periods": args.periods, "classic.sim_replications": args.replications,
             "seed": args.seed}
    cfg = load_config(args.config, [*args.overrides,
                                    *(f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None)])
    problem = LostSalesProblem(parse_demand(args.demand, field="--demand"), args.lead_time,
                               args.holding, args.penalty)
    names = POLICY_NAMES if args.policy == "all" else (args.policy,)
    reports = run_policies(problem, names, cfg.classic, seed=cfg.seed,
                           exact=args.evaluate in ("both", "exact"), simulate=args.evaluate in ("both", "simulate"))
    if args.json:
        print(json.dumps(_finite({"instance": problem.describe(), "seed": cfg.seed,
                                  "settings": cfg.classic.model_dump(mode="json"),
                                  "policies": [r.to_dict() for r in reports]}), indent=2, allow_nan=False))
    else:
        print_table(problem, reports)
    return 0


def _finite(obj):
    """JSON has no infinity: an unstable policy's infinite cost is written as null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def print_table(problem: LostSalesProblem, reports: list[PolicyReport]) -> None:
    d = problem.demand
    print(f"classic lost-sales: demand {d.spec} (mean {d.mean:.4g}, variance {d.variance:.4g}), "
          f"L={problem.lead_time}, h={problem.holding:g}, p={problem.penalty:g}, S-bar={problem.ip_bound}")
    print(f"{'policy':18s} {'parameters':22s} {'exact cost [bounds]':34s} {'simulated (CI)':26s} gap")
    for r in reports:
        params = ", ".join(f"{k}={v}" for k, v in r.params.items())
        exact = (f"{r.exact.cost:.4f} [{r.exact.lower:.5f}, {r.exact.upper:.5f}]" if r.exact else "-")
        sim = (f"{r.simulation.mean:.4f} ± {r.simulation.half_width:.4f} ({r.simulation.confidence:.0%})"
               if r.simulation else "-")
        gap = f"{r.gap_pct:+.2f}%" if r.gap_pct is not None else "-"
        print(f"{r.name:18s} {params:22s} {exact:34s} {sim:26s} {gap}")
        for note in r.notes:
            print(f"{'':18s} note: {note}")
