"""Student training: weighted losses, masking, batching, loss falling, determinism, checkpoints and resume."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
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
    BEST_MODEL_DIR,
    CHECKPOINTS_DIR,
    LOGS_DIR,
    LengthGroupedBatches,
    TrainingConfig,
    TrainingRun,
    length_chunks,
    list_checkpoints,
    per_example_losses,
    split_step,
    train_student,
)

# Short sequences and 2 questions a step keep a tiny-model step near 0.1 s on a shared two-core machine.
FAST = {"max_input_tokens": 160, "max_target_tokens": 64, "batch_size": 2, "learning_rate": 1e-3, "eval_every": 0}


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
    modules = ["answers", "tasks", "students", "collate", "training", "inference", "distributed"]
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
    interrupted_config = config(tmp_path / "parts", method="mtcf", keep_checkpoints=2, keep_checkpoints_after=True)
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


def test_a_finished_run_trains_longer_from_its_last_weights(tmp_path, teacher_examples):
    small = teacher_examples[:24]
    no_dropout = {"method": "mt", "dropout": 0.0, "checkpoint_every": 2}
    # Two runs of the same 6 steps: one keeps its optimizer checkpoint at the end, one (the default) does not.
    kept = config(tmp_path / "kept", max_steps=6, keep_checkpoints_after=True, **no_dropout)
    dropped = config(tmp_path / "dropped", max_steps=6, **no_dropout)
    first_kept, first_dropped = train_student(kept, small), train_student(dropped, small)
    assert first_kept.loss_history == first_dropped.loss_history
    assert not (tmp_path / "dropped" / CHECKPOINTS_DIR).exists()

    rates: list[float] = []
    longer = train_student(
        config(tmp_path / "dropped", max_steps=12, **no_dropout),
        small,
        progress=lambda step, total, stage, metrics: rates.append(metrics["lr"]) if stage == "training" else None,
    )
    assert longer.completed and longer.steps_done == 12 and longer.resumed_from_step == 6
    assert longer.loss_history[:6] == first_dropped.loss_history and len(longer.loss_history) == 12
    assert longer.extensions == [{"from_step": 6, "to_step": 12, "optimizer": "restarted"}]
    # The schedule is re-planned over 12 steps: step 7 runs at lr * (1 - 6/12), not at the 0 the first run ended at.
    assert rates[0] == pytest.approx(FAST["learning_rate"] * 0.5)
    assert [p.step for p in longer.validation] == [0, 6, 12]
    assert not (tmp_path / "dropped" / CHECKPOINTS_DIR).exists()

    kept_longer = train_student(replace(kept, max_steps=12), small)
    assert kept_longer.extensions == [{"from_step": 6, "to_step": 12, "optimizer": "resumed"}]
    # Step 7 starts from the same weights either way (its loss is taken before the update); the moments differ after.
    assert kept_longer.loss_history[6] == pytest.approx(longer.loss_history[6], rel=1e-6)
    assert kept_longer.loss_history[7] != pytest.approx(longer.loss_history[7], rel=1e-6)
    assert longer.loss_history[6] < longer.validation[0].loss  # not the untrained model's

    with pytest.raises(ValueError, match="already trained 12 steps"):
        train_student(config(tmp_path / "dropped", max_steps=8, **no_dropout), small)
    again = train_student(config(tmp_path / "dropped", max_steps=12, **no_dropout), small)
    assert again.completed and again.loss_history == longer.loss_history


def test_an_interrupted_extension_resumes_its_own_checkpoint(tmp_path, teacher_examples):
    small = teacher_examples[:24]
    options = {"method": "mt", "dropout": 0.0, "checkpoint_every": 2}
    train_student(config(tmp_path, max_steps=4, **options), small)
    steps: list[int] = []
    stopped = train_student(
        config(tmp_path, max_steps=10, **options),
        small,
        progress=lambda step, total, stage, _: steps.append(step) if stage == "training" else None,
        should_stop=lambda: len(steps) >= 3,
    )
    assert not stopped.completed and stopped.steps_done == 7
    finished = train_student(config(tmp_path, max_steps=10, **options), small)
    assert finished.completed and finished.steps_done == 10 and finished.resumed_from_step == 7
    assert finished.loss_history[:7] == stopped.loss_history
    assert finished.extensions == [{"from_step": 4, "to_step": 10, "optimizer": "restarted"}]


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


def test_a_step_holds_every_task_of_its_questions_and_its_loss_is_the_formula(tmp_path, teacher_examples):
    """4 questions a step under MT+CF: exactly their 16 task sequences, and the step loss computed by hand as
    a*g*L_answer + (1-a)*g*L_explain + b*(1-g)*L_factual + (1-b)*(1-g)*L_counterfactual, each L a token mean over
    that task's sequences in the step (lr 0 and no dropout, so every step sees the initial model)."""
    weights = ObjectiveWeights(alpha=0.3, beta=0.8, gamma=0.6)
    run_config = config(
        tmp_path, method="mtcf", batch_size=4, learning_rate=0.0, dropout=0.0, max_steps=3, alpha=0.3, beta=0.8,
        gamma=0.6, max_input_tokens=96, max_target_tokens=48,
    )  # fmt: skip
    run = TrainingRun(run_config, teacher_examples, None, None, None)
    student = load_student("tiny", seed=run_config.seed)
    student.model.eval()
    tokenizer = student.tokenizer
    formula = weights.formula_weights(Method.MTCF)
    seen_questions: list[str] = []
    for step in range(3):
        tasks = [run.train_tasks[i] for i in run.step_sequences(step)]
        questions = {task.source_id for task in tasks}
        assert len(tasks) == 16 and len(questions) == 4
        for question in questions:
            assert sorted(t.kind.value for t in tasks if t.source_id == question) == sorted(k.value for k in formula)
        seen_questions += questions

        sums = dict.fromkeys(formula, 0.0)
        tokens = dict.fromkeys(formula, 0)
        with torch.no_grad():
            for task in tasks:
                inputs = tokenizer(task.input_text, truncation=True, max_length=96, return_tensors="pt")
                labels = tokenizer(task.target_text, truncation=True, max_length=48, return_tensors="pt").input_ids
                mean = student.model(**inputs, labels=labels).loss.item()
                sums[task.kind] += mean * labels.shape[1]
                tokens[task.kind] += labels.shape[1]
        by_hand = sum(formula[kind] * sums[kind] / tokens[kind] for kind in formula)
        assert run.train_step(step)["loss"] == pytest.approx(by_hand, rel=1e-5)
    assert len(set(seen_questions)) == 12  # an epoch does not repeat a question


