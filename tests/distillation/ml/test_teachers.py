"""Teacher back-ends: an OpenAI-compatible server over real HTTP, replay of the paper's file, the tiny HF model."""

from __future__ import annotations

import gzip
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from distillation.ml.teachers import (
    FINISH_LENGTH,
    FINISH_STOP,
    HFTeacher,
    OpenAITeacher,
    ReplayTeacher,
    RequestKey,
    RetryPolicy,
    TeacherError,
    TeacherRequest,
    build_teacher,
    parse_retry_after,
)

FAST_RETRY = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.05)


def request(prompt, source_id: str = "q1", kind: str = "rationale", choice_index: int | None = None):
    return TeacherRequest(RequestKey(source_id, kind, choice_index), prompt)


# --- a real HTTP server playing an OpenAI-compatible teacher -------------------------------------------------

Reply = tuple[int, dict[str, str], dict]  # status, headers, JSON body


@dataclass
class FakeServer:
    url: str
    # (path, body, number of the request) -> reply; replaced by each test.
    respond: Callable[[str, dict, int], Reply]
    delay: float = 0.0
    received: list[tuple[str, dict, dict[str, str]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def completion_reply(path: str, body: dict, number: int) -> Reply:
    """Answers with the end of the prompt and a second line, as a model that goes on too long would."""
    if path == "/v1/chat/completions":
        prompt = body["messages"][-1]["content"]
        choice = {"message": {"role": "assistant", "content": f"re {prompt}\nmore"}, "finish_reason": "stop"}
    else:
        prompt = body["prompt"]
        choice = {"text": f"re {prompt}\nmore", "finish_reason": "length" if "long" in prompt else "stop"}
    return 200, {}, {"choices": [choice], "usage": {"completion_tokens": len(prompt)}}


@pytest.fixture
def server() -> Iterator[FakeServer]:
    state = FakeServer(url="", respond=completion_reply)
    counter = itertools.count()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.received.append((self.path, body, dict(self.headers)))
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                number = next(counter)
            try:
                time.sleep(state.delay)
                status, headers, payload = state.respond(self.path, body, number)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


def make_openai(server: FakeServer, **options) -> OpenAITeacher:
    options = {"api_key": "secret", "retry": FAST_RETRY, "timeout": 5.0, **options}
    return OpenAITeacher("teacher-13b", base_url=server.url, **options)


def test_openai_completions_and_chat_in_order(server: FakeServer):
    teacher = make_openai(server)
    try:
        results = teacher.generate(
            [request("first"), request([{"role": "user", "content": "second"}]), request("a long one")],
            max_new_tokens=40,
            stop=["\n"],
        )
    finally:
        teacher.close()
    assert [result.text for result in results] == ["re first", "re second", "re a long one"]
    assert results[0].raw_text == "re first\nmore"
    assert [result.n_tokens for result in results] == [5, 6, 10]
    assert [result.finish_reason for result in results] == [FINISH_STOP, FINISH_STOP, FINISH_LENGTH]
    paths = sorted(path for path, _, _ in server.received)
    assert paths == ["/v1/chat/completions", "/v1/completions", "/v1/completions"]
    _, body, headers = next(item for item in server.received if item[1].get("prompt") == "first")
    assert body == {"model": "teacher-13b", "max_tokens": 40, "temperature": 0.0, "prompt": "first", "stop": ["\n"]}
    assert headers["Authorization"] == "Bearer secret"


def test_openai_retries_after_429_and_503(server: FakeServer):
    def flaky(path: str, body: dict, number: int) -> Reply:
        if number == 0:
            return 429, {"Retry-After": "0"}, {"error": "slow down"}
        if number == 1:
            return 503, {}, {"error": "loading"}
        return completion_reply(path, body, number)

    server.respond = flaky
    teacher = make_openai(server)
    try:
        [result] = teacher.generate([request("hello")], max_new_tokens=8)
    finally:
        teacher.close()
    assert result.text == "re hello\nmore"
    assert len(server.received) == 3


def test_openai_gives_up_after_retries_naming_server_and_status(server: FakeServer):
    server.respond = lambda path, body, number: (429, {"Retry-After": "0"}, {"error": "quota"})
    teacher = make_openai(server)
    try:
        with pytest.raises(TeacherError, match=r"127\.0\.0\.1:\d+/v1/completions: HTTP 429 after 4 attempt"):
            teacher.generate([request("hello")], max_new_tokens=8)
    finally:
        teacher.close()
    assert len(server.received) == FAST_RETRY.max_retries + 1


def test_openai_client_errors_are_not_retried(server: FakeServer):
    server.respond = lambda path, body, number: (400, {}, {"error": "bad model"})
    teacher = make_openai(server)
    try:
        with pytest.raises(TeacherError, match="HTTP 400 after 1 attempt"):
            teacher.generate([request("hello")], max_new_tokens=8)
    finally:
        teacher.close()
    assert len(server.received) == 1


def test_openai_timeout_fails_the_whole_batch(server: FakeServer):
    def slow_for_one(path: str, body: dict, number: int) -> Reply:
        if body["prompt"] == "slow":
            time.sleep(1.0)
        return completion_reply(path, body, number)

    server.respond = slow_for_one
    teacher = make_openai(server, timeout=0.2)
    try:
        with pytest.raises(TeacherError, match=r"127\.0\.0\.1:\d+/v1/completions: no response within 0\.2 s"):
            teacher.generate([request("fast"), request("slow"), request("also fast")], max_new_tokens=8)
    finally:
        teacher.close()


def test_openai_concurrency_is_bounded(server: FakeServer):
    server.delay = 0.05
    teacher = make_openai(server, concurrency=3)
    try:
        results = teacher.generate([request(f"p{i}") for i in range(12)], max_new_tokens=8)
    finally:
        teacher.close()
    assert [result.text for result in results] == [f"re p{i}\nmore" for i in range(12)]
    assert server.max_in_flight == 3


def test_retry_after_accepts_seconds_and_dates():
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: retry now
    assert parse_retry_after("soon") is None
    assert RetryPolicy(backoff_base=1.0, backoff_max=3.0).delay(5, None, __import__("random").Random(0)) <= 3.75


# --- replay ---------------------------------------------------------------------------------------------------


def test_replay_reproduces_the_teacher_file_exactly(data_dir: Path):
    path = data_dir / "teacher" / "cqa-llama2-13b-validation.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in itertools.islice(lines, 100)]
    teacher = build_teacher(f"replay:{path}")
    requests = []
    expected = []
    for row in rows:
        for kind in ("rationale", "critique", "revision"):
            requests.append(request("ignored", row["id"], kind))
            expected.append(row[kind])
        for index, text in enumerate(row["counterfactual_rationales"]):
            requests.append(request("ignored", row["id"], "counterfactual", index))
            expected.append(text)
    results = teacher.generate(requests, max_new_tokens=1, stop=["\n"])
    assert len(results) == 800
    assert [result.text for result in results] == expected
    assert [result.raw_text for result in results] == expected
    assert any("\n" in text for text in expected)  # stored critiques span lines: replay must not cut them


def test_replay_missing_keys_raise_clear_errors(tmp_path: Path):
    row = {"id": "x1", "rationale": "r", "critique": None, "revision": "v", "counterfactual_rationales": ["a"] * 5}
    path = tmp_path / "teacher.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    teacher = ReplayTeacher(path)
    assert teacher.generate([request("", "x1", "revision")], max_new_tokens=1)[0].text == "v"
    with pytest.raises(TeacherError, match="no question with id 'nope'"):
        teacher.generate([request("", "nope")], max_new_tokens=1)
    with pytest.raises(TeacherError, match="'x1' has no critique"):
        teacher.generate([request("", "x1", "critique")], max_new_tokens=1)
    with pytest.raises(TeacherError, match="no counterfactual for choice 5"):
        teacher.generate([request("", "x1", "counterfactual", 5)], max_new_tokens=1)


# --- Hugging Face (tiny) --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_teacher() -> HFTeacher:
    return HFTeacher.tiny(seed=0, max_batch_size=2)


@pytest.fixture(scope="module")
def varied_teacher() -> HFTeacher:
    """The tiny model with larger random weights: its greedy outputs vary instead of echoing the last byte."""
    import torch

    teacher = HFTeacher.tiny(seed=0, max_batch_size=3)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in teacher.model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return teacher


PROMPTS = [
    "Question: Where do fish live?\nAnswer: water\nExplanation:",
    "Hi",
    "A much longer prompt about beavers, dams, wood and where the supplies come from",
    "short one",
    "Q",
]


def test_batched_left_padded_generation_matches_one_at_a_time(varied_teacher: HFTeacher):
    requests = [request(prompt, str(index)) for index, prompt in enumerate(PROMPTS)]
    batched = varied_teacher.generate(requests, max_new_tokens=24)
    single = [varied_teacher.generate([one], max_new_tokens=24)[0] for one in requests]
    assert batched == single  # same texts and token counts, in input order, despite sorting and padding
    assert len({result.raw_text for result in batched}) == len(PROMPTS)
    assert all(result.n_tokens == 24 and result.finish_reason == FINISH_LENGTH for result in batched)


def test_stop_sequence_ends_generation_early_and_is_cut(varied_teacher: HFTeacher):
    [free] = varied_teacher.generate([request(PROMPTS[0])], max_new_tokens=24)
    stop = free.raw_text[4:6]
    [stopped] = varied_teacher.generate([request(PROMPTS[0])], max_new_tokens=24, stop=[stop])
    assert stopped.finish_reason == FINISH_STOP
    assert stopped.n_tokens < 24
    assert free.raw_text.startswith(stopped.raw_text) and stopped.raw_text.endswith(stop)
    assert stopped.text == free.raw_text[: free.raw_text.index(stop)]


def test_stop_at_line_break(tiny_teacher: HFTeacher):
    # Untrained, the tiny model repeats the last byte of its prompt, here a line break.
    prompts = [request("Answer: water\n"), request("Answer: water")]
    free = tiny_teacher.generate(prompts, max_new_tokens=12)
    stopped = tiny_teacher.generate(prompts, max_new_tokens=12, stop=["\n"])
    assert free[0].raw_text.startswith("\n\n") and free[0].finish_reason == FINISH_LENGTH
    assert (stopped[0].text, stopped[0].n_tokens, stopped[0].finish_reason) == ("", 1, FINISH_STOP)
    assert stopped[1] == free[1]  # a row without the stop sequence runs to the limit beside one that stopped


def test_prompt_too_long_for_the_context_is_refused(tiny_teacher: HFTeacher):
    from distillation.ml.teachers import TINY_TEACHER_CONTEXT

    prompt = "x" * (TINY_TEACHER_CONTEXT - 50)  # byte tokens: fits alone, not with 100 new tokens
    with pytest.raises(TeacherError, match=f"exceeds the model's context of {TINY_TEACHER_CONTEXT} tokens"):
        tiny_teacher.generate([request(prompt)], max_new_tokens=100)


def test_chat_messages_need_a_chat_template(tiny_teacher: HFTeacher):
    assert tiny_teacher.prompt_style == "plain"
    with pytest.raises(TeacherError, match="no chat template"):
        tiny_teacher.generate([request([{"role": "user", "content": "hi"}])], max_new_tokens=2)


def test_chat_template_is_applied_when_the_tokenizer_has_one():
    teacher = HFTeacher.tiny(seed=0)
    teacher.tokenizer.chat_template = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    teacher.prompt_style = "chat"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]
    [via_chat] = teacher.generate([request(messages)], max_new_tokens=6)
    rendered = "<system>Be brief.\n<user>Why?\n<assistant>"
    [via_text] = teacher.generate([request(rendered)], max_new_tokens=6)
    assert via_chat == via_text


def test_hf_loads_a_saved_checkpoint_by_path(tmp_path: Path, tiny_teacher: HFTeacher, monkeypatch):
    tiny_teacher.model.save_pretrained(tmp_path)
    tiny_teacher.tokenizer.save_pretrained(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = build_teacher(f"hf:{tmp_path}", device="cpu")
    assert isinstance(loaded, HFTeacher) and loaded.name == f"hf:{tmp_path}"
    prompts = [request(prompt) for prompt in PROMPTS[:3]]
    assert loaded.generate(prompts, max_new_tokens=5) == tiny_teacher.generate(prompts, max_new_tokens=5)


# --- factory and import cost ------------------------------------------------------------------------------------


def test_build_teacher_parses_specs(tmp_path: Path, server: FakeServer):
    assert isinstance(build_teacher("tiny"), HFTeacher)
    teacher = build_teacher("openai:m", openai_base_url=server.url, concurrency=2, timeout=3.0)
    assert isinstance(teacher, OpenAITeacher) and teacher.server == server.url.removesuffix("/v1")
    teacher.close()
    (tmp_path / "t.jsonl").write_text("", encoding="utf-8")
    assert isinstance(build_teacher(f"replay:{tmp_path / 't.jsonl'}"), ReplayTeacher)
    with pytest.raises(ValueError, match="needs the server's base URL"):
        build_teacher("openai:m")
    with pytest.raises(ValueError, match="unknown kind 'vllm'"):
        build_teacher("vllm:m")
    with pytest.raises(ValueError, match="expected hf:PATH"):
        build_teacher("hf")


def test_importing_the_cores_loads_no_heavy_library():
    code = (
        "import sys\n"
        "import distillation.ml.prompts, distillation.ml.teachers, distillation.ml.postprocess\n"
        "import distillation.ml.generation\n"
        "heavy = sorted({'torch', 'transformers', 'httpx', 'django'} & set(sys.modules))\n"
        "print(','.join(heavy))\n"
    )
    root = Path(__file__).resolve().parents[3]
    output = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == ""
