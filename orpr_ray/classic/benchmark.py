"""Run named policies on one instance: tune the heuristics, evaluate exactly and by simulation.

Shared by ``orpr classic`` and ``bench/bench_classic.py``. Exact evaluation is used wherever the
optimum itself fits within ``classic.max_exact_states``; beyond that the heuristic searches compare
policies by simulation with common random numbers (one seed for every candidate).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from orpr_ray.classic.config import ClassicConfig
from orpr_ray.classic.exact import ExactResult, StateSpaceTooLarge, evaluate_policy, solve_optimal
from orpr_ray.classic.heuristics import (
    Myopic,
    constant_order_cost,
    tune_base_stock,
    tune_capped_base_stock,
    tune_constant_order,
)
from orpr_ray.classic.learned import train_learned
from orpr_ray.classic.model import LostSalesProblem, Policy, StateSpace
from orpr_ray.classic.simulate import SimulationResult, simulate_policy
from orpr_ray.core.errors import InputError

POLICY_NAMES = ("optimal", "base_stock", "myopic", "capped_base_stock", "constant", "learned")


@dataclass
class PolicyReport:
    """One policy on one instance: its parameters, exact and/or simulated cost, gap to the optimum."""

    name: str
    params: dict
    exact: ExactResult | None = None
    simulation: SimulationResult | None = None
    gap_pct: float | None = None  # (cost - optimum) / optimum x 100, when the optimum is known
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def cost(self) -> float | None:
        if self.exact is not None:
            return self.exact.cost
        return self.simulation.mean if self.simulation is not None else None

    def to_dict(self) -> dict:
        return {"policy": self.name, "params": self.params,
                "exact": self.exact.to_dict() if self.exact else None,
                "simulation": self.simulation.to_dict() if self.simulation else None,
                "gap_to_optimum_pct": self.gap_pct, "seconds": self.seconds, "notes": self.notes}


def exact_fits(problem: LostSalesProblem, cfg: ClassicConfig) -> bool:
    """Whether the optimum's post-decision state space is within the configured limit."""
    return StateSpace.size(problem.lead_time + 1, problem.ip_bound) <= cfg.max_exact_states


class PolicyCosts:
    """Memoised costs of candidate policies, shared by the searches and the reports.

    The searches compare exact costs when ``exact`` (a candidate beyond the size limit then costs
    +inf, so no search walks there), else simulated means with one seed for every candidate
    (common random numbers). ``report_exact`` and ``report_simulation`` say what the caller wants
    reported.
    """

    def __init__(self, problem: LostSalesProblem, cfg: ClassicConfig, *, exact: bool, seed: int,
                 report_exact: bool, report_simulation: bool):
        self.problem, self.cfg, self.exact, self.seed = problem, cfg, exact, seed
        self.report_exact, self.report_simulation = report_exact, report_simulation
        self._exact: dict = {}
        self._simulated: dict = {}

    def __call__(self, policy: Policy) -> float:
        if self.exact:
            result = self.exact_result(policy)
            return math.inf if result is None else result.cost
        return self.simulated(policy).mean

    def exact_result(self, policy: Policy) -> ExactResult | None:
        if policy not in self._exact:
            try:
                self._exact[policy] = evaluate_policy(
                    self.problem, policy, tolerance=self.cfg.tolerance,
                    max_iterations=self.cfg.max_iterations, max_states=self.cfg.max_exact_states)
            except StateSpaceTooLarge:
                self._exact[policy] = None
        return self._exact[policy]

    def simulated(self, policy: Policy) -> SimulationResult:
        if policy not in self._simulated:
            self._simulated[policy] = simulate_policy(
                self.problem, policy, periods=self.cfg.sim_periods, replications=self.cfg.sim_replications,
                warmup=self.cfg.sim_warmup, seed=self.seed, confidence=self.cfg.confidence)
        return self._simulated[policy]

    def report(self, name: str, policy: Policy, params: dict | None = None) -> PolicyReport:
        """The wanted evaluations of one chosen policy (memoised: searches already paid for most)."""
        out = PolicyReport(name, policy.params() if params is None else params)
        if self.report_exact and self.exact:
            out.exact = self.exact_result(policy)
        if self.report_simulation:
            out.simulation = self.simulated(policy)
        return out


