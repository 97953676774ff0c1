"""The command-line progress bar: one bar per stage, however often training steps aside to validate or save."""

from __future__ import annotations

import io
import logging

from evalsite.cli import LIBRARY_LOGGERS, StageProgressBar


def finished_bars(output: str) -> list[str]:
    """The last drawing of each bar that was closed (tqdm ends a closed bar with a newline)."""
    return [line.rsplit("\r", 1)[-1].strip() for line in output.split("\n") if line.strip()]


def test_training_with_validation_and_checkpoints_is_one_bar_then_evaluation_another():
    stream = io.StringIO()
    with StageProgressBar(stream=stream) as bar:
        bar(0, 30, "tokenising")
        for step in range(1, 31):
            bar(step, 30, "training", f"loss {1 / step:.4f}")
            if step % 10 == 0:
                bar(step, 30, "validating")
                bar(step, 30, "validated")
                bar(step, 30, "saving")
        for done in range(0, 9, 2):
            bar(done, 8, "evaluating on validation")
    bars = finished_bars(stream.getvalue())
    assert len(bars) == 2, bars
    assert bars[0].startswith("training: 100%") and "30/30" in bars[0]
    assert bars[1].startswith("evaluating on validation: 100%") and "8/8" in bars[1]


def test_a_stage_that_counts_afresh_gets_its_own_bar():
    stream = io.StringIO()
    with StageProgressBar(stream=stream) as bar:
        for split, total in (("import train", 6), ("import validation", 6)):
            for done in range(total + 1):
                bar(done, total, split)
    bars = finished_bars(stream.getvalue())
    assert [b.split(":")[0] for b in bars] == ["import train", "import validation"]


def test_library_loggers_stay_at_warning_by_default():
    import django.conf  # noqa: F401  (the suite's settings are configured)

    for name in LIBRARY_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    assert not logging.getLogger("accelerate.checkpointing").isEnabledFor(logging.INFO)


def test_the_libraries_draw_no_progress_bars_of_their_own():
    from transformers.utils import logging as transformers_logging

    assert not transformers_logging.is_progress_bar_enabled(), "model loading would draw a bar per checkpoint"


def test_accelerates_tied_weights_note_is_dropped_and_its_other_warnings_are_kept(caplog):
    logger = logging.getLogger("accelerate.utils.other")
    with caplog.at_level(logging.WARNING):
        logger.warning("[RANK 0] Removed shared tensor {'lm_head.weight'} while saving. This should be OK")
        logger.warning("[RANK 0] Detected kernel version 3.10.0, which is below the recommended minimum")
    assert [record.getMessage() for record in caplog.records] == [
        "[RANK 0] Detected kernel version 3.10.0, which is below the recommended minimum"
    ]
