"""Report figures drawn from the report dict: means with CIs, stacked distributions, coefficient plot."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and workers; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

COLOURS = plt.get_cmap("tab10").colors


def _constructs(report: dict[str, Any]) -> list[str]:
    return list(report["descriptives"])


def means_figure(report: dict[str, Any]) -> Figure:
    """Mean rating with its item-bootstrap 95% CI per construct (x) and condition (colour), as in the paper."""
    constructs, conditions = _constructs(report), report["conditions"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(constructs), 4.2))
    width = 0.8 / max(len(conditions), 1)
    for k, condition in enumerate(conditions):
        cells = [report["descriptives"][c][condition] for c in constructs]
        x = np.arange(len(constructs)) - 0.4 + width * (k + 0.5)
        means = np.array([cell["mean"] if cell["mean"] is not None else np.nan for cell in cells])
        low = np.array([cell["ci_low"] if cell["ci_low"] is not None else np.nan for cell in cells])
        high = np.array([cell["ci_high"] if cell["ci_high"] is not None else np.nan for cell in cells])
        ax.errorbar(
            x, means, yerr=[means - low, high - means], fmt="o", capsize=3, color=COLOURS[k % 10], label=condition
        )
    low_point, high_point = report["settings"]["scale"]
    ax.set_xticks(np.arange(len(constructs)), constructs, rotation=20, ha="right")
    ax.set_ylabel(f"mean rating ({low_point}-{high_point}), 95% CI")
    ax.set_ylim(low_point - 0.1, high_point + 0.1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", frameon=False, loc="lower left")
    fig.tight_layout()
    return fig


def distribution_figure(report: dict[str, Any]) -> Figure:
    """Share of each scale point per condition, one panel per construct (composites rounded to points)."""
    constructs, conditions = _constructs(report), report["conditions"]
    points = list(report["descriptives"][constructs[0]][conditions[0]]["distribution"])
    colours = plt.get_cmap("RdYlGn")(np.linspace(0.1, 0.9, len(points)))
    fig, axes = plt.subplots(len(constructs), 1, figsize=(7, 0.6 + 0.45 * len(conditions) * len(constructs)))
    axes = np.atleast_1d(axes)
    for ax, construct in zip(axes, constructs, strict=True):
        left = np.zeros(len(conditions))
        for point, colour in zip(points, colours, strict=True):
            counts = np.array([report["descriptives"][construct][c]["distribution"][point] for c in conditions])
            totals = np.array([max(report["descriptives"][construct][c]["n"], 1) for c in conditions])
            share = counts / totals
            ax.barh(conditions, share, left=left, color=colour, label=point)
            left += share
        ax.set_title(construct, fontsize="small", loc="left")
        ax.invert_yaxis()  # the reference condition on top, in the order the legend and tables use
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize="x-small")
    axes[0].legend(ncol=len(points), fontsize="x-small", frameon=False, loc="lower right", bbox_to_anchor=(1, 1))
    axes[-1].set_xlabel("share of ratings")
    fig.tight_layout()
    return fig


def coefficient_figure(report: dict[str, Any], kind: str = "lmm") -> Figure:
    """Condition effects against the reference with 95% CIs, one row per (construct, condition)."""
    rows = [
        (model["construct"], coef)
        for model in report["models"]
        if model["kind"] == kind
        for coef in model["coefficients"]
        if coef["term"] in report["conditions"]
    ]
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.28 * max(len(rows), 1)))
    conditions = report["conditions"]
    for y, (_, coef) in enumerate(rows):
        colour = COLOURS[conditions.index(coef["term"]) % 10]
        if coef["ci_low"] is not None:
            ax.plot([coef["ci_low"], coef["ci_high"]], [y, y], color=colour)
        ax.plot(coef["estimate"], y, "o", color=colour)
    ax.set_yticks(range(len(rows)), [f"{c}: {coef['term']}" for c, coef in rows], fontsize="x-small")
    ax.axvline(0, color="grey", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(f"difference from {report['settings']['reference']} (rating points, 95% CI)")
    fig.tight_layout()
    return fig


def preference_figure(report: dict[str, Any]) -> Figure | None:
    """Pair mode: each condition's log-worth with its annotator-bootstrap CI (None without preferences)."""
    section = report.get("preferences")
    if not section:
        return None
    rows = section["worths"]
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.45 * len(rows)))
    y = np.arange(len(rows))
    estimates = np.array([r["log_worth"] for r in rows])
    low = np.array([r["log_worth_ci_low"] if r["log_worth_ci_low"] is not None else r["log_worth"] for r in rows])
    high = np.array([r["log_worth_ci_high"] if r["log_worth_ci_high"] is not None else r["log_worth"] for r in rows])
    ax.errorbar(estimates, y, xerr=[estimates - low, high - estimates], fmt="o", capsize=3, color=COLOURS[0])
    ax.set_yticks(y, [r["condition"] for r in rows])
    ax.axvline(0, color="grey", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(f"log-worth against {section['reference']} (Bradley-Terry with ties, 95% CI)")
    fig.tight_layout()
    return fig


FIGURES = {
    "means": means_figure,
    "distributions": distribution_figure,
    "coefficients": coefficient_figure,
    "preferences": preference_figure,
}


def build_figures(report: dict[str, Any]) -> dict[str, Figure]:
    """All report figures that have something to show, by file stem."""
    drawn = {stem: draw(report) for stem, draw in FIGURES.items()}
    return {stem: figure for stem, figure in drawn.items() if figure is not None}


def svg_text(fig: Figure) -> str:
    """The figure as an inline <svg> element (XML prolog stripped) for a self-contained HTML page."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def save_figures(figures: dict[str, Figure], out_dir: Path) -> list[str]:
    """Write each figure as PNG and SVG; return the file names written."""
    written = []
    for stem, fig in figures.items():
        for suffix in ("png", "svg"):
            name = f"{stem}.{suffix}"
            fig.savefig(out_dir / name, format=suffix, dpi=150)
            written.append(name)
    return written


def close_figures(figures: dict[str, Figure]) -> None:
    """Release pyplot's references so long-running workers do not accumulate figures."""
    for fig in figures.values():
        plt.close(fig)
