"""Simulated annotators that go through the same session services as people do (for demos and load)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.db.models import F
from django.utils import timezone

from annotations.models import Annotator, Assignment, Study
from annotations.services import sessions
from annotations.simulate import RatingModel, RatingSimulator

Progress = Callable[..., None]


def _noop(*args, **kwargs) -> None:
    return None


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
    *, study: Study, count: int, seed: int = 0, model: RatingModel | None = None, progress: Progress = _noop
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
