"""Statistics comparing student test accuracy between training conditions, per model size."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalsite.jsonsafe import to_jsonable

SEED = "seed"
ACCURACY = "accuracy"  # percent, 0-100
METHOD = "method"
DATA = "data"
SIZE = "size"
CONDITION = "condition"
FRAME_COLUMNS = (SEED, ACCURACY, METHOD, DATA, SIZE, CONDITION)

# Keys the database uses -> the labels the paper prints; the dict order is the display order.
METHOD_LABELS = {"mt": "MT", "cf": "CF", "mtcf": "MT+CF"}
DATA_LABELS = {"unrevised": "Unrevised", "revised": "Revised"}

# The paper's experiment.csv names the same things differently.
CSV_TRAINING_MODES = {"task-prefix": "mt", "counterfactual-prefix": "cf", "both": "mtcf"}
CSV_TARGET_RATIONALES = {"few-shot-positive-rationale": "unrevised", "few-shot-revision": "revised"}

# The paper trained MT and CF on revised rationales too but reports only these four conditions; its Tukey
# tests compare these four, so keeping the other two would change every adjusted p-value.
PAPER_CONDITIONS = ("MT:Unrevised", "CF:Unrevised", "MT+CF:Unrevised", "MT+CF:Revised")

IQR_FACTOR = 1.5
ALPHA = 0.05
MIN_RUNS_PER_CONDITION = 2  # a standard error, and a within-condition variance for the tests, need two


def condition_label(method_label: str, data_label: str) -> str:
    return f"{method_label}:{data_label}"


# ---------------------------------------------------------------------------------------------- loading


def load_experiment_csv(path: str | Path, *, conditions: Sequence[str] | None = PAPER_CONDITIONS) -> pd.DataFrame:
    """Read the paper's `experiment.csv` into the tidy run frame.

    By default only the paper's four reported conditions are kept, so the CSV reproduces its numbers;
    pass `conditions=None` to keep every run in the file.
    """
    raw = pd.read_csv(path)
    needed = ["run", "test accuracy", "target_rationale", "model_size", "training_mode"]
    missing = [column for column in needed if column not in raw.columns]
    if missing:
        raise ValueError(f"{path}: not an experiment CSV, it lacks columns {missing}")
    unknown_modes = sorted(set(raw["training_mode"]) - set(CSV_TRAINING_MODES))
    unknown_data = sorted(set(raw["target_rationale"]) - set(CSV_TARGET_RATIONALES))
    if unknown_modes or unknown_data:
        raise ValueError(
            f"{path}: unknown training_mode {unknown_modes} or target_rationale {unknown_data}; "
            f"known: {sorted(CSV_TRAINING_MODES)} and {sorted(CSV_TARGET_RATIONALES)}"
        )
    rows = [
        {
            "seed": run,
            "accuracy": accuracy,
            "method": CSV_TRAINING_MODES[mode],
            "data": CSV_TARGET_RATIONALES[target],
            "size": size,
        }
        for run, accuracy, target, size, mode in raw[needed].itertuples(index=False)
    ]
    frame = runs_to_frame(rows)
    return select_conditions(frame, conditions) if conditions is not None else frame


def runs_to_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Tidy frame from run records with keys `method` (mt|cf|mtcf), `data` (unrevised|revised), `size`,
    `seed` and `accuracy` as a fraction in [0, 1]."""
    records = []
    for index, row in enumerate(rows):
        method, data = str(row["method"]), str(row["data"])
        if method not in METHOD_LABELS or data not in DATA_LABELS:
            raise ValueError(
                f"run {index}: method {method!r} or data {data!r} unknown; "
                f"known methods {list(METHOD_LABELS)}, data {list(DATA_LABELS)}"
            )
        accuracy = float(row["accuracy"])
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"run {index}: accuracy {accuracy} is not a fraction in [0, 1]")
        method_label, data_label = METHOD_LABELS[method], DATA_LABELS[data]
        records.append(
            {
                SEED: int(row["seed"]),
                ACCURACY: 100.0 * accuracy,
                METHOD: method_label,
                DATA: data_label,
                SIZE: str(row["size"]),
                CONDITION: condition_label(method_label, data_label),
            }
        )
    return pd.DataFrame.from_records(records, columns=list(FRAME_COLUMNS))


