"""Models of the annotations app, one module per area."""

from annotations.models.crowd import BlockedWorker, CrowdBatch, CrowdPlatform, CrowdSubmission, CrowdTask
from annotations.models.metrics import ExplanationMetric
from annotations.models.studies import (
    AnalysisReport,
    Annotator,
    Assignment,
    Condition,
    Construct,
    Explanation,
    Item,
    Rating,
    Study,
    default_demographics_questions,
    new_completion_code,
)

__all__ = [
    "AnalysisReport",
    "Annotator",
    "Assignment",
    "BlockedWorker",
    "Condition",
    "Construct",
    "CrowdBatch",
    "CrowdPlatform",
    "CrowdSubmission",
    "CrowdTask",
    "Explanation",
    "ExplanationMetric",
    "Item",
    "Rating",
    "Study",
    "default_demographics_questions",
    "new_completion_code",
]
