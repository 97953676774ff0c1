"""The one interface every crowd platform implements, and the plain data that crosses it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class CrowdPlatformError(Exception):
    """A platform refused a call or is misconfigured; the message says what to fix."""


@dataclass(frozen=True)
class BatchSpec:
    """What a provider needs to know about a batch: plain data, so providers never touch the ORM."""

    batch_id: int
    study_slug: str
    platform: str
    sandbox: bool
    title: str
    description: str
    reward_cents: int
    assignments_per_task: int
    n_tasks: int
    params: dict[str, Any] = field(default_factory=dict)
    external_id: str = ""
    exclusion_qualification_id: str = ""
    completion_code: str = ""
    failed_attention_code: str = ""
    public_url: str = ""
    earlier_external_ids: tuple[str, ...] = ()

    @property
    def exclusion_group(self) -> str:
        return str(self.params.get("exclusion_group") or self.study_slug)


@dataclass(frozen=True)
class PreparedBatch:
    external_id: str = ""
    exclusion_qualification_id: str = ""


@dataclass(frozen=True)
class RemoteSubmission:
    task_external_id: str
    worker_id: str
    assignment_id: str
    status: str  # a CrowdSubmission.Status value
    platform_status: str
    submitted_at: datetime | None = None


class CrowdProvider(Protocol):
    platform: str
    # Whether a bonus call whose outcome is unknown (a crash) may be sent again with the same token.
    bonus_retry_safe: bool

    def prepare(self, spec: BatchSpec) -> PreparedBatch: ...

    def create_task(self, spec: BatchSpec, *, intent_key: str, max_assignments: int) -> str: ...

    def find_task(self, spec: BatchSpec, *, intent_key: str) -> str | None: ...

    def publish(self, spec: BatchSpec, *, task_external_id: str) -> None: ...

    def list_submissions(self, spec: BatchSpec, *, task_external_ids: list[str]) -> Iterator[RemoteSubmission]: ...

    def approve(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str) -> None: ...

    def approve_many(self, spec: BatchSpec, *, assignment_ids: list[str], feedback: str) -> None: ...

    def session_owner(self, spec: BatchSpec, *, assignment_id: str) -> tuple[str, str] | None: ...

    def reject(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str, category: str) -> None: ...

    def overturn(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str) -> None: ...

    def request_return(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, reasons: list[str]) -> None: ...

    def add_places(self, spec: BatchSpec, *, task_external_id: str, extra: int, token: str) -> None: ...

    def pause(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None: ...

    def resume(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None: ...

    def account_currency(self, spec: BatchSpec) -> str: ...

    def bonus_already_paid(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, amount_cents: int) -> bool: ...

    def send_bonus(
        self, spec: BatchSpec, *, assignment_id: str, worker_id: str, amount_cents: int, reason: str, token: str
    ) -> None: ...

    def exclude_workers(self, spec: BatchSpec, *, worker_ids: list[str]) -> list[str]: ...

    def expire(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None: ...

    def notify(self, spec: BatchSpec, *, worker_ids: list[str], subject: str, message: str) -> int: ...


class ManualProvider:
    """Any other platform: the admin pastes our link and completion code there and pays by hand.

    Every call is a local no-op; services still record approvals, rejections and bonuses so the site
    holds what the admin did on the platform.
    """

    platform = "manual"
    bonus_retry_safe = True

    def prepare(self, spec: BatchSpec) -> PreparedBatch:
        return PreparedBatch()

    def create_task(self, spec: BatchSpec, *, intent_key: str, max_assignments: int) -> str:
        return f"manual-{intent_key}"

    def find_task(self, spec: BatchSpec, *, intent_key: str) -> str | None:
        return f"manual-{intent_key}"

    def publish(self, spec: BatchSpec, *, task_external_id: str) -> None:
        return None

    def list_submissions(self, spec: BatchSpec, *, task_external_ids: list[str]) -> Iterator[RemoteSubmission]:
        return iter(())

    def approve(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str) -> None:
        return None

    def approve_many(self, spec: BatchSpec, *, assignment_ids: list[str], feedback: str) -> None:
        return None

    def reject(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str, category: str) -> None:
        return None

    def overturn(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str) -> None:
        return None

    def request_return(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, reasons: list[str]) -> None:
        return None

    def add_places(self, spec: BatchSpec, *, task_external_id: str, extra: int, token: str) -> None:
        return None

    def pause(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None:
        return None

    def resume(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None:
        return None

    def account_currency(self, spec: BatchSpec) -> str:
        return str(spec.params.get("currency", ""))

    def bonus_already_paid(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, amount_cents: int) -> bool:
        return False

    def send_bonus(
        self, spec: BatchSpec, *, assignment_id: str, worker_id: str, amount_cents: int, reason: str, token: str
    ) -> None:
        return None

    def exclude_workers(self, spec: BatchSpec, *, worker_ids: list[str]) -> list[str]:
        return []

    def expire(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None:
        return None

    def notify(self, spec: BatchSpec, *, worker_ids: list[str], subject: str, message: str) -> int:
        return 0
