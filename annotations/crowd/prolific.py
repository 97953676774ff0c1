"""Prolific through its public v1 API (httpx, token from settings), and the Prolific provider."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from annotations.crowd.costs import dollars
from annotations.crowd.providers import BatchSpec, CrowdPlatformError, PreparedBatch, RemoteSubmission

REJECTION_CATEGORIES = (
    "TOO_QUICKLY",
    "TOO_SLOWLY",
    "FAILED_INSTRUCTIONS",
    "INCOMP_LONGITUDINAL",
    "FAILED_CHECK",
    "LOW_EFFORT",
    "MALINGERING",
    "NO_CODE",
    "BAD_CODE",
    "NO_DATA",
    "UNSUPP_DEVICE",
    "OTHER",
)
MIN_REJECTION_MESSAGE = 100
# Every submission status Prolific documents, keyed without spaces, hyphens or underscores (the list endpoint
# takes AWAITING_REVIEW, objects say "AWAITING REVIEW"). None: still in progress, nothing to review yet.
SUBMISSION_STATUS: dict[str, str | None] = {
    "ACTIVE": None,
    "RESERVED": None,
    "AWAITINGREVIEW": "submitted",
    "APPROVED": "approved",
    "PARTIALLYAPPROVED": "approved",
    "REJECTED": "rejected",
    "RETURNED": "returned",
    "TIMEDOUT": "returned",
    "SCREENEDOUT": "returned",
}
# Submissions listed per page (the documented default is 20).
PAGE_SIZE = 100
SCREENED_OUT_CODE_TYPE = "FIXED_SCREENOUT"


def status_key(status: str) -> str:
    return re.sub(r"[\s_-]", "", str(status).upper())


DEFAULT_PARAMS: dict[str, Any] = {
    "estimated_minutes": 15,
    "maximum_minutes": 60,
    "device_compatibility": ["desktop"],
    "filters": [],
}


def prolific_params(params: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULT_PARAMS, **{key: value for key, value in params.items() if value is not None}}


def study_url(public_url: str, study_slug: str) -> str:
    """Prolific fills the {{%...%}} placeholders for each participant."""
    return (
        f"{public_url.rstrip('/')}/study/{study_slug}/prolific/"
        "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )


def check_rejection(message: str, category: str) -> None:
    if len(message.strip()) < MIN_REJECTION_MESSAGE:
        raise CrowdPlatformError(f"Prolific needs a rejection message of at least {MIN_REJECTION_MESSAGE} characters")
    if category not in REJECTION_CATEGORIES:
        raise CrowdPlatformError(f"rejection category must be one of {', '.join(REJECTION_CATEGORIES)}")


class ProlificClient:
    def __init__(self, *, token: str, base_url: str, timeout: float = 30.0) -> None:
        if not token:
            raise CrowdPlatformError("PROLIFIC_API_TOKEN is not set")
        self.http = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout,
        )

    @classmethod
    def from_settings(cls) -> ProlificClient:
        from django.conf import settings

        return cls(token=settings.PROLIFIC_API_TOKEN, base_url=settings.PROLIFIC_API_URL)

    def request(self, method: str, path: str, json: Any = None, params: dict | None = None) -> Any:
        try:
            response = self.http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise CrowdPlatformError(
                f"Prolific {method} {path}: {exc}; check PROLIFIC_API_URL and the network, then try again"
            ) from exc
        if response.status_code >= 400:
            detail = " ".join(response.text.split())[:300]
            hint = (
                "check PROLIFIC_API_TOKEN"
                if response.status_code in (401, 403)
                else "check the batch's settings on its admin page, then try again"
            )
            raise CrowdPlatformError(f"Prolific {method} {path} answered {response.status_code}: {detail}; {hint}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Documented pagination: ``page`` from 1 with ``page_size``, until ``meta.count`` is reached or a page is
        empty."""
        page = 1
        seen = 0
        while True:
            body = self.request("GET", path, params={**params, "page": page, "page_size": PAGE_SIZE}) or {}
            results = body.get("results", [])
            yield from results
            seen += len(results)
            total = (body.get("meta") or {}).get("count")
            # A server may send fewer than asked on every page, so only an empty page or the count ends it.
            if not results or (total is not None and seen >= int(total)):
                return
            page += 1

    def paginate(self, path: str, params: dict | None = None) -> Iterator[dict[str, Any]]:
        """Follow ``_links.next.href`` (or ``next``) until there is none (the studies list)."""
        next_url: str | None = path
        query = params
        while next_url:
            page = self.request("GET", next_url, params=query) or {}
            yield from page.get("results", [])
            links = page.get("_links") or {}
            next_url = (links.get("next") or {}).get("href") or page.get("next") or None
            query = None

    def me(self) -> dict[str, Any]:
        return self.request("GET", "users/me/") or {}

    def get_submission(self, submission_id: str) -> dict[str, Any] | None:
        """One submission, or None when Prolific has no such submission (a made-up SESSION_ID)."""
        try:
            return self.request("GET", f"submissions/{submission_id}/")
        except CrowdPlatformError as exc:
            if " answered 404" in str(exc):
                return None
            raise

    def create_study(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "studies/", json=body)

    def get_study(self, study_id: str) -> dict[str, Any]:
        return self.request("GET", f"studies/{study_id}/")

    def list_studies(self) -> Iterator[dict[str, Any]]:
        return self.paginate("studies/")

    def transition_study(self, study_id: str, action: str) -> Any:
        return self.request("POST", f"studies/{study_id}/transition/", json={"action": action})

    def update_study(self, study_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", f"studies/{study_id}/", json=body)

    def list_submissions(self, study_id: str) -> Iterator[dict[str, Any]]:
        return self.pages("submissions/", {"study": study_id})

    def transition_submission(self, submission_id: str, body: dict[str, Any]) -> Any:
        return self.request("POST", f"submissions/{submission_id}/transition/", json=body)

    def bulk_approve(self, *, study_id: str, submission_ids: list[str]) -> Any:
        return self.request(
            "POST", "submissions/bulk-approve/", json={"study_id": study_id, "submission_ids": submission_ids}
        )

    def request_return(self, submission_id: str, reasons: list[str]) -> Any:
        return self.request(
            "POST", f"submissions/{submission_id}/request-return/", json={"request_return_reasons": reasons}
        )

    def create_bonus_payments(self, *, study_id: str, csv_bonuses: str) -> dict[str, Any]:
        return self.request(
            "POST", "submissions/bonus-payments/", json={"study_id": study_id, "csv_bonuses": csv_bonuses}
        )

    def pay_bonus_payments(self, bulk_id: str) -> Any:
        return self.request("POST", f"bulk-bonus-payments/{bulk_id}/pay/", json={})

    def send_message(self, *, recipient_id: str, study_id: str, body: str) -> Any:
        return self.request(
            "POST", "messages/", json={"recipient_id": recipient_id, "study_id": study_id, "body": body}
        )


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


class ProlificProvider:
    platform = "prolific"
    # Paying a bulk bonus is not idempotent on Prolific: an attempt whose outcome is unknown is never resent.
    bonus_retry_safe = False

    def __init__(self, client: ProlificClient | None = None) -> None:
        self._client = client

    @property
    def client(self) -> ProlificClient:
        if self._client is None:
            self._client = ProlificClient.from_settings()
        return self._client

    def prepare(self, spec: BatchSpec) -> PreparedBatch:
        return PreparedBatch()

    def study_body(self, spec: BatchSpec, *, intent_key: str, places: int) -> dict[str, Any]:
        params = prolific_params(spec.params)
        filters = list(params["filters"])
        if spec.earlier_external_ids:
            filters.append({"filter_id": "previous_studies", "selected_values": list(spec.earlier_external_ids)})
        return {
            "name": spec.title,
            "internal_name": f"evalsite {spec.study_slug} {intent_key}",
            "description": spec.description or spec.title,
            "external_study_url": study_url(spec.public_url, spec.study_slug),
            "prolific_id_option": "url_parameters",
            "completion_codes": [
                {"code": spec.completion_code, "code_type": "COMPLETED", "actions": [{"action": "MANUALLY_REVIEW"}]},
                {
                    "code": spec.failed_attention_code,
                    "code_type": "FAILED_ATTENTION_CHECK",
                    "actions": [{"action": "MANUALLY_REVIEW"}],
                },
                *(
                    [
                        {
                            "code": params["screenout_code"],
                            "code_type": SCREENED_OUT_CODE_TYPE,
                            "actions": [{"action": "MANUALLY_REVIEW"}],
                        }
                    ]
                    if params.get("screenout_code")
                    else []
                ),
            ],
            "total_available_places": places,
            "estimated_completion_time": int(params["estimated_minutes"]),
            "maximum_allowed_time": int(params["maximum_minutes"]),
            "reward": spec.reward_cents,
            "device_compatibility": list(params["device_compatibility"]),
            "peripheral_requirements": [],
            "filters": filters,
        }

    def create_task(self, spec: BatchSpec, *, intent_key: str, max_assignments: int) -> str:
        study = self.client.create_study(self.study_body(spec, intent_key=intent_key, places=max_assignments))
        return study["id"]

    def find_task(self, spec: BatchSpec, *, intent_key: str) -> str | None:
        wanted = f"evalsite {spec.study_slug} {intent_key}"
        for study in self.client.list_studies():
            if study.get("internal_name") == wanted:
                return study["id"]
        return None

    def publish(self, spec: BatchSpec, *, task_external_id: str) -> None:
        if self.client.get_study(task_external_id).get("status", "UNPUBLISHED") == "UNPUBLISHED":
            self.client.transition_study(task_external_id, "PUBLISH")

    def list_submissions(self, spec: BatchSpec, *, task_external_ids: list[str]) -> Iterator[RemoteSubmission]:
        for study_id in task_external_ids:
            for submission in self.client.list_submissions(study_id):
                key = status_key(submission.get("status", ""))
                if key not in SUBMISSION_STATUS:
                    raise CrowdPlatformError(
                        f"Prolific submission {submission.get('id')} has a status evalsite does not know "
                        f"({submission.get('status')!r}); nothing was skipped: update evalsite, then sync again"
                    )
                status = SUBMISSION_STATUS[key]
                if status is None:  # still in progress: nothing to review yet
                    continue
                yield RemoteSubmission(
                    task_external_id=study_id,
                    worker_id=submission.get("participant_id") or submission.get("participant", ""),
                    assignment_id=submission["id"],
                    status=status,
                    platform_status=submission.get("status", ""),
                    submitted_at=_parse_time(submission.get("completed_at")),
                )

    def approve(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str) -> None:
        self.client.transition_submission(assignment_id, {"action": "APPROVE"})  # idempotent on Prolific

    def session_owner(self, spec: BatchSpec, *, assignment_id: str) -> tuple[str, str] | None:
        """Who Prolific says a SESSION_ID (a submission id) belongs to, and in which study; None if no one."""
        submission = self.client.get_submission(assignment_id)
        if not submission:
            return None
        participant = submission.get("participant_id") or submission.get("participant", "")
        return str(participant), str(submission.get("study_id") or submission.get("study") or "")

    def approve_many(self, spec: BatchSpec, *, assignment_ids: list[str], feedback: str) -> None:
        """One documented bulk call (``POST /submissions/bulk-approve/``) instead of one call per submission."""
        if assignment_ids:
            self.client.bulk_approve(study_id=spec.external_id, submission_ids=list(assignment_ids))

    def overturn(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str) -> None:
        raise CrowdPlatformError(
            "Prolific's API cannot approve a rejected submission: ask Prolific support, or pay the participant a bonus"
        )

    def request_return(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, reasons: list[str]) -> None:
        self.client.request_return(assignment_id, [reason for reason in reasons if reason.strip()] or ["Not finished"])

    def add_places(self, spec: BatchSpec, *, task_external_id: str, extra: int, token: str) -> None:
        """Raise the study's places to cover ``extra`` more (a PATCH of ``total_available_places``)."""
        study = self.client.get_study(task_external_id)
        wanted = int(token.rsplit("-", 1)[-1])  # the places the study should have: retrying adds nothing twice
        if int(study.get("total_available_places", 0)) < wanted:
            self.client.update_study(task_external_id, {"total_available_places": wanted})

    def pause(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None:
        for study_id in task_external_ids:
            self.client.transition_study(study_id, "PAUSE")

    def resume(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None:
        for study_id in task_external_ids:
            self.client.transition_study(study_id, "START")

    def account_currency(self, spec: BatchSpec) -> str:
        return str(self.client.me().get("currency_code", "")).upper()

    def reject(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str, category: str) -> None:
        check_rejection(feedback, category)
        self.client.transition_submission(
            assignment_id, {"action": "REJECT", "message": feedback, "rejection_category": category}
        )

    def bonus_already_paid(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, amount_cents: int) -> bool:
        return False  # Prolific lists no bonus payments; see bonus_retry_safe

    def send_bonus(
        self, spec: BatchSpec, *, assignment_id: str, worker_id: str, amount_cents: int, reason: str, token: str
    ) -> None:
        amount: Decimal = dollars(amount_cents)
        bulk = self.client.create_bonus_payments(study_id=spec.external_id, csv_bonuses=f"{assignment_id},{amount}\n")
        self.client.pay_bonus_payments(bulk["id"])

    def exclude_workers(self, spec: BatchSpec, *, worker_ids: list[str]) -> list[str]:
        return []  # later batches name this study in their previous_studies filter

    def expire(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None:
        for study_id in task_external_ids:
            self.client.transition_study(study_id, "STOP")

    def notify(self, spec: BatchSpec, *, worker_ids: list[str], subject: str, message: str) -> int:
        for worker_id in worker_ids:
            self.client.send_message(recipient_id=worker_id, study_id=spec.external_id, body=f"{subject}\n\n{message}")
        return len(worker_ids)
