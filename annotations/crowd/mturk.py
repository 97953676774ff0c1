"""Amazon Mechanical Turk through boto3: the client from settings, HIT XML, qualifications, the provider."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from annotations.crowd.costs import dollars
from annotations.crowd.providers import BatchSpec, CrowdPlatformError, PreparedBatch, RemoteSubmission

SANDBOX_ENDPOINT = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
PRODUCTION_ENDPOINT = "https://mturk-requester.us-east-1.amazonaws.com"
SANDBOX_WORKER_URL = "https://workersandbox.mturk.com"
PRODUCTION_WORKER_URL = "https://worker.mturk.com"

EXTERNAL_QUESTION_NAMESPACE = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
)

# System qualification types (the same ids in sandbox and production, except Masters).
APPROVAL_RATE_QUALIFICATION = "000000000000000000L0"
APPROVED_HITS_QUALIFICATION = "00000000000000000040"
LOCALE_QUALIFICATION = "00000000000000000071"
MASTERS_QUALIFICATION = {True: "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6", False: "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"}

NOTIFY_WORKERS_PER_CALL = 100
MAX_LOCALES = 30
DEFAULT_PARAMS: dict[str, Any] = {
    "keywords": "rating, explanations, survey, research",
    "assignment_duration_s": 3600,
    "auto_approval_delay_s": 3 * 24 * 3600,
    "lifetime_s": 7 * 24 * 3600,
    "frame_height": 0,
    "min_approval_rate": 95,
    "min_approved_hits": 100,
    "locales": [],
    "masters": False,
}

ASSIGNMENT_STATUS = {"Submitted": "submitted", "Approved": "approved", "Rejected": "rejected"}
HIT_ID_PATTERN = re.compile(r"\b([A-Z0-9]{20,40})\b")
# Any date in the past makes MTurk expire a HIT at once.
PAST = datetime(2015, 1, 1, tzinfo=UTC)


def mturk_params(params: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULT_PARAMS, **{key: value for key, value in params.items() if value is not None}}


def endpoint_url(*, sandbox: bool, override: str = "") -> str:
    """``MTURK_ENDPOINT_URL`` wins (any MTurk-compatible server); otherwise sandbox or production."""
    if override:
        return override
    return SANDBOX_ENDPOINT if sandbox else PRODUCTION_ENDPOINT


def mturk_client(*, sandbox: bool):
    """A boto3 MTurk client from settings: region us-east-1, sandbox/production, or the endpoint override."""
    from django.conf import settings

    return _cached_client(
        settings.MTURK_AWS_ACCESS_KEY_ID,
        settings.MTURK_AWS_SECRET_ACCESS_KEY,
        settings.MTURK_REGION or "us-east-1",
        endpoint_url(sandbox=sandbox, override=settings.MTURK_ENDPOINT_URL),
    )


# Building a client loads the service model (a tenth of a second); clients are thread-safe, so keep a few.
@functools.lru_cache(maxsize=8)
def _cached_client(access_key_id: str, secret_access_key: str, region: str, endpoint: str):
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None
    )
    return session.client(
        "mturk",
        region_name=region,
        endpoint_url=endpoint,
        config=Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10, read_timeout=30),
    )


def external_question_xml(url: str, *, frame_height: int = 0) -> str:
    """The ExternalQuestion a HIT shows: our HTTPS page in a frame (0 = as tall as the page)."""
    check_public_url(url)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ExternalQuestion xmlns="{EXTERNAL_QUESTION_NAMESPACE}">'
        f"<ExternalURL>{escape(url)}</ExternalURL>"
        f"<FrameHeight>{int(frame_height)}</FrameHeight>"
        "</ExternalQuestion>"
    )


def entry_url(public_url: str, study_slug: str) -> str:
    return f"{public_url.rstrip('/')}/study/{study_slug}/mturk/"


def preview_url(*, sandbox: bool, hit_type_id: str) -> str:
    return f"{SANDBOX_WORKER_URL if sandbox else PRODUCTION_WORKER_URL}/mturk/preview?groupId={hit_type_id}"


def qualification_requirements(
    params: dict[str, Any], *, sandbox: bool, exclusion_qualification_ids: list[str]
) -> list[dict[str, Any]]:
    params = mturk_params(params)
    requirements: list[dict[str, Any]] = []
    if params["min_approval_rate"]:
        requirements.append(
            {
                "QualificationTypeId": APPROVAL_RATE_QUALIFICATION,
                "Comparator": "GreaterThanOrEqualTo",
                "IntegerValues": [int(params["min_approval_rate"])],
                "ActionsGuarded": "Accept",
            }
        )
    if params["min_approved_hits"]:
        requirements.append(
            {
                "QualificationTypeId": APPROVED_HITS_QUALIFICATION,
                "Comparator": "GreaterThanOrEqualTo",
                "IntegerValues": [int(params["min_approved_hits"])],
                "ActionsGuarded": "Accept",
            }
        )
    locales = [str(code).strip().upper() for code in params["locales"] if str(code).strip()]
    if len(locales) > MAX_LOCALES:
        raise CrowdPlatformError(f"MTurk takes at most {MAX_LOCALES} locales in one requirement")
    if locales:
        requirements.append(
            {
                "QualificationTypeId": LOCALE_QUALIFICATION,
                "Comparator": "In",
                "LocaleValues": [{"Country": code} for code in locales],
                "ActionsGuarded": "Accept",
            }
        )
    if params["masters"]:
        requirements.append(
            {"QualificationTypeId": MASTERS_QUALIFICATION[sandbox], "Comparator": "Exists", "ActionsGuarded": "Accept"}
        )
    for qualification_id in exclusion_qualification_ids:
        requirements.append(
            {
                "QualificationTypeId": qualification_id,
                "Comparator": "DoesNotExist",
                "ActionsGuarded": "DiscoverPreviewAndAccept",
            }
        )
    return requirements


def exclusion_qualification_name(group: str) -> str:
    return f"evalsite participated: {group}"


def _client_error():
    from botocore.exceptions import ClientError

    return ClientError


def check_public_url(public_url: str) -> None:
    """MTurk frames only HTTPS pages: refuse before any request goes out."""
    if not public_url.startswith("https://"):
        raise CrowdPlatformError(
            f"MTurk needs an HTTPS ExternalURL, not {public_url!r}: set EVALSITE_PUBLIC_URL to https://..."
        )


def one_line_error(exc: Exception, operation: str) -> CrowdPlatformError:
    """A botocore error as one line that says what to do."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "") or "error"
        message = " ".join(str(error.get("Message", "")).split())[:300]
        if code in ("UnrecognizedClientException", "InvalidClientTokenId", "AccessDeniedException", "AuthFailure"):
            hint = "check MTURK_AWS_ACCESS_KEY_ID and MTURK_AWS_SECRET_ACCESS_KEY (and MTURK_SANDBOX)"
        elif "insufficient" in message.lower() or "balance" in message.lower():
            hint = "top up the requester account, then launch again"
        else:
            hint = "check the batch's settings on its admin page, then try again"
        return CrowdPlatformError(f"MTurk {operation} refused ({code}): {message}; {hint}")
    if isinstance(exc, NoCredentialsError):
        return CrowdPlatformError(f"MTurk {operation}: no credentials; set MTURK_AWS_ACCESS_KEY_ID and the secret")
    if isinstance(exc, EndpointConnectionError):
        return CrowdPlatformError(
            f"MTurk {operation}: cannot reach {getattr(exc, 'kwargs', {}).get('endpoint_url', 'the endpoint')}; "
            "check MTURK_ENDPOINT_URL and the network, then try again"
        )
    text = " ".join(str(exc).split())[:300]
    return CrowdPlatformError(f"MTurk {operation} failed: {text}; check MTURK_ENDPOINT_URL and the network")


