"""Distil a student with the MT, CF or MT+CF objective: steps of whole questions, checkpoints, resume, best model.

A step takes ``batch_size`` training *questions* and every task of each of them (the paper's 48 questions are
96 sequences under MT and 192 under MT+CF). Its loss is the method's formula on that step,
``sum_k w_k * L_k``, where ``L_k`` is the token mean of task k's loss over that task's sequences in the step
(what a Hugging Face loss over a batch of task k is). The step's sequences are sorted by length and cut into
``processes x grad_accum_steps`` micro-batches; each micro-batch's share is normalised by the step's whole
token counts, so the summed gradients are those of the whole step, however it is split.

Several GPUs or machines: every process runs ``train_student`` with the same config and examples, e.g. a
management command started with ``torchrun --nproc_per_node 4 manage.py train_student ...`` or
``accelerate launch``. The output directory must be shared; only the main process writes models and calls
``progress``. Every ``eval_every`` steps the held-out questions are answered (sharded over the processes) and
scored by exact match; the best model so far is kept in ``best/``, and ``early_stop`` evaluations without
improvement end the run. Curves go to TensorBoard through accelerate's trackers when tensorboard is installed,
and always into the trainer state (``loss_history``, ``validation``).

Training longer: a finished run given a higher ``max_steps`` (and nothing else changed) continues from its last
weights to the new count, with the learning rate re-planned over the new total (linear decay from step 0 to the
new ``max_steps``, so the continuation starts at ``lr * (1 - done / max_steps)``). Where the finished step's
optimizer checkpoint was kept (``keep_checkpoints_after``), AdamW's moments carry over; otherwise they restart
from zero, which the trainer state's ``extensions`` records.
"""

from __future__ import annotations

import hashlib
import importlib.util
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

from distillation.ml.collate import (
    IGNORE_INDEX,
    TASK_KIND_CODES,
    TaskCollator,
    TokenizedTasks,
    encode_prompts,
    encode_targets,
    tokenize_tasks,
)
from distillation.ml.tasks import (
    Method,
    ObjectiveWeights,
    Question,
    TaskExample,
    TeacherExample,
    build_tasks,
    split_validation,
)

CHECKPOINTS_DIR = "checkpoints"
FINAL_MODEL_DIR = "final"
BEST_MODEL_DIR = "best"
LOGS_DIR = "logs"
TRAINER_STATE_FILE = "trainer_state.json"
CHECKPOINT_PREFIX = "step-"
TRUNCATION_WARNING_SHARE = 0.05

ProgressCallback = Callable[[int, int, str, dict[str, float]], None]
StopCallback = Callable[[], bool]

# Changing these between a run and its resumption is harmless; any other field changes the optimisation.
_RESUMABLE_FIELDS = {
    "output_dir",
    "checkpoint_every",
    "keep_checkpoints",
    "keep_checkpoints_after",
    "eval_batch_size",
    "max_chunks",
}
PRECISIONS = ("fp32", "bf16", "fp16")
# A chunk of a micro-batch is cut off once its real tokens are at least this share of its padded ones.
CHUNK_EFFICIENCY = 0.95


@dataclass
class TrainingConfig:
    """Everything that defines a training run. Defaults are the paper's: 48 questions a step, AdamW at lr 5e-5
    for 5,000 steps, evaluation every 250, inputs and targets cut at 300 tokens, fp32, validation seed 0."""

    student: str = "tiny"
    method: str = Method.MTCF.value
    alpha: float = 0.5
    beta: float = 0.5
    gamma: float = 0.5
    seed: int = 0
    max_steps: int = 5000
    batch_size: int = 48  # questions per step, each with all of its tasks
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    grad_accum_steps: int = 1
    max_input_tokens: int = 300
    max_target_tokens: int = 300
    max_answer_tokens: int = 64
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    keep_checkpoints_after: bool = False  # keep optimizer checkpoints once the run is finished
    validation_fraction: float = 0.1
    split_seed: int = 0
    eval_every: int = 250
    eval_batch_size: int = 32
    early_stop: int = 0  # stop after this many evaluations without a better validation accuracy (0: never)
    mega_batch_factor: int = 50
    # A micro-batch may be run in up to this many length-sorted chunks, where that saves padding (1: never).
    max_chunks: int = 4
    precision: str = "fp32"
    dropout: float | None = None  # None: the checkpoint's own
    output_dir: str = "var/students/run"

    def __post_init__(self) -> None:
        self.method = Method(self.method).value
        if min(self.max_steps, self.batch_size, self.grad_accum_steps, self.max_chunks) < 1:
            raise ValueError("max_steps, batch_size, grad_accum_steps and max_chunks must be positive")
        if self.eval_every < 0 or self.early_stop < 0:
            raise ValueError("eval_every and early_stop must not be negative")
        if self.early_stop and not self.eval_every:
            raise ValueError("early_stop needs eval_every: it counts evaluations without improvement")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    @property
    def objective_weights(self) -> ObjectiveWeights:
        return ObjectiveWeights(self.alpha, self.beta, self.gamma)


