"""Distil a student with the MT, CF or MT+CF objective: batching, weighted losses, checkpoints and resume.

One optimizer step takes ``batch_size`` task sequences drawn from the pool of all tasks of all training
questions (so the paper's 48 questions with two MT tasks each is ``batch_size=96``), runs them through the
model in one forward pass per micro-batch, and minimises the mean of ``weight * token-mean loss`` (see
``distillation.ml.tasks`` for why that equals the paper's loss formula in expectation).

Several GPUs or machines: every process runs ``train_student`` with the same config and examples, e.g. a
script or management command started with ``accelerate launch --num_processes 4 manage.py <command> ...``
(``accelerate config`` once per machine for multi-node). Each global batch is split across processes and
``grad_accum_steps`` micro-batches, so ``batch_size`` must be a multiple of processes * accumulation steps
and the optimisation does not depend on the number of GPUs. The output directory must be shared by all
processes; only the main process writes models and calls ``progress``. bf16 autocast is used on GPUs that
support it (``precision="auto"``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distillation.ml.collate import IGNORE_INDEX, TASK_KIND_CODES, TaskCollator, tokenize_tasks
from distillation.ml.tasks import (
    Method,
    ObjectiveWeights,
    TaskExample,
    TeacherExample,
    build_task_examples,
    split_validation,
)

CHECKPOINTS_DIR = "checkpoints"
FINAL_MODEL_DIR = "final"
TRAINER_STATE_FILE = "trainer_state.json"
CHECKPOINT_PREFIX = "step-"

ProgressCallback = Callable[[int, int, str, dict[str, float]], None]
StopCallback = Callable[[], bool]

# Changing these between a run and its resumption is harmless; any other field changes the optimisation.
_RESUMABLE_FIELDS = {"output_dir", "checkpoint_every", "keep_checkpoints", "eval_every", "eval_batch_size"}


@dataclass
class TrainingConfig:
    """Everything that defines a training run. Defaults are the paper's (T5, batch 48, lr 5e-5, 5,000 steps)."""

    student: str = "tiny"
    method: str = Method.MTCF.value
    alpha: float = 0.5
    beta: float = 0.5
    gamma: float = 0.5
    seed: int = 0
    max_steps: int = 5000
    batch_size: int = 48
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    grad_accum_steps: int = 1
    max_input_tokens: int = 300
    max_target_tokens: int = 300
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    validation_fraction: float = 0.1
    eval_every: int = 0
    eval_batch_size: int = 32
    mega_batch_factor: int = 50
    precision: str = "auto"
    output_dir: str = "var/students/run"

    def __post_init__(self) -> None:
        self.method = Method(self.method).value
        if self.max_steps < 1 or self.batch_size < 1 or self.grad_accum_steps < 1:
            raise ValueError("max_steps, batch_size and grad_accum_steps must be positive")
        if self.precision not in {"auto", "fp32", "bf16", "fp16"}:
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")

    @property
    def objective_weights(self) -> ObjectiveWeights:
        return ObjectiveWeights(self.alpha, self.beta, self.gamma)


@dataclass
class ValidationPoint:
    step: int
    loss: float
    task_losses: dict[str, float]


@dataclass
class TrainingResult:
    output_dir: Path
    final_model_dir: Path | None
    completed: bool
    steps_done: int
    resumed_from_step: int | None
    loss_history: list[float]
    validation: list[ValidationPoint]
    last_checkpoint: Path | None


@dataclass
class _TrainerState:
    """What a checkpoint records besides the accelerate state; the data position is the step itself."""

    step: int = 0
    loss_history: list[float] = field(default_factory=list)
    validation: list[ValidationPoint] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> _TrainerState:
        raw = json.loads(text)
        raw["validation"] = [ValidationPoint(**point) for point in raw["validation"]]
        return cls(**raw)


