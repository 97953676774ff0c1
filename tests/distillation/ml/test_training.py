"""Student training: weighted losses, masking, batching, loss falling, determinism, checkpoints and resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from distillation.ml.collate import IGNORE_INDEX, TaskCollator, tokenize_tasks
from distillation.ml.inference import InferenceConfig, evaluate_student
from distillation.ml.students import load_student
from distillation.ml.tasks import (
    Method,
    ObjectiveWeights,
    Question,
    TeacherExample,
    build_task_examples,
    load_teacher_examples,
)
from distillation.ml.training import (
    LengthGroupedBatches,
    TrainingConfig,
    list_checkpoints,
    per_example_losses,
    train_student,
)

# Short sequences keep a tiny-model step near 0.1 s on a shared two-core machine.
FAST = {"max_input_tokens": 160, "max_target_tokens": 64, "batch_size": 8, "learning_rate": 1e-3}


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    """Two shared cores: one intra-op thread avoids oversubscription, which made steps 5x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def teacher_examples(data_dir: Path) -> list[TeacherExample]:
    return load_teacher_examples(data_dir / "teacher" / "cqa-llama2-13b-train.jsonl.gz", limit=64)


def config(tmp_path: Path, **overrides) -> TrainingConfig:
    return TrainingConfig(**{"max_steps": 30, "checkpoint_every": 10, "output_dir": str(tmp_path), **FAST, **overrides})


def test_training_modules_import_without_torch():
    modules = ["answers", "tasks", "students", "collate", "training", "inference"]
    code = "import sys\n" + "".join(f"import distillation.ml.{name}\n" for name in modules)
    code += "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])


@pytest.mark.parametrize("method", ["mt", "cf", "mtcf"])
def test_loss_falls_for_each_method(tmp_path, teacher_examples, method):
    seen: list[tuple[int, str]] = []
    result = train_student(
        config(tmp_path, method=method),
        teacher_examples,
        progress=lambda step, total, stage, _: seen.append((step, stage)),
    )
    losses = result.loss_history
    assert result.completed and result.steps_done == 30 and len(losses) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    before, after = result.validation[0], result.validation[-1]
    assert (before.step, after.step) == (0, 30)
    assert after.loss < before.loss
    assert [step for step, stage in seen if stage == "training"] == list(range(1, 31))
    assert (result.final_model_dir / "evalsite_student.json").is_file()


@pytest.mark.slow  # three 15-30 step runs: about 20 s on two shared cores
def test_same_seed_same_losses_and_resume_matches_uninterrupted(tmp_path, teacher_examples):
    uninterrupted = train_student(config(tmp_path / "whole", method="mtcf"), teacher_examples)

    steps_done = []
    interrupted_config = config(tmp_path / "parts", method="mtcf", keep_checkpoints=2)
    stopped = train_student(
        interrupted_config,
        teacher_examples,
        progress=lambda step, total, stage, _: steps_done.append(step) if stage == "training" else None,
        should_stop=lambda: len(steps_done) >= 15,
    )
    assert not stopped.completed and stopped.steps_done == 15 and stopped.final_model_dir is None
    assert stopped.last_checkpoint.name == "step-00000015"
    assert stopped.loss_history == uninterrupted.loss_history[:15]

    resumed = train_student(interrupted_config, teacher_examples)
    assert resumed.completed and resumed.resumed_from_step == 15 and resumed.steps_done == 30
    assert np.allclose(resumed.loss_history, uninterrupted.loss_history, rtol=1e-5)
    assert [path.name for path in list_checkpoints(tmp_path / "parts")] == ["step-00000020", "step-00000030"]

    whole = load_student(uninterrupted.final_model_dir).model.state_dict()
    parts = load_student(resumed.final_model_dir).model.state_dict()
    assert whole.keys() == parts.keys()
    for name, tensor in whole.items():
        assert torch.allclose(tensor, parts[name], atol=1e-5), name

    # A finished run called again returns what it has instead of training on.
    again = train_student(interrupted_config, teacher_examples)
    assert again.completed and again.loss_history == resumed.loss_history


def test_resuming_with_another_config_is_refused(tmp_path, teacher_examples):
    small = teacher_examples[:20]
    train_student(config(tmp_path, method="mt", max_steps=2, checkpoint_every=1), small)
    with pytest.raises(ValueError, match="learning_rate"):
        train_student(config(tmp_path, method="mt", max_steps=2, learning_rate=0.5), small)
    with pytest.raises(ValueError, match="different training data"):
        train_student(config(tmp_path, method="mt", max_steps=2), teacher_examples[20:40])