@dataclass
class ValidationPoint:
    """Held-out losses at a step, and exact-match accuracy where the step was an evaluation step."""

    step: int
    loss: float
    task_losses: dict[str, float]
    accuracy: float | None = None
    n_questions: int = 0


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
    best_model_dir: Path | None = None
    best_step: int | None = None
    stopped_early: bool = False
    truncation: dict[str, dict[str, float]] = field(default_factory=dict)
    extensions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model_dir(self) -> Path | None:
        """The model the run stands for: the best by validation accuracy, else the last."""
        return self.best_model_dir or self.final_model_dir


@dataclass
class _TrainerState:
    """What a checkpoint records besides the accelerate state; the data position is the step itself."""

    step: int = 0
    loss_history: list[float] = field(default_factory=list)
    validation: list[ValidationPoint] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    best_step: int | None = None
    best_accuracy: float | None = None
    evaluations_since_best: int = 0
    stopped_early: bool = False
    # One entry per "train longer": {"from_step", "to_step", "optimizer": "resumed" | "restarted"}.
    extensions: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> _TrainerState:
        raw = json.loads(text)
        raw["validation"] = [ValidationPoint(**point) for point in raw["validation"]]
        return cls(**raw)


class LengthGroupedBatches:
    """A seeded, epoch-wise order of items (here: questions) in batches of similar length.

    Per epoch: shuffle, cut into mega-batches of ``mega_batch_factor`` batches, sort each by length, cut
    into batches, shuffle the batches. The order is a pure function of (seed, step), so a resumed run
    continues with exactly the batches the interrupted one would have seen. The last partial batch of an
    epoch is dropped (a different one each epoch), so every step has the same number of items.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, mega_batch_factor: int = 50) -> None:
        if len(lengths) < batch_size:
            raise ValueError(f"{len(lengths)} training questions cannot fill a step of {batch_size}")
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


@dataclass(frozen=True)
class QuestionSteps:
    """Which task sequences belong to which training question, and the question order of every step."""

    starts: np.ndarray  # first task index of each question
    counts: np.ndarray  # number of tasks of each question
    batches: LengthGroupedBatches

    @classmethod
    def build(
        cls, task_counts: Sequence[int], sequence_lengths: np.ndarray, batch_size: int, seed: int, mega: int
    ) -> QuestionSteps:
        counts = np.asarray(task_counts, dtype=np.int64)
        starts = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        question_lengths = np.add.reduceat(sequence_lengths, starts) if len(counts) else np.zeros(0)
        return cls(starts, counts, LengthGroupedBatches(question_lengths, batch_size, seed, mega))

    def questions(self, step: int) -> np.ndarray:
        return self.batches.batch(step)

    def sequences(self, step: int) -> np.ndarray:
        """Every task sequence of the step's questions."""
        questions = self.questions(step)
        return np.concatenate([np.arange(self.starts[q], self.starts[q] + self.counts[q]) for q in questions])


def split_step(indices: np.ndarray, lengths: np.ndarray, parts: int) -> list[np.ndarray]:
    """A step's sequences sorted longest first and cut into ``parts`` micro-batches of near-equal size."""
    if len(indices) < parts:
        raise ValueError(f"a step of {len(indices)} sequences cannot be split into {parts} micro-batches")
    ordered = indices[np.argsort(-lengths[indices], kind="stable")]
    return np.array_split(ordered, parts)


