"""Teacher back-ends behind one interface: a local Hugging Face model, an OpenAI-compatible server, a replay file."""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillation.ml.postprocess import cut_at_first
from distillation.ml.prompts import COUNTERFACTUAL, CRITIQUE, RATIONALE, REVISION, Prompt
from distillation.ml.records import read_json_lines
from distillation.ml.text import check_model_location

if TYPE_CHECKING:
    import httpx
    import torch

    from distillation.ml.tiny import TinySize

# The tiny teacher reads bytes: its one-shot revision prompts run to about 2,300 of them on CommonsenseQA's
# training split, and its own noise can decode to three bytes a token, so a GPT-2-sized context is too short.
TINY_TEACHER_CONTEXT = 4096

FINISH_STOP = "stop"  # end of sequence or a stop sequence
FINISH_LENGTH = "length"  # the token limit was reached
FINISH_UNKNOWN = "unknown"  # replayed text: how it ended was not recorded


class TeacherError(RuntimeError):
    """A teacher could not produce a batch; nothing of that batch should be stored."""


@dataclass(frozen=True)
class RequestKey:
    source_id: str
    kind: str
    choice_index: int | None = None


@dataclass(frozen=True)
class TeacherRequest:
    key: RequestKey
    prompt: Prompt  # plain text, or chat messages [{"role": ..., "content": ...}]


@dataclass(frozen=True)
class TeacherResult:
    text: str  # the completion cut at the first stop sequence
    n_tokens: int | None  # generated tokens; None when the back-end cannot know (replay, a server without usage)
    finish_reason: str
    raw_text: str  # the completion as generated, before any cut

    @property
    def hit_token_limit(self) -> bool:
        return self.finish_reason == FINISH_LENGTH


