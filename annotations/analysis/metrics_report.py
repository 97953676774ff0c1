"""The report's "Automatic metrics against people" section and its scatter figures (one per construct)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_PREFIX = "metrics-"
POINTS_KEY = "automatic_metric_points"
SECTION_TITLE = "Automatic metrics against people"


def figure_name(construct: str) -> str:
    return FIGURE_PREFIX + (re.sub(r"[^A-Za-z0-9]+", "-", construct).strip("-").lower() or "construct")


def is_metric_figure(name: str) -> bool:
    return name.startswith(FIGURE_PREFIX)


def scatter_figures(report: dict[str, Any]) -> dict[str, Figure]:
    """Per construct: each metric (x) against the mean human rating per explanation (y), coloured by condition."""
    import matplotlib.pyplot as plt

    entries = {(e["construct"], e["metric"]): e for e in report.get("automatic_metrics") or []}
    figures: dict[str, Figure] = {}
    for construct, by_metric in (report.get(POINTS_KEY) or {}).items():
        metrics = list(by_metric)
        columns = min(len(metrics), 3)
        rows = -(-len(metrics) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), squeeze=False)
        conditions = list(dict.fromkeys(c for points in by_metric.values() for c in points["condition"]))
        colours = {c: plt.get_cmap("tab10").colors[k % 10] for k, c in enumerate(conditions)}
        for ax, metric in zip(axes.flat, metrics, strict=False):
            points = by_metric[metric]
            ax.scatter(
                points["metric"],
                points["human"],
                s=10,
                alpha=0.7,
                c=[colours[c] for c in points["condition"]],
            )
            entry = entries.get((construct, metric), {})
            rho = entry.get("spearman")
            title = metric if rho is None else f"{metric}: rho {rho:.2f}"
            if entry.get("ci_low") is not None:
                title += f" [{entry['ci_low']:.2f}, {entry['ci_high']:.2f}]"
            ax.set_title(title, fontsize="small", loc="left")
            ax.set_xlabel(metric, fontsize="small")
            ax.set_ylabel(f"mean {construct}", fontsize="small")
            ax.tick_params(labelsize="x-small")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(metrics) :]:
            ax.set_visible(False)
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[c], label=c) for c in conditions]
        fig.legend(handles=handles, fontsize="x-small", frameon=False, loc="upper right")
        fig.tight_layout(rect=(0, 0, 0.82 if conditions else 1, 1))
        figures[figure_name(construct)] = fig
    return figures


def best_per_construct(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per construct, the metric with the highest Spearman, and those whose CIs overlap its CI (so the data
    cannot tell them apart)."""
    out = []
    constructs = list(dict.fromkeys(e["construct"] for e in entries))
    for construct in constructs:
        ranked = sorted(
            (e for e in entries if e["construct"] == construct and e["spearman"] is not None),
            key=lambda e: e["spearman"],
            reverse=True,
        )
        if not ranked:
            continue
        best = ranked[0]
        overlapping = [
            e["metric"]
            for e in ranked[1:]
            if None not in (best["ci_low"], e["ci_high"]) and e["ci_high"] >= best["ci_low"]
        ]
        out.append({"construct": construct, "best": best, "overlapping": overlapping})
    return out


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _ci(entry: dict[str, Any]) -> str:
    if entry["ci_low"] is None:
        return "no CI"
    return f"95% CI [{_number(entry['ci_low'])}, {_number(entry['ci_high'])}]"


def render_section(report: dict[str, Any], figures: dict[str, str]) -> str:
    """The section's HTML (empty when the report has no metrics); `figures` maps figure names to markup."""
    entries = report.get("automatic_metrics") or []
    if not entries:
        return ""
    confidence = round(report["settings"].get("confidence", 0.95) * 100)
    headline = []
    for row in best_per_construct(entries):
        best = row["best"]
        caution = ""
        if row["overlapping"]:
            caution = (
                f' <span class="warn">Caution: its CI overlaps those of {escape(", ".join(row["overlapping"]))}, '
                "so these data do not tell them apart.</span>"
            )
        headline.append(
            f"<li><strong>{escape(row['construct'])}</strong>: {escape(best['metric'])} agrees best, "
            f"Spearman {_number(best['spearman'])} ({_ci(best).replace('95%', f'{confidence}%')}, "
            f"n = {best['n']} explanations){caution}</li>"
        )
    header = [
        "construct",
        "metric",
        "n",
        "Spearman",
        "CI low",
        "CI high",
        "Kendall tau (conditions)",
        "alpha (judge)",
    ]
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    body = "".join(
        "<tr>"
        f'<td class="text">{escape(e["construct"])}</td><td class="text">{escape(e["metric"])}</td>'
        f'<td class="num">{e["n"]}</td><td class="num">{_number(e["spearman"])}</td>'
        f'<td class="num">{_number(e["ci_low"])}</td><td class="num">{_number(e["ci_high"])}</td>'
        f'<td class="num">{_number(e["kendall_conditions"])}</td><td class="num">{_number(e.get("alpha"))}</td>'
        "</tr>"
        for e in entries
    )
    drawn = "".join(
        f"<figure>{markup}<figcaption>{escape(name.removeprefix(FIGURE_PREFIX))}: each metric against the mean "
        "rating per explanation, coloured by condition.</figcaption></figure>"
        for name, markup in figures.items()
        if is_metric_figure(name)
    )
    return (
        f"<ul>{''.join(headline)}</ul>"
        '<p class="muted">Spearman between each metric and the mean human rating per explanation, with a '
        "percentile CI from resampling items; Kendall's tau between the order of the conditions by people and by "
        "the metric; for an LLM judge of the same construct, Krippendorff's alpha (interval) between judge and "
        "human mean.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{drawn}"
    )
