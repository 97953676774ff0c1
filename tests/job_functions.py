"""Plain job functions the job-runner tests enqueue by dotted path."""

from __future__ import annotations

import time


def count_to(*, progress, n: int, stage: str = "counting", delay: float = 0.0) -> dict:
    for done in range(1, n + 1):
        if delay:
            time.sleep(delay)
        progress(done, n, stage=stage)
    return {"counted": n}


def wait_for_cancel(*, progress, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    done = 0
    while time.monotonic() < deadline:
        done += 1
        progress(done, None, stage="waiting")
        time.sleep(0.05)
    return {"waited": seconds}


def fail_halfway(*, progress, n: int) -> dict:
    for done in range(1, n + 1):
        progress(done, n, stage="failing")
        if done == n // 2:
            raise ValueError(f"broke at {done}")
    return {}