class LengthGroupedBatches:
    """A seeded, epoch-wise batch order where each batch holds sequences of similar length.

    Per epoch: shuffle, cut into mega-batches of ``mega_batch_factor`` batches, sort each by length, cut
    into batches, shuffle the batches. The order is a pure function of (seed, step), so a resumed run
    continues with exactly the batches the interrupted one would have seen. The last partial batch of an
    epoch is dropped (a different one each epoch), so every step has the same number of sequences.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, mega_batch_factor: int = 50) -> None:
        if len(lengths) < batch_size:
            raise ValueError(f"{len(lengths)} training sequences cannot fill a batch of {batch_size}")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.mega_batch_size = batch_size * max(mega_batch_factor, 1)
        self.batches_per_epoch = len(lengths) // batch_size
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def batch(self, step: int) -> np.ndarray:
        epoch, position = divmod(step, self.batches_per_epoch)
        return self._epoch_batches(epoch)[position]

    def _epoch_batches(self, epoch: int) -> np.ndarray:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.lengths))[: self.batches_per_epoch * self.batch_size]
            grouped = np.concatenate(
                [
                    mega[np.argsort(-self.lengths[mega], kind="stable")]
                    for mega in np.split(order, range(self.mega_batch_size, len(order), self.mega_batch_size))
                ]
            )
            batches = grouped.reshape(self.batches_per_epoch, self.batch_size)
            self._epoch_cache = (epoch, batches[rng.permutation(self.batches_per_epoch)])
        return self._epoch_cache[1]


def per_example_losses(model: Any, batch: dict[str, Any], is_encoder_decoder: bool, device: Any) -> Any:
    """Each sequence's mean token cross-entropy over its labelled positions (prompt and padding excluded)."""
    import torch.nn.functional as F

    inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}
    if is_encoder_decoder:
        inputs["decoder_input_ids"] = batch["decoder_input_ids"].to(device)
    logits = model(**inputs, use_cache=False).logits
    labels = batch["labels"].to(device)
    if not is_encoder_decoder:
        logits, labels = logits[:, :-1], labels[:, 1:]
    token_losses = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(labels.shape)
    counts = (labels != IGNORE_INDEX).sum(dim=1).clamp(min=1)
    return token_losses.sum(dim=1) / counts


def resolve_precision(precision: str) -> str:
    """Accelerate's mixed-precision name: bf16 on a GPU that has it when ``auto``, full precision otherwise."""
    import torch

    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return {"fp32": "no"}.get(precision, precision)


