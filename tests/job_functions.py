"""Plain job functions the job-runner tests enqueue (registered like the apps' jobs)."""

from __future__ import annotations

import time

from evalsite.jobs import job_function

CALLED: list[str] = []  # what not_a_job was asked to do (it must never be)


@job_function
def count_to(*, progress, n: int, stage: str = "counting", delay: float = 0.0) -> dict:
    for done in range(1, n + 1):
        if delay:
            time.sleep(delay)
        progress(done, n, stage=stage)
    return {"counted": n}


@job_function
def wait_for_cancel(*, progress, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    done = 0
    while time.monotonic() < deadline:
        done += 1
        progress(done, None, stage="waiting")
        time.sleep(0.05)
    return {"waited": seconds}


@job_function
def fail_halfway(*, progress, n: int) -> dict:
    for done in range(1, n + 1):
        progress(done, n, stage="failing")
        if done == n // 2:
            raise ValueError(f"broke at {done}")
    return {}


def not_a_job(*, progress) -> dict:
    """Shaped like a job but not registered: neither a caller nor a Job row can run it."""
    CALLED.append("not_a_job")
    return {}