def select_conditions(frame: pd.DataFrame, conditions: Sequence[str]) -> pd.DataFrame:
    """Only the runs of the named conditions."""
    return frame[frame[CONDITION].isin(list(conditions))].reset_index(drop=True)


def condition_order(present: Iterable[str]) -> list[str]:
    """Conditions in display order: unrevised before revised, then MT, CF, MT+CF (the paper's order)."""
    rank = {
        condition_label(method, data): (data_rank, method_rank)
        for data_rank, data in enumerate(DATA_LABELS.values())
        for method_rank, method in enumerate(METHOD_LABELS.values())
    }
    return sorted(set(present), key=lambda condition: (rank.get(condition, (math.inf, math.inf)), condition))


_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT])\s*$", re.IGNORECASE)
_SIZE_MULTIPLIERS = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def size_order(present: Iterable[str]) -> list[str]:
    """Size labels by parameter count when they read like `220M` or `1.3B`; other labels after, by name."""

    def key(label: str) -> tuple[float, str]:
        match = _SIZE_PATTERN.match(label)
        if match is None:
            return math.inf, label
        return float(match.group(1)) * _SIZE_MULTIPLIERS[match.group(2).upper()], label

    return sorted(set(present), key=key)


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DroppedRun:
    """A run left out as an outlier, with the fences of its (condition, size) group."""

    condition: str
    size: str
    seed: int
    accuracy: float
    lower_fence: float
    upper_fence: float


@dataclass(frozen=True)
class ConditionSummary:
    """Accuracy of one condition at one size after outlier removal; `sd` and `se` are None below two runs."""

    condition: str
    n: int
    mean: float
    sd: float | None
    se: float | None
    n_dropped: int


@dataclass(frozen=True)
class AnovaRow:
    """One line of an ANOVA table; F, p and partial eta squared are None on the residual line."""

    term: str
    sum_sq: float
    df: float
    f: float | None
    p: float | None
    partial_eta_sq: float | None


@dataclass(frozen=True)
class TukeyPair:
    """A Tukey-Kramer comparison: `diff` is mean(first) minus mean(second), with its simultaneous CI."""

    first: str
    second: str
    diff: float
    p_adj: float
    ci_low: float
    ci_high: float
    reject: bool

    def reversed(self) -> TukeyPair:
        return TukeyPair(
            first=self.second,
            second=self.first,
            diff=-self.diff,
            p_adj=self.p_adj,
            ci_low=-self.ci_high,
            ci_high=-self.ci_low,
            reject=self.reject,
        )


@dataclass
class SizeComparison:
    """Everything computed within one model size; `notes` says what could not be tested and why."""

    size: str
    conditions: list[ConditionSummary]
    dropped: list[DroppedRun]
    anova: list[AnovaRow]
    tukey: list[TukeyPair]
    notes: list[str] = field(default_factory=list)

    def summary(self, condition: str) -> ConditionSummary:
        for summary in self.conditions:
            if summary.condition == condition:
                return summary
        raise KeyError(f"{condition!r} has no runs at size {self.size}")

    def pair(self, first: str, second: str) -> TukeyPair:
        """The comparison oriented as asked: diff = mean(first) - mean(second)."""
        for pair in self.tukey:
            if (pair.first, pair.second) == (first, second):
                return pair
            if (pair.first, pair.second) == (second, first):
                return pair.reversed()
        raise KeyError(f"no Tukey comparison of {first!r} and {second!r} at size {self.size}")