def test_grad_accumulation_splits_a_step_without_changing_it(tmp_path, teacher_examples):
    small = teacher_examples[:24]
    whole = train_student(config(tmp_path / "1", method="mtcf", batch_size=4, max_steps=4, dropout=0.0), small)
    split = train_student(
        config(tmp_path / "4", method="mtcf", batch_size=4, max_steps=4, dropout=0.0, grad_accum_steps=4), small
    )
    assert np.allclose(whole.loss_history, split.loss_history, rtol=1e-5)
    assert whole.loss_history[0] != whole.loss_history[-1]
    with pytest.raises(ValueError, match="cannot be split"):
        train_student(config(tmp_path / "x", method="mt", batch_size=2, grad_accum_steps=4), small)


def test_a_micro_batch_of_long_and_short_targets_runs_in_chunks_that_cut_padding():
    from distillation.ml.collate import RaggedIds, TokenizedTasks

    def tasks(inputs: list[int], targets: list[int]) -> TokenizedTasks:
        zeros = np.zeros(len(inputs), dtype=np.int64)
        return TokenizedTasks(
            inputs=RaggedIds.from_lists([[5] * n for n in inputs]),
            targets=RaggedIds.from_lists([[5] * n for n in targets]),
            prompt_lengths=zeros,
            weights=np.ones(len(inputs)),
            kind_codes=zeros,
            is_encoder_decoder=True,
        )

    # Four explanations (100 target tokens) and four answers (10): one batch is 18% padding, two are none.
    mixed = tasks([100] * 8, [100] * 4 + [10] * 4)
    order = np.arange(8)
    chunks = length_chunks(order, mixed, max_chunks=4)
    assert [list(chunk) for chunk in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert length_chunks(order, mixed, max_chunks=1) == [order]
    same = tasks([100] * 8, [50] * 8)
    assert [list(chunk) for chunk in length_chunks(order, same, max_chunks=4)] == [list(order)]


def test_split_step_partitions_the_step_longest_first():
    lengths = np.array([5, 9, 1, 7, 3, 8, 2])
    parts = split_step(np.arange(7), lengths, 3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(7)) and [len(p) for p in parts] == [3, 2, 2]
    assert parts[0].tolist() == [1, 5, 3]


def test_evaluation_keeps_the_best_model_stops_early_and_leaves_no_optimizer_state(tmp_path, teacher_examples):
    result = train_student(
        config(tmp_path, method="mt", max_steps=12, eval_every=2, early_stop=1, max_answer_tokens=8),
        teacher_examples[:40],
    )
    evaluated = [point for point in result.validation if point.accuracy is not None]
    assert evaluated and all(point.step % 2 == 0 for point in evaluated)
    assert all(0.0 <= point.accuracy <= 1.0 and point.n_questions == evaluated[0].n_questions for point in evaluated)
    best = max(evaluated, key=lambda point: point.accuracy)
    assert result.best_step == min(p.step for p in evaluated if p.accuracy == best.accuracy)
    assert result.model_dir == tmp_path / BEST_MODEL_DIR and (result.model_dir / "evalsite_student.json").is_file()
    # With early_stop=1 the run ends at the first evaluation that does not beat the best.
    if result.stopped_early:
        assert result.steps_done < 12 and evaluated[-1].accuracy <= best.accuracy
    else:
        assert result.steps_done == 12
    assert not (tmp_path / CHECKPOINTS_DIR).exists()
    assert not list(tmp_path.rglob("optimizer*"))
    again = train_student(
        config(tmp_path, method="mt", max_steps=12, eval_every=2, early_stop=1, max_answer_tokens=8),
        teacher_examples[:40],
    )
    assert again.completed and again.loss_history == result.loss_history and again.best_step == result.best_step


def test_the_curves_go_to_tensorboard(tmp_path, teacher_examples):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_student(config(tmp_path, method="mt", max_steps=2, eval_every=2, max_answer_tokens=8), teacher_examples[:20])
    curves = EventAccumulator(str(tmp_path / LOGS_DIR / "training"))  # its sub-folders hold the hyper-parameters
    curves.Reload()
    tags = curves.Tags()["scalars"]
    assert {"train/loss", "train/lr", "validation/loss", "validation/accuracy"} <= set(tags)
    assert [event.step for event in curves.Scalars("train/loss")] == [1, 2]
    assert [event.step for event in curves.Scalars("validation/loss")] == [0, 2]


def test_the_tiny_t5_head_is_untied_and_starts_near_uniform(tmp_path, teacher_examples):
    student = load_student("tiny")
    model = student.model
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    assert model.encoder.embed_tokens.weight.data_ptr() == model.shared.weight.data_ptr()
    result = train_student(config(tmp_path, method="mt", max_steps=1, eval_every=0), teacher_examples[:20])
    assert result.loss_history[0] < 1.5 * np.log(len(student.tokenizer))  # an unscaled tied head starts at ~34
    reloaded = load_student(result.final_model_dir).model
    assert reloaded.lm_head.weight.data_ptr() != reloaded.shared.weight.data_ptr()
    assert not torch.equal(reloaded.lm_head.weight, reloaded.shared.weight)


def test_truncation_is_reported_per_task(tmp_path, teacher_examples):
    seen = {}
    train_student(
        config(tmp_path, method="mtcf", max_steps=1, max_input_tokens=200, max_target_tokens=300),
        teacher_examples[:20],
        progress=lambda step, total, stage, metrics: seen.update(metrics) if stage == "tokens cut" else None,
    )
    # Byte tokens: every counterfactual input (question, choices and a rationale) is longer than 200.
    assert seen["counterfactual_inputs_cut"] > 0.9 and seen["answer_targets_cut"] == 0.0
    assert set(seen) == {
        f"{k}_{p}" for k in ("answer", "explain", "factual", "counterfactual") for p in ("inputs_cut", "targets_cut")
    }


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
