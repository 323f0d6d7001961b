"""The run report: one self-contained HTML file a planner opens offline, with its tables beside it.

Reads the finished backtest (``backtest/``) and whatever upstream outputs exist (training
histories of ``pretrain/`` and ``finetune/``, the RLOO run, the sweep, PPO's progress, the label
calibration table) and writes ``RUN_DIR/report/``: ``report.html`` (figures inline as base64
PNG, no scripts, no network), ``figures/*.png`` (the same figures as files), ``tables/*.csv``
and ``manifest.json`` (last). A stage that did not run is shown as absent, never as an error.
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from orpr_ray.core.artifacts import read_manifest, write_bytes_atomic, write_manifest, write_text_atomic
from orpr_ray.core.errors import InputError
from orpr_ray.evaluate.backtest import OUT_FOLDER, POLICY_INFO, VERSUS_BEST, best_classic

REPORT_FOLDER = "report"
# Learned / reference policies drawn in the per-segment and trajectory figures (when present).
FOCUS = ("orpr", "orpr_promo", "network", "ppo", "or_labels", "incumbent")
COLORS = {"orpr": "#d62728", "orpr_promo": "#8c564b", "network": "#ff7f0e", "ppo": "#9467bd", "or_labels": "#7f7f7f",
          "incumbent": "#1f77b4", "best_classic": "#2ca02c"}
PERCENT = ("in_stock_rate", "fill_rate", "turnover_days_change", "holding_cost_change", "total_cost_change",
           "within_3")


# ----------------------------------------------------------------------------------------------
# Inputs.

@dataclass
class Backtest:
    """The backtest tables of a run (what the report is mostly about)."""

    manifest: dict
    summary: pd.DataFrame
    segments: pd.DataFrame
    frontier: pd.DataFrame
    trajectories: pd.DataFrame

    @property
    def best_classic(self) -> str | None:
        return best_classic(self.summary)

    def label(self, name: str) -> str:
        return f"{name} (best classic)" if name == self.best_classic else name

    def focus(self) -> list[str]:
        """The policies the figures compare: learned ones, the oracle, the incumbent, the best classic."""
        present = set(self.summary["policy"])
        names = [p for p in FOCUS if p in present]
        return names + ([self.best_classic] if self.best_classic else [])


def load_backtest(run_dir: Path) -> Backtest:
    folder = run_dir / OUT_FOLDER
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("stage") != "backtest":
        raise InputError("no finished backtest here: run `orpr backtest --run RUN_DIR` first",
                         file=str(folder / "manifest.json"))
    return Backtest(manifest=manifest, summary=pd.read_csv(folder / "summary.csv"),
                    segments=pd.read_parquet(folder / "segments.parquet"),
                    frontier=pd.read_csv(folder / "frontier.csv"),
                    trajectories=pd.read_parquet(folder / "trajectories.parquet"))


def training_histories(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Per stage, its per-epoch (or per-iteration) metrics: the supervised stages' report.json
    histories, the RLOO run's and PPO's progress tables. Stages that did not run are left out."""
    out = {}
    for folder in ("pretrain", "finetune"):
        path = run_dir / folder / "report.json"
        if read_manifest(run_dir / folder) is None or not path.is_file():
            continue
        report = json.loads(path.read_text())
        for stage in ("forecast", "decision", "finetune"):  # training order (the file's keys are sorted)
            if report.get(stage, {}).get("history"):
                out[stage] = pd.DataFrame(report[stage]["history"])
    for name, path in (("rloo", run_dir / "rl" / "history.csv"),
                       ("ppo", run_dir / OUT_FOLDER / "ppo" / "progress.csv")):
        if path.is_file():
            out[name] = pd.read_csv(path)
    return out


def decision_head_report(run_dir: Path) -> tuple[str, dict] | None:
    """The test-window decision report of the last supervised stage that wrote one (finetune, else the
    pretrain's decision stage), with that stage's name; None when neither ran."""
    for folder, stage in (("finetune", "finetune"), ("pretrain", "decision")):
        path = run_dir / folder / "report.json"
        if read_manifest(run_dir / folder) is None or not path.is_file():
            continue
        test = json.loads(path.read_text()).get(stage, {}).get("decision", {}).get("test", {})
        if test.get("points"):
            return stage, test
    return None


