"""Classic lost-sales benchmark (issue 8): every policy's cost and gap to the exact optimum.

The grid L in {1, 2, 3, 4} x p in {4, 9, 19, 39}, Poisson demand of mean 5, h = 1 (Zipkin 2008's
instances). Per cell: the optimum by relative value iteration, the tuned heuristics (best
base-stock, myopic, best capped base-stock, best constant order) evaluated exactly, and a
simulation of every policy whose confidence interval is checked against the exact cost, and the
learned policy (classic/learned.py: OrprNet on capped base-stock labels, RLOO, then policy
iteration by simulation), trained per cell and evaluated exactly like the others. Prints the
Markdown entry and makes it the content of the "Classic lost-sales benchmark" section of
docs/BENCHMARKS.md (the numbers are exact, so the latest run replaces the previous one).

    make bench-classic     # or: .venv/bin/python bench/bench_classic.py [--lead-times 1 2] [--no-write]
"""
from __future__ import annotations

import time

from common import bench_parser, command_line, dated_entry, machine, publish  # (bench/ is on sys.path)

from orpr_ray.classic.benchmark import POLICY_NAMES, PolicyReport, run_policies
from orpr_ray.classic.config import ClassicConfig
from orpr_ray.classic.distributions import parse_demand
from orpr_ray.classic.model import LostSalesProblem

SECTION = "## Classic lost-sales benchmark"
# Zipkin (2008), Old and New Methods for Lost-Sales Inventory Systems, Oper. Res. 56(5), Table 3
# (Poisson mean 5, h = 1), the values we could trace to the paper: (L, p) -> {policy: cost}.
PUBLISHED = {(4, 4.0): {"optimal": 4.73, "myopic": 5.06}, (4, 19.0): {"optimal": 8.89}}
HEADERS = {"optimal": "optimal", "base_stock": "best base-stock", "myopic": "myopic",
           "capped_base_stock": "best capped base-stock", "constant": "best constant order",
           "learned": "learned policy (RLOO + policy iteration)"}


def run_grid(args) -> list[dict]:
    cfg = ClassicConfig(sim_periods=args.periods, sim_replications=args.replications)
    cells = []
    for lead_time in args.lead_times:
        for penalty in args.penalties:
            problem = LostSalesProblem(parse_demand(args.demand), lead_time, 1.0, penalty)
            started = time.perf_counter()
            reports = run_policies(problem, POLICY_NAMES, cfg, seed=args.seed, simulate=not args.no_simulate)
            cells.append({"problem": problem, "reports": {r.name: r for r in reports},
                          "seconds": time.perf_counter() - started})
            print(f"L={lead_time} p={penalty:g}: " + ", ".join(
                f"{r.name} {r.cost:.4f}" for r in reports) + f" ({cells[-1]['seconds']:.1f} s)", flush=True)
    return cells


def cost_cell(report: PolicyReport) -> str:
    text = f"{report.exact.cost:.4f}"
    if report.name in ("base_stock", "capped_base_stock", "constant"):
        text += " (" + ", ".join(f"{k}={v}" for k, v in report.params.items()) + ")"
    if report.name != "optimal":
        text += f" {report.gap_pct:+.2f}%"
    return text


def sim_check(report: PolicyReport) -> bool | None:
    if report.simulation is None or report.exact is None:
        return None
    return report.simulation.ci_low <= report.exact.cost <= report.simulation.ci_high


def entry(args, cells: list[dict], seconds: float, cpu_seconds: float) -> str:
    lines = [f"- Command: `{command_line(__file__)}` (`make bench-classic`); total {seconds:.0f} s wall, "
             f"{cpu_seconds:.0f} s CPU (wall times below stretch when the machine is shared)",
             f"- Machine: {machine()}",
             "- Costs are exact long-run averages per period (relative value iteration; every interval "
             f"narrower than {ClassicConfig().tolerance:g} x cost); `+x%` is the gap to the optimum. "
             "Heuristic parameters are the best found by the searches of `orpr_ray/classic/heuristics.py`.",
             "- Learned policy: `classic.learned` defaults (a small OrprNet, "
             f"{learned_parameters(cells)} parameters; capped base-stock labels, RLOO on simulated "
             "rollouts, then rounds of policy iteration by simulation), trained per cell with the run's "
             "seed; the last column says whether it is below every heuristic of the row with certified "
             "bounds (its upper bound under each heuristic's lower bound) and gives its gap and the best "
             "heuristic's. Training time per cell is in the second table.",
             "", "| L | p | " + " | ".join(HEADERS[n] for n in POLICY_NAMES) + " | below every heuristic: learned vs best heuristic |",
             "|---|---|" + "---|" * (len(POLICY_NAMES) + 1)]
    for cell in cells:
        prob, reports = cell["problem"], cell["reports"]
        lines.append(f"| {prob.lead_time} | {prob.penalty:g} | "
                     + " | ".join(cost_cell(reports[n]) for n in POLICY_NAMES) + f" | {versus_best_heuristic(reports)} |")
    lines += learned_summary(cells)
    lines += ["", "Exact solver and cross-checks per cell (states: {IP <= S-bar} for the optimum; times are "
              "wall-clock; simulation: each policy's 95% interval from "
              f"{args.replications} replications x {args.periods:,} periods, same seed for all):", "",
              "| L | p | S-bar | states | RVI iterations | optimum solve (s) | learned: training states, "
              "policy-iteration rounds kept, training (s) | cell total (s) | simulated CIs containing the exact cost |",
              "|---|---|---|---|---|---|---|---|---|"]
    covered = total = 0
    for cell in cells:
        prob, opt = cell["problem"], cell["reports"]["optimal"]
        checks = [sim_check(r) for r in cell["reports"].values()]
        hits = sum(c is True for c in checks)
        known = sum(c is not None for c in checks)
        covered, total = covered + hits, total + known
        lines.append(f"| {prob.lead_time} | {prob.penalty:g} | {prob.ip_bound} | {opt.exact.states:,} | "
                     f"{opt.exact.iterations} | {opt.exact.seconds:.2f} | {learned_training(cell)} | "
                     f"{cell['seconds']:.1f} | "
                     + (f"{hits}/{known}" if known else "not simulated") + " |")
    lines += ["", f"Simulation intervals containing the exact cost: {covered}/{total} "
              "(at 95% about one in twenty may miss by chance)." if total else ""]
    lines += published_lines(cells)
    return dated_entry(f"L x p grid, demand {args.demand}, h = 1", lines).rstrip("\n") + "\n"


