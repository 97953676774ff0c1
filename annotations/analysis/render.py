"""A self-contained HTML page for a report dict: tables plus the figures as inline SVG.

`render_body` is the page without its <html> shell, so the site's report page shows the very same tables
(with figures as links to their files instead of inline SVG).
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

PAGE_STYLE = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#222;padding:0 1rem}"
# Scoped to .rating-report so the body can sit inside another page (the admin's) without restyling it.
REPORT_STYLE = """
.rating-report table{border-collapse:collapse;margin:0.5rem 0 1.5rem}
.rating-report td,.rating-report th{border:1px solid #ccc;padding:0.2rem 0.5rem;vertical-align:top}
.rating-report th{text-align:left;background:#f4f4f4}
.rating-report td.num{text-align:right;font-variant-numeric:tabular-nums}
.rating-report td.text{text-align:left}
.rating-report .warn{color:#a40}.rating-report .muted{color:#555;font-size:0.9em}
.rating-report figure{margin:1rem 0 2rem}.rating-report figure svg,.rating-report figure img{max-width:100%;height:auto}
.rating-report figcaption{color:#444;font-size:0.9em;max-width:50rem}
.rating-report nav a{margin-right:1rem}
.rating-report details>summary{cursor:pointer}.rating-report details>summary h2{display:inline}
"""
STYLE = PAGE_STYLE + REPORT_STYLE

MAX_DECIMALS = 8

FIGURE_CAPTIONS = {
    "means": "Mean rating per construct and condition, with 95% CIs from a bootstrap over items.",
    "distributions": "Share of ratings at each scale point per condition (the composite rounded to points).",
    "coefficients": "Mixed-model condition effects against the reference, with 95% CIs.",
    "preferences": "Pair mode: each condition's log-worth (Bradley-Terry with ties) with annotator-bootstrap 95% CIs.",
}


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if 0 < abs(value) < 0.01:
            # Small effects (per character of length) keep `digits` significant digits instead of reading
            # -0.000, written out in full (0.0000714, not 7.14e-05) up to a point.
            decimals = digits - 1 - math.floor(math.log10(abs(value)))
            return f"{value:.{digits}g}" if decimals > MAX_DECIMALS else f"{value:.{decimals}f}"
        return f"{value:.{digits}f}"
    return escape(str(value))


def _p_value(value: float | None) -> str:
    if value is None:
        return "–"
    return "&lt;0.001" if value < 0.001 else f"{value:.3f}"


class _Raw(str):
    """Cell markup that is already escaped and formatted (p-values)."""


def _cell(value: Any) -> str:
    if isinstance(value, _Raw):
        return f'<td class="num">{value}</td>'
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return f'<td class="num">{_number(value)}</td>'
    return f'<td class="text">{escape(str(value))}</td>'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _settings(report: dict[str, Any]) -> str:
    settings = report["settings"]
    covariates = ", ".join(settings["covariates"]) or "none"
    low, high = settings["scale"]
    return (
        f'<p class="muted">Reference condition <strong>{escape(settings["reference"])}</strong>; '
        f"covariates: {escape(covariates)}; scale {low}–{high}; "
        f"{escape(settings['composite'] or 'no composite')} = mean of {escape(', '.join(settings['constructs']))}; "
        f"{settings['n_boot']} bootstrap replicates, seed {settings['seed']}, "
        f"{round(settings['confidence'] * 100)}% intervals.</p>"
    )


def _exclusions(report: dict[str, Any]) -> str:
    summary = report.get("exclusions")
    if not summary:
        return '<p class="muted">No exclusion rules were applied.</p>'
    rows = [[rule, entry["n_annotators"], ", ".join(entry["annotators"])] for rule, entry in summary["by_rule"].items()]
    return (
        f"<p>{summary['n_annotators_excluded']} of {summary['n_annotators_before']} annotators excluded "
        f"({summary['n_ratings_excluded']} of {summary['n_ratings_before']} ratings); an annotator who "
        "breaks any rule loses all their ratings.</p>" + _table(["rule", "annotators", "annotator ids"], rows)
    )


def _descriptives(report: dict[str, Any]) -> str:
    rows = [
        [construct, condition, cell["n"], cell["mean"], cell["sd"], cell["ci_low"], cell["ci_high"], cell["top2"]]
        for construct, by_condition in report["descriptives"].items()
        for condition, cell in by_condition.items()
    ]
    return _table(["construct", "condition", "n", "mean", "sd", "CI low", "CI high", "top-2 share"], rows)


def _agreement(report: dict[str, Any]) -> str:
    rows = []
    for construct, entry in report["agreement"].items():
        shares = entry.get("variance_shares") or {}
        rows.append(
            [
                construct,
                entry["alpha"],
                entry["ci_low"],
                entry["ci_high"],
                shares.get("annotator"),
                shares.get("item"),
                shares.get("residual"),
                entry.get("note", ""),
            ]
        )
    header = ["construct", "alpha", "CI low", "CI high", "annotator share", "item share", "residual share", "note"]
    return (
        '<p class="muted">Krippendorff\'s alpha (ordinal) over explanations rated by two or more annotators; '
        "variance shares from each construct's mixed model.</p>" + _table(header, rows)
    )


def _model(model: dict[str, Any]) -> str:
    with_df = any(c.get("df") is not None for c in model["coefficients"])
    header = ["term", "estimate", "SE", *(["df"] if with_df else []), "CI low", "CI high", "p"]
    header += ["p (Wald z)"] if with_df else []
    rows = []
    for c in model["coefficients"]:
        row = [c["term"], c["estimate"], c["se"], *([c.get("df")] if with_df else []), c["ci_low"], c["ci_high"]]
        row.append(_Raw(_p_value(c["p"])))
        if with_df:
            row.append(_Raw(_p_value(c.get("p_wald"))))
        rows.append(row)
    sds = ", ".join(f"{k} {_number(v)}" for k, v in model["variance"].items() if v is not None)
    warnings = "".join(f'<p class="warn">{escape(w)}</p>' for w in model["warnings"])
    thresholds = model.get("thresholds") or []
    threshold_table = ""
    if thresholds:
        threshold_table = '<p class="muted">Thresholds (cut-points on the logit scale)</p>' + _table(
            ["between", "estimate", "SE", "CI low", "CI high"],
            [[t["between"], t["estimate"], t.get("se"), t.get("ci_low"), t.get("ci_high")] for t in thresholds],
        )
    return (
        f'<h3 id="{escape(model["name"])}">{escape(model["name"])}</h3>'
        f"<p><code>{escape(model['formula'])}</code>; n = {model['n']}; reference {escape(model['reference'])}"
        f"{'; SDs: ' + sds if sds else ''}</p>"
        f'<p class="muted">{escape(model.get("inference", ""))}</p>{warnings}' + _table(header, rows) + threshold_table
    )


def _preferences(report: dict[str, Any]) -> str:
    section = report.get("preferences")
    if not section:
        return ""
    worths = _table(
        ["condition", "worth", "log-worth", "CI low", "CI high"],
        [
            [w["condition"], w["worth"], w["log_worth"], w["log_worth_ci_low"], w["log_worth_ci_high"]]
            for w in section["worths"]
        ],
    )
    pairs = _table(
        ["a", "b", "P(a preferred)", "CI low", "CI high", "P(b preferred)", "P(tie)", "judged a / b / tie"],
        [
            [
                p["a"],
                p["b"],
                p["p_a"],
                p["p_a_ci_low"],
                p["p_a_ci_high"],
                p["p_b"],
                p["p_tie"],
                f"{p['n_a']} / {p['n_b']} / {p['n_tie']}",
            ]
            for p in section["pairs"]
        ],
    )
    return (
        f"<p>{escape(section['model'])}: {section['n_judgements']} pair judgements by {section['n_annotators']} "
        f"annotators; tie parameter {_number(section['tie_parameter'])}; reference {escape(section['reference'])}."
        f'</p><p class="muted">{escape(section["inference"])} ({section["n_boot"]} replicates, '
        f"{section['n_boot_failed']} dropped)</p>" + worths + pairs
    )


def _contrasts(report: dict[str, Any]) -> str:
    rows = [
        [
            construct,
            f"{pair['b']} − {pair['a']}",
            pair["estimate"],
            pair["ci_low"],
            pair["ci_high"],
            _Raw(_p_value(pair["p"])),
            _Raw(_p_value(pair["p_holm"])),
            pair["cohens_d"],
        ]
        for construct, entry in report["contrasts"].items()
        for pair in entry["pairs"]
    ]
    header = ["construct", "difference", "estimate", "CI low", "CI high", "p", "p (Holm)", "Cohen's d"]
    return (
        '<p class="muted">Every pair of conditions from each construct\'s mixed model; Holm-adjusted within a '
        "construct; d is the difference over the SD of a single rating.</p>" + _table(header, rows)
    )


def _rank_tests(report: dict[str, Any]) -> str:
    rows = [
        [construct, entry["test"], entry["statistic"], entry["df"], _Raw(_p_value(entry["p"]))]
        for construct, entry in report["rank_tests"].items()
    ]
    return (
        '<p class="muted">On each annotator\'s mean per condition (Friedman when five or more annotators rated '
        "every condition, else Kruskal-Wallis); post-hoc pairs are in report.json.</p>"
        + _table(["construct", "test", "statistic", "df", "p"], rows)
    )


def _figures(figures: dict[str, str]) -> str:
    return "".join(
        f"<figure>{markup}<figcaption>{escape(FIGURE_CAPTIONS.get(name, name))}</figcaption></figure>"
        for name, markup in figures.items()
    )


def render_body(report: dict[str, Any], figures: dict[str, str]) -> str:
    """The report's sections in a <div class="rating-report">; `figures` maps figure names to markup
    (inline <svg>, or an <img> pointing at the file)."""
    counts = _table(
        ["ratings", "judgements", "annotators", "items", "explanations", "excluded ratings"],
        [
            [
                report["n_ratings"],
                report["n_judgements"],
                report["n_annotators"],
                report["n_items"],
                report["n_explanations"],
                report["n_excluded"],
            ]
        ],
    )
    warnings = "".join(f'<p class="warn">{escape(w)}</p>' for w in report["warnings"])
    composite = report["settings"]["composite"]
    # The headline comes first: the composite's models (the paper's result) and the means figure. Everything
    # else sits in collapsed sections, so the page does not open on an 11,000-pixel column.
    headline = [m for m in report["models"] if m["construct"] == composite]
    per_construct = [m for m in report["models"] if m["construct"] != composite]
    means = {name: markup for name, markup in figures.items() if name == "means"}
    others = {name: markup for name, markup in figures.items() if name != "means"}
    open_sections = [
        ("summary", "Summary", counts + _settings(report) + warnings),
        ("headline", f"Models of {composite}" if composite else "", "".join(_model(m) for m in headline)),
        ("means", "Means", _figures(means)),
    ]
    collapsed = [
        ("exclusions", "Exclusions", _exclusions(report)),
        ("figures", "More figures", _figures(others)),
        ("preferences", "Preferences (pair screens)", _preferences(report)),
        ("descriptives", "Descriptives", _descriptives(report)),
        ("agreement", "Agreement", _agreement(report)),
        ("contrasts", "Pairwise contrasts", _contrasts(report) if report["contrasts"] else ""),
        ("rank-tests", "Rank tests", _rank_tests(report) if report["rank_tests"] else ""),
        ("models", "Models per construct", "".join(_model(m) for m in per_construct)),
    ]
    open_sections = [(a, t, h) for a, t, h in open_sections if t and h]
    collapsed = [(a, t, h) for a, t, h in collapsed if t and h]
    nav = "".join(f'<a href="#{anchor}">{escape(title)}</a>' for anchor, title, _ in open_sections + collapsed)
    body = "".join(f'<section id="{a}"><h2>{escape(title)}</h2>{html}</section>' for a, title, html in open_sections)
    body += "".join(
        f'<section id="{a}"><details><summary><h2>{escape(title)}</h2></summary>{html}</details></section>'
        for a, title, html in collapsed
    )
    return f'<div class="rating-report"><nav>{nav}</nav>{body}</div>'


def render_html(report: dict[str, Any], svgs: dict[str, str]) -> str:
    """The report page; `svgs` maps figure names to inline <svg> markup."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Rating analysis</title>"
        f"<style>{STYLE}</style></head><body><h1>Rating analysis</h1>{render_body(report, svgs)}</body></html>"
    )
