"""Load benchmark: many annotators at once through gunicorn and PostgreSQL, then a count of every rating.

    .venv/bin/python bench/load.py [--annotators 200] [--ratings 12] [--workers 4] [--threads 4]
    .venv/bin/python bench/load.py --annotators 300 --arrivals-in 60 --think 10-30

It creates a fresh database (dropped first if it exists), migrates it, builds a study of four conditions with
the real services, starts gunicorn on a free port of 127.0.0.1, and runs N annotator clients (asyncio + httpx).
Each one does what a browser does: opens its signed invitation, consents, answers the demographics form, then
for each of its screens loads the next explanation (GET) and submits its ratings of every construct in the
single screen form (POST), and finally loads the completion page.

Two modes:
- closed loop (the default): every annotator starts at once and sends its next request as soon as the last one
  is answered, with no think time and no autosave: the most the server takes.
- think time (`--think LOW-HIGH`, seconds per screen; `--arrivals-in S` spreads the starts uniformly over S
  seconds, as a Prolific launch fills its places): an annotator reads each page, and on a rating screen
  clicks one point per construct at even intervals of the screen's think time, each click autosaved through
  the answer endpoint as the page's script does, then submits the screen.

It prints completed sessions, requests/s, latency percentiles per endpoint (as the client saw them, and as
gunicorn spent on them), the server's CPU time per request (the gunicorn workers' and the PostgreSQL backends'
own CPU time, read from /proc, over the requests served), then checks that the database holds exactly the
ratings the clients were told were saved (nothing lost, nothing duplicated, none over target) and prints PASS
or FAIL (exit status 0 or 1). Gunicorn is stopped and the database dropped at the end.

Keep-alive: the server keeps an idle connection `SERVER_KEEPALIVE_S` seconds and the client drops its idle
ones after `CLIENT_KEEPALIVE_S`, fewer. The other way round (gunicorn's default 2 s against httpx's 5 s) a
client sends a request on a connection the server is closing at that moment, which fails with ReadError; a
browser sends a GET again, but not a POST. That was the cause of the ReadErrors this benchmark once saw.

The clients run on the same machine as the server, so they compete with it for the CPU: the figures are a
floor for what the server does on its own, and the client's own CPU time is printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PG_SERVER = "postgres://postgres@127.0.0.1:5432"
CONDITIONS = ("CF:Unrevised", "MT:Unrevised", "MT+CF:Unrevised", "MT+CF:Revised")
RATINGS_PER_EXPLANATION = 3
# Room in the study beyond what the annotators need, so allocation never runs short of explanations.
CAPACITY_SLACK = 1.5
# Annotator writes per minute per token (per address: ten times that). All clients share 127.0.0.1, so the
# production default (120, so 1,200 per address) would throttle the benchmark instead of measuring it.
WRITES_PER_MINUTE = 100_000
# The client must drop an idle connection before the server does (see the module's docstring).
SERVER_KEEPALIVE_S = 30
CLIENT_KEEPALIVE_S = 15
APPLICATION_NAME = "evalsite-load-web"  # marks the server's PostgreSQL connections, whose CPU time is counted

NEXT, SUBMIT, FIRST_SCREEN, ENTRY, DONE = "next explanation", "submit rating", "first screen", "entry", "done page"
AUTOSAVE = "autosave answer"
KINDS = (NEXT, SUBMIT, AUTOSAVE, FIRST_SCREEN, ENTRY, DONE)

_ASSIGNMENT = re.compile(r'name="assignment" value="(\d+)"')
_RATING_FIELD = re.compile(r'name="r-(\d+)-(\d+)"')


def think_range(raw: str) -> tuple[float, float]:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)", raw)
    if not match or float(match.group(1)) > float(match.group(2)):
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH seconds such as 10-30, not {raw!r}")
    return float(match.group(1)), float(match.group(2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=200, help="concurrent annotator clients (default 200)")
    parser.add_argument("--ratings", type=int, default=12, help="explanations each annotator rates (default 12)")
    parser.add_argument(
        "--duration-limit",
        type=float,
        default=None,
        help="seconds before unfinished clients are stopped (default 300 closed loop; think time: the longest "
        "session plus the arrivals plus 120)",
    )
    parser.add_argument(
        "--think",
        type=think_range,
        default=None,
        metavar="LOW-HIGH",
        help="think-time mode: seconds per rating screen, drawn uniformly (entry pages get a fifth of it); "
        "each construct's click is autosaved",
    )
    parser.add_argument(
        "--arrivals-in", type=float, default=0.0, help="start the annotators uniformly over this many seconds"
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (default 4)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (default 4)")
    parser.add_argument("--database", default="evalsite_load", help="the database to create and drop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.ratings % len(CONDITIONS):
        parser.error(f"--ratings must be a multiple of the {len(CONDITIONS)} conditions (one block each)")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", args.database) or args.database in {"postgres", "evalsite"}:
        parser.error("--database must be a plain name of a scratch database (it is dropped)")
    if args.arrivals_in < 0:
        parser.error("--arrivals-in must be at least 0")
    if args.duration_limit is None:
        if args.think:
            longest = args.ratings * args.think[1] + 3 * args.think[1] / 5
            args.duration_limit = args.arrivals_in + 1.5 * longest + 120
        else:
            args.duration_limit = 300 + args.arrivals_in
    return args


# -- setup ---------------------------------------------------------------------------------------------------------


def configure_environment(args: argparse.Namespace, scratch: Path) -> dict[str, str]:
    """The production settings (DEBUG off), pointed at the scratch database; shared by this process and gunicorn."""
    env = {
        "DJANGO_SETTINGS_MODULE": "evalsite.settings",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": HOST,
        "SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": f"{PG_SERVER}/{args.database}",
        "ANNOTATOR_WRITES_PER_MINUTE": str(WRITES_PER_MINUTE),
        "STATIC_ROOT": str(scratch / "static"),
        "EVALSITE_ARTIFACTS_DIR": str(scratch / "artifacts"),
        "LOG_LEVEL": "WARNING",
    }
    os.environ.pop("REDIS_URL", None)  # annotator pages need no Redis; nothing here starts a job
    os.environ.update(env)
    return {**os.environ}


def recreate_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare_site() -> None:
    import django
    from django.core.management import call_command

    sys.path.insert(0, str(ROOT))
    django.setup()
    call_command("migrate", verbosity=0)
    # DEBUG=0 serves static files from the manifest that collectstatic writes.
    call_command("collectstatic", interactive=False, verbosity=0)


def build_study(*, annotators: int, ratings: int):
    """A study of four conditions with enough items that every annotator gets a full session."""
    from annotations.services.studies import (
        condition_get_or_create,
        explanation_set_text,
        item_get_or_create,
        study_create,
        study_open,
    )

    n_items = math.ceil(CAPACITY_SLACK * annotators * ratings / (len(CONDITIONS) * RATINGS_PER_EXPLANATION))
    n_items = max(n_items, ratings)  # no question twice for one annotator
    study = study_create(
        config={
            "slug": "load",
            "title": "Load benchmark",
            "explanations_per_annotator": ratings,
            "ratings_per_explanation": RATINGS_PER_EXPLANATION,
            "attention_check_positions": [],
            "min_seconds_per_screen": 0.0,
        }
    )
    choices = ["river", "desert", "kitchen", "attic", "library"]
    for label in CONDITIONS:
        condition = condition_get_or_create(study=study, label=label)
        for index in range(n_items):
            item = item_get_or_create(
                study=study,
                key=f"q{index:05d}",
                question_text=f"Question {index}: where would you most likely find thing number {index}?",
                choices=choices,
                answer=choices[index % 5],
            )
            explanation_set_text(
                item=item,
                condition=condition,
                text=f"{label} explains question {index}: it belongs there because of reason {index}.",
                source="manual",
                provenance={"bench": "load"},
            )
    return study_open(study=study), n_items


def demographics_answers(study) -> dict[str, str]:
    return {q["name"]: (q.get("choices") or ["Netherlands"])[0] for q in study.demographics_questions or []}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_gunicorn(
    args: argparse.Namespace, env: dict[str, str], port: int, log: Path, access_log: Path
) -> subprocess.Popen:
    command = [
        str(ROOT / ".venv" / "bin" / "gunicorn"),
        "evalsite.wsgi",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
        "--timeout",
        "60",
        "--keep-alive",
        str(SERVER_KEEPALIVE_S),
        # Time spent in a worker per request (microseconds), apart from waiting in the queue and the client.
        "--access-logfile",
        str(access_log),
        "--access-logformat",
        "%(m)s %(s)s %(D)s %(U)s",
        "--preload",  # the app is imported once, before forking: no worker pays the import on a timed request
        "--graceful-timeout",
        "10",
    ]
    with log.open("wb") as handle:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return server
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not listen within 60 s") from None
            time.sleep(0.2)


def stop_gunicorn(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)  # graceful: the workers finish their requests and close connections
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


class ServerCpu:
    """CPU time (user + system) of the gunicorn workers and of the PostgreSQL backends serving them.

    A thread samples /proc every `every` seconds: the workers are the master's children, the backends those
    whose application_name is `APPLICATION_NAME` (the server's connections, not this script's). A process seen
    at the start counts from its CPU time then; one born later (a backend opened during the run) from zero. A
    backend that exits between two samples loses its last fraction of a sample, so the figure is a floor.
    """

    def __init__(self, master_pid: int, database: str, every: float = 0.5) -> None:
        self.master_pid, self.database, self.every = master_pid, database, every
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _cpu(self, pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / self.ticks

    def _workers(self) -> list[int]:
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == self.master_pid:
                        children.append(int(entry.name))
                except (OSError, IndexError, ValueError):
                    continue
        return children

    def _sample(self, admin, initial: bool) -> None:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (self.database, APPLICATION_NAME),
        ).fetchall()
        for kind, pids in (("gunicorn", self._workers()), ("postgresql", [pid for (pid,) in rows])):
            for pid in pids:
                cpu = self._cpu(pid)
                if cpu is None:
                    continue
                self.first.setdefault((kind, pid), cpu if initial else 0.0)
                self.last[(kind, pid)] = cpu

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            self._sample(admin, initial=True)
            self.started.set()
            while not self.stopping.wait(self.every):
                self._sample(admin, initial=False)
            self._sample(admin, initial=False)

    def start(self) -> None:
        self.started = threading.Event()
        self.thread.start()
        self.started.wait(timeout=30)

    def stop(self) -> dict[str, float]:
        """Seconds of CPU per kind over the run."""
        self.stopping.set()
        self.thread.join(timeout=30)
        totals: dict[str, float] = defaultdict(float)
        for key, cpu in self.last.items():
            totals[key[0]] += cpu - self.first[key]
        return dict(totals)


# -- the annotator clients -----------------------------------------------------------------------------------------


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    completed: int = 0
    requests: int = 0
    get_retries: int = 0
    # (invitation label, explanation id, construct id) -> value, for every screen and autosave the server accepted.
    saved: dict[tuple[str, int, int], int] = field(default_factory=dict)


class SessionFailed(Exception):
    pass


class Annotator:
    """One simulated annotator: a browser without cookies, following the site's own links."""

    def __init__(self, client, results: Results, label: str, invite_url: str, demographics: dict, args, budget: int):
        self.client = client
        self.results = results
        self.label = label
        self.invite_url = invite_url
        self.demographics = demographics
        self.think: tuple[float, float] | None = args.think
        self.requests_left = budget
        self.last_latency = 0.0
        self.random = random.Random(f"{args.seed}:{label}")

    async def request(self, kind: str | None, method: str, url: str, expect: int, data: dict | None = None):
        """One request, its latency recorded under `kind` (None: the caller records it once it knows the kind)."""
        if self.requests_left <= 0:
            raise SessionFailed("request budget spent")
        self.requests_left -= 1
        self.results.requests += 1
        started = time.perf_counter()
        try:
            response = await self.client.request(method, url, data=data)
        except httpx.TransportError as exc:
            self.results.statuses[type(exc).__name__] += 1
            if method != "GET":
                raise SessionFailed(f"{method} {kind}: {type(exc).__name__}: {exc}") from exc
            # A browser sends a GET again, once, when a kept-alive connection fails under it.
            self.results.get_retries += 1
            try:
                response = await self.client.request(method, url, data=data)
            except httpx.TransportError as again:
                raise SessionFailed(f"{method} {kind}: {type(again).__name__}, twice") from again
        self.last_latency = time.perf_counter() - started
        if kind is not None:
            self.results.latencies[kind].append(self.last_latency)
        self.results.statuses[response.status_code] += 1
        if response.status_code != expect:
            raise SessionFailed(f"{method} {kind}: HTTP {response.status_code}, expected {expect}")
        return response

    async def read_page(self) -> None:
        """Think-time mode: a moment on an entry page (a fifth of a screen's think time)."""
        if self.think:
            await asyncio.sleep(self.random.uniform(*self.think) / 5)

    async def run(self) -> None:
        entered = await self.request(ENTRY, "GET", self.invite_url, 302)
        session_url = entered.headers["location"]
        await self.request(ENTRY, "GET", session_url, 200)  # consent page
        await self.read_page()
        await self.request(ENTRY, "POST", session_url, 302, {"action": "consent", "agree": "yes"})
        await self.request(ENTRY, "GET", session_url, 200)  # instructions
        await self.read_page()
        await self.request(ENTRY, "GET", f"{session_url}?step=demographics", 200)
        await self.read_page()
        await self.request(ENTRY, "POST", session_url, 302, {"action": "demographics", **self.demographics})
        kind = FIRST_SCREEN  # this GET also allocates the session's screens
        while True:
            page = await self.request(None, "GET", session_url, 200)
            assignment = _ASSIGNMENT.search(page.text)
            if assignment is None:
                if 'id="completion-code"' not in page.text:
                    raise SessionFailed("a page that is neither a screen nor the completion page")
                self.results.latencies[DONE].append(self.last_latency)
                break
            self.results.latencies[kind].append(self.last_latency)
            if kind == FIRST_SCREEN:
                self.results.latencies[NEXT].append(self.last_latency)  # it is a "next explanation" too
            kind = NEXT
            fields = sorted({(int(e), int(c)) for e, c in _RATING_FIELD.findall(page.text)})
            if not fields:
                raise SessionFailed("a screen without rating fields (an attention check was not expected)")
            values = {key: self.random.randint(1, 5) for key in fields}
            if self.think:
                await self.rate_with_autosave(session_url, assignment.group(1), values)
            form = {"action": "screen", "assignment": assignment.group(1)}
            form |= {f"r-{e}-{c}": str(v) for (e, c), v in values.items()}
            await self.request(SUBMIT, "POST", session_url, 302, form)
            for (explanation, construct), value in values.items():
                self.results.saved[(self.label, explanation, construct)] = value
        self.results.completed += 1

    async def rate_with_autosave(self, session_url: str, assignment: str, values: dict) -> None:
        """Click one point per construct at even intervals of the screen's think time; each click is sent to
        the answer endpoint as the page's script does (annotate.js), and the last interval precedes Next."""
        pause = self.random.uniform(*self.think) / (len(values) + 1)
        for (explanation, construct), value in values.items():
            await asyncio.sleep(pause)
            data = {"assignment": assignment, "explanation": explanation, "construct": construct, "value": value}
            saved = await self.request(AUTOSAVE, "POST", f"{session_url}answer/", 200, data)
            if saved.json() != {"saved": True}:
                raise SessionFailed(f"autosave answered {saved.text[:80]}")
            # Acknowledged: the database must hold it, even if the session stops before the screen is sent.
            self.results.saved[(self.label, explanation, construct)] = value
        await asyncio.sleep(pause)


