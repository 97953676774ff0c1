"""Time and peak memory of the rating-analysis models on simulated crossed designs of growing size.

Run: .venv/bin/python bench/analysis.py [--quick] [--write-data DIR]

R's ordinal::clmm on the same ratings, for the CLMM rows (files from --write-data):
    Rscript -e 'library(ordinal); d <- read.csv("DIR/ratings-1000.csv"); d$value <- factor(d$value, ordered=TRUE);
                print(system.time(clmm(value ~ condition + (1|annotator_id) + (1|item_id), data=d)))'
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotations.analysis.blas import single_threaded_blas
from annotations.analysis.clmm import fit_clmm_arrays
from annotations.analysis.mixed import fit_crossed_arrays
from annotations.analysis.ordinal import fit_ordinal
from annotations.analysis.paper import fit_paper_ols
from annotations.analysis.power import Design, simulate_crossed
from annotations.analysis.results import VarianceSDs

# (annotators, items, ratings per item): 1,000, 20,000 and 100,000 ratings; 20k is the design.
DESIGNS = {1_000: Design(50, 100, 10), 20_000: Design(500, 1_000, 20), 100_000: Design(1_000, 2_000, 50)}
TRUTH = VarianceSDs(annotator=0.5, item=0.2, residual=0.6)
CONDITIONS = ["c0", "c1"]


def measure(task: Callable[[], object]) -> tuple[float, float, object]:
    """Wall seconds and peak traced Python/numpy allocation (MiB) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    result = task()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def tidy_frame(design: Design, seed: int) -> tuple[pd.DataFrame, object]:
    data = simulate_crossed(design, effect=0.25, variance=TRUTH, rng=np.random.default_rng(seed), intercept=3.5)
    frame = pd.DataFrame(
        {
            "annotator_id": data.annotators,
            "item_id": data.items,
            "explanation_id": data.items,
            "condition": np.array(CONDITIONS)[data.X[:, 1].astype(int)],
            "construct": "C",
            "value": np.clip(np.round(data.y), 1, 5),
        }
    )
    return frame, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only the 1,000 and 20,000 rating designs")
    parser.add_argument(
        "--write-data", type=Path, help="also write each design's ratings as ratings-<n>.csv here (to time R on)"
    )
    args = parser.parse_args()
    sizes = [1_000, 20_000] if args.quick else list(DESIGNS)
    print(f"{'ratings':>8} {'model':<28} {'seconds':>8} {'peak MiB':>9}  notes")
    for size in sizes:
        design = DESIGNS[size]
        frame, data = tidy_frame(design, seed=size)
        with single_threaded_blas():
            for label, with_intervals in (("crossed LMM (REML)", False), ("crossed LMM + SD intervals", True)):
                seconds, peak, fit = measure(
                    partial(
                        fit_crossed_arrays, data.y, data.X, data.annotators, data.items, sd_intervals=with_intervals
                    )
                )
                note = (
                    f"{fit.evaluations} deviance evaluations; sd a/i/e {fit.sd_annotator:.3f}/"
                    f"{fit.sd_item:.3f}/{fit.sd_residual:.3f} (true 0.5/0.2/0.6)"
                )
                print(f"{size:>8} {label:<28} {seconds:>8.2f} {peak:>9.1f}  {note}")
            seconds, peak, _ = measure(partial(fit_paper_ols, frame, conditions=CONDITIONS, covariates=()))
            print(f"{size:>8} {'OLS (IQR-trimmed)':<28} {seconds:>8.2f} {peak:>9.1f}")
            if size <= 20_000:
                seconds, peak, _ = measure(partial(fit_ordinal, frame, conditions=CONDITIONS, construct="C"))
                print(f"{size:>8} {'ordinal logit, 2-way cluster':<28} {seconds:>8.2f} {peak:>9.1f}")
                # The crossed CLMM on the same ratings (R: clmm(factor(value) ~ condition + (1|annotator_id) +
                # (1|item_id)) on the file --write-data leaves, for the comparison).
                seconds, peak, fit = measure(
                    partial(
                        fit_clmm_arrays,
                        pd.Categorical(frame["value"], ordered=True).codes,
                        data.X[:, 1:],
                        data.annotators,
                        data.items,
                    )
                )
                note = (
                    f"{fit.evaluations} Laplace evaluations; effect {fit.beta[0]:.3f}, sd a/i "
                    f"{fit.sd_annotator:.3f}/{fit.sd_item:.3f}"
                )
                print(f"{size:>8} {'crossed CLMM (Laplace)':<28} {seconds:>8.2f} {peak:>9.1f}  {note}")
        if args.write_data:
            args.write_data.mkdir(parents=True, exist_ok=True)
            frame.to_csv(args.write_data / f"ratings-{size}.csv", index=False)


if __name__ == "__main__":
    main()