def length_chunks(indices: np.ndarray, data: TokenizedTasks, max_chunks: int) -> list[np.ndarray]:
    """A micro-batch (sorted longest first) cut into the fewest contiguous chunks, at most ``max_chunks``, that
    waste at most ``1 - CHUNK_EFFICIENCY`` of their padded tokens.

    A step of mixed tasks puts short answers beside long explanations: padded to its longest sequence, a fifth
    of an MT+CF batch is padding (CPU time grows with it). Each chunk is padded to its own longest sequence;
    the loss of a step is the same whatever its chunks, since each task's token mean is taken over the step.
    """
    if max_chunks <= 1 or len(indices) <= 1:
        return [indices]
    real = _real_tokens(indices, data)
    best: list[np.ndarray] = [indices]
    best_padded = _padded_tokens(indices, data)
    for count in range(1, min(max_chunks, len(indices)) + 1):
        chunks = np.array_split(indices, count)
        padded = sum(_padded_tokens(chunk, data) for chunk in chunks)
        if padded < best_padded:
            best, best_padded = chunks, padded
        if real >= CHUNK_EFFICIENCY * padded:
            return chunks
    return best


def _real_tokens(indices: np.ndarray, data: TokenizedTasks) -> int:
    if data.is_encoder_decoder:
        return int(data.inputs.lengths[indices].sum() + data.targets.lengths[indices].sum())
    return int(data.inputs.lengths[indices].sum())


def _padded_tokens(indices: np.ndarray, data: TokenizedTasks) -> int:
    if data.is_encoder_decoder:
        return len(indices) * int(data.inputs.lengths[indices].max() + data.targets.lengths[indices].max())
    return len(indices) * int(data.inputs.lengths[indices].max())


def kind_weight_vector(weights: ObjectiveWeights, method: Method) -> np.ndarray:
    """The formula weight of each task kind, indexed by ``TASK_KIND_CODES`` (zero for kinds the method lacks)."""
    vector = np.zeros(len(TASK_KIND_CODES), dtype=np.float64)
    for kind, weight in weights.formula_weights(Method(method)).items():
        vector[TASK_KIND_CODES[kind]] = weight
    return vector


def kind_token_counts(data: TokenizedTasks, indices: np.ndarray) -> np.ndarray:
    """Labelled target tokens per task kind among ``indices`` (each target counts its eos)."""
    return np.bincount(
        data.kind_codes[indices], weights=data.targets.lengths[indices], minlength=len(TASK_KIND_CODES)
    ).astype(np.float64)


def token_loss_sums(model: Any, batch: dict[str, Any], is_encoder_decoder: bool, device: Any) -> tuple[Any, Any]:
    """Each sequence's summed token cross-entropy over its labelled positions, and how many positions count."""
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
    return token_losses.sum(dim=1), (labels != IGNORE_INDEX).sum(dim=1)


def per_example_losses(model: Any, batch: dict[str, Any], is_encoder_decoder: bool, device: Any) -> Any:
    """Each sequence's mean token cross-entropy over its labelled positions (prompt and padding excluded)."""
    sums, counts = token_loss_sums(model, batch, is_encoder_decoder, device)
    return sums / counts.clamp(min=1)


def formula_loss(token_sums: Any, kind_codes: Any, kind_weights: Any, kind_tokens: Any) -> Any:
    """This micro-batch's share of ``sum_k w_k * L_k``, each ``L_k`` a token mean over the whole step's task k."""
    per_token = kind_weights / kind_tokens.clamp(min=1)
    return (token_sums * per_token[kind_codes].to(token_sums.dtype)).sum()


def truncation_shares(
    tasks: Sequence[TaskExample],
    tokenizer: Any,
    *,
    is_encoder_decoder: bool,
    max_input_tokens: int,
    max_target_tokens: int,
) -> dict[str, dict[str, float]]:
    """Per task kind: the share of inputs and of targets longer than their token limits (so cut)."""
    # Tokenising one token past the limit tells a cut sequence from one that fits exactly.
    inputs = encode_prompts(tokenizer, [t.input_text for t in tasks], max_input_tokens + 1, is_encoder_decoder)
    targets = encode_targets(tokenizer, [t.target_text for t in tasks], max_target_tokens + 1, is_encoder_decoder)
    shares: dict[str, dict[str, float]] = {}
    for kind in dict.fromkeys(task.kind for task in tasks):
        rows = [i for i, task in enumerate(tasks) if task.kind == kind]
        shares[kind.value] = {
            "inputs_cut": sum(len(inputs[i]) > max_input_tokens for i in rows) / len(rows),
            "targets_cut": sum(len(targets[i]) > max_target_tokens for i in rows) / len(rows),
            "n": float(len(rows)),
        }
    return shares


