"""A self-contained HTML page for a report dict: tables plus the figures as inline SVG."""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#222}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:0.2rem 0.5rem}
td{text-align:right}td:first-child,th{text-align:left}.warn{color:#a40}figure{margin:1rem 0}
"""


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_number(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
    return _table(header, rows)


def _model(model: dict[str, Any]) -> str:
    rows = [[c["term"], c["estimate"], c["se"], c["ci_low"], c["ci_high"], c["p"]] for c in model["coefficients"]]
    sds = model["variance"]
    parts = ", ".join(f"{k} {_number(v)}" for k, v in sds.items() if v is not None)
    warnings = "".join(f'<p class="warn">{escape(w)}</p>' for w in model["warnings"])
    return (
        f"<h3>{escape(model['name'])}</h3><p><code>{escape(model['formula'])}</code>; n = {model['n']}; "
        f"reference {escape(model['reference'])}; SDs: {parts or '–'}</p>"
        f"<p><small>{escape(model.get('inference', ''))}</small></p>{warnings}"
        + _table(["term", "estimate", "SE", "CI low", "CI high", "p"], rows)
    )


def render_html(report: dict[str, Any], svgs: dict[str, str]) -> str:
    """The report page; `svgs` maps figure names to inline <svg> markup."""
    counts = _table(
        ["ratings", "annotators", "items", "explanations", "excluded ratings"],
        [
            [
                report["n_ratings"],
                report["n_annotators"],
                report["n_items"],
                report["n_explanations"],
                report["n_excluded"],
            ]
        ],
    )
    figures = "".join(f"<figure>{svg}<figcaption>{escape(name)}</figcaption></figure>" for name, svg in svgs.items())
    warnings = "".join(f'<p class="warn">{escape(w)}</p>' for w in report["warnings"])
    models = "".join(_model(m) for m in report["models"])
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Rating analysis</title>"
        f"<style>{STYLE}</style></head><body><h1>Rating analysis</h1>{counts}{warnings}"
        f"<h2>Figures</h2>{figures}<h2>Descriptives</h2>{_descriptives(report)}"
        f"<h2>Agreement</h2>{_agreement(report)}<h2>Models</h2>{models}</body></html>"
    )