# ----------------------------------------------------------------------------------------------
# Formatting.

def fmt(value: float, metric: str) -> str:
    """A metric as a planner reads it: rates and relative changes in %, in-stock change in points."""
    if value is None or not np.isfinite(value):
        return "n/a" if value is None or np.isnan(value) else "inf"
    if metric == "in_stock_change":
        return f"{value * 100:+.1f} pp"
    if metric.endswith("_change"):
        return f"{value * 100:+.1f}%"
    if metric in PERCENT:
        return f"{value * 100:.1f}%"
    if metric == "turnover_days":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def fmt_ci(row: pd.Series, metric: str) -> str:
    """``value [lo, hi]`` with the bootstrap interval."""
    lo, hi = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    text = fmt(row[metric], metric)
    if lo is None or hi is None or (np.isnan(lo) and np.isnan(hi)) or (lo == hi == row[metric]):
        return text
    return f"{text} [{fmt(lo, metric)}, {fmt(hi, metric)}]"


COMPARISON_COLUMNS = {"total_cost": "total cost", "total_cost_change": "total cost vs incumbent",
                      VERSUS_BEST: "total cost vs best classic",
                      "in_stock_rate": "in-stock rate", "in_stock_change": "in-stock vs incumbent",
                      "turnover_days": "turnover days", "turnover_days_change": "turnover vs incumbent",
                      "holding_cost": "holding cost", "holding_cost_change": "holding cost vs incumbent",
                      "fill_rate": "fill rate", "lost_sales_value": "lost sales value"}


def comparison_table(summary: pd.DataFrame, policies: list[str] | None = None) -> pd.DataFrame:
    """Readable rows (policy, kind, each metric with its interval); ``policies`` picks and orders rows."""
    rows = summary.set_index("policy")
    names = policies if policies is not None else list(rows.index)
    out = []
    for name in names:
        if name not in rows.index:
            out.append({"policy": name, "kind": POLICY_INFO.get(name, ("", ""))[0],
                        **{label: "" for label in COMPARISON_COLUMNS.values()}, "total cost": "absent"})
            continue
        row = rows.loc[name]
        label = name + (" (best classic)" if row["best_classic"] else "")
        out.append({"policy": label, "kind": row["kind"],
                    **{label_: fmt_ci(row, m) for m, label_ in COMPARISON_COLUMNS.items()}})
    return pd.DataFrame(out)


def headline_policies(bt: Backtest) -> list[str]:
    """ORPR against the incumbent and the best tuned classic policy, then the other references."""
    names = ["orpr", "incumbent"] + ([bt.best_classic] if bt.best_classic else [])
    return names + [p for p in ("network", "ppo", "or_labels") if p not in names]


# ----------------------------------------------------------------------------------------------
# Figures: each returns a matplotlib Figure (the object API: no pyplot, no global backend state;
# savefig renders with Agg).


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)

def figure_cost_changes(bt: Backtest) -> Figure:
    """Total-cost and in-stock change against the incumbent, per policy, with bootstrap intervals."""
    rows = bt.summary[bt.summary["policy"] != "incumbent"].iloc[::-1]
    fig, axes = new_figure(1, 2, figsize=(10, 0.45 * len(rows) + 1.5), sharey=True)
    for ax, metric, scale, unit in ((axes[0], "total_cost_change", 100, "%"), (axes[1], "in_stock_change", 100, "pp")):
        value = rows[metric].to_numpy() * scale
        err = np.vstack([value - rows[f"{metric}_lo"].to_numpy() * scale,
                         rows[f"{metric}_hi"].to_numpy() * scale - value])
        colors = [COLORS.get(p, COLORS["best_classic"] if b else "#bbbbbb")
                  for p, b in zip(rows["policy"], rows["best_classic"])]
        ax.barh(rows["policy"], value, xerr=np.nan_to_num(err), color=colors, capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"{metric.replace('_', ' ')} vs incumbent ({unit})")
    fig.suptitle(f"Change against the incumbent on the test window ({bt.manifest['bootstrap']['level']:.0%} "
                 f"bootstrap intervals over units)")
    fig.tight_layout()
    return fig


