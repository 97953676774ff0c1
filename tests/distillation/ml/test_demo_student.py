"""The demo student: its tokenizer and base build once, resume and reload offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distillation.ml.demo_student import (
    BASE_INFO_FILE,
    BasePretraining,
    CorpusDocument,
    DemoStudentSize,
    build_base_student,
    corpus_documents,
    minilm_folder,
    pretraining_pair,
)
from distillation.ml.tasks import load_teacher_examples

SMALL = DemoStudentSize(encoder_layers=1, decoder_layers=1)


def documents(data_dir: Path, n_questions: int | None) -> list[CorpusDocument]:
    path = data_dir / "teacher" / "cqa-llama2-13b-train.jsonl.gz"
    unrevised = load_teacher_examples(path, limit=n_questions)
    return corpus_documents(unrevised + load_teacher_examples(path, revised=True, limit=n_questions))


def test_the_new_core_modules_import_without_torch_or_datasets():
    code = "import sys\nimport distillation.ml.demo_student, distillation.ml.subword, distillation.ml.text_quality\n"
    code += "import distillation.paperrepo\n"
    code += "heavy = {'torch', 'transformers', 'tokenizers', 'datasets'} & set(sys.modules)\n"
    code += "assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])


def test_pre_training_pairs_are_the_four_tasks_as_students_train_them():
    import numpy as np

    document = CorpusDocument(
        "Where is a cat?", ("box", "sky"), "Cats sit in boxes because boxes are warm.", "box", ((1, "Cats fly."),)
    )
    question = "Question: Where is a cat?\nChoices: (a) box (b) sky"
    expected = {
        f"[predict] {question}": "The answer is box",
        f"[explain] {question}": document.text,
        f"[factual] {question}": f"{document.text} So the answer is box.",
        f"[counterfactual] {question} Rationale: Cats fly.": "So the answer is sky.",
    }
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        source, target = pretraining_pair(document, rng)
        assert expected[source] == target
        seen.add(source)
    assert seen == set(expected)
    without = CorpusDocument(document.question, document.choices, document.text, "box")
    assert all(not pretraining_pair(without, rng)[0].startswith("[counterfactual]") for _ in range(20))


def test_a_base_pre_trained_in_bf16_is_saved_in_full_precision_and_other_precisions_are_refused(data_dir, tmp_path):
    import torch

    from distillation.ml.students import load_student

    training = BasePretraining(steps=2, batch_size=4, max_input_tokens=48, max_target_tokens=24, precision="bf16")
    directory = build_base_student(documents(data_dir, 8), tmp_path / "base", size=SMALL, training=training)
    assert {p.dtype for p in load_student(directory).model.parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="fp32 or bf16"):
        BasePretraining(precision="fp16")


def test_the_base_is_built_once_resumes_and_reloads_offline(data_dir, tmp_path, monkeypatch):
    from distillation.ml.students import load_student

    corpus = documents(data_dir, 16)
    training = BasePretraining(steps=6, batch_size=4, checkpoint_every=3, max_input_tokens=48, max_target_tokens=24)
    seen: list[tuple[int, str]] = []

    class Interrupt(Exception):
        pass

    def stop_at_five(step, total, stage, metrics):
        seen.append((step, stage))
        if step == 5 and stage.startswith("pre-training"):
            raise Interrupt

    directory = tmp_path / "base"
    with pytest.raises(Interrupt):
        build_base_student(corpus, directory, size=SMALL, training=training, progress=stop_at_five)
    assert not (directory / BASE_INFO_FILE).exists(), "an interrupted build leaves no model that looks finished"
    seen.clear()
    build_base_student(corpus, directory, size=SMALL, training=training, progress=lambda *a: seen.append((a[0], a[2])))
    assert (3, "resuming") in seen and (4, "pre-training the base model") in seen, "resumed after step 3"
    assert (directory / BASE_INFO_FILE).is_file() and (directory / "tokenizer.json").is_file()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    student = load_student(directory)
    minilm_pieces = json.loads((minilm_folder() / "config.json").read_text())["vocab_size"]
    assert student.is_encoder_decoder and len(student.tokenizer) < minilm_pieces // 2, "pieces cut to the corpus's"
    assert student.model.config.decoder.num_hidden_layers == SMALL.decoder_layers
    assert student.tokenizer("Where is a cat?")["input_ids"][-1] == student.tokenizer.eos_token_id
    assert student.model.generation_config.no_repeat_ngram_size == 3
    seen.clear()
    again = build_base_student(corpus, directory, size=SMALL, training=training, progress=lambda *a: seen.append(a))
    assert again == directory
    assert not seen, "a built base is reused without any work"


def test_pieces_rarer_than_the_minimum_are_cut_yet_every_corpus_word_still_spells(data_dir):
    from distillation.ml.demo_student import corpus_tokenizer, tokenizer_texts

    texts = tokenizer_texts(documents(data_dir, 40))
    every_piece, _ = corpus_tokenizer(minilm_folder(), texts)
    frequent, kept = corpus_tokenizer(minilm_folder(), texts, min_count=5)
    assert len(frequent) < len(every_piece) and len(kept) == len(frequent)
    unknown = frequent.unk_token_id
    for text in [*texts, "An açaí bowl, naïvely."]:
        ids = frequent(text)["input_ids"]
        assert unknown not in ids, text
        assert frequent.decode(ids, skip_special_tokens=True) == every_piece.decode(
            every_piece(text)["input_ids"], skip_special_tokens=True
        )


def test_a_step_cut_into_length_sorted_chunks_gives_the_loss_and_gradients_of_one_padded_batch(data_dir):
    import numpy as np
    import torch

    from distillation.ml.demo_student import (
        _step_tasks,
        build_model,
        corpus_tokenizer,
        pretraining_step,
        tokenizer_texts,
    )
    from distillation.ml.training import length_chunks

    corpus = documents(data_dir, 24)
    tokenizer, kept = corpus_tokenizer(minilm_folder(), tokenizer_texts(corpus))
    model = build_model(minilm_folder(), tokenizer, kept, SMALL, seed=0)
    probe = BasePretraining(batch_size=8, max_input_tokens=64, max_target_tokens=48)
    data = _step_tasks(corpus, tokenizer, probe, step=3)
    assert len(length_chunks(np.argsort(-data.sequence_lengths()), data, 4)) > 1, "the step is cut into chunks"
    results = []
    for chunks in (1, 4):
        model.zero_grad(set_to_none=True)
        training = BasePretraining(batch_size=8, max_input_tokens=64, max_target_tokens=48, max_chunks=chunks)
        loss = pretraining_step(model, corpus, tokenizer, training, step=3)
        results.append((loss, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (one_loss, one_grads), (chunked_loss, chunked_grads) = results
    assert chunked_loss == pytest.approx(one_loss, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(one_grads, chunked_grads, strict=True))
