"""Automatic metrics of a study's explanations: the command and job on a tiny trained student (length, overlap
with the teacher, consistency), judges through the replay back-end and an OpenAI-compatible server, embedding
similarity, resuming, bad input, the admin action, the tidy export and the report."""

from __future__ import annotations

import json
import math
from io import StringIO

import pandas as pd
import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rouge_score import rouge_scorer

from annotations.models import Explanation, ExplanationMetric
from annotations.services import analysis
from annotations.services.metrics import explanation_key
from annotations.services.studies import study_create
from distillation.ml.answers import normalise, parse_answer
from distillation.ml.inference import generate_texts
from distillation.ml.students import load_student
from distillation.ml.tasks import TaskKind, counterfactual_target, task_input
from distillation.models import StudentRun, TeacherOutput
from evalsite.jobs import execute_job
from evalsite.models import Job
from tests.annotations.factories import build_study
from tests.annotations.test_analysis_integration import build_rated_study
from tests.distillation.ml.test_teachers import FakeServer, server  # noqa: F401  (the fixture)
from tests.distillation.test_students import TINY_TRAINING

pytestmark = pytest.mark.django_db


def call(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def scores(name: str) -> dict[int, ExplanationMetric]:
    return {m.explanation_id: m for m in ExplanationMetric.objects.filter(name=name)}


@pytest.fixture
def student_study(teacher_data):
    """A CF student trained for a few steps, and a study whose condition is that run: four training questions,
    each explained by the teacher's rationale for one wrong choice, with that choice as the predicted answer
    (what the counterfactual task trains), plus one explanation without a predicted answer."""
    from annotations.services.studies import condition_get_or_create, explanation_set_text, item_get_or_create
    from distillation.models import Question

    call("train_student", "--method", "cf", "--data", "unrevised", "--seed", "1", *TINY_TRAINING)
    run = StudentRun.objects.get()
    study = study_create(config={"slug": "scored", "title": "Scored", "constructs": "default"})
    condition = condition_get_or_create(study=study, label=run.condition_label, student_run=run)
    for index, question in enumerate(Question.objects.filter(split="train").order_by("id")[:5]):
        item = item_get_or_create(
            study=study,
            key=question.source_id,
            question_text=question.question,
            choices=question.choices,
            answer=question.answer,
            question=question,
        )
        wrong = next(i for i, c in enumerate(question.choices) if normalise(c) != normalise(question.answer))
        text = TeacherOutput.objects.get(question=question, kind="counterfactual", choice_index=wrong).text
        predicted = question.choices[wrong] if index < 4 else ""
        explanation_set_text(
            item=item, condition=condition, text=text, source="manual", provenance={}, predicted_answer=predicted
        )
    return study, run


def test_cheap_metrics_and_consistency_on_a_trained_student(student_study):
    study, run = student_study
    metrics = "length,teacher_overlap,consistency"
    output = call("score_explanations", "--study", "scored", "--metrics", metrics, "--quiet")
    explanations = Explanation.objects.filter(item__study=study).exclude(predicted_answer="")
    explanations = list(explanations.select_related("item"))
    assert len(explanations) == 4
    assert "23 scores stored for 5 explanation versions" in output
    assert "1 skipped: consistency: no predicted answer stored" in output
    chars, words, overlap = scores("length_chars"), scores("length_words"), scores("teacher_overlap")
    consistent, probability = scores("consistency"), scores("consistency_probability")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    student = load_student(run.checkpoint_dir)
    for explanation in explanations:
        assert chars[explanation.pk].value == len(explanation.text)
        assert words[explanation.pk].value == len(explanation.text.split())
        rationale = TeacherOutput.objects.get(question=explanation.item.question, kind="rationale").text
        expected = scorer.score(rationale, explanation.text)["rougeL"].fmeasure
        assert overlap[explanation.pk].value == pytest.approx(expected)
        assert overlap[explanation.pk].version.startswith("rouge-score-0.1.2/rougeL-f1")

        # Consistency, recomputed here another way: greedy output parsed, and HF's own loss per choice target.
        item, predicted = explanation.item, explanation.predicted_answer
        prompt = task_input(TaskKind.COUNTERFACTUAL, item.question_text, item.choices, explanation.text)
        [generated] = generate_texts(student, [prompt], max_input_tokens=512, max_new_tokens=48, batch_size=1)
        returned = parse_answer(generated, item.choices).choice_index
        agrees = returned is not None and normalise(item.choices[returned]) == normalise(predicted)
        row = consistent[explanation.pk]
        assert row.version == f"cf-format-v1|{run.checkpoint_dir}"
        assert row.value == (1.0 if agrees else 0.0) and row.raw_reply == generated
        encoded = student.tokenizer([prompt], return_tensors="pt")
        totals = []
        for choice in item.choices:
            labels = student.tokenizer([counterfactual_target(choice)], return_tensors="pt")["input_ids"]
            with torch.no_grad():
                loss = student.model(**encoded, labels=labels).loss
            totals.append(-float(loss) * labels.shape[1])
        shares = [math.exp(t - max(totals)) for t in totals]
        index = [normalise(c) for c in item.choices].index(normalise(predicted))
        assert probability[explanation.pk].value == pytest.approx(shares[index] / sum(shares), rel=1e-4)
        assert sum(row.detail["choice_probabilities"]) == pytest.approx(1.0)

    # A rerun stores nothing new and says why.
    again = call("score_explanations", "--study", "scored", "--metrics", "length,consistency", "--quiet")
    assert "0 scores stored" in again and "4 skipped: consistency: stored already" in again
    assert ExplanationMetric.objects.count() == 23


def write_replay(path, rows: dict[str, str]) -> str:
    path.write_text("".join(json.dumps({"id": key, "judge:completeness": reply}) + "\n" for key, reply in rows.items()))
    return f"replay:{path}"


def test_judge_through_a_replay_file_keeps_raw_replies_and_records_failures(tmp_path):
    study = build_study(slug="judged", conditions=("A", "B"), n_items=3)
    explanations = list(Explanation.objects.filter(item__study=study).select_related("item", "condition"))
    replies = {explanation_key(e): str(1 + i % 5) for i, e in enumerate(explanations)}
    odd = explanation_key(explanations[0])
    replies[odd] = "Four, mostly complete"
    spec = write_replay(tmp_path / "judge.jsonl", replies)
    output = call("score_explanations", "--study", "judged", "--metrics", "judge:completeness", "--judge", spec)
    assert "6 scores stored" in output and "1 skipped: judge:completeness: reply not a scale point" in output
    stored = scores("judge:completeness")
    for explanation in explanations:
        row = stored[explanation.pk]
        assert row.raw_reply == replies[explanation_key(explanation)]
        assert row.version == f"judge-prompt-v1|{spec}"
    failed = stored[explanations[0].pk]
    assert failed.value is None and "not a point of the 1-5 scale" in failed.detail["failure"]
    assert stored[explanations[1].pk].value == 2.0


def test_judge_through_an_openai_compatible_server(server: FakeServer, settings):  # noqa: F811
    study = build_study(slug="served", conditions=("A",), n_items=3)
    settings.OPENAI_BASE_URL = server.url
    replies = iter(["3", "5.", "I would say 4"])

    def respond(path: str, body: dict, number: int):
        content = {"role": "assistant", "content": next(replies)}
        return 200, {}, {"choices": [{"message": content, "finish_reason": "stop"}]}

    server.respond = respond
    call("score_explanations", "--study", "served", "--metrics", "judge:soundness", "--judge", "openai:judge-7b")
    values = sorted((m.value is None, m.value, m.raw_reply) for m in ExplanationMetric.objects.all())
    assert values == [(False, 3.0, "3"), (False, 5.0, "5."), (True, None, "I would say 4")]
    construct = study.constructs.get(name="soundness")
    for path, body, _ in server.received:
        assert path == "/v1/chat/completions" and body["temperature"] == 0.0 and body["model"] == "judge-7b"
        prompt = body["messages"][0]["content"]
        assert construct.prompt in prompt and "one whole number from 1 to 5" in prompt


def test_embedding_similarity_with_a_checkpoint_and_skipped_without(tmp_path, teacher_data):
    from transformers import BertConfig, BertModel

    from distillation.ml.tiny import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(tmp_path / "embedder")
    tokenizer.save_pretrained(tmp_path / "embedder")

    from annotations.services.studies import condition_get_or_create, explanation_set_text, item_get_or_create
    from distillation.models import Question

    study = study_create(config={"slug": "embedded", "title": "Embedded", "constructs": "default"})
    condition = condition_get_or_create(study=study, label="copy")
    question = Question.objects.filter(split="train").order_by("id").first()
    rationale = TeacherOutput.objects.get(question=question, kind="rationale").text
    item = item_get_or_create(
        study=study,
        key=question.source_id,
        question_text=question.question,
        choices=question.choices,
        answer=question.answer,
        question=question,
    )
    explanation_set_text(item=item, condition=condition, text=rationale, source="manual", provenance={})
    skipped = call("score_explanations", "--study", "embedded", "--metrics", "embedding_similarity", "--quiet")
    assert "embedding_similarity skipped: give a sentence-embedding checkpoint" in skipped
    assert not ExplanationMetric.objects.exists()
    embedder = str(tmp_path / "embedder")
    call("score_explanations", "--study", "embedded", "--metrics", "embedding_similarity", "--embedder", embedder)
    [row] = ExplanationMetric.objects.all()
    assert row.value == pytest.approx(1.0, abs=1e-5)  # the explanation is the teacher's rationale itself


def test_bad_requests_are_refused_and_store_nothing():
    build_study(slug="bad", conditions=("A",), n_items=2)
    call("score_explanations", "--study", "bad", "--metrics", "length", "--quiet")
    before = ExplanationMetric.objects.count()
    with pytest.raises(CommandError, match="unknown metric 'bleu'"):
        call("score_explanations", "--study", "bad", "--metrics", "length,bleu")
    with pytest.raises(CommandError, match="'clarity' is not a construct of bad"):
        call("score_explanations", "--study", "bad", "--metrics", "judge:clarity", "--judge", "replay:x.jsonl")
    with pytest.raises(CommandError, match="judge:soundness needs a judge"):
        call("score_explanations", "--study", "bad", "--metrics", "judge:soundness")
    with pytest.raises(CommandError, match="no model at /no/such/model"):
        call("score_explanations", "--study", "bad", "--metrics", "consistency", "--checkpoint", "/no/such/model")
    with pytest.raises(CommandError, match="no study 'nope'"):
        call("score_explanations", "--study", "nope")
    assert ExplanationMetric.objects.count() == before


def test_admin_action_starts_the_job(admin_client, django_capture_on_commit_callbacks):
    study = build_study(slug="from-admin", conditions=("A",), n_items=2)
    url = reverse("admin:annotations_study_changelist")
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(url, {"action": "score_explanations", "_selected_action": [study.pk]}, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("from-admin: scoring started") for m in shown), shown
    job = Job.objects.get(kind="score_explanations")
    assert job.params["metrics"] == ["length", "teacher_overlap", "consistency"]
    job = execute_job(job.pk)
    assert job.status == Job.Status.DONE, job.error
    assert job.result["skipped"]["teacher_overlap: no teacher rationale for the question"] == 2
    assert job.result["skipped"]["consistency: no student checkpoint (give --checkpoint)"] == 2
    assert ExplanationMetric.objects.filter(name="length_words", job=job).count() == 2


def test_stored_metrics_reach_the_export_the_fingerprint_and_the_report():
    study = build_rated_study("with-metrics")
    before = analysis.ratings_fingerprint(study)
    call("score_explanations", "--study", "with-metrics", "--metrics", "length", "--quiet")
    assert analysis.ratings_fingerprint(study) != before
    out = StringIO()
    analysis.ratings_export(study=study, fmt="csv", destination=out)
    out.seek(0)
    exported = pd.read_csv(out)
    lengths = dict(Explanation.objects.filter(item__study=study).values_list("id", "text"))
    assert (exported["metric:length_chars"] == exported["explanation_id"].map(lambda i: len(lengths[i]))).all()
    report = analysis.analysis_report_get_or_run(study=study, n_boot=50)
    if report.report is None:
        execute_job(report.job_id)
        report.refresh_from_db()
    entries = {(e["metric"], e["construct"]) for e in report.report["automatic_metrics"]}
    assert ("length_chars", "Quality") in entries and ("length_words", "Soundness") in entries


def test_a_stopped_run_keeps_its_batches_and_a_rerun_resumes():
    from annotations.services.metrics import explanation_metrics_compute

    study = build_study(slug="stopped", conditions=("A", "B"), n_items=3)
    seen: list[tuple[int, int, str]] = []

    def stop_after_a_batch(done: int, total: int | None = None, stage: str | None = None, **_) -> None:
        seen.append((done, total, stage))
        if done >= 2:
            raise KeyboardInterrupt("stopped")

    with pytest.raises(KeyboardInterrupt):
        explanation_metrics_compute(study=study, metrics="length", progress=stop_after_a_batch, batch_size=2)
    assert seen[-1] == (2, 6, "scoring length")
    assert ExplanationMetric.objects.filter(name="length_chars").count() == 2
    result = explanation_metrics_compute(study=study, metrics="length", batch_size=2)
    assert result["stored"] == 8 and result["skipped"] == {"length: stored already": 2}
    assert ExplanationMetric.objects.filter(name="length_words").count() == 6
