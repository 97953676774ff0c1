"""A small MTurk stand-in on 127.0.0.1: JSON 1.1 over HTTP, dispatched on X-Amz-Target, state in memory."""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TARGET_PREFIX = "MTurkRequesterServiceV20170117."
MAX_LIFETIME_S = 120


def new_id(length: int = 30) -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(length))


class FakeMTurkError(Exception):
    def __init__(self, message: str, code: str = "RequestError") -> None:
        super().__init__(message)
        self.code = code


class FakeMTurk:
    """What the service knows. ``page_size`` is small so clients must follow NextToken."""

    def __init__(self, page_size: int = 2) -> None:
        self.page_size = page_size
        self.lock = threading.Lock()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.qualification_types: dict[str, dict[str, Any]] = {}
        self.hit_types: dict[str, dict[str, Any]] = {}
        self.hits: dict[str, dict[str, Any]] = {}
        self.hit_tokens: dict[str, str] = {}
        self.assignments: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.bonuses: list[dict[str, Any]] = []
        self.bonus_tokens: set[str] = set()
        self.grants: dict[str, set[str]] = defaultdict(set)
        self.notifications: list[dict[str, Any]] = []

    # -- helpers for tests ---------------------------------------------------------------------------------------
    def add_assignment(self, hit_id: str, worker_id: str, status: str = "Submitted") -> str:
        """A worker accepts (and submits) the HIT; refused, like MTurk, once every assignment is taken."""
        if len(self.assignments[hit_id]) >= self.hits[hit_id]["MaxAssignments"]:
            raise FakeMTurkError(f"HIT {hit_id} has no assignment left")
        assignment_id = new_id()
        self.assignments[hit_id].append(
            {
                "AssignmentId": assignment_id,
                "WorkerId": worker_id,
                "HITId": hit_id,
                "AssignmentStatus": status,
                "SubmitTime": time.time(),
                "Answer": "<QuestionFormAnswers/>",
            }
        )
        return assignment_id

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    def assignment(self, assignment_id: str) -> dict[str, Any]:
        for assignments in self.assignments.values():
            for assignment in assignments:
                if assignment["AssignmentId"] == assignment_id:
                    return assignment
        raise FakeMTurkError(f"Assignment {assignment_id} does not exist.")

    def _page(self, items: list[Any], body: dict[str, Any], key: str) -> dict[str, Any]:
        start = int(body.get("NextToken") or 0)
        size = min(int(body.get("MaxResults") or 100), self.page_size)
        page = items[start : start + size]
        response: dict[str, Any] = {key: page, "NumResults": len(page)}
        if start + size < len(items):
            response["NextToken"] = str(start + size)
        return response

    # -- operations ----------------------------------------------------------------------------------------------
    def CreateQualificationType(self, body):
        if any(q["Name"] == body["Name"] for q in self.qualification_types.values()):
            raise FakeMTurkError(f"You have already created a QualificationType with this name: {body['Name']}")
        qualification_id = new_id()
        self.qualification_types[qualification_id] = {**body, "QualificationTypeId": qualification_id}
        return {"QualificationType": self.qualification_types[qualification_id]}

    def ListQualificationTypes(self, body):
        query = body.get("Query", "")
        found = [q for q in self.qualification_types.values() if query in q["Name"]]
        return self._page(found, body, "QualificationTypes")

    def CreateHITType(self, body):
        for hit_type_id, known in self.hit_types.items():
            if known == body:  # MTurk answers identical properties with the same HIT type
                return {"HITTypeId": hit_type_id}
        hit_type_id = new_id()
        self.hit_types[hit_type_id] = body
        return {"HITTypeId": hit_type_id}

    def CreateHITWithHITType(self, body):
        token = body.get("UniqueRequestToken")
        if token and token in self.hit_tokens:
            raise FakeMTurkError(
                f'The HIT with ID "{self.hit_tokens[token]}" already exists. (AWS.MechanicalTurk.HitAlreadyExists)'
            )
        if body["HITTypeId"] not in self.hit_types:
            raise FakeMTurkError(f"HIT type {body['HITTypeId']} does not exist.")
        hit_id = new_id()
        self.hits[hit_id] = {
            "HITId": hit_id,
            "HITTypeId": body["HITTypeId"],
            "MaxAssignments": body.get("MaxAssignments", 1),
            "Question": body["Question"],
            "RequesterAnnotation": body.get("RequesterAnnotation", ""),
            "HITStatus": "Assignable",
            "Expiration": time.time() + body["LifetimeInSeconds"],
        }
        if token:
            self.hit_tokens[token] = hit_id
        return {"HIT": self.hits[hit_id]}

    def ListHITs(self, body):
        return self._page(list(self.hits.values()), body, "HITs")

    def GetHIT(self, body):
        return {"HIT": self.hits[body["HITId"]]}

    def ListAssignmentsForHIT(self, body):
        statuses = set(body.get("AssignmentStatuses") or ["Submitted", "Approved", "Rejected"])
        found = [a for a in self.assignments.get(body["HITId"], []) if a["AssignmentStatus"] in statuses]
        return self._page(found, body, "Assignments")

    def GetAssignment(self, body):
        assignment = self.assignment(body["AssignmentId"])
        return {"Assignment": assignment, "HIT": self.hits.get(assignment["HITId"], {})}

    def _review(self, body, status):
        assignment = self.assignment(body["AssignmentId"])
        if assignment["AssignmentStatus"] != "Submitted":
            raise FakeMTurkError("This operation can be called with a status of: Submitted")
        assignment["AssignmentStatus"] = status
        assignment["RequesterFeedback"] = body.get("RequesterFeedback", "")
        return {}

    def ApproveAssignment(self, body):
        if body.get("OverrideRejection"):
            assignment = self.assignment(body["AssignmentId"])
            if assignment["AssignmentStatus"] != "Rejected":
                raise FakeMTurkError("OverrideRejection can be used only on a rejected assignment")
            assignment["AssignmentStatus"] = "Approved"
            assignment["RequesterFeedback"] = body.get("RequesterFeedback", "")
            return {}
        return self._review(body, "Approved")

    def CreateAdditionalAssignmentsForHIT(self, body):
        token = body.get("UniqueRequestToken")
        if token and token in self.hit_tokens:
            raise FakeMTurkError("There is already a request with this UniqueRequestToken.")
        hit = self.hits[body["HITId"]]
        extra = int(body["NumberOfAdditionalAssignments"])
        if extra < 1:
            raise FakeMTurkError("NumberOfAdditionalAssignments must be at least 1")
        if hit["MaxAssignments"] < 10 <= hit["MaxAssignments"] + extra:
            raise FakeMTurkError("HITs created with fewer than 10 assignments cannot be extended to 10 or more")
        hit["MaxAssignments"] += extra
        if token:
            self.hit_tokens[token] = hit["HITId"]
        return {}

    def RejectAssignment(self, body):
        return self._review(body, "Rejected")

    def SendBonus(self, body):
        token = body.get("UniqueRequestToken")
        if token and token in self.bonus_tokens:
            raise FakeMTurkError("The bonus with this UniqueRequestToken already exists. RequestId: fake")
        self.assignment(body["AssignmentId"])
        if token:
            self.bonus_tokens.add(token)
        self.bonuses.append({**body, "GrantTime": time.time()})
        return {}

    def ListBonusPayments(self, body):
        found = [
            {k: b[k] for k in ("WorkerId", "BonusAmount", "AssignmentId", "Reason", "GrantTime")}
            for b in self.bonuses
            if b["AssignmentId"] == body.get("AssignmentId", b["AssignmentId"])
        ]
        return self._page(found, body, "BonusPayments")

    def AssociateQualificationWithWorker(self, body):
        if body["QualificationTypeId"] not in self.qualification_types:
            raise FakeMTurkError("No such qualification type")
        self.grants[body["QualificationTypeId"]].add(body["WorkerId"])
        return {}

    def UpdateExpirationForHIT(self, body):
        self.hits[body["HITId"]]["Expiration"] = body["ExpireAt"]
        if body["ExpireAt"] < time.time():
            self.hits[body["HITId"]]["HITStatus"] = "Unassignable"
        return {}

    def NotifyWorkers(self, body):
        if len(body["WorkerIds"]) > 100:
            raise FakeMTurkError("You can notify at most 100 workers at a time")
        self.notifications.append(body)
        return {"NotifyWorkersFailureStatuses": []}

    def GetAccountBalance(self, body):
        return {"AvailableBalance": "10000.00"}

    def worker_may_accept(self, hit_id: str, worker_id: str) -> bool:
        """Whether a worker meets a HIT's DoesNotExist requirements (the exclusion)."""
        hit_type = self.hit_types[self.hits[hit_id]["HITTypeId"]]
        for requirement in hit_type.get("QualificationRequirements", []):
            granted = self.grants[requirement["QualificationTypeId"]]
            if requirement["Comparator"] == "DoesNotExist" and worker_id in granted:
                return False
        return True