def figure_segments(bt: Backtest, dimension: str) -> Figure:
    """Grouped bars per segment: total-cost change vs the incumbent (%) and in-stock rate."""
    names = [p for p in bt.focus() if p != "incumbent"]
    part = bt.segments[(bt.segments["dimension"] == dimension)]
    segments = sorted(part["segment"].unique())
    fig, axes = new_figure(2, 1, figsize=(max(6, 0.9 * len(segments) + 3), 6.5), sharex=True)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(segments))
    for i, name in enumerate(names):
        rows = part[part["policy"] == name].set_index("segment").reindex(segments)
        color = COLORS.get(name, COLORS["best_classic"])
        for ax, metric in ((axes[0], "total_cost_change"), (axes[1], "in_stock_rate")):
            value = rows[metric].to_numpy() * 100
            err = np.vstack([value - rows[f"{metric}_lo"].to_numpy() * 100,
                             rows[f"{metric}_hi"].to_numpy() * 100 - value])
            ax.bar(x + (i - (len(names) - 1) / 2) * width, value, width, yerr=np.nan_to_num(err),
                   color=color, label=bt.label(name), capsize=2)
    inc = part[part["policy"] == "incumbent"].set_index("segment").reindex(segments)
    axes[1].scatter(x, inc["in_stock_rate"] * 100, marker="_", s=400, color=COLORS["incumbent"], label="incumbent",
                    zorder=3)
    shown = part[part["policy"].isin(names)]
    axes[0].set_ylim(*_limits(shown["total_cost_change"].to_numpy() * 100, floor=-100))
    axes[1].set_ylim(max(0.0, np.nanmin(part["in_stock_rate"]) * 100 - 5), 101)
    axes[0].axhline(0, color="black", lw=0.8)
    axes[0].set_ylabel("total cost vs incumbent (%)")
    axes[1].set_ylabel("in-stock rate (%)")
    axes[1].set_xticks(x, segments, rotation=30 if len(segments) > 6 else 0)
    axes[0].legend(fontsize=8, ncol=min(len(names), 5))
    axes[1].legend(handles=axes[1].collections[-1:], fontsize=8, loc="lower right")
    fig.suptitle(f"Per {dimension.replace('_', '-')} segment")
    fig.tight_layout()
    return fig


def _limits(values: np.ndarray, *, floor: float) -> tuple[float, float]:
    """Axis limits around the point estimates (intervals of tiny segments may run far off the chart)."""
    finite = values[np.isfinite(values)]
    top = max(float(finite.max(initial=0.0)), 0.0)
    bottom = min(float(finite.min(initial=0.0)), 0.0)
    pad = 0.25 * max(top - bottom, 10.0)
    return max(bottom - pad, floor), top + pad


def figure_frontier(bt: Backtest) -> Figure:
    """Total cost against in-stock: classic families re-tuned over service targets, every policy placed."""
    fig, ax = new_figure(figsize=(8, 5.5))
    for family, rows in bt.frontier.groupby("family", sort=False):
        rows = rows.sort_values("in_stock_rate")
        ax.plot(rows["in_stock_rate"] * 100, rows["total_cost"], "o-", ms=4, alpha=0.7,
                color=COLORS.get(family, "#8c564b"), label=f"{family} (service target swept)")
        for _, r in rows.iterrows():
            ax.annotate(f"{r['target']:.2f}", (r["in_stock_rate"] * 100, r["total_cost"]), fontsize=6,
                        xytext=(3, -8), textcoords="offset points", color="#555555")
    for i, (_, row) in enumerate(bt.summary.sort_values("total_cost").iterrows()):
        name = row["policy"]
        learned = row["kind"] in ("learned", "pure RL", "oracle")
        color = COLORS.get(name, COLORS["best_classic"] if row["best_classic"] else "#444444")
        ax.scatter(row["in_stock_rate"] * 100, row["total_cost"], s=90 if learned else 40, color=color,
                   marker="*" if learned else "D", zorder=4, edgecolor="black", linewidth=0.5)
        ax.annotate(name, (row["in_stock_rate"] * 100, row["total_cost"]), fontsize=8,
                    xytext=(6, 4 if i % 2 else -11), textcoords="offset points")  # alternate: neighbours overlap
    ax.set_yscale("log")
    ax.set_xlabel("in-stock rate on the test window (%)")
    ax.set_ylabel("total cost (holding + lost-sales penalty), log scale")
    ax.set_title("Cost vs in-stock: classic frontier and where each policy lands")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


