"""The data migration that made prediction sets: a run's existing predictions become its set 1."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("distillation", "0002_prediction_choice_correct"), ("annotations", "0006_explanation_metrics")]
AFTER = [("distillation", "0003_prediction_sets"), ("annotations", "0007_explanation_prediction_protected")]


@pytest.mark.django_db(transaction=True)
def test_existing_predictions_become_set_one_of_their_run():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    dataset = old.get_model("distillation", "Dataset").objects.create(slug="cqa", name="cqa")
    question = old.get_model("distillation", "Question").objects.create(
        dataset=dataset, split="validation", source_id="q1", question="Where?", choices=["a", "b"], answer="a",
        answer_index=0,
    )  # fmt: skip
    run = old.get_model("distillation", "StudentRun").objects.create(
        base_checkpoint="tiny", method="mt", training_data="unrevised", checkpoint_dir="/ck/final",
        metrics={"steps": 60, "eval_split": "validation"},
    )  # fmt: skip
    old.get_model("distillation", "Prediction").objects.create(
        student_run=run, question=question, parse_status="exact", explanation="Because."
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    (prediction_set,) = new.get_model("distillation", "PredictionSet").objects.filter(run_id=run.pk)
    assert (prediction_set.number, prediction_set.kind, prediction_set.split) == (1, "evaluation", "validation")
    assert (prediction_set.checkpoint_path, prediction_set.checkpoint_step) == ("/ck/final", 60)
    assert new.get_model("distillation", "Prediction").objects.get().prediction_set_id == prediction_set.pk
    latest = MigrationExecutor(connection)  # the other tests run on the newest schema
    latest.migrate(latest.loader.graph.leaf_nodes())
