"""Tiny randomly initialised models built from a config, with a byte tokenizer: no download needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TINY_ID = "tiny"


@dataclass(frozen=True)
class TinySize:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128


def build_byte_tokenizer() -> Any:
    """A byte-level tokenizer (ByT5's): it is defined by code, not by a vocabulary file."""
    from transformers import ByT5Tokenizer

    # Right padding suits training; generation code that needs left padding pads by hand.
    tokenizer = ByT5Tokenizer()
    tokenizer.padding_side = "right"
    return tokenizer


def small_t5_config(tokenizer: Any, *, d_model: int, n_heads: int, d_ff: int, n_layers: int, **extra: Any) -> Any:
    """A T5 v1.1-shaped config (gated GELU, as many decoder as encoder layers) for a tokenizer built here,
    with its pad token starting the decoder; ``extra`` sets anything else."""
    from transformers import T5Config

    return T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // n_heads,
        d_ff=d_ff,
        num_layers=n_layers,
        num_decoder_layers=n_layers,
        num_heads=n_heads,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        **extra,
    )


def build_tiny_seq2seq(seed: int = 0, size: TinySize = TinySize()) -> tuple[Any, Any]:
    """A tiny T5 v1.1-style student (gated-GELU, untied and unscaled output head) and its tokenizer."""
    import torch
    from transformers import T5ForConditionalGeneration

    tokenizer = build_byte_tokenizer()
    config = small_t5_config(
        tokenizer,
        d_model=size.d_model,
        n_heads=size.n_heads,
        d_ff=size.d_ff,
        n_layers=size.n_layers,
        # Transformers 5 reads False here as "T5 v1.1: do not scale the decoder output" and then forces tying on,
        # because its encoder and decoder embeddings share `shared` through tying; the head is untied below.
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    untie_output_head(model)
    return model, tokenizer


def untie_output_head(model: Any) -> None:
    """Give a T5 its own output projection, as T5 v1.1 checkpoints have, keeping the shared input embeddings.

    The head starts at std d_model**-0.5, so first logits have unit scale (a loss near ln(vocab), not the tens
    of nats of an unscaled head that reuses the std-1 embeddings). Saved, it is a separate tensor; loading
    keeps it separate because it differs from ``shared`` (how transformers loads the v1.1 checkpoints too).
    """
    import torch

    d_model = model.config.d_model
    head = torch.empty_like(model.shared.weight).normal_(0.0, model.config.initializer_factor * d_model**-0.5)
    model.lm_head.weight = torch.nn.Parameter(head)
    model.all_tied_weights_keys.pop("lm_head.weight", None)


def build_tiny_causal_lm(seed: int = 0, size: TinySize = TinySize(), max_positions: int = 2048) -> tuple[Any, Any]:
    """A tiny GPT-2 (decoder-only) model and its tokenizer, for teachers and decoder-only students."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = build_byte_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=max_positions,
        n_embd=size.d_model,
        n_layer=size.n_layers,
        n_head=size.n_heads,
        n_inner=size.d_ff,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    return model, tokenizer