def run_policies(problem: LostSalesProblem, names: Iterable[str], cfg: ClassicConfig, *, seed: int,
                 exact: bool = True, simulate: bool = True) -> list[PolicyReport]:
    """Tune and evaluate each named policy (POLICY_NAMES); gaps are filled when 'optimal' is among
    them. ``exact`` / ``simulate`` choose what is reported; the searches use exact costs whenever
    the instance fits ``cfg.max_exact_states``, whatever is reported."""
    names = list(names)
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown:
        raise InputError(f"unknown policy {unknown[0]!r}; expected one of {', '.join(POLICY_NAMES)} or all",
                         field="policy")
    fits = exact_fits(problem, cfg)
    costs = PolicyCosts(problem, cfg, exact=fits, seed=seed, report_exact=exact, report_simulation=simulate)
    reports = []
    for name in names:
        started = time.perf_counter()
        report = _RUNNERS[name](problem, cfg, costs)
        if exact and not fits and name != "constant":
            report.notes.append(f"no exact result: the optimum needs {StateSpace.size(problem.lead_time + 1, problem.ip_bound):,} "
                                f"states > classic.max_exact_states={cfg.max_exact_states:,}")
        report.seconds = time.perf_counter() - started
        reports.append(report)
    _fill_gaps(reports)
    return reports


def _run_optimal(problem: LostSalesProblem, cfg: ClassicConfig, costs: PolicyCosts) -> PolicyReport:
    report = PolicyReport("optimal", {"ip_bound": problem.ip_bound})
    if not costs.exact:
        return report
    solution = solve_optimal(problem, tolerance=cfg.tolerance, max_iterations=cfg.max_iterations,
                             max_states=cfg.max_exact_states)
    report.params["states"] = len(solution.space)
    if costs.report_exact:
        report.exact = solution.result
    if costs.report_simulation:
        report.simulation = costs.simulated(solution.policy)
    return report


def _run_tuned(name: str, tune: Callable) -> Callable:
    def run(problem: LostSalesProblem, cfg: ClassicConfig, costs: PolicyCosts) -> PolicyReport:
        policy, _ = tune(problem, costs)
        return costs.report(name, policy)
    return run


def _run_myopic(problem: LostSalesProblem, cfg: ClassicConfig, costs: PolicyCosts) -> PolicyReport:
    return costs.report("myopic", Myopic(problem))


def _run_constant(problem: LostSalesProblem, cfg: ClassicConfig, costs: PolicyCosts) -> PolicyReport:
    """The constant order's exact cost needs no lead-time state (a one-dimensional chain), so it
    is tuned and reported exactly at any size."""
    policy, _ = tune_constant_order(problem, lambda q: constant_order_cost(problem, q).cost)
    report = PolicyReport("constant", policy.params())
    if costs.report_exact:
        report.exact = constant_order_cost(problem, policy.quantity)
    if costs.report_simulation:
        report.simulation = costs.simulated(policy)
    return report


def _run_learned(problem: LostSalesProblem, cfg: ClassicConfig, costs: PolicyCosts) -> PolicyReport:
    """The network trained on the best capped base-stock policy's orders, then RLOO (classic.learned)."""
    label, _ = tune_capped_base_stock(problem, costs)
    policy = train_learned(problem, label, cfg.learned, seed=costs.seed)
    return costs.report("learned", policy, {**policy.params(), "label_policy": label.params()})


_RUNNERS = {
    "optimal": _run_optimal,
    "base_stock": _run_tuned("base_stock", tune_base_stock),
    "myopic": _run_myopic,
    "capped_base_stock": _run_tuned("capped_base_stock", tune_capped_base_stock),
    "constant": _run_constant,
    "learned": _run_learned,
}


ZERO_COST = 1e-6  # an optimum this small is zero within the solver's tolerance: no relative gap


def _fill_gaps(reports: list[PolicyReport]) -> None:
    optimum = next((r.exact.cost for r in reports if r.name == "optimal" and r.exact), None)
    if optimum is None or optimum < ZERO_COST:
        return
    for report in reports:
        if report.cost is not None and math.isfinite(report.cost):
            report.gap_pct = 100.0 * (report.cost - optimum) / optimum