def test_per_example_loss_is_the_token_mean_of_that_example_alone(teacher_examples):
    """Padding must not count: each example's loss in a padded batch equals its loss computed on its own."""
    student = load_student("tiny", seed=1)
    tasks = build_task_examples(teacher_examples[:2], Method.MTCF)
    tokenized = tokenize_tasks(
        tasks, student.tokenizer, is_encoder_decoder=True, max_input_tokens=120, max_target_tokens=48
    )
    collator = TaskCollator(student.tokenizer.pad_token_id, student.model.config.decoder_start_token_id)
    student.model.eval()
    indices = np.arange(len(tasks))
    with torch.no_grad():
        batched = per_example_losses(student.model, collator(tokenized, indices), True, "cpu")
        alone = []
        for index in indices:
            single = collator(tokenized, np.array([index]))
            alone.append(student.model(input_ids=single["input_ids"], labels=single["labels"]).loss)
    assert torch.allclose(batched, torch.stack(alone), atol=1e-4)


def test_batch_loss_equals_the_paper_formula_for_one_question():
    """With all K tasks of one question in a batch, mean(weight * loss) is sum_k w_k * L_k."""
    weights = ObjectiveWeights(alpha=0.3, beta=0.8, gamma=0.6)
    formula = weights.formula_weights(Method.MTCF)
    example_weights = weights.example_weights(Method.MTCF)
    task_losses = {kind: 1.0 + index for index, kind in enumerate(formula)}
    batch_loss = np.mean([example_weights[kind] * loss for kind, loss in task_losses.items()])
    expected = sum(formula[kind] * loss for kind, loss in task_losses.items())
    assert batch_loss == pytest.approx(expected)
    assert formula == pytest.approx(
        {"answer": 0.6 * 0.3, "explain": 0.6 * 0.7, "factual": 0.4 * 0.8, "counterfactual": 0.4 * 0.2}
    )


def test_length_grouped_batches_are_seeded_cover_each_epoch_and_cut_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 500, size=1000)
    batches = LengthGroupedBatches(lengths, batch_size=16, seed=3, mega_batch_factor=10)
    epoch = [batches.batch(step) for step in range(batches.batches_per_epoch)]
    flat = np.concatenate(epoch)
    assert len(np.unique(flat)) == len(flat) == 62 * 16
    again = LengthGroupedBatches(lengths, batch_size=16, seed=3, mega_batch_factor=10)
    assert all(np.array_equal(batches.batch(step), again.batch(step)) for step in (0, 5, 61, 62, 130))
    assert not np.array_equal(batches.batch(0), batches.batch(62))  # a new epoch is reshuffled

    def padding(groups):
        return sum(int(lengths[g].max() * len(g) - lengths[g].sum()) for g in groups)

    random_batches = np.split(rng.permutation(1000)[: 62 * 16], 62)
    assert padding(epoch) < 0.2 * padding(random_batches)


def test_decoder_only_student_masks_its_prompt_trains_and_evaluates(tmp_path, teacher_examples):
    student = load_student("tiny-causal")
    tasks = build_task_examples(teacher_examples[:3], Method.MT)
    tokenized = tokenize_tasks(
        tasks, student.tokenizer, is_encoder_decoder=False, max_input_tokens=160, max_target_tokens=400
    )
    batch = TaskCollator(student.tokenizer.pad_token_id)(tokenized, np.arange(len(tasks)))
    labels, mask = batch["labels"], batch["attention_mask"].bool()
    for row, prompt_length in enumerate(tokenized.prompt_lengths):
        assert (labels[row, :prompt_length] == IGNORE_INDEX).all()
        assert (labels[row, ~mask[row]] == IGNORE_INDEX).all()
        target = labels[row, prompt_length : int(mask[row].sum())]
        assert student.tokenizer.decode(target, skip_special_tokens=True) == tasks[row].target_text

    result = train_student(
        config(tmp_path, student="tiny-causal", method="mt", max_steps=16, max_input_tokens=128, max_target_tokens=48),
        teacher_examples,
    )
    assert np.mean(result.loss_history[-5:]) < np.mean(result.loss_history[:5])
    assert result.validation[-1].loss < result.validation[0].loss

    questions = [Question(e.source_id, e.question, e.choices, e.answer) for e in teacher_examples[:4]]
    evaluation = evaluate_student(
        result.final_model_dir,
        questions,
        config=InferenceConfig(batch_size=4, max_input_tokens=160, max_answer_tokens=24, max_explanation_tokens=24),
    )
    assert [record.source_id for record in evaluation.records] == [q.source_id for q in questions]
    assert evaluation.accuracy.n_questions == 4
    assert all(record.is_correct is not None for record in evaluation.records)