def train_student(
    config: TrainingConfig,
    examples: Sequence[TeacherExample],
    *,
    progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> TrainingResult:
    """Train (or resume training) a student on the tasks of ``examples``, the training split's questions.

    Holds out ``validation_fraction`` of the questions (seeded) for validation losses, reported before
    training, every ``eval_every`` steps and at the end. Resumes from the last checkpoint in
    ``output_dir`` when there is one (refusing one made with another config or data). ``should_stop`` is
    checked between steps; stopping leaves a checkpoint behind and returns ``completed=False``.
    """
    return _Run(config, examples, progress, should_stop).execute()


class _Run:
    """One call of ``train_student``: holds the model, data and accelerator while it trains."""

    def __init__(
        self,
        config: TrainingConfig,
        examples: Sequence[TeacherExample],
        progress: ProgressCallback | None,
        should_stop: StopCallback | None,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.config = config
        self.output_dir = Path(config.output_dir)
        self.checkpoints_dir = self.output_dir / CHECKPOINTS_DIR
        self.accelerator = Accelerator(mixed_precision=resolve_precision(config.precision))
        self._progress = progress
        self._should_stop = should_stop
        set_seed(config.seed)
        self._check_batch_split()
        self._prepare_data_and_model(examples)

    def _check_batch_split(self) -> None:
        parts = self.accelerator.num_processes * self.config.grad_accum_steps
        if self.config.batch_size % parts:
            raise ValueError(
                f"batch_size {self.config.batch_size} must be a multiple of processes x grad_accum_steps ({parts})"
            )
        self.micro_batch_size = self.config.batch_size // parts

    def _prepare_data_and_model(self, examples: Sequence[TeacherExample]) -> None:
        import torch

        from distillation.ml.students import load_student

        config = self.config
        self.report(0, "tokenising", {})
        train_examples, validation_examples = split_validation(examples, config.validation_fraction, config.seed)
        train_tasks = build_task_examples(train_examples, Method(config.method), config.objective_weights, config.seed)
        validation_tasks = build_task_examples(
            validation_examples, Method(config.method), config.objective_weights, config.seed
        )
        self.data_fingerprint = fingerprint_tasks(train_tasks, validation_tasks)

        self.student = load_student(config.student, seed=config.seed)
        is_encoder_decoder = self.student.is_encoder_decoder
        tokenize_args = {
            "is_encoder_decoder": is_encoder_decoder,
            "max_input_tokens": config.max_input_tokens,
            "max_target_tokens": config.max_target_tokens,
        }
        self.train_data = tokenize_tasks(train_tasks, self.student.tokenizer, **tokenize_args)
        self.validation_data = tokenize_tasks(validation_tasks, self.student.tokenizer, **tokenize_args)
        self.batches = LengthGroupedBatches(
            self.train_data.sequence_lengths(), config.batch_size, config.seed, config.mega_batch_factor
        )
        model_config = self.student.model.config
        self.collator = TaskCollator(
            pad_token_id=self.student.tokenizer.pad_token_id,
            decoder_start_token_id=getattr(model_config, "decoder_start_token_id", None),
        )

        optimizer = torch.optim.AdamW(
            self.student.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        # Linear decay to zero over max_steps, no warm-up (the paper's schedule); stepped once per optimizer
        # step by us, not by accelerate, which would step it once per process.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(0.0, 1.0 - step / config.max_steps)
        )
        self.model, self.optimizer = self.accelerator.prepare(self.student.model, optimizer)
        self.accelerator.register_for_checkpointing(self.scheduler)

    # -- the run --------------------------------------------------------------------------------------

    def execute(self) -> TrainingResult:
        state, resumed_from = self._start_or_resume()
        final_dir = self.output_dir / FINAL_MODEL_DIR
        if state.step >= self.config.max_steps and final_dir.is_dir():
            return self._result(state, resumed_from, final_dir, completed=True)
        if resumed_from is None:
            state.validation.append(self.validate(0))

        last_saved_step = state.step if resumed_from is not None else -1
        while state.step < self.config.max_steps:
            if self._stop_requested():
                if last_saved_step != state.step:
                    self.save_checkpoint(state)
                return self._result(state, resumed_from, None, completed=False)
            metrics = self.train_step(state.step)
            state.step += 1
            state.loss_history.append(metrics["loss"])
            self.report(state.step, "training", metrics)
            finished = state.step == self.config.max_steps
            if finished or (self.config.eval_every and state.step % self.config.eval_every == 0):
                state.validation.append(self.validate(state.step))
            if finished or state.step % self.config.checkpoint_every == 0:
                self.save_checkpoint(state)
                last_saved_step = state.step

        self.save_final_model(state, final_dir)
        return self._result(state, resumed_from, final_dir, completed=True)

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step over this process's share of the step's global batch."""
        import torch

        started = time.perf_counter()
        self.model.train()
        accelerator = self.accelerator
        world, rank = accelerator.num_processes, accelerator.process_index
        # Interleaved so each process gets long and short sequences alike from the length-sorted batch.
        mine = self.batches.batch(step)[rank::world]
        step_loss = torch.zeros((), device=accelerator.device)
        n_tokens = 0
        accumulation = self.config.grad_accum_steps
        for micro_step in range(accumulation):
            indices = mine[micro_step * self.micro_batch_size : (micro_step + 1) * self.micro_batch_size]
            batch = self.collator(self.train_data, indices)
            n_tokens += batch["n_tokens"]
            last = micro_step == accumulation - 1
            with nullcontext() if last else accelerator.no_sync(self.model):
                losses = per_example_losses(self.model, batch, self.train_data.is_encoder_decoder, accelerator.device)
                loss = (losses * batch["weights"].to(accelerator.device)).mean() / accumulation
                accelerator.backward(loss)
            step_loss += loss.detach()
        if self.config.max_grad_norm:
            accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        learning_rate = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

        totals = torch.tensor([float(n_tokens)], device=accelerator.device)
        mean_loss = accelerator.reduce(step_loss, reduction="mean").item()
        all_tokens = accelerator.reduce(totals, reduction="sum").item()
        seconds = max(time.perf_counter() - started, 1e-9)
        return {
            "loss": mean_loss,
            "lr": learning_rate,
            "examples_per_s": self.config.batch_size / seconds,
            "tokens_per_s": all_tokens / seconds,
        }

    def validate(self, step: int) -> ValidationPoint:
        """The weighted objective and each task's mean loss on the held-out questions."""
        import torch

        self.report(step, "validating", {})
        data = self.validation_data
        n_kinds = len(TASK_KIND_CODES)
        # Per kind: sum of losses, sum of weighted losses, count; summed over processes at the end.
        sums = torch.zeros(3, n_kinds, dtype=torch.float64, device=self.accelerator.device)
        order = np.argsort(data.sequence_lengths(), kind="stable")
        chunks = [order[i : i + self.config.eval_batch_size] for i in range(0, len(order), self.config.eval_batch_size)]
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        self.model.eval()
        with torch.inference_mode():
            for indices in chunks[rank::world]:
                batch = self.collator(data, indices)
                losses = per_example_losses(self.model, batch, data.is_encoder_decoder, self.accelerator.device)
                kinds = batch["kind_codes"].to(sums.device)
                weighted = losses * batch["weights"].to(losses.device)
                sums[0].index_add_(0, kinds, losses.double())
                sums[1].index_add_(0, kinds, weighted.double())
                sums[2].index_add_(0, kinds, torch.ones_like(losses, dtype=torch.float64))
        sums = self.accelerator.reduce(sums, reduction="sum").cpu()
        n_examples = float(sums[2].sum())
        task_losses = {
            kind.value: float(sums[0, code] / sums[2, code])
            for kind, code in TASK_KIND_CODES.items()
            if sums[2, code] > 0
        }
        objective = float(sums[1].sum() / n_examples) if n_examples else float("nan")
        point = ValidationPoint(step=step, loss=objective, task_losses=task_losses)
        self.report(step, "validated", {"validation_loss": objective})
        return point

    # -- checkpoints ----------------------------------------------------------------------------------

    def _start_or_resume(self) -> tuple[_TrainerState, int | None]:
        fresh = _TrainerState(config=comparable_config(self.config), data_fingerprint=self.data_fingerprint)
        checkpoint = latest_checkpoint(self.output_dir)
        if checkpoint is None:
            return fresh, None
        saved = _TrainerState.from_json((checkpoint / TRAINER_STATE_FILE).read_text())
        differences = sorted(
            key for key in fresh.config.keys() | saved.config.keys() if fresh.config.get(key) != saved.config.get(key)
        )
        if differences:
            raise ValueError(f"{checkpoint} was made with a different config ({', '.join(differences)})")
        if saved.data_fingerprint != self.data_fingerprint:
            raise ValueError(f"{checkpoint} was made with different training data")
        self.report(saved.step, "resuming", {})
        self.accelerator.load_state(str(checkpoint))
        return saved, saved.step

    def save_checkpoint(self, state: _TrainerState) -> Path:
        """Model, optimizer, scheduler and RNG states plus our state, written to a temporary dir then renamed."""
        accelerator = self.accelerator
        self.report(state.step, "saving", {})
        final = self.checkpoints_dir / f"{CHECKPOINT_PREFIX}{state.step:08d}"
        temporary = self.checkpoints_dir / f".tmp-{final.name}"
        if accelerator.is_main_process:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(temporary))
        if accelerator.is_main_process:
            (temporary / TRAINER_STATE_FILE).write_text(state.to_json())
            shutil.rmtree(final, ignore_errors=True)
            os.replace(temporary, final)
            prune_checkpoints(self.checkpoints_dir, self.config.keep_checkpoints)
        accelerator.wait_for_everyone()
        return final

    def save_final_model(self, state: _TrainerState, final_dir: Path) -> None:
        from distillation.ml.students import Student, save_student

        accelerator = self.accelerator
        self.report(state.step, "saving", {})
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            temporary = final_dir.with_name(f".tmp-{final_dir.name}")
            shutil.rmtree(temporary, ignore_errors=True)
            model = accelerator.unwrap_model(self.model)
            metadata = {
                "method": self.config.method,
                "student": self.config.student,
                "steps": state.step,
                "training_config": asdict(self.config),
                "validation": [asdict(point) for point in state.validation],
            }
            student = Student(model, self.student.tokenizer, self.student.is_encoder_decoder, self.config.student)
            save_student(student, temporary, metadata=metadata)
            shutil.rmtree(final_dir, ignore_errors=True)
            os.replace(temporary, final_dir)
        accelerator.wait_for_everyone()

    # -- helpers --------------------------------------------------------------------------------------

    def _stop_requested(self) -> bool:
        """The main process's answer, shared so that every process stops at the same step."""
        import torch

        wanted = bool(self._should_stop and self.accelerator.is_main_process and self._should_stop())
        if self.accelerator.num_processes == 1:
            return wanted
        flag = torch.tensor([1.0 if wanted else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def report(self, step: int, stage: str, metrics: dict[str, float]) -> None:
        if self._progress is not None and self.accelerator.is_main_process:
            self._progress(step, self.config.max_steps, stage, metrics)

    def _result(
        self, state: _TrainerState, resumed_from: int | None, final_dir: Path | None, *, completed: bool
    ) -> TrainingResult:
        return TrainingResult(
            output_dir=self.output_dir,
            final_model_dir=final_dir,
            completed=completed,
            steps_done=state.step,
            resumed_from_step=resumed_from,
            loss_history=list(state.loss_history),
            validation=list(state.validation),
            last_checkpoint=latest_checkpoint(self.output_dir),
        )


def comparable_config(config: TrainingConfig) -> dict[str, Any]:
    return {key: value for key, value in asdict(config).items() if key not in _RESUMABLE_FIELDS}


def fingerprint_tasks(*task_lists: Sequence[TaskExample]) -> str:
    """A hash of every task's texts and weight, to refuse resuming a run on other data."""
    digest = hashlib.sha256()
    for tasks in task_lists:
        digest.update(b"\x1e")
        for task in tasks:
            digest.update(f"{task.source_id}\x1f{task.kind}\x1f{task.weight!r}\x1f".encode())
            digest.update(task.input_text.encode())
            digest.update(b"\x1f")
            digest.update(task.target_text.encode())
    return digest.hexdigest()


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints (temporary dirs excluded), oldest first."""
    directory = Path(output_dir) / CHECKPOINTS_DIR
    if not directory.is_dir():
        return []
    found = [
        path
        for path in directory.iterdir()
        if path.is_dir() and path.name.startswith(CHECKPOINT_PREFIX) and (path / TRAINER_STATE_FILE).is_file()
    ]
    return sorted(found, key=lambda path: int(path.name.removeprefix(CHECKPOINT_PREFIX)))


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def prune_checkpoints(checkpoints_dir: Path, keep: int) -> None:
    for stale in list_checkpoints(checkpoints_dir.parent)[: -max(keep, 1)]:
        shutil.rmtree(stale, ignore_errors=True)