def resolve_precision(precision: str) -> str:
    """Accelerate's mixed-precision name for ``fp32``, ``bf16`` or ``fp16``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return {"fp32": "no"}.get(precision, precision)


def native_bf16() -> bool:
    """Whether this machine multiplies bf16 in hardware (an Ampere-or-newer GPU, or a CPU with AMX or
    AVX512-BF16); elsewhere bf16 is emulated and slower than fp32."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, check, lambda: False)()) for check in checks)


def native_precision() -> str:
    """The fastest training precision this machine computes natively: "bf16" where ``native_bf16``, else "fp32"."""
    return "bf16" if native_bf16() else "fp32"


def train_student(
    config: TrainingConfig,
    examples: Sequence[TeacherExample],
    *,
    questions: Sequence[Question] | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> TrainingResult:
    """Train (or resume training) a student on the tasks of ``examples``, the training split's questions.

    The questions held out by ``split_seed`` (``tasks.is_held_out``) are not trained on: their tasks give the
    validation losses (before training, at every evaluation and at the end), and their answers the validation
    accuracy. ``questions`` are all the training split's questions, rationale or not, so that the held-out
    set does not depend on which rationales exist (default: those of ``examples``). Resumes from the last
    checkpoint in ``output_dir`` when there is one (refusing one made with another config or data).
    ``should_stop`` is checked between steps; stopping leaves a checkpoint behind and returns
    ``completed=False``.
    """
    return TrainingRun(config, examples, questions, progress, should_stop).execute()


class TrainingRun:
    """One call of ``train_student``: holds the model, data and accelerator while it trains."""

    def __init__(
        self,
        config: TrainingConfig,
        examples: Sequence[TeacherExample],
        questions: Sequence[Question] | None,
        progress: ProgressCallback | None,
        should_stop: StopCallback | None,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from distillation.ml.distributed import accelerate_options, process_count

        if process_count() == 1:
            # Accelerate keeps one process-wide state and refuses a second run with another precision (a worker or
            # a benchmark trains several runs in one process); alone, there is no process group to lose.
            from accelerate.state import AcceleratorState

            AcceleratorState._reset_state(reset_partial_state=True)
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.checkpoints_dir = self.output_dir / CHECKPOINTS_DIR
        self.use_tensorboard = importlib.util.find_spec("tensorboard") is not None
        self.accelerator = Accelerator(
            mixed_precision=resolve_precision(config.precision),
            log_with="tensorboard" if self.use_tensorboard else None,
            project_dir=str(self.output_dir / LOGS_DIR),
            **accelerate_options(),
        )
        self._progress = progress
        self._should_stop = should_stop
        set_seed(config.seed)
        self.parts = self.accelerator.num_processes * config.grad_accum_steps
        if config.batch_size < self.parts:
            raise ValueError(
                f"a step of {config.batch_size} questions cannot be split over {self.accelerator.num_processes} "
                f"processes x {config.grad_accum_steps} accumulation steps"
            )
        self.final_dir = self.output_dir / FINAL_MODEL_DIR
        self.finished = self._read_finished_state()
        self._prepare_data_and_model(examples, questions)

    def _read_finished_state(self) -> _TrainerState | None:
        state_file = self.final_dir / TRAINER_STATE_FILE
        return _TrainerState.from_json(state_file.read_text()) if state_file.is_file() else None

    @property
    def extending(self) -> bool:
        """A finished run asked for more steps than it trained: it continues from its last weights."""
        finished = self.finished
        return finished is not None and finished.config.get("max_steps", finished.step) < self.config.max_steps

    def _prepare_data_and_model(self, examples: Sequence[TeacherExample], questions: Sequence[Question] | None) -> None:
        import torch

        from distillation.ml.students import load_student

        config = self.config
        method = Method(config.method)
        self.report(0, "tokenising", {})
        train_examples, validation_examples = split_validation(examples, config.validation_fraction, config.split_seed)
        if questions is None:
            questions = [Question(e.source_id, e.question, e.choices, e.answer) for e in examples]
        self.validation_questions = split_validation(questions, config.validation_fraction, config.split_seed)[1]
        per_question = [build_tasks(e, method, config.objective_weights, config.seed) for e in train_examples]
        train_tasks = [task for tasks in per_question for task in tasks]
        self.train_tasks = train_tasks
        validation_tasks = [
            task for e in validation_examples for task in build_tasks(e, method, config.objective_weights, config.seed)
        ]
        self.data_fingerprint = fingerprint_tasks(
            train_tasks, validation_tasks, extra=[q.source_id for q in self.validation_questions]
        )
        self.n_train_questions = len(train_examples)

        # Training longer starts from the run's last weights (and tokenizer), saved in final/.
        source = str(self.final_dir) if self.extending else config.student
        self.student = load_student(source, seed=config.seed)
        if config.dropout is not None:
            set_dropout(self.student.model, config.dropout)
        is_encoder_decoder = self.student.is_encoder_decoder
        tokenize_args = {
            "is_encoder_decoder": is_encoder_decoder,
            "max_input_tokens": config.max_input_tokens,
            "max_target_tokens": config.max_target_tokens,
        }
        self.truncation = truncation_shares(train_tasks + validation_tasks, self.student.tokenizer, **tokenize_args)
        self.report(
            0,
            "tokens cut",
            {f"{kind}_{part}": share[part] for kind, share in self.truncation.items() for part in share if part != "n"},
        )
        self.train_data = tokenize_tasks(train_tasks, self.student.tokenizer, **tokenize_args)
        self.validation_data = tokenize_tasks(validation_tasks, self.student.tokenizer, **tokenize_args)
        self.steps = QuestionSteps.build(
            [len(tasks) for tasks in per_question],
            self.train_data.sequence_lengths(),
            config.batch_size,
            config.seed,
            config.mega_batch_factor,
        )
        self.kind_weights = torch.tensor(kind_weight_vector(config.objective_weights, method))
        model_config = self.student.model.config
        self.collator = TaskCollator(
            pad_token_id=self.student.tokenizer.pad_token_id,
            decoder_start_token_id=getattr(model_config, "decoder_start_token_id", None),
        )

        optimizer = torch.optim.AdamW(
            self.student.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        # Linear decay to zero over max_steps, no warm-up (the Hugging Face Trainer's default, which the paper
        # used); stepped once per optimizer step by us, not by accelerate, which would step it once per process.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(0.0, 1.0 - step / config.max_steps)
        )
        self.model, self.optimizer = self.accelerator.prepare(self.student.model, optimizer)
        self.accelerator.register_for_checkpointing(self.scheduler)

    # -- the run --------------------------------------------------------------------------------------

    def execute(self) -> TrainingResult:
        final_dir = self.final_dir
        if self.finished is not None:
            self._check_same_run(self.finished, final_dir)
            if not self.extending:
                return self._result(self.finished, None, final_dir, completed=True)
            checkpoint = latest_checkpoint(self.output_dir)
            if checkpoint is not None and _checkpoint_step(checkpoint) > self.finished.step:
                state, resumed_from = self._start_or_resume()  # an extension that was interrupted
            else:
                state, resumed_from = self._extend(self.finished)
        else:
            state, resumed_from = self._start_or_resume()
        if self.use_tensorboard and self.accelerator.is_main_process:
            self.accelerator.init_trackers("training", config=_tracker_config(self.config))
        if resumed_from is None:
            state.validation.append(self.validate(0, with_accuracy=False))
            self._log_validation(state.validation[-1])

        last_saved_step = state.step if resumed_from is not None else -1
        while state.step < self.config.max_steps and not state.stopped_early:
            if self._stop_requested():
                if last_saved_step != state.step:
                    self.save_checkpoint(state)
                self._finish_trackers()
                return self._result(state, resumed_from, None, completed=False)
            metrics = self.train_step(state.step)
            state.step += 1
            state.loss_history.append(metrics["loss"])
            self.report(state.step, "training", metrics)
            self.accelerator.log({"train/loss": metrics["loss"], "train/lr": metrics["lr"]}, step=state.step)
            last = state.step == self.config.max_steps
            evaluating = bool(self.config.eval_every) and (last or state.step % self.config.eval_every == 0)
            if evaluating or last:
                point = self.validate(state.step, with_accuracy=evaluating)
                state.validation.append(point)
                self._log_validation(point)
                if point.accuracy is not None:
                    self._track_best(state, point)
            if state.stopped_early or last or state.step % self.config.checkpoint_every == 0:
                self.save_checkpoint(state)
                last_saved_step = state.step

        self.save_final_model(state, final_dir)
        self._finish_trackers()
        if not self.config.keep_checkpoints_after and self.accelerator.is_main_process:
            shutil.rmtree(self.checkpoints_dir, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return self._result(state, resumed_from, final_dir, completed=True)

    def step_sequences(self, step: int) -> np.ndarray:
        """Indices into ``train_tasks`` of the step's sequences: every task of each of its questions."""
        return self.steps.sequences(step)

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step over every task of the step's questions; this process takes its micro-batches."""
        import torch

        started = time.perf_counter()
        self.model.train()
        accelerator = self.accelerator
        world, rank = accelerator.num_processes, accelerator.process_index
        sequences = self.step_sequences(step)
        kind_tokens = torch.from_numpy(kind_token_counts(self.train_data, sequences))
        micro_batches = split_step(sequences, self.train_data.sequence_lengths(), self.parts)
        mine = micro_batches[rank::world]  # this process's share: one micro-batch per accumulation step
        passes = [chunk for micro in mine for chunk in length_chunks(micro, self.train_data, self.config.max_chunks)]
        step_loss = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        n_tokens = 0
        weights, kind_tokens = self.kind_weights.to(accelerator.device), kind_tokens.to(accelerator.device)
        for index, chunk in enumerate(passes):
            batch = self.collator(self.train_data, chunk)
            n_tokens += batch["n_tokens"]
            last = index == len(passes) - 1  # gradients are averaged over processes once, after the last pass
            with nullcontext() if last else accelerator.no_sync(self.model):
                with accelerator.autocast():
                    sums, _ = token_loss_sums(self.model, batch, self.train_data.is_encoder_decoder, accelerator.device)
                loss = formula_loss(sums, batch["kind_codes"].to(accelerator.device), weights, kind_tokens)
                # Data parallelism averages gradients over processes; the step's loss is their sum.
                accelerator.backward(loss.float() * world)
            step_loss += loss.detach().double()
        if self.config.max_grad_norm:
            accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        learning_rate = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

        totals = torch.tensor([float(n_tokens)], device=accelerator.device)
        step_loss = accelerator.reduce(step_loss, reduction="sum").item()
        all_tokens = accelerator.reduce(totals, reduction="sum").item()
        seconds = max(time.perf_counter() - started, 1e-9)
        return {
            "loss": step_loss,
            "lr": learning_rate,
            "questions_per_s": self.config.batch_size / seconds,
            "sequences_per_s": len(sequences) / seconds,
            "tokens_per_s": all_tokens / seconds,
            "tokens": all_tokens,
            "seconds": seconds,
        }

    def validate(self, step: int, *, with_accuracy: bool) -> ValidationPoint:
        """The method's formula and each task's token-mean loss on the held-out questions' tasks; with
        ``with_accuracy``, the exact-match accuracy of the answers generated for the held-out questions."""
        import torch

        self.report(step, "validating", {})
        data = self.validation_data
        n_kinds = len(TASK_KIND_CODES)
        # Per kind: summed token losses and labelled tokens; summed over processes at the end.
        sums = torch.zeros(2, n_kinds, dtype=torch.float64, device=self.accelerator.device)
        order = np.argsort(data.sequence_lengths(), kind="stable")
        size = self.config.eval_batch_size
        chunks = [order[i : i + size] for i in range(0, len(order), size)]
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        self.model.eval()
        with torch.inference_mode(), self.accelerator.autocast():
            for indices in chunks[rank::world]:
                batch = self.collator(data, indices)
                device = self.accelerator.device
                token_sums, counts = token_loss_sums(self.model, batch, data.is_encoder_decoder, device)
                kinds = batch["kind_codes"].to(sums.device)
                sums[0].index_add_(0, kinds, token_sums.double())
                sums[1].index_add_(0, kinds, counts.double())
        sums = self.accelerator.reduce(sums, reduction="sum").cpu()
        task_losses = {
            kind.value: float(sums[0, code] / sums[1, code]) for kind, code in TASK_KIND_CODES.items() if sums[1, code]
        }
        weights = self.kind_weights
        present = sums[1] > 0
        objective = float((weights[present] * sums[0, present] / sums[1, present]).sum()) if present.any() else 0.0
        point = ValidationPoint(step=step, loss=objective, task_losses=task_losses)
        if with_accuracy:
            point.accuracy, point.n_questions = self._validation_accuracy(step)
        self.report(step, "validated", {"validation_loss": objective, "validation_accuracy": point.accuracy or 0.0})
        return point

    def _validation_accuracy(self, step: int) -> tuple[float | None, int]:
        """Exact-match accuracy on the held-out questions, each process answering every n-th of them."""
        import torch

        from distillation.ml.answers import exact_match
        from distillation.ml.inference import InferenceConfig, predict_answers
        from distillation.ml.students import Student

        questions = self.validation_questions
        if not questions:
            return None, 0
        self.report(step, "evaluating", {})
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        mine = questions[rank::world]
        student = Student(
            self.accelerator.unwrap_model(self.model), self.student.tokenizer, self.student.is_encoder_decoder, ""
        )
        inference = InferenceConfig(
            batch_size=self.config.eval_batch_size,
            max_input_tokens=self.config.max_input_tokens,
            max_answer_tokens=self.config.max_answer_tokens,
            max_explanation_tokens=self.config.max_target_tokens,
        )
        with self.accelerator.autocast():
            answers = predict_answers(student, mine, method=self.config.method, config=inference) if mine else []
        correct = sum(exact_match(answer, q.answer) for answer, q in zip(answers, mine, strict=True))
        totals = torch.tensor([float(correct)], device=self.accelerator.device)
        correct = int(self.accelerator.reduce(totals, reduction="sum").item())
        return correct / len(questions), len(questions)

    def _track_best(self, state: _TrainerState, point: ValidationPoint) -> None:
        if state.best_accuracy is None or point.accuracy > state.best_accuracy:
            state.best_accuracy, state.best_step, state.evaluations_since_best = point.accuracy, point.step, 0
            self.save_model(state, self.output_dir / BEST_MODEL_DIR)
        else:
            state.evaluations_since_best += 1
            if self.config.early_stop and state.evaluations_since_best >= self.config.early_stop:
                state.stopped_early = True
                self.report(state.step, "stopped early", {"best_step": float(state.best_step)})

    def _log_validation(self, point: ValidationPoint) -> None:
        values = {"validation/loss": point.loss, **{f"validation/{k}": v for k, v in point.task_losses.items()}}
        if point.accuracy is not None:
            values["validation/accuracy"] = point.accuracy
        self.accelerator.log(values, step=point.step)

    # -- checkpoints ----------------------------------------------------------------------------------

    def _check_same_run(self, saved: _TrainerState, where: Path) -> None:
        """Refuse to go on from a state made with another config or data. ``max_steps`` may change, as long as
        it is not below the steps already done: raising it trains longer."""
        fresh = comparable_config(self.config)
        keys = (fresh.keys() | saved.config.keys()) - {"max_steps"}
        differences = sorted(key for key in keys if fresh.get(key) != saved.config.get(key))
        if differences:
            raise ValueError(f"{where} was made with a different config ({', '.join(differences)})")
        if saved.data_fingerprint != self.data_fingerprint:
            raise ValueError(f"{where} was made with different training data")
        if self.config.max_steps < saved.step:
            raise ValueError(
                f"{where} has already trained {saved.step} steps; max_steps={self.config.max_steps} would undo them "
                f"(to train longer, ask for more than {saved.step})"
            )

    def _extend(self, finished: _TrainerState) -> tuple[_TrainerState, int]:
        """Continue a finished run to the new ``max_steps`` from its last weights (loaded in final/); the
        optimizer's moments come from the finished step's checkpoint where it was kept."""
        state = _TrainerState.from_json(finished.to_json())
        state.config = comparable_config(self.config)
        state.stopped_early, state.evaluations_since_best = False, 0
        checkpoint = latest_checkpoint(self.output_dir)
        kept = checkpoint is not None and _checkpoint_step(checkpoint) == finished.step
        if kept:
            self.accelerator.load_state(str(checkpoint))
        optimizer = "resumed" if kept else "restarted"
        state.extensions.append({"from_step": finished.step, "to_step": self.config.max_steps, "optimizer": optimizer})
        self._align_learning_rate(state.step)
        self.report(state.step, "training longer", {"from_step": float(finished.step)})
        return state, finished.step

    def _align_learning_rate(self, step: int) -> None:
        """Put the schedule at ``step`` of the current ``max_steps``. A restored scheduler keeps the rate it last
        set, planned over the old total when ``max_steps`` was raised (zero at a finished run's end)."""
        scheduler = self.scheduler
        scheduler.last_epoch = step
        schedule = zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)
        rates = [base * lr_lambda(step) for base, lr_lambda in schedule]
        for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        scheduler._last_lr = rates

    def _start_or_resume(self) -> tuple[_TrainerState, int | None]:
        fresh = _TrainerState(config=comparable_config(self.config), data_fingerprint=self.data_fingerprint)
        checkpoint = latest_checkpoint(self.output_dir)
        if checkpoint is None:
            return fresh, None
        saved = _TrainerState.from_json((checkpoint / TRAINER_STATE_FILE).read_text())
        self._check_same_run(saved, checkpoint)
        self.report(saved.step, "resuming", {})
        self.accelerator.load_state(str(checkpoint))
        saved.config = comparable_config(self.config)  # max_steps may have been raised since
        self._align_learning_rate(saved.step)
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

    def save_model(self, state: _TrainerState, directory: Path) -> None:
        """Weights, tokenizer and metadata (no optimizer) in ``directory``, written whole or not at all."""
        from distillation.ml.students import Student, save_student

        accelerator = self.accelerator
        self.report(state.step, "saving", {})
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            temporary = directory.with_name(f".tmp-{directory.name}")
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
            shutil.rmtree(directory, ignore_errors=True)
            os.replace(temporary, directory)
        accelerator.wait_for_everyone()

    def save_final_model(self, state: _TrainerState, final_dir: Path) -> None:
        """The last weights, with the trainer state that marks the run finished even once checkpoints are gone."""
        self.save_model(state, final_dir)
        if self.accelerator.is_main_process:
            (final_dir / TRAINER_STATE_FILE).write_text(state.to_json())
        self.accelerator.wait_for_everyone()

    # -- helpers --------------------------------------------------------------------------------------

    def _finish_trackers(self) -> None:
        """Close the trackers; not ``end_training``, which would also end the process group that evaluation,
        run after training in the same processes, still needs."""
        for tracker in self.accelerator.trackers:
            tracker.finish()

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
        best = self.output_dir / BEST_MODEL_DIR
        return TrainingResult(
            output_dir=self.output_dir,
            final_model_dir=final_dir,
            completed=completed,
            steps_done=state.step,
            resumed_from_step=resumed_from,
            loss_history=list(state.loss_history),
            validation=list(state.validation),
            last_checkpoint=latest_checkpoint(self.output_dir),
            best_model_dir=best if completed and state.best_step is not None and best.is_dir() else None,
            best_step=state.best_step,
            stopped_early=state.stopped_early,
            truncation=self.truncation,
            extensions=list(state.extensions),
        )


def set_dropout(model: Any, rate: float) -> None:
    """Set every dropout rate: layers, and the float rates that attention modules (T5's) keep for functional
    dropout; the config's too, so a saved model keeps it."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate
        elif isinstance(getattr(module, "dropout", None), float):
            module.dropout = rate
    if hasattr(model.config, "dropout_rate"):
        model.config.dropout_rate = rate


def _tracker_config(config: TrainingConfig) -> dict[str, Any]:
    """Hyper-parameters as TensorBoard takes them (numbers, strings and booleans only)."""
    return {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in asdict(config).items()}


def comparable_config(config: TrainingConfig) -> dict[str, Any]:
    return {key: value for key, value in asdict(config).items() if key not in _RESUMABLE_FIELDS}


def fingerprint_tasks(*task_lists: Sequence[TaskExample], extra: Sequence[str] = ()) -> str:
    """A hash of every task's texts and weight (and of ``extra`` strings), to refuse resuming on other data."""
    digest = hashlib.sha256()
    for text in extra:
        digest.update(f"{text}\x1d".encode())
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
    return sorted(found, key=_checkpoint_step)


def _checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix(CHECKPOINT_PREFIX))


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def prune_checkpoints(checkpoints_dir: Path, keep: int) -> None:
    for stale in list_checkpoints(checkpoints_dir.parent)[: -max(keep, 1)]:
        shutil.rmtree(stale, ignore_errors=True)