def model_problems(operation: str, body: dict[str, Any]) -> list[str]:
    """What botocore's MTurk model says is wrong with a request: an unknown operation, missing or unknown members."""
    import botocore.session

    model = _service_model(botocore.session)
    if operation not in model.operation_names:
        return [f"{operation} is not an MTurk operation"]
    shape = model.operation_model(operation).input_shape
    members = set(shape.members) if shape is not None else set()
    required = set(shape.required_members) if shape is not None else set()
    return [f"missing {name}" for name in sorted(required - set(body))] + [
        f"unknown member {name}" for name in sorted(set(body) - members)
    ]


_MODEL: list[Any] = []


def _service_model(botocore_session):
    if not _MODEL:
        _MODEL.append(botocore_session.get_session().get_service_model("mturk"))
    return _MODEL[0]


class _Handler(BaseHTTPRequestHandler):
    service: FakeMTurk

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        target = self.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(TARGET_PREFIX)
        handler = getattr(self.service, operation, None) if target.startswith(TARGET_PREFIX) else None
        if handler is None or not operation[:1].isupper():
            return self._send(400, {"__type": "UnknownOperationException", "message": target})
        problems = model_problems(operation, body)
        if problems:
            return self._send(400, {"__type": "ValidationException", "Message": "; ".join(problems)})
        with self.service.lock:
            self.service.calls.append((operation, body))
            try:
                result = handler(body)
            except FakeMTurkError as exc:
                return self._send(400, {"__type": exc.code, "Message": str(exc)})
        self._send(200, result)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", new_id(8))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class FakeMTurkServer:
    """Serves a FakeMTurk on a free port; stops on ``stop()`` or by itself after MAX_LIFETIME_S."""

    def __init__(self, service: FakeMTurk | None = None) -> None:
        self.service = service or FakeMTurk()
        handler = type("Handler", (_Handler,), {"service": self.service})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._timer = threading.Timer(MAX_LIFETIME_S, self.stop)
        self._timer.daemon = True

    def start(self) -> FakeMTurkServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