@dataclass
class AccuracyComparison:
    """Per-size comparisons plus the two-way (condition x size) ANOVA over the runs kept."""

    sizes: list[SizeComparison]
    anova: list[AnovaRow]
    anova_formula: str
    alpha: float
    iqr_factor: float
    n_runs: int
    notes: list[str] = field(default_factory=list)
    # Every run with a `dropped` flag, for exports and plots; not part of the JSON form.
    runs: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)

    def size(self, label: str) -> SizeComparison:
        for comparison in self.sizes:
            if comparison.size == label:
                return comparison
        raise KeyError(f"no runs at size {label!r}; sizes: {[s.size for s in self.sizes]}")

    @property
    def n_dropped(self) -> int:
        return sum(len(comparison.dropped) for comparison in self.sizes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN and infinities become None, numpy scalars become Python numbers."""
        out = asdict(self)
        out.pop("runs")
        out["n_dropped"] = self.n_dropped
        return to_jsonable(out)

    def format_table(self) -> str:
        return format_comparison(self)


# ---------------------------------------------------------------------------------------------- analysis


def compare_accuracy(
    frame: pd.DataFrame,
    *,
    conditions: Sequence[str] | None = None,
    alpha: float = ALPHA,
    iqr_factor: float = IQR_FACTOR,
) -> AccuracyComparison:
    """Drop outliers per (condition, size), then test conditions against each other within each size
    (one-way ANOVA, Tukey-Kramer HSD) and jointly (two-way ANOVA, type II sums of squares)."""
    missing = [column for column in FRAME_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"run frame lacks columns {missing}")
    runs = select_conditions(frame, conditions) if conditions is not None else frame.reset_index(drop=True)
    runs = flag_outliers(runs, iqr_factor=iqr_factor)
    notes: list[str] = []
    if runs.empty:
        notes.append("no runs to compare" + (f" in conditions {list(conditions)}" if conditions else ""))
    sizes = [_compare_within_size(size, runs[runs[SIZE] == size], alpha=alpha) for size in size_order(runs[SIZE])]
    kept = runs[~runs["dropped"]]
    formula, anova, anova_notes = two_way_anova(kept)
    return AccuracyComparison(
        sizes=sizes,
        anova=anova,
        anova_formula=formula,
        alpha=alpha,
        iqr_factor=iqr_factor,
        n_runs=len(runs),
        notes=notes + anova_notes,
        runs=runs,
    )


def iqr_fences(values: Sequence[float] | np.ndarray, iqr_factor: float = IQR_FACTOR) -> tuple[float, float]:
    """Tukey's fences: quartiles by linear interpolation, `iqr_factor` interquartile ranges beyond them."""
    q1, q3 = np.percentile(np.asarray(values, dtype=float), [25, 75], method="linear")
    spread = iqr_factor * (q3 - q1)
    return float(q1 - spread), float(q3 + spread)


def flag_outliers(runs: pd.DataFrame, *, iqr_factor: float = IQR_FACTOR) -> pd.DataFrame:
    """Copy of `runs` with `dropped` (outside its group's fences) and the fences, per (condition, size)."""
    out = runs.copy()
    out["lower_fence"] = np.nan
    out["upper_fence"] = np.nan
    for _, group in out.groupby([CONDITION, SIZE], sort=False):
        lower, upper = iqr_fences(group[ACCURACY], iqr_factor)
        out.loc[group.index, "lower_fence"] = lower
        out.loc[group.index, "upper_fence"] = upper
    out["dropped"] = (out[ACCURACY] < out["lower_fence"]) | (out[ACCURACY] > out["upper_fence"])
    return out


def summarise_condition(condition: str, accuracies: pd.Series, n_dropped: int) -> ConditionSummary:
    n = len(accuracies)
    sd = float(accuracies.std(ddof=1)) if n >= 2 else None
    return ConditionSummary(
        condition=condition,
        n=n,
        mean=float(accuracies.mean()),
        sd=sd,
        se=sd / math.sqrt(n) if sd is not None else None,
        n_dropped=n_dropped,
    )


def _compare_within_size(size: str, runs: pd.DataFrame, *, alpha: float) -> SizeComparison:
    kept = runs[~runs["dropped"]]
    summaries = [
        summarise_condition(
            condition,
            kept.loc[kept[CONDITION] == condition, ACCURACY],
            int(runs.loc[runs[CONDITION] == condition, "dropped"].sum()),
        )
        for condition in condition_order(runs[CONDITION])
    ]
    dropped = [
        DroppedRun(
            condition=row[CONDITION],
            size=size,
            seed=int(row[SEED]),
            accuracy=float(row[ACCURACY]),
            lower_fence=float(row["lower_fence"]),
            upper_fence=float(row["upper_fence"]),
        )
        for _, row in runs[runs["dropped"]].iterrows()
    ]
    notes = []
    testable = [s.condition for s in summaries if s.n >= MIN_RUNS_PER_CONDITION]
    for summary in summaries:
        if summary.n < MIN_RUNS_PER_CONDITION:
            notes.append(
                f"{size}: {summary.condition} has {summary.n} run(s) after outlier removal; "
                f"left out of the tests, which need at least {MIN_RUNS_PER_CONDITION}"
            )
    anova: list[AnovaRow] = []
    tukey: list[TukeyPair] = []
    if len(testable) < 2:
        notes.append(f"{size}: {len(testable)} condition(s) with enough runs; nothing to compare")
    elif not _has_within_variation(kept[kept[CONDITION].isin(testable)]):
        notes.append(f"{size}: every run within a condition has the same accuracy; the tests are undefined")
    else:
        tested = kept[kept[CONDITION].isin(testable)]
        anova = one_way_anova(tested)
        tukey = tukey_kramer(tested, testable, alpha=alpha)
    return SizeComparison(size=size, conditions=summaries, dropped=dropped, anova=anova, tukey=tukey, notes=notes)


def _has_within_variation(runs: pd.DataFrame) -> bool:
    return bool((runs.groupby(CONDITION)[ACCURACY].var(ddof=1).fillna(0.0) > 0).any())


def tukey_kramer(runs: pd.DataFrame, conditions: Sequence[str], *, alpha: float = ALPHA) -> list[TukeyPair]:
    """All pairwise comparisons in `conditions` order (first before second); Tukey-Kramer for unequal n."""
    from scipy.stats import tukey_hsd

    samples = [runs.loc[runs[CONDITION] == condition, ACCURACY].to_numpy() for condition in conditions]
    result = tukey_hsd(*samples)
    interval = result.confidence_interval(confidence_level=1 - alpha)
    pairs = []
    for i, first in enumerate(conditions):
        for j in range(i + 1, len(conditions)):
            p_adj = float(result.pvalue[i, j])
            pairs.append(
                TukeyPair(
                    first=first,
                    second=conditions[j],
                    diff=float(result.statistic[i, j]),
                    p_adj=p_adj,
                    ci_low=float(interval.low[i, j]),
                    ci_high=float(interval.high[i, j]),
                    reject=p_adj < alpha,
                )
            )
    return pairs


def one_way_anova(runs: pd.DataFrame) -> list[AnovaRow]:
    """Condition effect within one size (OLS, type II sums of squares)."""
    return _anova_table(runs, "accuracy ~ C(condition)")


def two_way_anova(runs: pd.DataFrame) -> tuple[str, list[AnovaRow], list[str]]:
    """Condition x size ANOVA on the conditions every size has with enough runs.

    An interaction needs every (condition, size) cell, so conditions missing at some size are left out,
    and said so; returns the formula fitted (empty when none could be), the table and the notes.
    """
    if runs.empty:
        return "", [], []
    sizes = size_order(runs[SIZE])
    counts = runs.groupby([CONDITION, SIZE]).size()
    complete = [
        condition
        for condition in condition_order(runs[CONDITION])
        if all(counts.get((condition, size), 0) >= MIN_RUNS_PER_CONDITION for size in sizes)
    ]
    left_out = [c for c in condition_order(runs[CONDITION]) if c not in complete]
    notes = []
    if len(sizes) < 2:
        notes.append("two-way ANOVA skipped: runs of one model size only (see the per-size ANOVA)")
        return "", [], notes
    if left_out:
        notes.append(f"two-way ANOVA leaves out {left_out}: fewer than {MIN_RUNS_PER_CONDITION} runs at some size")
    if len(complete) < 2:
        notes.append("two-way ANOVA skipped: fewer than two conditions have runs at every size")
        return "", [], notes
    tested = runs[runs[CONDITION].isin(complete)]
    if not _has_within_variation(tested):
        notes.append("two-way ANOVA skipped: no variation within any (condition, size) cell")
        return "", [], notes
    formula = "accuracy ~ C(condition) * C(size)"
    return formula, _anova_table(tested, formula), notes


_TERM_NAMES = {
    "C(condition)": "condition",
    "C(size)": "size",
    "C(condition):C(size)": "condition:size",
    "Residual": "Residual",
}


def _anova_table(runs: pd.DataFrame, formula: str) -> list[AnovaRow]:
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    model_frame = runs[[ACCURACY, CONDITION, SIZE]].astype({ACCURACY: float, CONDITION: str, SIZE: str})
    fitted = smf.ols(formula, data=model_frame).fit()
    table = sm.stats.anova_lm(fitted, typ=2)
    residual_ss = float(table.loc["Residual", "sum_sq"])
    rows = []
    for term, line in table.iterrows():
        is_residual = term == "Residual"
        sum_sq = float(line["sum_sq"])
        rows.append(
            AnovaRow(
                term=_TERM_NAMES.get(str(term), str(term)),
                sum_sq=sum_sq,
                df=float(line["df"]),
                f=None if is_residual else float(line["F"]),
                p=None if is_residual else float(line["PR(>F)"]),
                partial_eta_sq=None if is_residual else sum_sq / (sum_sq + residual_ss),
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------- output


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _p_value(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-align the first column, right-align the rest."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))])

    return [line(header), *(line(row) for row in rows)]


def _anova_lines(anova: Sequence[AnovaRow]) -> list[str]:
    rows = [
        [
            row.term,
            _number(row.sum_sq),
            _number(row.df, 0),
            _number(row.f),
            _p_value(row.p),
            _number(row.partial_eta_sq, 3),
        ]
        for row in anova
    ]
    return _aligned(["term", "sum_sq", "df", "F", "p", "partial eta2"], rows)


def format_comparison(comparison: AccuracyComparison) -> str:
    """Plain-text tables for the terminal: per size the conditions, the Tukey pairs and the ANOVA."""
    confidence = f"{100 * (1 - comparison.alpha):g}% CI"
    lines: list[str] = []
    for size in comparison.sizes:
        lines.append(f"== {size.size}: test accuracy (%), {len(size.dropped)} outlier run(s) dropped ==")
        lines += _aligned(
            ["condition", "n", "mean", "SE", "dropped"],
            [[s.condition, str(s.n), _number(s.mean), _number(s.se), str(s.n_dropped)] for s in size.conditions],
        )
        if size.tukey:
            lines.append("")
            lines.append(f"Tukey-Kramer HSD (alpha {comparison.alpha:g}): diff = first - second")
            lines += _aligned(
                ["first", "second", "diff", confidence, "p_adj", "reject"],
                [
                    [
                        p.first,
                        p.second,
                        _number(p.diff),
                        f"[{_number(p.ci_low)}, {_number(p.ci_high)}]",
                        _p_value(p.p_adj),
                        "yes" if p.reject else "no",
                    ]
                    for p in size.tukey
                ],
            )
        if size.anova:
            lines.append("")
            lines.append("One-way ANOVA (type II): accuracy ~ condition")
            lines += _anova_lines(size.anova)
        lines += [f"note: {note}" for note in size.notes]
        lines.append("")
    if comparison.anova:
        lines.append(f"== Two-way ANOVA (type II): {comparison.anova_formula} ==")
        lines += _anova_lines(comparison.anova)
    lines += [f"note: {note}" for note in comparison.notes]
    return "\n".join(lines).rstrip() + "\n"


def plot_accuracy(comparison: AccuracyComparison, path: str | Path) -> Path:
    """Bar chart of mean accuracy per condition, grouped by size, with standard-error bars; writes a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sizes = [size for size in comparison.sizes if size.conditions]
    if not sizes:
        raise ValueError("no runs to plot")
    conditions = condition_order(s.condition for size in sizes for s in size.conditions)
    width = 0.8 / len(conditions)
    figure = Figure(figsize=(max(5.0, 1.5 + 0.55 * len(sizes) * len(conditions)), 4.2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, condition in enumerate(conditions):
        positions, means, errors = [], [], []
        for size_index, size in enumerate(sizes):
            try:
                summary = size.summary(condition)
            except KeyError:
                continue
            positions.append(size_index + (index - (len(conditions) - 1) / 2) * width)
            means.append(summary.mean)
            errors.append(summary.se if summary.se is not None else 0.0)
        bars = axes.bar(positions, means, width=width * 0.95, yerr=errors, capsize=3, label=condition)
        axes.bar_label(bars, labels=[f"{m:.1f}" for m in means], padding=2, fontsize=7)
    axes.set_xticks(range(len(sizes)), [size.size for size in sizes])
    axes.set_xlabel("student size")
    axes.set_ylabel("test accuracy (%), mean ± SE")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(conditions), 4), frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=150)
    return path