async def run_clients(
    base_url: str, invites: dict[str, str], demographics: dict, args, n_constructs: int
) -> tuple[Results, float]:
    results = Results()
    per_screen = 2 + (n_constructs if args.think else 0)
    budget = 2 * (6 + per_screen * args.ratings + 1)  # twice a session's requests: never reached when healthy
    limits = httpx.Limits(
        max_connections=args.annotators, max_keepalive_connections=args.annotators, keepalive_expiry=CLIENT_KEEPALIVE_S
    )
    arrivals = random.Random(args.seed)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        annotators = [
            Annotator(client, results, label, url, demographics, args, budget) for label, url in invites.items()
        ]

        async def one(annotator: Annotator, delay: float) -> None:
            await asyncio.sleep(delay)
            try:
                await annotator.run()
            except SessionFailed as exc:
                results.failures.append(f"{annotator.label}: {exc}")

        started = time.perf_counter()
        tasks = [asyncio.create_task(one(a, arrivals.uniform(0, args.arrivals_in))) for a in annotators]
        _, pending = await asyncio.wait(tasks, timeout=args.duration_limit)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        elapsed = time.perf_counter() - started
        if pending:
            results.failures.append(
                f"{len(pending)} sessions unfinished after --duration-limit {args.duration_limit:.0f} s"
            )
    return results, elapsed