# Per stage: the metrics drawn (first found of each pair), on the loss axis and the quality axis.
CURVES = {"loss": ("train_loss", "loss", "policy_loss", "learner_total_loss"),
          "quality": ("val_total_cost", "val_ce", "val_wape", "episode_return_mean", "reward_mean")}


def figure_training(histories: dict[str, pd.DataFrame]) -> Figure:
    """One panel per stage: the training loss and a validation metric against epoch / iteration."""
    ncols = min(3, len(histories))
    nrows = -(-len(histories) // ncols)
    fig, axes = new_figure(nrows, ncols, figsize=(4.4 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.ravel()[len(histories):]:
        ax.set_visible(False)
    for ax, (stage, frame) in zip(axes.ravel(), histories.items()):
        x_name = next((c for c in ("epoch", "step", "env_steps", "iteration") if c in frame), None)
        x = frame[x_name] if x_name else np.arange(1, len(frame) + 1)
        loss = next((c for c in CURVES["loss"] if c in frame), None)
        quality = next((c for c in CURVES["quality"] if c in frame), None)
        if loss:
            ax.plot(x, frame[loss], "o-", color="#1f77b4", ms=3, label=loss)
            ax.set_ylabel(loss, color="#1f77b4")
        if quality:
            twin = ax.twinx()
            twin.plot(x, frame[quality], "s--", color="#d62728", ms=3, label=quality)
            twin.set_ylabel(quality, color="#d62728")
        ax.set_title(stage)
        ax.set_xlabel(x_name or "report")
    fig.tight_layout()
    return fig


# Rows of the decision-head table: the model as deployed, the naive predictors, the labels themselves.
HEAD_ROWS = {"model": "decision head (deployed rule)", "previous_label": "previous label (shares future demand)",
             "latest_known_label": "latest label known at the decision day", "category_median": "category median",
             "labels": "OR labels (hindsight)"}


def decision_head_table(test: dict) -> pd.DataFrame:
    """Per predictor of the label: accuracy within +-3 days and the simulated outcome of its targets."""
    rows = []
    for name, text in HEAD_ROWS.items():
        if name not in test:
            continue
        sim = test[name]["simulated"]
        rows.append({"predictor": text, "within_3": test[name].get("within_3", np.nan),
                     "total_cost": sim["total_cost"], "in_stock_rate": sim["in_stock_rate"],
                     "turnover_days": sim["turnover_days"]})
    return pd.DataFrame(rows)


def figure_label_persistence(test: dict) -> Figure:
    """Within +-3 accuracy of the unit's own earlier label by lag, against the decision head's."""
    table = pd.DataFrame(test["label_persistence"])
    fig, ax = new_figure(figsize=(7.5, 3.4))
    known = table["future_days_shared"] == 0
    ax.bar(table["lag_days"][~known], table["within_3"][~known], width=4, color="#bbbbbb",
           label="earlier label, computed from demand after the decision day")
    ax.bar(table["lag_days"][known], table["within_3"][known], width=4, color="#1f77b4",
           label="earlier label, known at the decision day")
    for name, style in (("model", "-"), ("category_median", ":")):
        if name in test:
            ax.axhline(test[name]["within_3"], ls=style, color=COLORS["orpr"] if name == "model" else "#2ca02c",
                       label=HEAD_ROWS[name])
    mode = test.get("model_rules", {}).get("mode")
    if mode:
        ax.axhline(mode["within_3"], ls="--", color=COLORS["orpr"], label="decision head read by its mode")
    ax.set_xlabel("lag of the earlier label (days)")
    ax.set_ylabel("within +-3 days of the label")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def figure_trajectories(bt: Backtest) -> Figure:
    """Daily on-hand of a few units under the focus policies, with demand and promotion days."""
    traj = bt.trajectories
    units = list(dict.fromkeys(traj["unit"]))
    names = [p for p in bt.focus() if p in set(traj["policy"])]
    fig, axes = new_figure(len(units), 1, figsize=(10, 2.4 * len(units)), sharex=True, squeeze=False)
    for ax, unit in zip(axes[:, 0], units):
        rows = traj[traj["unit"] == unit]
        first = rows[rows["policy"] == rows["policy"].iloc[0]]
        ax.bar(first["day"], first["demand"], color="#cccccc", width=1.0, label="demand")
        promo = first["day"][first["promo"] > 0]
        if len(promo):
            ax.scatter(promo, np.zeros(len(promo)), marker="|", color="#e377c2", s=60, label="promotion")
        for name in reversed(names):  # the first-named (ORPR) drawn last, on top
            path = rows[rows["policy"] == name]
            ax.step(path["day"], path["on_hand"], where="post", lw=1.2, color=COLORS.get(name, COLORS["best_classic"]),
                    label=bt.label(name))
        ax.set_title(f"{first['sku'].iloc[0]} @ {first['dc'].iloc[0]} (unit {unit})", fontsize=9)
        ax.set_ylabel("units")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=min(len(labels), 8), loc="upper center")
    axes[-1, 0].set_xlabel("day (test window): bars = demand, lines = end-of-day on hand")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the legend above
    return fig


def encode_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# HTML assembly.

@dataclass
class Page:
    """Sections of the report in order, and the files that go beside it."""

    sections: list[str] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def heading(self, text: str, note: str = "") -> None:
        self.sections.append(f"<h2>{html.escape(text)}</h2>" + (f"<p>{note}</p>" if note else ""))

    def table(self, name: str, frame: pd.DataFrame, *, save: pd.DataFrame | None = None) -> None:
        """Show ``frame``; write ``save`` (the unformatted numbers, default ``frame``) as tables/<name>.csv."""
        self.tables[name] = frame if save is None else save
        self.sections.append(frame.to_html(index=False, escape=True, na_rep="", border=0, classes="t"))

    def figure(self, name: str, make: Callable[[], Figure], caption: str) -> None:
        self.image(name, encode_png(make()), caption)

    def image(self, name: str, png: bytes, caption: str) -> None:
        """Inline a PNG (base64) and keep it for figures/<name>.png."""
        self.figures[name] = png
        data = base64.b64encode(png).decode("ascii")
        self.sections.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                             f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def absent(self, what: str, why: str) -> None:
        self.sections.append(f'<p class="absent">{html.escape(what)}: absent. {html.escape(why)}.</p>')


STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1150px;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table.t{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}
table.t th,table.t td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
table.t th{background:#f4f4f4}table.t td:first-child,table.t th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:0.85em;color:#555}
.absent{color:#a00}.note{font-size:0.85em;color:#555}
"""


def render(title: str, intro: str, page: Page) -> str:
    body = "\n".join(page.sections)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{intro}\n{body}\n</body></html>\n")


def intro_html(run_dir: Path, bt: Backtest) -> str:
    m = bt.manifest
    windows = m["windows"]
    return ("<p class=\"note\">"
            f"Run <b>{html.escape(run_dir.name)}</b>, backtest of {m['created']}, code "
            f"{html.escape(str(m['code_version'].get('git_commit', m['code_version'].get('package'))))}. "
            f"{m['units']} units; simulated from day {windows['simulate'][0]} (warm-up), scored on days "
            f"{windows['score_from']}..{windows['simulate'][1] - 1}; classic policies tuned on days "
            f"{windows['tune'][0]}..{windows['tune'][1] - 1}; segments computed on the "
            f"{'training window' if windows['segments'] == 'train' else 'days before the test window'}. "
            f"Intervals: {m['bootstrap']['level']:.0%} Poisson bootstrap over units "
            f"({m['bootstrap']['samples']} replicates). Values at unit cost; total cost = holding cost + "
            "lost-sales penalty.</p>")


def add_headline(page: Page, bt: Backtest) -> None:
    page.heading("Headline: ORPR against the incumbent and the best tuned classic policy",
                 "The incumbent is the planner's rule of thumb: one days-of-cover per category, set before the "
                 "test window to the smallest value that meets the category's in-stock target. The OR labels are a "
                 "hindsight oracle, shown for reference only.")
    page.table("headline", comparison_table(bt.summary, headline_policies(bt)))
    for name, why in bt.manifest.get("absent", {}).items():
        page.absent(f"policy {name}", why)


def add_comparison(page: Page, bt: Backtest) -> None:
    page.heading("All policies on the test window")
    page.table("comparison", comparison_table(bt.summary), save=bt.summary)
    page.figure("changes", lambda: figure_cost_changes(bt), "Total cost and in-stock against the incumbent.")


def segment_table(bt: Backtest, dimension: str) -> pd.DataFrame:
    part = bt.segments[(bt.segments["dimension"] == dimension) & bt.segments["policy"].isin(bt.focus())]
    rows = []
    for _, r in part.iterrows():
        rows.append({"segment": r["segment"], "policy": r["policy"], "units": r["n_units"],
                     "total cost": fmt(r["total_cost"], "total_cost"),
                     "total cost vs incumbent": fmt_ci(r, "total_cost_change"),
                     "in-stock rate": fmt_ci(r, "in_stock_rate"),
                     "turnover days": fmt(r["turnover_days"], "turnover_days"),
                     "turnover vs incumbent": fmt(r["turnover_days_change"], "turnover_days_change")})
    return pd.DataFrame(rows)


def add_segments(page: Page, bt: Backtest) -> None:
    page.heading("Per ABC-XYZ segment",
                 "ABC by sales value (A: top 80%, B: next 15%, C: the rest); XYZ by the coefficient of variation "
                 "of weekly demand (X &lt; 0.5, Y &lt; 1.0, Z &ge; 1.0).")
    page.figure("segments_abc_xyz", lambda: figure_segments(bt, "abc_xyz"), "Per ABC-XYZ segment.")
    page.table("segments_abc_xyz", segment_table(bt, "abc_xyz"),
               save=bt.segments[bt.segments["dimension"].isin(["abc", "xyz", "abc_xyz"])])
    page.heading("Per category")
    page.figure("segments_category", lambda: figure_segments(bt, "category"), "Per category.")
    page.table("segments_category", segment_table(bt, "category"),
               save=bt.segments[bt.segments["dimension"] == "category"])
    page.heading("Promotion days and other days",
                 "The same runs, with the metrics summed over promotion days only and over the other days.")
    page.table("promotion_days", segment_table(bt, "days"), save=bt.segments[bt.segments["dimension"] == "days"])


def add_frontier(page: Page, bt: Backtest) -> None:
    page.heading("Cost vs in-stock frontier",
                 "Each line re-tunes one classic family at a range of service targets (labels on the points) and "
                 "scores it on the test window; stars are the learned policies and the oracle, diamonds the policies "
                 "of the comparison table. A point below and to the right of a line beats that family.")
    page.figure("frontier", lambda: figure_frontier(bt), "Total cost against in-stock rate.")
    page.tables["frontier"] = bt.frontier


def add_training(page: Page, run_dir: Path) -> None:
    page.heading("Training curves")
    histories = training_histories(run_dir)
    if histories:
        page.figure("training", lambda: figure_training(histories),
                    "Per stage: training loss (blue) and a validation metric (red dashed).")
        for stage, frame in histories.items():
            page.tables[f"history_{stage}"] = frame
    for stage in ("forecast", "decision", "finetune", "rloo", "ppo"):
        if stage not in histories:
            page.absent(f"training curve of {stage}", "the stage did not run or wrote no history")


def add_decision_head(page: Page, run_dir: Path) -> None:
    page.heading("Decision head against naive predictors of the label",
                 "Test window, label decision points: each predictor's targets are replayed like the labels "
                 "(simulated outcome over the label horizon). A label is a hindsight optimum, so the unit's "
                 "previous label was computed from much of the same future demand; the figure shows how its "
                 "accuracy falls as the lag grows until no future day is shared.")
    found = decision_head_report(run_dir)
    if found is None:
        page.absent("decision head report", "no finished pretrain/ or finetune/ stage with labels")
        return
    stage, test = found
    frame = decision_head_table(test)
    shown = frame.assign(**{column: [fmt(v, column) for v in frame[column]]
                            for column in ("within_3", "total_cost", "in_stock_rate", "turnover_days")})
    page.table("decision_head", shown, save=frame)
    if test.get("label_persistence"):
        page.figure("label_persistence", lambda: figure_label_persistence(test),
                    f"Stage {stage}: accuracy within +-3 days of the unit's own earlier label, by lag; lines: "
                    "the decision head and the category median.")
        page.tables["label_persistence"] = pd.DataFrame(test["label_persistence"])


def add_sweep(page: Page, run_dir: Path) -> None:
    page.heading("omega / beta sweep")
    folder = run_dir / "sweep"
    plots = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not plots:
        page.absent("sweep plot", "no sweep/ stage with a plot in this run")
    for path in plots:
        page.image(f"sweep_{path.stem}", path.read_bytes(), f"Sweep: {path.name}")
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        frame = pd.read_csv(path)
        page.table(f"sweep_{path.stem}", frame.round(4))


def add_trajectories(page: Page, bt: Backtest) -> None:
    page.heading("A few units, day by day")
    if bt.trajectories.empty:
        page.absent("trajectories", "evaluate.trajectory_units = 0")
        return
    page.figure("trajectories", lambda: figure_trajectories(bt),
                "End-of-day on hand under each policy (lines), daily demand (bars) and promotion days (ticks).")


def add_calibration(page: Page, run_dir: Path) -> None:
    page.heading("Label calibration",
                 "Per category: the turnover target the OR labels were calibrated to, the turnover they achieve in "
                 "simulation, and the calibrated service level alpha.")
    path = run_dir / "labels" / "calibration.csv"
    if read_manifest(run_dir / "labels") is None or not path.is_file():
        page.absent("calibration table", "no finished labels/ stage")
        return
    frame = pd.read_csv(path)
    page.table("calibration", frame.round(3), save=frame)


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report/report.html`` (and its tables and figures); returns the HTML path."""
    run_dir = Path(run_dir)
    bt = load_backtest(run_dir)
    page = Page()
    add_headline(page, bt)
    add_comparison(page, bt)
    add_segments(page, bt)
    add_frontier(page, bt)
    add_training(page, run_dir)
    add_decision_head(page, run_dir)
    add_sweep(page, run_dir)
    add_trajectories(page, bt)
    add_calibration(page, run_dir)
    out = run_dir / REPORT_FOLDER
    (out / "manifest.json").unlink(missing_ok=True)  # a rewrite never looks finished half-way
    names = []
    for name, frame in page.tables.items():
        write_text_atomic(out / "tables" / f"{name}.csv", frame.to_csv(index=False))
        names.append(f"tables/{name}.csv")
    for name, png in page.figures.items():
        write_bytes_atomic(out / "figures" / f"{name}.png", png)
        names.append(f"figures/{name}.png")
    path = write_text_atomic(out / "report.html", render(f"ORPR run report: {run_dir.name}", intro_html(run_dir, bt),
                                                         page))
    write_manifest(out, stage="report", config={}, inputs={"backtest": bt.manifest["created"]},
                   outputs=[*names, "report.html"], figures=bt.manifest.get("figures", {}))
    return path
