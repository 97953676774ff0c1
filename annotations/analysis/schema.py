"""A structural check of report.json against docs/report-schema.md, usable by callers and tests alike."""

from __future__ import annotations

from typing import Any

NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))

TOP_LEVEL = {
    "schema_version": int,
    "settings": dict,
    "n_ratings": int,
    "n_judgements": int,
    "n_annotators": int,
    "n_items": int,
    "n_explanations": int,
    "n_excluded": int,
    "exclusions": (dict, type(None)),
    "conditions": list,
    "descriptives": dict,
    "agreement": dict,
    "models": list,
    "contrasts": dict,
    "rank_tests": dict,
    "preferences": (dict, type(None)),
    "power": (dict, type(None)),
    "warnings": list,
}
DESCRIPTIVE_CELL = {
    "n": int,
    "mean": OPTIONAL_NUMBER,
    "sd": OPTIONAL_NUMBER,
    "median": OPTIONAL_NUMBER,
    "top2": OPTIONAL_NUMBER,
    "distribution": dict,
    "ci_low": OPTIONAL_NUMBER,
    "ci_high": OPTIONAL_NUMBER,
}
AGREEMENT = {"alpha": OPTIONAL_NUMBER, "ci_low": OPTIONAL_NUMBER, "ci_high": OPTIONAL_NUMBER}
MODEL = {
    "name": str,
    "kind": str,
    "construct": str,
    "formula": str,
    "reference": str,
    "n": int,
    "coefficients": list,
    "variance": dict,
    "warnings": list,
    "inference": str,
}
COEFFICIENT = {
    "term": str,
    "estimate": NUMBER,
    "se": OPTIONAL_NUMBER,
    "p": OPTIONAL_NUMBER,
    "ci_low": OPTIONAL_NUMBER,
    "ci_high": OPTIONAL_NUMBER,
}
VARIANCE = {"annotator": OPTIONAL_NUMBER, "item": OPTIONAL_NUMBER, "residual": OPTIONAL_NUMBER}
MODEL_KINDS = {"lmm", "clmm", "ols", "ordinal"}


def _check(obj: Any, spec: dict[str, Any], where: str, errors: list[str]) -> None:
    if not isinstance(obj, dict):
        errors.append(f"{where}: expected an object")
        return
    for key, types in spec.items():
        if key not in obj:
            errors.append(f"{where}.{key}: missing")
        elif isinstance(obj[key], bool) or not isinstance(obj[key], types):
            errors.append(f"{where}.{key}: unexpected type {type(obj[key]).__name__}")


def validate_report(report: dict[str, Any]) -> list[str]:
    """Every deviation from the documented structure; an empty list means the report conforms."""
    errors: list[str] = []
    _check(report, TOP_LEVEL, "report", errors)
    if errors:
        return errors
    conditions = report["conditions"]
    for construct, by_condition in report["descriptives"].items():
        if set(by_condition) != set(conditions):
            errors.append(f"descriptives.{construct}: conditions differ from report.conditions")
        for condition, cell in by_condition.items():
            _check(cell, DESCRIPTIVE_CELL, f"descriptives.{construct}.{condition}", errors)
    for construct, entry in report["agreement"].items():
        _check(entry, AGREEMENT, f"agreement.{construct}", errors)
    for index, model in enumerate(report["models"]):
        where = f"models[{index}]"
        _check(model, MODEL, where, errors)
        if model.get("kind") not in MODEL_KINDS:
            errors.append(f"{where}.kind: {model.get('kind')!r} not one of {sorted(MODEL_KINDS)}")
        _check(model.get("variance"), VARIANCE, f"{where}.variance", errors)
        for j, coefficient in enumerate(model.get("coefficients", [])):
            _check(coefficient, COEFFICIENT, f"{where}.coefficients[{j}]", errors)
    return errors
