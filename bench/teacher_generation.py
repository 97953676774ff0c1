"""Benchmark of teacher back-ends: batched versus one-at-a-time HF generation, OpenAI client concurrency."""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distillation.ml.teachers import (
    HFTeacher,
    OpenAITeacher,
    RequestKey,
    TeacherBackend,
    TeacherRequest,
)


@dataclass(frozen=True)
class Measurement:
    backend: str
    mode: str
    prompts: int
    seconds: float
    tokens: int

    @property
    def prompts_per_second(self) -> float:
        return self.prompts / self.seconds

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def bench_prompts(count: int) -> list[TeacherRequest]:
    """Prompts of varied length, like questions with few-shot examples of different sizes."""
    base = "Question: Where would you keep milk so it stays fresh?\nChoices: (a) cupboard (b) refrigerator\n"
    return [
        TeacherRequest(RequestKey(f"q{index}", "rationale"), base * (1 + index % 4) + "Explanation:")
        for index in range(count)
    ]


def measure(backend: str, mode: str, run: Callable[[], list], prompts: int, seconds_floor: float = 1e-9) -> Measurement:
    started = time.perf_counter()
    results = run()
    elapsed = max(time.perf_counter() - started, seconds_floor)
    tokens = sum(result.n_tokens or 0 for result in results)
    return Measurement(backend, mode, prompts, elapsed, tokens)


def bench_hf(count: int, max_new_tokens: int, batch_size: int) -> list[Measurement]:
    # ignore_eos and no stop sequence: every prompt generates exactly max_new_tokens in both modes.
    batched = HFTeacher.tiny(seed=0, max_batch_size=batch_size, ignore_eos=True)
    requests = bench_prompts(count)
    batched.generate(requests[:2], max_new_tokens=4)  # warm-up: first-call allocations and lazy imports

    def one_at_a_time() -> list:
        return [batched.generate([request], max_new_tokens=max_new_tokens)[0] for request in requests]

    return [
        measure("hf tiny", "one at a time", one_at_a_time, count),
        measure(
            "hf tiny",
            f"batched ({batch_size})",
            lambda: batched.generate(requests, max_new_tokens=max_new_tokens),
            count,
        ),
    ]


@contextmanager
def delayed_server(delay: float, completion_tokens: int) -> Iterator[str]:
    """An OpenAI-compatible completions endpoint on 127.0.0.1 that answers after a fixed delay."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

        def setup(self) -> None:
            super().setup()
            # Without it, Nagle's algorithm and delayed ACKs add ~40 ms to each keep-alive response.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay)
            body = {
                "choices": [{"text": " Milk spoils when warm.", "finish_reason": "length"}],
                "usage": {"completion_tokens": completion_tokens},
            }
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def bench_openai(count: int, delay: float, concurrencies: list[int], completion_tokens: int) -> list[Measurement]:
    requests = bench_prompts(count)
    measurements = []
    with delayed_server(delay, completion_tokens) as url:
        for concurrency in concurrencies:
            teacher: TeacherBackend = OpenAITeacher("bench", base_url=url, concurrency=concurrency)
            try:
                teacher.generate(requests[:1], max_new_tokens=completion_tokens)  # open a connection first
                measurements.append(
                    measure(
                        f"openai ({delay * 1000:.0f} ms/request)",
                        f"concurrency {concurrency}",
                        lambda teacher=teacher: teacher.generate(requests, max_new_tokens=completion_tokens),
                        count,
                    )
                )
            finally:
                teacher.close()
    return measurements


def print_table(measurements: list[Measurement]) -> None:
    header = f"{'backend':<26} {'mode':<16} {'prompts':>7} {'seconds':>8} {'prompts/s':>10} {'tokens/s':>10}"
    print(header)
    print("-" * len(header))
    for m in measurements:
        print(
            f"{m.backend:<26} {m.mode:<16} {m.prompts:>7} {m.seconds:>8.2f} "
            f"{m.prompts_per_second:>10.1f} {m.tokens_per_second:>10.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hf-prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--openai-requests", type=int, default=64)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    args = parser.parse_args()

    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    measurements = bench_hf(args.hf_prompts, args.max_new_tokens, args.batch_size)
    measurements += bench_openai(args.openai_requests, args.delay_ms / 1000, [1, 16], args.max_new_tokens)
    print_table(measurements)
    print(
        f"\nhf: {args.max_new_tokens} new tokens for every prompt (EOS ignored, no stop sequence), so both modes "
        "do the same work; openai: a local server that answers each request after a fixed delay."
    )


if __name__ == "__main__":
    main()