# -- report and check ------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def print_figures(results: Results, elapsed: float, args, client_cpu: float) -> None:
    total = results.requests
    print(f"\nsessions completed: {results.completed} of {args.annotators} in {elapsed:.1f} s")
    print(f"requests: {total} ({total / elapsed:.1f} requests/s); client CPU {client_cpu:.1f} s")
    print(f"responses: {dict(sorted(results.statuses.items(), key=str))}; GETs sent again: {results.get_retries}")
    print(f"\n{'latency (ms)':<20}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    for kind in KINDS:
        values = results.latencies.get(kind) or []
        if values:
            cells = [1000 * percentile(values, q) for q in (50, 95, 99)] + [1000 * max(values)]
            print(f"{kind:<20}{len(values):>7}" + "".join(f"{cell:>9.0f}" for cell in cells))
    if results.failures:
        print(f"\n{len(results.failures)} failures, first ones:")
        for line in results.failures[:10]:
            print(f"  {line}")


def _endpoint(method: str, path: str) -> str:
    if "/invite/" in path:
        return "GET invitation"
    if path.endswith("/answer/"):
        return f"{method} answer"
    return f"{method} session page"


def print_server_times(access_log: Path) -> int:
    """Per endpoint, the time gunicorn spent on each request: the service time, without queueing for a worker
    thread. Returns the number of requests served."""
    times: dict[str, list[float]] = defaultdict(list)
    for line in access_log.read_text().splitlines():
        method, _status, micros, path = line.split(maxsplit=3)
        times[_endpoint(method, path)].append(int(micros) / 1e6)
    print(f"\n{'in gunicorn (ms)':<20}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    for endpoint in sorted(times):
        values = times[endpoint]
        cells = [1000 * percentile(values, q) for q in (50, 95, 99)] + [1000 * max(values)]
        print(f"{endpoint:<20}{len(values):>7}" + "".join(f"{cell:>9.0f}" for cell in cells))
    return sum(len(values) for values in times.values())


def print_server_cpu(cpu: dict[str, float], served: int, elapsed: float) -> float:
    """The server's own CPU time per request served; returns it in milliseconds."""
    total = sum(cpu.values())
    per_request = 1000 * total / served if served else float("nan")
    parts = ", ".join(f"{kind} {seconds:.1f} s" for kind, seconds in sorted(cpu.items()))
    print(
        f"\nserver CPU: {total:.1f} s ({parts}) for {served} requests: {per_request:.1f} ms per request; "
        f"{total / elapsed:.2f} cores busy on average over the {elapsed:.0f} s run"
    )
    return per_request


def check_database(study, results: Results, args) -> list[str]:
    """Compare what the database holds with what the server told the clients it saved; return the problems."""
    from django.db.models import Count

    from annotations.models import Annotator, Assignment, Explanation, Rating

    n_constructs = study.constructs.count()
    expected = args.annotators * args.ratings * n_constructs
    ratings = Rating.objects.filter(annotator__study=study)
    stored = {
        (label, e, c): v
        for label, e, c, v in ratings.values_list("annotator__external_id", "explanation_id", "construct_id", "value")
    }
    duplicates = ratings.values("annotator", "explanation", "construct").annotate(n=Count("id")).filter(n__gt=1).count()
    over_target = (
        Assignment.objects.filter(annotator__study=study)
        .exclude(status=Assignment.Status.RELEASED)
        .values("explanation")
        .annotate(n=Count("id"))
        .filter(n__gt=study.ratings_per_explanation)
        .count()
    )
    live = Assignment.objects.filter(annotator__study=study).exclude(status=Assignment.Status.RELEASED)
    held = Counter(live.values_list("explanation_id", flat=True))
    held.update(live.exclude(second_explanation=None).values_list("second_explanation_id", flat=True))
    counters = dict(Explanation.objects.filter(item__study=study).values_list("pk", "reserved"))
    drifted = sum(1 for pk, reserved in counters.items() if reserved != held.get(pk, 0))
    finished = Annotator.objects.filter(study=study, finished_at__isnull=False).count()
    print(
        f"\nratings stored: {ratings.count()}, "
        f"expected {args.annotators} x {args.ratings} x {n_constructs} = {expected}"
    )
    print(
        f"sessions finished in the database: {finished}; duplicate ratings: {duplicates}; "
        f"explanations over their {study.ratings_per_explanation}-rating target: {over_target}"
    )
    problems = []
    if ratings.count() != expected:
        problems.append(f"{ratings.count()} ratings stored, {expected} expected")
    if duplicates:
        problems.append(f"{duplicates} ratings stored more than once")
    lost = set(results.saved) - set(stored)
    unacknowledged = set(stored) - set(results.saved)
    changed = sum(1 for key in set(results.saved) & set(stored) if results.saved[key] != stored[key])
    print(
        f"acknowledged by the server: {len(results.saved)}; lost: {len(lost)}; stored without an acknowledgement: "
        f"{len(unacknowledged)}; stored with another value: {changed}"
    )
    if lost or unacknowledged or changed:
        problems.append(f"{len(lost)} lost, {len(unacknowledged)} unacknowledged, {changed} changed")
    if finished != args.annotators or results.completed != args.annotators:
        problems.append(f"{results.completed} sessions completed by clients, {finished} finished in the database")
    if over_target:
        problems.append(f"{over_target} explanations assigned beyond their target")
    print(f"explanations whose reserved count differs from the screens that hold them: {drifted}")
    if drifted:
        problems.append(f"{drifted} explanations with a reserved count that drifted")
    return problems


def main() -> int:
    args = parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="evalsite-load-"))
    env = configure_environment(args, scratch)
    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(
        f"load: {args.annotators} annotators x {args.ratings} ratings, gunicorn {args.workers} workers x "
        f"{args.threads} threads, PostgreSQL database {args.database} (created now, dropped at the end)"
    )
    if args.think:
        print(
            f"mode: think time, {args.think[0]:g}-{args.think[1]:g} s per screen, arrivals spread over "
            f"{args.arrivals_in:g} s, every click autosaved"
        )
    else:
        print(f"mode: closed loop (no think time, no autosave), arrivals spread over {args.arrivals_in:g} s")
    print(
        f"note: ANNOTATOR_WRITES_PER_MINUTE raised to {WRITES_PER_MINUTE} for this run: every client posts from "
        "127.0.0.1, and the production limit (per address ten times the per-session 120) would throttle them"
    )
    server = None
    recreate_database(args.database)
    try:
        setup_started = time.perf_counter()
        prepare_site()
        from django.urls import reverse

        from annotations.tokens import invite_token

        study, n_items = build_study(annotators=args.annotators, ratings=args.ratings)
        labels = [f"load-{index:04d}" for index in range(args.annotators)]
        invites = {
            label: reverse("annotations:invite", args=[study.slug, invite_token(study_id=study.pk, label=label)])
            for label in labels
        }
        port = free_port()
        server_env = {**env, "DATABASE_URL": f"{env['DATABASE_URL']}?application_name={APPLICATION_NAME}"}
        server = start_gunicorn(args, server_env, port, scratch / "gunicorn.log", scratch / "access.log")
        print(
            f"study: {len(CONDITIONS)} conditions x {n_items} items, {study.constructs.count()} constructs, "
            f"{RATINGS_PER_EXPLANATION} ratings per explanation; ready in {time.perf_counter() - setup_started:.0f} s; "
            f"serving on http://{HOST}:{port}"
        )

        server_cpu = ServerCpu(server.pid, args.database)
        server_cpu.start()
        cpu_before = time.process_time()
        results, elapsed = asyncio.run(
            run_clients(f"http://{HOST}:{port}", invites, demographics_answers(study), args, study.constructs.count())
        )
        client_cpu = time.process_time() - cpu_before
        cpu = server_cpu.stop()
        print_figures(results, elapsed, args, client_cpu)
        stop_gunicorn(server)  # flushes the access log
        served = print_server_times(scratch / "access.log")
        print_server_cpu(cpu, served, elapsed)
        problems = check_database(study, results, args)
        if results.failures and not problems:
            problems.append(f"{len(results.failures)} client failures")
        print("\nPASS" if not problems else "\nFAIL: " + "; ".join(problems))
        return 0 if not problems else 1
    finally:
        if server is not None:
            stop_gunicorn(server)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django may not have been set up when setup itself failed
            pass
        drop_database(args.database)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
