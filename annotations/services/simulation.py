"""Simulated annotators that go through the same session services as people do (for demos and load).

Their ratings come from a generative model (plain Python, no database): each rating is
round(base + condition effect + annotator leniency + item difficulty + noise), clipped to the scale, so the
analysis can be tried on data with known structure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import F
from django.utils import timezone

from annotations.models import Annotator, Assignment, Study
from annotations.services import sessions
from evalsite.jobs import NO_PROGRESS, Progress


@dataclass(frozen=True)
class RatingModel:
    base: float = 3.2
    annotator_sd: float = 0.5
    item_sd: float = 0.3
    noise_sd: float = 0.6
    # Conditions not named here get no effect; the paper's revised MT+CF explanations rated best.
    condition_effects: dict[str, float] = field(
        default_factory=lambda: {
            "CF:Unrevised": 0.0,
            "MT:Unrevised": 0.15,
            "MT+CF:Unrevised": 0.1,
            "MT+CF:Revised": 0.3,
        }
    )
    construct_offsets: dict[str, float] = field(default_factory=dict)


class RatingSimulator:
    """Draws stable per-annotator and per-item effects once, then ratings for any (annotator, item, condition)."""

    def __init__(self, model: RatingModel | None = None, seed: int = 0) -> None:
        self.model = model or RatingModel()
        self.rng = random.Random(seed)
        self._annotator_effects: dict[object, float] = {}
        self._item_effects: dict[object, float] = {}

    def _effect(self, table: dict[object, float], key: object, sd: float) -> float:
        if key not in table:
            table[key] = self.rng.gauss(0.0, sd)
        return table[key]

    def rating(self, *, annotator: object, item: object, condition: str, construct: str, scale_size: int) -> int:
        mean = (
            self.model.base
            + self.model.condition_effects.get(condition, 0.0)
            + self.model.construct_offsets.get(construct, 0.0)
            + self._effect(self._annotator_effects, annotator, self.model.annotator_sd)
            + self._effect(self._item_effects, item, self.model.item_sd)
        )
        value = round(mean + self.rng.gauss(0.0, self.model.noise_sd))
        return max(1, min(scale_size, value))

    def attention_answer(self, expected: int, scale_size: int, failure_rate: float = 0.05) -> int:
        if self.rng.random() >= failure_rate:
            return expected
        return self.rng.choice([v for v in range(1, scale_size + 1) if v != expected])

    def seconds_on_screen(self) -> float:
        return max(2.0, self.rng.lognormvariate(3.0, 0.4))


def _demographics(study: Study, simulator: RatingSimulator) -> dict[str, str]:
    answers = {}
    for question in study.demographics_questions or []:
        choices = question.get("choices") or ["Simulated"]
        answers[question["name"]] = simulator.rng.choice(choices)
    return answers


def _answers(annotator: Annotator, assignment: Assignment, simulator: RatingSimulator, constructs):
    shown = [assignment.explanation, assignment.second_explanation]
    return [
        sessions.ScreenAnswer(
            explanation.pk,
            construct.pk,
            simulator.rating(
                annotator=annotator.pk,
                item=explanation.item_id,
                condition=explanation.condition.label,
                construct=construct.name,
                scale_size=construct.scale_size,
            ),
        )
        for explanation in shown
        if explanation is not None
        for construct in constructs
    ]


def annotators_simulate(
    *, study: Study, count: int, seed: int = 0, model: RatingModel | None = None, progress: Progress = NO_PROGRESS
) -> dict[str, int]:
    """Run `count` simulated annotators through consent, demographics, every screen and completion."""
    simulator = RatingSimulator(model or RatingModel(), seed=seed)
    constructs = list(study.constructs.all())
    scale = max(c.scale_size for c in constructs)
    finished = 0
    for index in range(count):
        annotator = sessions.annotator_enter(study=study, source="link", external_id=f"simulated-{seed}-{index:04d}")
        sessions.annotator_consent(annotator=annotator)
        sessions.annotator_save_demographics(annotator=annotator, answers=_demographics(study, simulator))
        if not sessions.assignments_allocate(annotator=annotator):
            break  # every explanation has its ratings
        screens = annotator.assignments.filter(status=Assignment.Status.ASSIGNED).select_related(
            "explanation__condition", "second_explanation__condition"
        )
        for assignment in screens.order_by("position"):
            # Time on screen is measured by the server; a simulated annotator backdates when it was shown.
            Assignment.objects.filter(pk=assignment.pk).update(
                first_shown_at=timezone.now() - timedelta(seconds=simulator.seconds_on_screen())
            )
            assignment.refresh_from_db(fields=["first_shown_at"])
            if assignment.kind == Assignment.Kind.ATTENTION:
                sessions.screen_submit(
                    annotator=annotator,
                    assignment_id=assignment.pk,
                    answers=[],
                    attention_value=simulator.attention_answer(assignment.expected_value, scale),
                )
                continue
            sessions.screen_submit(
                annotator=annotator,
                assignment_id=assignment.pk,
                answers=_answers(annotator, assignment, simulator, constructs),
                preferred_explanation_id=assignment.explanation_id if assignment.kind == "pair" else None,
            )
        annotator.refresh_from_db()
        sessions.annotator_finish(annotator=annotator)
        Annotator.objects.filter(pk=annotator.pk).update(last_seen_at=F("finished_at"))
        finished += 1
        progress(index + 1, count, stage="simulated annotators")
    return {"finished": finished, "requested": count}