HEURISTICS = ("base_stock", "myopic", "capped_base_stock", "constant")


def beats_all(reports: dict[str, PolicyReport]) -> bool:
    """Below every heuristic with certified bounds: the learned policy's upper bound under each
    heuristic's lower bound (exact costs carry intervals, so a tie is never read as a win)."""
    return all(reports["learned"].exact.upper < reports[n].exact.lower for n in HEURISTICS)


def at_optimum(reports: dict[str, PolicyReport]) -> bool:
    """The learned policy's certified interval overlaps the optimum's: optimal within the tolerance."""
    return reports["learned"].exact.lower <= reports["optimal"].exact.upper


def versus_best_heuristic(reports: dict[str, PolicyReport]) -> str:
    best = min(HEURISTICS, key=lambda n: reports[n].exact.cost)
    verdict = "yes" if beats_all(reports) else "no"
    # At the optimum the midpoint gap can be -0.000%: the intervals overlap, so say so instead.
    learned = "optimal" if at_optimum(reports) else f"{reports['learned'].gap_pct:+.3f}%"
    return f"{verdict}: {learned} vs {reports[best].gap_pct:+.3f}% ({HEADERS[best]})"


def learned_summary(cells: list[dict]) -> list[str]:
    gaps = [cell["reports"]["learned"].gap_pct for cell in cells]
    if not gaps or any(g is None for g in gaps):
        return []
    within = sum(g <= 1.0 for g in gaps)
    beats = sum(beats_all(cell["reports"]) for cell in cells)
    optimal = sum(at_optimum(cell["reports"]) for cell in cells)
    return ["", f"Learned policy: within 1% of the optimum on {within}/{len(cells)} cells (largest gap "
            f"{max(gaps):+.3f}%, mean {sum(gaps) / len(gaps):+.3f}%); below every heuristic (certified "
            f"bounds) on {beats}/{len(cells)}; at the optimum (its certified interval overlaps the "
            f"optimum's) on {optimal}/{len(cells)}."]


def learned_training(cell: dict) -> str:
    params = cell["reports"]["learned"].params
    kept = sum(entry["kept"] is not None for entry in params["rounds"])
    return f"{params['train_states']:,}, {kept}, {params['train_seconds']:.0f}"


def learned_parameters(cells: list[dict]) -> str:
    return f"{cells[0]['reports']['learned'].params['parameters']:,}" if cells else "?"


def published_lines(cells: list[dict]) -> list[str]:
    rows = []
    for cell in cells:
        key = (cell["problem"].lead_time, cell["problem"].penalty)
        for name, value in PUBLISHED.get(key, {}).items():
            rows.append(f"| {key[0]} | {key[1]:g} | {name} | {value:.2f} | "
                        f"{cell['reports'][name].exact.cost:.4f} |")
    if not rows:
        return []
    return ["", "Against published values (Zipkin 2008, Table 3; two decimals):", "",
            "| L | p | policy | published | this run |", "|---|---|---|---|---|", *rows]




def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--lead-times", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--penalties", type=float, nargs="+", default=[4.0, 9.0, 19.0, 39.0])
    parser.add_argument("--demand", default="poisson:5")
    parser.add_argument("--periods", type=int, default=5_000, help="simulated periods per replication")
    parser.add_argument("--replications", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-simulate", action="store_true", help="exact costs only")
    args = parser.parse_args()
    started, started_cpu = time.perf_counter(), time.process_time()
    cells = run_grid(args)
    text = entry(args, cells, time.perf_counter() - started, time.process_time() - started_cpu)
    publish(SECTION, text, write=not args.no_write, replace=True)


if __name__ == "__main__":
    main()
