"""Tokenise-once cache of task examples and a vectorised collator with dynamic padding.

Ids are kept as one flat tensor per field with offsets and lengths (a ragged array), so a batch is
gathered with one indexing operation rather than a Python loop over examples, and the cache costs a
few bytes per token instead of a Python object per example.

Seq2seq students see the task input in the encoder and the target in the decoder. Decoder-only students
see ``input + PROMPT_SEPARATOR + target + eos`` as one sequence, and only the target and eos count in the
loss: prompt positions and padding are labelled -100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from distillation.ml.tasks import TaskExample, TaskKind

IGNORE_INDEX = -100
# Marks where a decoder-only student's prompt ends and its output begins; training and inference share it.
PROMPT_SEPARATOR = "\nOutput:\n"
TASK_KIND_CODES: dict[TaskKind, int] = {kind: code for code, kind in enumerate(TaskKind)}


@dataclass
class RaggedIds:
    """Rows of token ids of different lengths in one flat int32 tensor."""

    values: Any  # torch.Tensor, 1-D int32
    offsets: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> RaggedIds:
        import torch

        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        flat = np.fromiter((token for row in rows for token in row), dtype=np.int32, count=int(lengths.sum()))
        return cls(torch.from_numpy(flat), offsets, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def padded(self, indices: np.ndarray, pad_value: int) -> tuple[Any, Any]:
        """The rows at ``indices`` right-padded to the longest of them: (ids [B, T] int64, mask [B, T] bool)."""
        import torch

        lengths = torch.from_numpy(self.lengths[indices])
        width = int(lengths.max()) if len(indices) else 0
        positions = torch.arange(width)
        mask = positions[None, :] < lengths[:, None]
        starts = torch.from_numpy(self.offsets[indices])
        gather_at = (starts[:, None] + positions[None, :]).clamp_(max=max(len(self.values) - 1, 0))
        ids = self.values[gather_at].long().masked_fill_(~mask, pad_value)
        return ids, mask


@dataclass
class TokenizedTasks:
    """Task examples tokenised once for one student architecture.

    Seq2seq: ``inputs`` are encoder inputs, ``targets`` decoder targets, ``prompt_lengths`` unused (zeros).
    Decoder-only: ``inputs`` are whole sequences (prompt then target), ``targets`` the target part alone
    (kept for token counts), ``prompt_lengths`` where the loss starts.
    """

    inputs: RaggedIds
    targets: RaggedIds
    prompt_lengths: np.ndarray
    weights: np.ndarray
    kind_codes: np.ndarray
    is_encoder_decoder: bool

    def __len__(self) -> int:
        return len(self.inputs)

    def sequence_lengths(self) -> np.ndarray:
        """What padding a batch costs: encoder plus decoder length, or the one sequence's length."""
        if self.is_encoder_decoder:
            return self.inputs.lengths + self.targets.lengths
        return self.inputs.lengths


def encode_prompts(tokenizer: Any, texts: Sequence[str], max_tokens: int, is_encoder_decoder: bool) -> list[list[int]]:
    """Model inputs as ids, truncated to ``max_tokens``; decoder-only prompts end with the separator."""
    if is_encoder_decoder:
        return tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]
    separator = tokenizer(PROMPT_SEPARATOR, add_special_tokens=False)["input_ids"]
    room = max(max_tokens - len(separator), 1)
    bodies = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=room)["input_ids"]
    return [body + separator for body in bodies]


def encode_targets(tokenizer: Any, texts: Sequence[str], max_tokens: int, is_encoder_decoder: bool) -> list[list[int]]:
    """Targets as ids ending in eos (kept even when truncated), at most ``max_tokens`` long."""
    if is_encoder_decoder:
        return tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]
    bodies = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max(max_tokens - 1, 1))
    return [[*body, tokenizer.eos_token_id] for body in bodies["input_ids"]]


def tokenize_tasks(
    tasks: Sequence[TaskExample],
    tokenizer: Any,
    *,
    is_encoder_decoder: bool,
    max_input_tokens: int,
    max_target_tokens: int,
) -> TokenizedTasks:
    """Tokenise every task example once, in two batched tokenizer calls."""
    prompts = encode_prompts(tokenizer, [task.input_text for task in tasks], max_input_tokens, is_encoder_decoder)
    targets = encode_targets(tokenizer, [task.target_text for task in tasks], max_target_tokens, is_encoder_decoder)
    if is_encoder_decoder:
        inputs = RaggedIds.from_lists(prompts)
        prompt_lengths = np.zeros(len(tasks), dtype=np.int64)
    else:
        inputs = RaggedIds.from_lists([prompt + target for prompt, target in zip(prompts, targets, strict=True)])
        prompt_lengths = np.fromiter((len(prompt) for prompt in prompts), dtype=np.int64, count=len(prompts))
    return TokenizedTasks(
        inputs=inputs,
        targets=RaggedIds.from_lists(targets),
        prompt_lengths=prompt_lengths,
        weights=np.array([task.weight for task in tasks], dtype=np.float32),
        kind_codes=np.array([TASK_KIND_CODES[task.kind] for task in tasks], dtype=np.int64),
        is_encoder_decoder=is_encoder_decoder,
    )


@dataclass(frozen=True)
class TaskCollator:
    """Builds a padded batch (tensors on CPU) from indices into a ``TokenizedTasks``."""

    pad_token_id: int
    decoder_start_token_id: int | None = None

    def __call__(self, tokenized: TokenizedTasks, indices: np.ndarray) -> dict[str, Any]:
        import torch

        indices = np.asarray(indices, dtype=np.int64)
        batch: dict[str, Any] = {
            "weights": torch.from_numpy(tokenized.weights[indices]),
            "kind_codes": torch.from_numpy(tokenized.kind_codes[indices]),
        }
        input_ids, input_mask = tokenized.inputs.padded(indices, self.pad_token_id)
        batch["input_ids"], batch["attention_mask"] = input_ids, input_mask.long()
        if tokenized.is_encoder_decoder:
            labels, _ = tokenized.targets.padded(indices, IGNORE_INDEX)
            batch["labels"] = labels
            batch["decoder_input_ids"] = self.shift_right(labels)
        else:
            prompt_lengths = torch.from_numpy(tokenized.prompt_lengths[indices])
            in_prompt = torch.arange(input_ids.shape[1])[None, :] < prompt_lengths[:, None]
            batch["labels"] = input_ids.masked_fill(in_prompt | ~input_mask, IGNORE_INDEX)
        batch["n_tokens"] = int(tokenized.inputs.lengths[indices].sum()) + (
            int(tokenized.targets.lengths[indices].sum()) if tokenized.is_encoder_decoder else 0
        )
        return batch

    def shift_right(self, labels: Any) -> Any:
        """Teacher forcing: the decoder sees the start token, then the target shifted one to the right."""
        import torch

        if self.decoder_start_token_id is None:
            raise ValueError("an encoder-decoder student needs config.decoder_start_token_id")
        start = torch.full((labels.shape[0], 1), self.decoder_start_token_id, dtype=labels.dtype)
        shifted = torch.cat([start, labels[:, :-1]], dim=1)
        return shifted.masked_fill_(shifted == IGNORE_INDEX, self.pad_token_id)