def _one_line_errors(method):
    """Whatever botocore raises out of a provider call leaves it as one CrowdPlatformError line."""

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self, *args, **kwargs):
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                yield from method(self, *args, **kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise one_line_error(exc, method.__name__) from exc

        return generator

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(self, *args, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise one_line_error(exc, method.__name__) from exc

    return wrapped


class MTurkProvider:
    platform = "mturk"
    bonus_retry_safe = True  # SendBonus dedupes on UniqueRequestToken

    def __init__(self, client: Any = None) -> None:
        self._client = client

    def client(self, spec: BatchSpec):
        if self._client is None:
            self._client = mturk_client(sandbox=spec.sandbox)
        return self._client

    # -- launch -------------------------------------------------------------------------------------------
    @_one_line_errors
    def prepare(self, spec: BatchSpec) -> PreparedBatch:
        check_public_url(spec.public_url)
        client = self.client(spec)
        qualification_id = spec.exclusion_qualification_id or self._exclusion_qualification(client, spec)
        params = mturk_params(spec.params)
        extra = [str(q) for q in params.get("exclude_qualification_ids", []) if q]
        response = client.create_hit_type(
            AutoApprovalDelayInSeconds=int(params["auto_approval_delay_s"]),
            AssignmentDurationInSeconds=int(params["assignment_duration_s"]),
            Reward=str(dollars(spec.reward_cents)),
            Title=spec.title,
            Keywords=str(params["keywords"]),
            Description=spec.description or spec.title,
            QualificationRequirements=qualification_requirements(
                params, sandbox=spec.sandbox, exclusion_qualification_ids=[qualification_id, *extra]
            ),
        )
        return PreparedBatch(external_id=response["HITTypeId"], exclusion_qualification_id=qualification_id)

    def _exclusion_qualification(self, client: Any, spec: BatchSpec) -> str:
        name = exclusion_qualification_name(spec.exclusion_group)
        for page in _pages(
            client.list_qualification_types, Query=name, MustBeRequestable=False, MustBeOwnedByCaller=True
        ):
            for qualification in page.get("QualificationTypes", []):
                if qualification.get("Name") == name:
                    return qualification["QualificationTypeId"]
        response = client.create_qualification_type(
            Name=name,
            Keywords="evalsite, exclusion",
            Description=f"Took part in the evalsite study group {spec.exclusion_group}; cannot take part again.",
            QualificationTypeStatus="Active",
        )
        return response["QualificationType"]["QualificationTypeId"]

    @_one_line_errors
    def create_task(self, spec: BatchSpec, *, intent_key: str, max_assignments: int) -> str:
        client = self.client(spec)
        params = mturk_params(spec.params)
        try:
            response = client.create_hit_with_hit_type(
                HITTypeId=spec.external_id,
                MaxAssignments=max_assignments,
                LifetimeInSeconds=int(params["lifetime_s"]),
                Question=external_question_xml(
                    entry_url(spec.public_url, spec.study_slug), frame_height=params["frame_height"]
                ),
                RequesterAnnotation=intent_key,
                UniqueRequestToken=intent_key,
            )
        except _client_error() as exc:
            # A retry after a crash: MTurk already made this HIT and names it in the error.
            message = exc.response.get("Error", {}).get("Message", "")
            if "already exists" in message.lower() or "AlreadyExists" in str(exc):
                match = HIT_ID_PATTERN.search(message)
                hit_id = match.group(1) if match else self.find_task(spec, intent_key=intent_key)
                if hit_id:
                    return hit_id
            raise
        return response["HIT"]["HITId"]

    @_one_line_errors
    def find_task(self, spec: BatchSpec, *, intent_key: str) -> str | None:
        for page in _pages(self.client(spec).list_hits):
            for hit in page.get("HITs", []):
                if hit.get("RequesterAnnotation") == intent_key:
                    return hit["HITId"]
        return None

    def publish(self, spec: BatchSpec, *, task_external_id: str) -> None:
        return None  # a HIT is live once created

    # -- sync and review ----------------------------------------------------------------------------------
    @_one_line_errors
    def list_submissions(self, spec: BatchSpec, *, task_external_ids: list[str]) -> Iterator[RemoteSubmission]:
        client = self.client(spec)
        for hit_id in task_external_ids:
            for page in _pages(
                client.list_assignments_for_hit,
                HITId=hit_id,
                MaxResults=100,
                AssignmentStatuses=["Submitted", "Approved", "Rejected"],
            ):
                for assignment in page.get("Assignments", []):
                    yield RemoteSubmission(
                        task_external_id=hit_id,
                        worker_id=assignment["WorkerId"],
                        assignment_id=assignment["AssignmentId"],
                        status=ASSIGNMENT_STATUS.get(assignment.get("AssignmentStatus", ""), "submitted"),
                        platform_status=assignment.get("AssignmentStatus", ""),
                        submitted_at=assignment.get("SubmitTime"),
                    )

    def _status_of(self, spec: BatchSpec, assignment_id: str) -> str:
        response = self.client(spec).get_assignment(AssignmentId=assignment_id)
        return response.get("Assignment", {}).get("AssignmentStatus", "")

    @_one_line_errors
    def approve(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str) -> None:
        kwargs: dict[str, Any] = {"AssignmentId": assignment_id}
        if feedback:
            kwargs["RequesterFeedback"] = feedback[:1024]
        try:
            self.client(spec).approve_assignment(**kwargs)
        except _client_error():
            if self._status_of(spec, assignment_id) != "Approved":  # approved by an earlier try: done
                raise

    def approve_many(self, spec: BatchSpec, *, assignment_ids: list[str], feedback: str) -> None:
        for assignment_id in assignment_ids:  # MTurk approves one assignment per call
            self.approve(spec, assignment_id=assignment_id, worker_id="", feedback=feedback)

    @_one_line_errors
    def reject(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str, category: str) -> None:
        if not feedback.strip():
            raise CrowdPlatformError("MTurk needs feedback to reject an assignment")
        try:
            self.client(spec).reject_assignment(AssignmentId=assignment_id, RequesterFeedback=feedback[:1024])
        except _client_error():
            if self._status_of(spec, assignment_id) != "Rejected":
                raise

    @_one_line_errors
    def overturn(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, feedback: str) -> None:
        """Approve a rejected assignment (ApproveAssignment with OverrideRejection; MTurk allows it for 30 days)."""
        kwargs: dict[str, Any] = {"AssignmentId": assignment_id, "OverrideRejection": True}
        if feedback:
            kwargs["RequesterFeedback"] = feedback[:1024]
        try:
            self.client(spec).approve_assignment(**kwargs)
        except _client_error():
            if self._status_of(spec, assignment_id) != "Approved":
                raise

    def request_return(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, reasons: list[str]) -> None:
        raise CrowdPlatformError(
            "MTurk has no return requests: notify the worker, or reject the assignment with a reason"
        )

    @_one_line_errors
    def add_places(self, spec: BatchSpec, *, task_external_id: str, extra: int, token: str) -> None:
        """More assignments on a HIT (CreateAdditionalAssignmentsForHIT; the token dedupes a retried call)."""
        self.client(spec).create_additional_assignments_for_hit(
            HITId=task_external_id, NumberOfAdditionalAssignments=extra, UniqueRequestToken=token[:64]
        )

    def pause(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None:
        raise CrowdPlatformError("MTurk HITs cannot be paused: expire the batch, and refill or launch again later")

    def resume(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None:
        raise CrowdPlatformError("MTurk HITs cannot be paused or resumed")

    def account_currency(self, spec: BatchSpec) -> str:
        return "USD"  # MTurk pays in US dollars

    @_one_line_errors
    def bonus_already_paid(self, spec: BatchSpec, *, assignment_id: str, worker_id: str, amount_cents: int) -> bool:
        amount = dollars(amount_cents)
        for page in _pages(self.client(spec).list_bonus_payments, AssignmentId=assignment_id):
            for payment in page.get("BonusPayments", []):
                if payment.get("WorkerId") == worker_id and dollars_equal(payment.get("BonusAmount", ""), amount):
                    return True
        return False

    def send_bonus(
        self, spec: BatchSpec, *, assignment_id: str, worker_id: str, amount_cents: int, reason: str, token: str
    ) -> None:
        try:
            self.client(spec).send_bonus(
                WorkerId=worker_id,
                BonusAmount=str(dollars(amount_cents)),
                AssignmentId=assignment_id,
                Reason=reason,
                UniqueRequestToken=token,
            )
        except _client_error():
            # A token MTurk has seen answers with an error; the bonus then exists, which we check.
            if not self.bonus_already_paid(
                spec, assignment_id=assignment_id, worker_id=worker_id, amount_cents=amount_cents
            ):
                raise

    @_one_line_errors
    def exclude_workers(self, spec: BatchSpec, *, worker_ids: list[str]) -> list[str]:
        if not spec.exclusion_qualification_id:
            raise CrowdPlatformError("this batch has no exclusion qualification; launch it first")
        client = self.client(spec)
        for worker_id in worker_ids:
            client.associate_qualification_with_worker(
                QualificationTypeId=spec.exclusion_qualification_id,
                WorkerId=worker_id,
                IntegerValue=1,
                SendNotification=False,
            )
        return list(worker_ids)

    @_one_line_errors
    def expire(self, spec: BatchSpec, *, task_external_ids: list[str]) -> None:
        client = self.client(spec)
        for hit_id in task_external_ids:
            client.update_expiration_for_hit(HITId=hit_id, ExpireAt=PAST)

    @_one_line_errors
    def notify(self, spec: BatchSpec, *, worker_ids: list[str], subject: str, message: str) -> int:
        client = self.client(spec)
        notified = 0
        for start in range(0, len(worker_ids), NOTIFY_WORKERS_PER_CALL):
            chunk = worker_ids[start : start + NOTIFY_WORKERS_PER_CALL]
            response = client.notify_workers(Subject=subject[:200], MessageText=message[:4096], WorkerIds=chunk)
            notified += len(chunk) - len(response.get("NotifyWorkersFailureStatuses", []))
        return notified


def dollars_equal(text: str, amount) -> bool:
    from decimal import Decimal, InvalidOperation

    try:
        return Decimal(str(text)) == amount
    except InvalidOperation:
        return False


def _pages(operation, **kwargs) -> Iterator[dict[str, Any]]:
    """Follow NextToken until the platform stops sending one."""
    token = None
    while True:
        response = operation(**kwargs, **({"NextToken": token} if token else {}))
        yield response
        token = response.get("NextToken")
        if not token:
            return