class TeacherBackend:
    """One interface for every teacher: a batch of requests in, one result per request out, in order."""

    name: str = "teacher"
    # "chat" when the teacher is best prompted with chat messages, "plain" for plain completions.
    prompt_style: str = "plain"
    # True when the back-end returns stored texts as they are: they are neither prompted nor cleaned.
    verbatim: bool = False

    def generate(
        self,
        requests: Sequence[TeacherRequest],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> list[TeacherResult]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the back-end holds (connections, threads)."""


# --- Hugging Face ------------------------------------------------------------------------------------------


def _decoded_tail(tokenizer: Any, ids: list[int], min_chars: int) -> str:
    """The text of the last tokens of `ids`, at least `min_chars` long beyond the last token's own text.

    Decoding only a tail keeps the per-step check cheap; the window grows while it decodes too short, since
    a token may stand for a byte of a character or for a special token that decodes to nothing.
    """
    last_token = tokenizer.decode(ids[-1:], skip_special_tokens=True)
    window = min_chars + 2
    while True:
        tail = tokenizer.decode(ids[-window:], skip_special_tokens=True)
        if window >= len(ids) or len(tail) > min_chars + len(last_token):
            return tail
        window *= 2


def _make_stop_criteria(stops: Sequence[str], tokenizer: Any, prompt_length: int) -> Any:
    """A StoppingCriteria that ends each row once its generated text contains a stop sequence."""
    import torch
    from transformers import StoppingCriteria

    longest = max(len(stop) for stop in stops)

    class StopOnStrings(StoppingCriteria):
        def __init__(self) -> None:
            self.stopped_at: dict[int, int] = {}  # row -> generated length when its stop sequence appeared

        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            generated = input_ids[:, prompt_length:].tolist()
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            for row, ids in enumerate(generated):
                # Checked after every token, so a stop sequence can only be new near the end of the text.
                if row in self.stopped_at or any(stop in _decoded_tail(tokenizer, ids, longest) for stop in stops):
                    self.stopped_at.setdefault(row, len(ids))
                    done[row] = True
            return done

    return StopOnStrings()


class HFTeacher(TeacherBackend):
    """A causal language model generating greedily (or sampling) in length-sorted, left-padded batches."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "hf",
        max_batch_size: int = 8,
        ignore_eos: bool = False,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_batch_size = max_batch_size
        # ignore_eos makes every row generate exactly max_new_tokens: for benchmarks, as in vLLM.
        self.ignore_eos = ignore_eos
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.prompt_style = "chat" if getattr(tokenizer, "chat_template", None) else "plain"

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        compile: bool = False,
        max_batch_size: int = 8,
    ) -> HFTeacher:
        """Load by local path or hub id; only from the local cache when HF_HUB_OFFLINE is set."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # bf16 halves memory and is what GPUs are fast at; on CPU it is slow, so float32 there.
        torch_dtype = (
            getattr(torch, dtype) if dtype else (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        )
        check_model_location(path)
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, local_files_only=offline)
        model = model.to(device)
        if compile:
            model.forward = torch.compile(model.forward)
        return cls(model, tokenizer, name=f"hf:{path}", max_batch_size=max_batch_size)

    @classmethod
    def tiny(
        cls, seed: int = 0, *, size: TinySize | None = None, max_batch_size: int = 8, ignore_eos: bool = False
    ) -> HFTeacher:
        """The tiny randomly initialised causal LM: same code path as a real model, no download."""
        from distillation.ml.tiny import TinySize, build_tiny_causal_lm

        model, tokenizer = build_tiny_causal_lm(seed, size or TinySize(), max_positions=TINY_TEACHER_CONTEXT)
        return cls(model, tokenizer, name="tiny", max_batch_size=max_batch_size, ignore_eos=ignore_eos)

    def _prompt_text(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if self.prompt_style != "chat":
            raise TeacherError(f"{self.name}: chat messages given but the tokenizer has no chat template")
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def generate(
        self,
        requests: Sequence[TeacherRequest],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> list[TeacherResult]:
        token_ids = [self._encode(request.prompt) for request in requests]
        self._check_context(token_ids, max_new_tokens)
        # Longest first, so rows of similar length share a batch and little compute goes to padding.
        order = sorted(range(len(requests)), key=lambda index: len(token_ids[index]), reverse=True)
        results: list[TeacherResult | None] = [None] * len(requests)
        for start in range(0, len(order), self.max_batch_size):
            chunk = order[start : start + self.max_batch_size]
            batch_results = self._generate_batch([token_ids[i] for i in chunk], max_new_tokens, temperature, stop)
            for index, result in zip(chunk, batch_results, strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def _encode(self, prompt: Prompt) -> list[int]:
        # A chat template writes the special tokens it needs; plain prompts get the model's usual ones (a BOS).
        text = self._prompt_text(prompt)
        ids = self.tokenizer(text, add_special_tokens=isinstance(prompt, str))["input_ids"]
        # Some tokenizers (ByT5's) close every text with EOS, which would tell the model the prompt has ended.
        eos = self.tokenizer.eos_token_id
        if ids and ids[-1] == eos and not text.endswith(self.tokenizer.eos_token):
            ids = ids[:-1]
        return ids

    def _check_context(self, token_ids: list[list[int]], max_new_tokens: int) -> None:
        config = self.model.config
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        longest = max((len(ids) for ids in token_ids), default=0)
        if limit and longest + max_new_tokens > limit:
            raise TeacherError(
                f"{self.name}: a prompt of {longest} tokens plus {max_new_tokens} new tokens exceeds the "
                f"model's context of {limit} tokens; use fewer few-shot examples or a smaller limit"
            )

    def _generate_batch(
        self, token_ids: list[list[int]], max_new_tokens: int, temperature: float, stop: Sequence[str]
    ) -> list[TeacherResult]:
        import torch
        from transformers import StoppingCriteriaList

        batch = self.tokenizer.pad({"input_ids": token_ids}, padding=True, padding_side="left", return_tensors="pt")
        batch = {name: tensor.to(self.model.device) for name, tensor in batch.items()}
        prompt_length = batch["input_ids"].shape[1]
        stop_criteria = _make_stop_criteria(stop, self.tokenizer, prompt_length) if stop else None
        settings = self._generation_settings(max_new_tokens, temperature)
        with torch.inference_mode():
            output = self.model.generate(
                **batch,
                **settings,
                stopping_criteria=StoppingCriteriaList([stop_criteria] if stop_criteria else []),
            )
        generated = output[:, prompt_length:].tolist()
        stopped_at = stop_criteria.stopped_at if stop_criteria else {}
        return [self._result(row_ids, stopped_at.get(row), stop) for row, row_ids in enumerate(generated)]

    def _generation_settings(self, max_new_tokens: int, temperature: float) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            settings["temperature"] = temperature
        else:
            # A checkpoint's own generation config may ask for sampling settings that greedy search ignores.
            settings.update(temperature=None, top_p=None, top_k=None)
        if self.ignore_eos:
            settings["min_new_tokens"] = max_new_tokens
        return settings

    def _result(self, ids: list[int], stopped_at: int | None, stop: Sequence[str]) -> TeacherResult:
        """The row's tokens up to its end of sequence or stop sequence; the limit when it met neither."""
        eos_ids = self._eos_ids()
        eos_at = next((position for position, token in enumerate(ids) if token in eos_ids), None)
        ends = [end for end in (stopped_at, None if eos_at is None else eos_at + 1) if end is not None]
        n_tokens = min(ends) if ends else len(ids)
        finish = FINISH_STOP if ends else FINISH_LENGTH
        raw_text = self.tokenizer.decode(ids[:n_tokens], skip_special_tokens=True)
        text, _ = cut_at_first(raw_text, stop)
        return TeacherResult(text=text, n_tokens=n_tokens, finish_reason=finish, raw_text=raw_text)

    def _eos_ids(self) -> set[int]:
        if self.ignore_eos:
            return set()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos) if isinstance(eos, list) else {eos}


