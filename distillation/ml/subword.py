"""A byte-level BPE tokenizer trained on a corpus with the `tokenizers` library, saved as a plain tokenizer folder."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# T5's layout: pad 0 (also the decoder start), eos 1, unk 2.
PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)


def train_subword_tokenizer(texts: Iterable[str], *, vocab_size: int = 4000, min_frequency: int = 2) -> Any:
    """A ``PreTrainedTokenizerFast`` whose encodings end with eos, as T5's do.

    Byte-level, so no text is ever out of vocabulary; ``save_pretrained`` writes a ``tokenizer.json`` that
    ``AutoTokenizer.from_pretrained`` reloads offline.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    eos_id = tokenizer.token_to_id(EOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN}", pair=f"$A {EOS_TOKEN} $B {EOS_TOKEN}", special_tokens=[(EOS_TOKEN, eos_id)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD_TOKEN, eos_token=EOS_TOKEN, unk_token=UNK_TOKEN
    )
    wrapped.padding_side = "right"
    return wrapped
