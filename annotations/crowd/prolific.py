"""Prolific through its public v1 API (httpx, token from settings), and the Prolific provider."""

from __future__ import annotations

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
SUBMISSION_STATUS = {
    "AWAITING REVIEW": "submitted",
    "APPROVED": "approved",
    "REJECTED": "rejected",
    "RETURNED": "returned",
    "TIMED-OUT": "returned",
    "SCREENED OUT": "returned",
}
DEFAULT_PARAMS: dict[str, Any] = {
    "estimated_minutes": 15,
    "maximum_minutes": 60,
    "device_compatibility": ["desktop"],
    "filters": [],
}
PAGE_LIMIT = 200


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
            raise CrowdPlatformError(f"Prolific {method} {path}: {exc}") from exc
        if response.status_code >= 400:
            raise CrowdPlatformError(f"Prolific {method} {path} answered {response.status_code}: {response.text[:500]}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def paginate(self, path: str, params: dict | None = None) -> Iterator[dict[str, Any]]:
        """Follow ``_links.next.href`` (or ``next``) until there is none."""
        next_url: str | None = path
        query = params
        while next_url:
            page = self.request("GET", next_url, params=query) or {}
            yield from page.get("results", [])
            links = page.get("_links") or {}
            next_url = (links.get("next") or {}).get("href") or page.get("next") or None
            query = None

    def create_study(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "studies/", json=body)

    def get_study(self, study_id: str) -> dict[str, Any]:
        return self.request("GET", f"studies/{study_id}/")

    def list_studies(self) -> Iterator[dict[str, Any]]:
        return self.paginate("studies/")

    def transition_study(self, study_id: str, action: str) -> Any:
        return self.request("POST", f"studies/{study_id}/transition/", json={"action": action})

    def list_submissions(self, study_id: str) -> Iterator[dict[str, Any]]:
        return self.paginate(f"studies/{study_id}/submissions/", params={"limit": PAGE_LIMIT})

    def transition_submission(self, submission_id: str, body: dict[str, Any]) -> Any:
        return self.request("POST", f"submissions/{submission_id}/transition/", json=body)

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
                status = SUBMISSION_STATUS.get(str(submission.get("status", "")).upper())
                if status is None:  # still active: nothing to review yet
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
