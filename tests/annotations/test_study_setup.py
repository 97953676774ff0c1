"""Creating studies from YAML and importing explanations from the shared student outputs."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotations.models import Explanation, Item, Rating, Study
from annotations.services.studies import explanation_set_text

pytestmark = pytest.mark.django_db

PAPER_STUDY = """
slug: t5-large-paper
title: How good are these explanations?
mode: single
constructs: paper
explanations_per_annotator: 8
ratings_per_explanation: 3
attention_check_positions: [4]
show_correct_answer: true
conditions:
  - label: MT+CF:Unrevised
  - label: MT+CF:Revised
"""


def call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_study_from_yaml_with_the_paper_preset(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text(PAPER_STUDY, encoding="utf-8")
    output = call("create_study", "--config", str(config))
    assert "constructs: completeness, contrastiveness, plausibility, satisfaction, understandability" in output
    study = Study.objects.get(slug="t5-large-paper")
    assert list(study.conditions.values_list("label", flat=True)) == ["MT+CF:Unrevised", "MT+CF:Revised"]
    assert all(len(c.anchors) == c.scale_size == 5 for c in study.constructs.all())
    assert study.attention_check_positions == [4]


def test_create_study_reports_bad_config(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("slug: x\nconstructs: nonsense\n", encoding="utf-8")
    with pytest.raises(CommandError, match="unknown construct preset 'nonsense'"):
        call("create_study", "--config", str(config))
    assert not Study.objects.exists()
    config.write_text("slug: x\nratings_per_explanatoin: 3\n", encoding="utf-8")
    with pytest.raises(CommandError, match="unknown study settings: ratings_per_explanatoin"):
        call("create_study", "--config", str(config))


def import_dev_questions(data_dir) -> None:
    from distillation.datafiles import read_questions
    from distillation.services.imports import dataset_get_or_create, questions_import

    dataset = dataset_get_or_create(slug="cqa")
    questions_import(dataset=dataset, split="validation", records=read_questions(data_dir / "cqa" / "validation.jsonl"))


def import_student_file(data_dir, label: str, name: str, *extra: str) -> str:
    return call(
        "import_explanations",
        "--study",
        "t5-large-paper",
        "--condition",
        label,
        "--csv",
        str(data_dir / "students" / f"t5-large-mtcf-{name}-validation.csv"),
        "--item-column",
        "input_predict",
        "--text-column",
        "rationales_preds",
        "--answer-column",
        "answers_labels",
        "--prediction-column",
        "answers_preds",
        "--quiet",
        *extra,
    )


def test_shared_student_files_import_as_two_conditions_over_the_same_items(tmp_path, data_dir):
    import_dev_questions(data_dir)
    config = tmp_path / "study.yaml"
    config.write_text(PAPER_STUDY, encoding="utf-8")
    call("create_study", "--config", str(config))
    for label, name in (("MT+CF:Unrevised", "unrevised"), ("MT+CF:Revised", "revised")):
        output = import_student_file(data_dir, label, name)
        assert f"{label}: 1221 new" in output
    assert Item.objects.count() == 1221
    # 111 inputs differ from CommonsenseQA in spacing ("did not,match", "semen?"): all are matched.
    assert not Item.objects.filter(question__isnull=True).exists()
    assert not Item.objects.filter(answer="").exists()
    spaced = Item.objects.get(question_text__startswith="Danny found that the carpet")
    assert "did not ,match" in spaced.question_text and spaced.question.split == "validation"
    item = Item.objects.get(question_text__startswith="A beaver is know for building prowess")
    assert item.choices == ["british columbia", "body of water", "wooded area", "pay debts", "zoo"]
    assert item.answer == "wooded area"
    explanations = item.explanations.order_by("condition__position")
    assert explanations.count() == 2
    assert explanations[1].predicted_answer == "body of water"
    assert explanations[1].provenance["file"] == "t5-large-mtcf-revised-validation.csv"

    again = call(
        "import_explanations",
        "--study",
        "t5-large-paper",
        "--condition",
        "MT+CF:Revised",
        "--csv",
        str(data_dir / "students" / "t5-large-mtcf-revised-validation.csv"),
        "--item-column",
        "input_predict",
        "--text-column",
        "rationales_preds",
        "--quiet",
    )
    assert "0 new, 0 new versions, 0 updated, 1221 unchanged" in again


def test_rows_matching_no_stored_question_are_listed_and_refused_unless_allowed(tmp_path, data_dir):
    config = tmp_path / "study.yaml"
    config.write_text(PAPER_STUDY, encoding="utf-8")
    call("create_study", "--config", str(config))
    with pytest.raises(CommandError) as refused:
        import_student_file(data_dir, "MT+CF:Revised", "revised")
    message = str(refused.value)
    assert "1221 of 1221 rows match no stored question" in message
    assert "line 2 (no stored question has this text): 'A beaver is know for building prowess" in message
    assert message.count("line ") == 10 and "and 1211 more" in message and "--allow-unmatched" in message
    assert not Item.objects.exists() and not Explanation.objects.exists()

    output = import_student_file(data_dir, "MT+CF:Revised", "revised", "--allow-unmatched")
    assert "MT+CF:Revised: 1221 new" in output
    assert Item.objects.filter(question__isnull=True).count() == 1221


def test_a_csv_with_a_missing_column_fails_and_stores_nothing(tmp_path, data_dir):
    config = tmp_path / "study.yaml"
    config.write_text(PAPER_STUDY, encoding="utf-8")
    call("create_study", "--config", str(config))
    with pytest.raises(CommandError, match=r"no column 'explanation'"):
        call(
            "import_explanations",
            "--study",
            "t5-large-paper",
            "--condition",
            "MT+CF:Revised",
            "--csv",
            str(data_dir / "students" / "t5-large-mtcf-revised-validation.csv"),
            "--item-column",
            "input_predict",
            "--text-column",
            "explanation",
            "--quiet",
        )
    assert not Explanation.objects.exists()


def test_new_text_for_a_rated_explanation_becomes_a_new_version(client):
    from tests.annotations.factories import build_study
    from tests.annotations.test_sessions import current, screen_form, start_rating

    study = build_study()
    url = start_rating(client, study)
    client.get(url)
    annotator = study.annotators.get()
    assignment = current(annotator)
    client.post(url, screen_form(annotator, assignment))
    rated = assignment.explanation
    new, outcome = explanation_set_text(
        item=rated.item, condition=rated.condition, text="A better explanation.", source="manual", provenance={}
    )
    assert outcome == "new_version" and new.version == 2 and new.supersedes_id == rated.pk
    rated.refresh_from_db()
    assert not rated.is_current and rated.ratings.count() == 3
    assert Rating.objects.filter(explanation=rated).count() == 3