# --- OpenAI-compatible server ------------------------------------------------------------------------------

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_base: float = 0.5  # seconds before the first retry; doubled each time
    backoff_max: float = 30.0
    jitter: float = 0.25  # up to this fraction of the delay is added at random, so clients do not retry in step

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        base = min(self.backoff_base * 2**attempt, self.backoff_max)
        return base + rng.uniform(0, base * self.jitter)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header, given as seconds or as an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def api_root(base_url: str) -> str:
    """The server root whichever way the URL was written: `http://host:8000`, `.../v1` or `.../v1/`."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


class OpenAITeacher(TeacherBackend):
    """Any OpenAI-compatible server (vLLM, TGI, Ollama, llama.cpp, hosted APIs), with bounded concurrency."""

    prompt_style = "chat"

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str | None = None,
        concurrency: int = 16,
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        import httpx

        self.model = model
        self.name = f"openai:{model}"
        self.server = api_root(base_url)
        self.retry = retry
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.Client(base_url=self.server, headers=headers, timeout=timeout, limits=limits)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="openai-teacher")
        self._rng = random.Random()
        self._rng_lock = threading.Lock()

    def generate(
        self,
        requests: Sequence[TeacherRequest],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> list[TeacherResult]:
        futures = [
            self._pool.submit(self._complete, request.prompt, max_new_tokens, temperature, list(stop))
            for request in requests
        ]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((future for future in done if future.exception() is not None), None)
        if failed is not None:
            # The whole batch fails: requests not yet sent are dropped, and nothing is returned.
            for future in pending:
                future.cancel()
            raise failed.exception()  # type: ignore[misc]
        return [future.result() for future in futures]

    def _complete(self, prompt: Prompt, max_new_tokens: int, temperature: float, stop: list[str]) -> TeacherResult:
        chat = not isinstance(prompt, str)
        path = "/v1/chat/completions" if chat else "/v1/completions"
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            ("messages" if chat else "prompt"): prompt,
        }
        if stop:
            body["stop"] = stop
        payload = self._post_with_retries(path, body)
        try:
            choice = payload["choices"][0]
            raw_text = choice["message"]["content"] if chat else choice["text"]
            finish_reason = choice.get("finish_reason") or FINISH_STOP
            n_tokens = (payload.get("usage") or {}).get("completion_tokens")
        except (KeyError, IndexError, TypeError) as error:
            raise TeacherError(f"{self.server}{path}: unexpected response {str(payload)[:300]!r}") from error
        raw_text = raw_text or ""
        text, _ = cut_at_first(raw_text, stop)
        finish = FINISH_LENGTH if finish_reason == FINISH_LENGTH else FINISH_STOP
        return TeacherResult(text=text, n_tokens=n_tokens, finish_reason=finish, raw_text=raw_text)

    def _post_with_retries(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        url = f"{self.server}{path}"
        for attempt in range(self.retry.max_retries + 1):
            last_attempt = attempt == self.retry.max_retries
            try:
                response = self._client.post(path, json=body)
            except httpx.TimeoutException as error:
                raise TeacherError(f"{url}: no response within {self.timeout:g} s ({type(error).__name__})") from error
            except httpx.TransportError as error:
                if last_attempt:
                    raise TeacherError(f"{url}: cannot connect ({error}) after {attempt + 1} attempts") from error
                self._sleep(attempt, None)
                continue
            if response.status_code == 200:
                return self._json(response, url)
            if response.status_code not in RETRYABLE_STATUS or last_attempt:
                raise TeacherError(
                    f"{url}: HTTP {response.status_code} after {attempt + 1} attempt(s): {response.text[:300]!r}"
                )
            self._sleep(attempt, parse_retry_after(response.headers.get("Retry-After")))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _sleep(self, attempt: int, retry_after: float | None) -> None:
        with self._rng_lock:
            delay = self.retry.delay(attempt, retry_after, self._rng)
        time.sleep(delay)

    @staticmethod
    def _json(response: httpx.Response, url: str) -> dict[str, Any]:
        try:
            return response.json()
        except ValueError as error:
            raise TeacherError(f"{url}: HTTP 200 but the body is not JSON: {response.text[:300]!r}") from error

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()


# --- Replay of a teacher file -------------------------------------------------------------------------------

_REPLAY_FIELDS = {RATIONALE: "rationale", CRITIQUE: "critique", REVISION: "revision"}


class ReplayTeacher(TeacherBackend):
    """Texts made elsewhere, looked up by question id and stage, returned exactly as stored."""

    verbatim = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"replay:{self.path.name}"
        self.rows = {str(row["id"]): row for _, row in read_json_lines(self.path)}

    def lookup(self, key: RequestKey) -> str:
        row = self.rows.get(key.source_id)
        if row is None:
            raise TeacherError(f"{self.path}: no question with id {key.source_id!r}")
        if key.kind == COUNTERFACTUAL:
            texts = row.get("counterfactual_rationales") or []
            if key.choice_index is None or not 0 <= key.choice_index < len(texts):
                raise TeacherError(
                    f"{self.path}: question {key.source_id!r} has no counterfactual for choice {key.choice_index}"
                )
            return texts[key.choice_index]
        # Other kinds (a judge's `judge:<construct>`) are read from the field of that name, when the row has it.
        field_name = _REPLAY_FIELDS.get(key.kind) or (key.kind if key.kind in row else None)
        if field_name is None:
            raise TeacherError(f"{self.path}: unknown stage {key.kind!r}")
        text = row.get(field_name)
        if text is None:
            raise TeacherError(f"{self.path}: question {key.source_id!r} has no {field_name}")
        return text

    def generate(
        self,
        requests: Sequence[TeacherRequest],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> list[TeacherResult]:
        """Limits and stop sequences do not apply: the stored text is the result."""
        texts = [self.lookup(request.key) for request in requests]
        return [TeacherResult(text=text, n_tokens=None, finish_reason=FINISH_UNKNOWN, raw_text=text) for text in texts]


# --- Factory ------------------------------------------------------------------------------------------------


def build_teacher(
    spec: str,
    *,
    openai_base_url: str | None = None,
    openai_api_key: str | None = None,
    concurrency: int = 16,
    timeout: float = 60.0,
    device: str | None = None,
    dtype: str | None = None,
    compile: bool = False,
) -> TeacherBackend:
    """A back-end from `hf:PATH`, `openai:MODEL`, `replay:FILE` or `tiny`."""
    kind, _, target = spec.partition(":")
    if kind == "tiny" and not target:
        return HFTeacher.tiny()
    if not target:
        raise ValueError(f"teacher spec {spec!r}: expected hf:PATH, openai:MODEL, replay:FILE or tiny")
    if kind == "hf":
        return HFTeacher.from_pretrained(target, device=device, dtype=dtype, compile=compile)
    if kind == "openai":
        if not openai_base_url:
            raise ValueError(f"teacher spec {spec!r} needs the server's base URL")
        return OpenAITeacher(
            target, base_url=openai_base_url, api_key=openai_api_key, concurrency=concurrency, timeout=timeout
        )
    if kind == "replay":
        return ReplayTeacher(target)
    raise ValueError(f"teacher spec {spec!r}: unknown kind {kind!r}; expected hf, openai, replay or tiny")
