"""A small Prolific stand-in on 127.0.0.1: the v1 endpoints the site uses, state in memory."""

from __future__ import annotations

import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_LIFETIME_S = 120
TOKEN = "test-prolific-token"


def new_id() -> str:
    return secrets.token_hex(12)


# The list endpoint's documented query parameters (anything else is refused, as a strict server would).
SUBMISSION_LIST_PARAMS = {"study", "status", "page", "page_size", "ordering"}
# The documented submission statuses.
STATUSES = (
    "ACTIVE",
    "RESERVED",
    "AWAITING REVIEW",
    "APPROVED",
    "PARTIALLY APPROVED",
    "REJECTED",
    "RETURNED",
    "TIMED-OUT",
    "SCREENED OUT",
)


class FakeProlific:
    def __init__(self, page_size: int = 2, currency: str = "GBP") -> None:
        self.currency = currency
        self.page_size = page_size  # the most the fake returns per page, whatever page_size asks for
        self.returns: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, Any]] = []
        self.studies: dict[str, dict[str, Any]] = {}
        self.submissions: dict[str, list[dict[str, Any]]] = {}
        self.bulk_bonuses: dict[str, dict[str, Any]] = {}
        self.paid: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self.base = ""  # the server's own address: Prolific's next links are absolute

    def add_submission(self, study_id: str, participant_id: str, status: str = "AWAITING REVIEW") -> str:
        assert status in STATUSES, status
        submission_id = new_id()
        self.submissions.setdefault(study_id, []).append(
            {
                "id": submission_id,
                "participant_id": participant_id,
                "study_id": study_id,
                "status": status,
                "started_at": "2026-01-01T10:00:00Z",
                "completed_at": "2026-01-01T10:20:00Z",
                "study_code": "X",
            }
        )
        return submission_id

    def submission(self, submission_id: str) -> dict[str, Any] | None:
        for submissions in self.submissions.values():
            for submission in submissions:
                if submission["id"] == submission_id:
                    return submission
        return None

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        self.calls.append((method, path, body))
        if method == "POST" and path == "/api/v1/studies/":
            required = ("name", "external_study_url", "completion_codes", "total_available_places", "reward")
            missing = [key for key in required if key not in body]
            if missing:
                return 400, {"error": f"missing {missing}"}
            study_id = new_id()
            self.studies[study_id] = {**body, "id": study_id, "status": "UNPUBLISHED"}
            return 201, self.studies[study_id]
        if method == "GET" and path == "/api/v1/studies/":
            return 200, {"results": list(self.studies.values()), "_links": {"next": {"href": None}}}
        if match := re.fullmatch(r"/api/v1/studies/(\w+)/", path):
            study = self.studies.get(match.group(1))
            if study is None:
                return 404, {"error": "no such study"}
            if method == "PATCH":
                places = int(body.get("total_available_places", study["total_available_places"]))
                if places < study["total_available_places"]:
                    return 400, {"error": {"detail": "places can only be increased"}}
                study["total_available_places"] = places
            return 200, study
        if match := re.fullmatch(r"/api/v1/studies/(\w+)/transition/", path):
            study = self.studies[match.group(1)]
            allowed = {
                "PUBLISH": ("UNPUBLISHED",),
                "PAUSE": ("ACTIVE",),
                "START": ("PAUSED",),
                "STOP": ("ACTIVE", "PAUSED"),
            }
            if study["status"] not in allowed[body["action"]]:
                return 400, {"error": {"detail": f"cannot {body['action']} a study that is {study['status']}"}}
            study["status"] = {"PUBLISH": "ACTIVE", "STOP": "AWAITING REVIEW", "PAUSE": "PAUSED", "START": "ACTIVE"}[
                body["action"]
            ]
            return 200, study
        if method == "GET" and path == "/api/v1/users/me/":
            return 200, {"id": "researcher1", "currency_code": self.currency}
        if method == "GET" and path == "/api/v1/submissions/":
            unknown = set(query) - SUBMISSION_LIST_PARAMS
            if unknown:
                return 400, {"error": {"detail": f"unknown query parameters {sorted(unknown)}"}}
            items = [s for sub in self.submissions.values() for s in sub]
            if "study" in query:
                items = self.submissions.get(query["study"][0], [])
            page = int(query.get("page", ["1"])[0])
            size = min(int(query.get("page_size", ["20"])[0]), self.page_size)
            chunk = items[(page - 1) * size : page * size]
            nxt = None
            if page * size < len(items):
                nxt = f"{self.base}/api/v1/submissions/?study={query.get('study', [''])[0]}&page={page + 1}"
            return 200, {"results": chunk, "_links": {"next": {"href": nxt}}, "meta": {"count": len(items)}}
        if method == "GET" and (match := re.fullmatch(r"/api/v1/submissions/(\w+)/", path)):
            submission = self.submission(match.group(1))
            return (200, submission) if submission else (404, {"error": {"detail": "Not found."}})
        if method == "POST" and path == "/api/v1/submissions/bulk-approve/":
            found = [self.submission(sid) for sid in body.get("submission_ids", [])]
            if not body.get("study_id") or any(s is None or s["status"] != "AWAITING REVIEW" for s in found):
                return 400, {"error": {"detail": "every submission must be awaiting review in the study"}}
            for submission in found:
                submission["status"] = "APPROVED"
            return 200, "The request to bulk approve has been made successfully."
        if match := re.fullmatch(r"/api/v1/submissions/(\w+)/request-return/", path):
            submission = self.submission(match.group(1))
            if submission is None or submission["status"] != "AWAITING REVIEW":
                return 400, {"error": {"detail": "only a submission awaiting review can be asked back"}}
            if not body.get("request_return_reasons"):
                return 400, {"error": {"detail": "request_return_reasons is required"}}
            submission["is_return_requested"] = True
            self.returns.append({"id": match.group(1), **body})
            return 200, submission
        if match := re.fullmatch(r"/api/v1/submissions/(\w+)/transition/", path):
            submission = self.submission(match.group(1))
            if submission is None:
                return 404, {"error": "no such submission"}
            if body["action"] == "REJECT":
                if len(body.get("message", "")) < 100 or not body.get("rejection_category"):
                    return 400, {"error": "message must be at least 100 characters, with a category"}
                submission["status"] = "REJECTED"
            elif body["action"] == "APPROVE":
                submission["status"] = "APPROVED"
            return 200, submission
        if method == "POST" and path == "/api/v1/submissions/bonus-payments/":
            bulk_id = new_id()
            lines = [line.split(",") for line in body["csv_bonuses"].strip().splitlines()]
            amount = sum(float(value) for _, value in lines)
            self.bulk_bonuses[bulk_id] = {"id": bulk_id, "study": body["study_id"], "lines": lines, "amount": amount}
            return 201, {"id": bulk_id, "study": body["study_id"], "amount": amount, "fees": 0, "total_amount": amount}
        if match := re.fullmatch(r"/api/v1/bulk-bonus-payments/(\w+)/pay/", path):
            self.paid.append(match.group(1))  # not idempotent, like the real one
            return 202, "Bulk bonus payment is being processed asynchronously."
        if method == "POST" and path == "/api/v1/messages/":
            self.messages.append(body)
            return 201, {}
        return 404, {"error": f"no route {method} {path}"}


class _Handler(BaseHTTPRequestHandler):
    service: FakeProlific

    def _dispatch(self, method: str) -> None:
        if self.headers.get("Authorization") != f"Token {TOKEN}":
            return self._send(401, {"error": "bad token"})
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        parts = urlsplit(self.path)
        with self.service.lock:
            status, payload = self.service.handle(method, parts.path, parse_qs(parts.query), body)
        self._send(status, payload)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class FakeProlificServer:
    def __init__(self) -> None:
        self.service = FakeProlific()
        handler = type("Handler", (_Handler,), {"service": self.service})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.service.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"{self.service.base}/api/v1/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._timer = threading.Timer(MAX_LIFETIME_S, self.stop)
        self._timer.daemon = True

    def start(self) -> FakeProlificServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
