"""Annotator pages (entry by link, MTurk or Prolific; consent; demographics; rating screens; completion)
and the staff dashboard. Views parse the request, call a service, and render."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from annotations import selectors
from annotations.crowd import entry as crowd_entry
from annotations.models import Annotator, Study
from annotations.ratelimit import limit_writes
from annotations.services import sessions
from annotations.tokens import InvalidToken, annotator_token, parse_annotator_token, read_invite_token

logger = logging.getLogger("evalsite.annotators")

MTURK_PREVIEW_ID = "ASSIGNMENT_ID_NOT_AVAILABLE"
PROLIFIC_COMPLETE_URL = "https://app.prolific.com/submissions/complete"
_RATING_FIELD = re.compile(r"^r-(\d+)-(\d+)$")

# Annotator pages are embedded by MTurk in a frame, where browsers block third-party cookies. They carry
# identity in a signed token in the URL instead of a session cookie, so CSRF (which abuses ambient cookies)
# has nothing to ride on: the token itself is the credential, and every write checks it. Hence
# csrf_exempt on these views, and framing allowed only for MTurk's origins.
FRAME_ANCESTORS = "'self' https://www.mturk.com https://workersandbox.mturk.com"


def _annotator_page(view):
    view = xframe_options_exempt(csrf_exempt(view))

    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = f"frame-ancestors {FRAME_ANCESTORS}"
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response

    wrapped.csrf_exempt = True
    wrapped.xframe_options_exempt = True
    return wrapped


def _reject(request: HttpRequest, status: int, message: str, study: Study | None = None) -> HttpResponse:
    logger.warning("annotator request refused (%s) %s %s: %s", status, request.method, request.path, message)
    return render(request, "annotations/error.html", {"message": message, "study": study}, status=status)


def _open_study(slug: str) -> Study:
    study = selectors.study_for_slug(slug)
    if study is None:
        raise Http404("no such study")
    return study


def _session_url(annotator: Annotator) -> str:
    token = annotator_token(study_id=annotator.study_id, annotator_public_id=str(annotator.public_id))
    return reverse("annotations:session", args=[annotator.study.slug, token])


@_annotator_page
@require_http_methods(["GET"])
def invite_entry(request: HttpRequest, slug: str, token: str) -> HttpResponse:
    study = _open_study(slug)
    try:
        label = read_invite_token(token, study_id=study.pk)
    except InvalidToken as exc:
        return _reject(request, 403, f"This link is not valid ({exc}).", study)
    try:
        annotator = sessions.annotator_enter(study=study, source=Annotator.Source.LINK, external_id=label)
    except sessions.SessionError as exc:
        return _reject(request, exc.status, str(exc), study)
    return HttpResponseRedirect(_session_url(annotator))


def _allowed_turk_submit_to(url: str) -> bool:
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return bool(parts.scheme and parts.netloc) and origin in settings.MTURK_SUBMIT_ORIGINS


@_annotator_page
@require_http_methods(["GET"])
def mturk_entry(request: HttpRequest, slug: str) -> HttpResponse:
    study = _open_study(slug)
    assignment_id = request.GET.get("assignmentId", "")
    worker_id, hit_id = request.GET.get("workerId", ""), request.GET.get("hitId", "")
    if not assignment_id or assignment_id == MTURK_PREVIEW_ID:
        if crowd_entry.mturk_task_for_hit(study=study, hit_id=hit_id) is None:
            return _reject(request, 403, "This is not one of this study's HITs, so there is nothing to preview.", study)
        return render(request, "annotations/preview.html", {"study": study, "constructs": study.constructs.all()})
    turk_submit_to = request.GET.get("turkSubmitTo", "")
    if not worker_id or not hit_id:
        return _reject(request, 400, "The HIT link is missing workerId or hitId.", study)
    if not _allowed_turk_submit_to(turk_submit_to):
        return _reject(request, 400, "The HIT link has an unexpected turkSubmitTo.", study)
    try:
        annotator = sessions.annotator_enter(
            study=study,
            source=Annotator.Source.MTURK,
            external_id=worker_id,
            external_assignment_id=assignment_id,
            platform_data={"hitId": hit_id, "turkSubmitTo": turk_submit_to.rstrip("/")},
        )
    except sessions.SessionError as exc:
        return _reject(request, exc.status, str(exc), study)
    if annotator.external_assignment_id != assignment_id:
        return _reject(
            request,
            409,
            "You have already worked on this study in another HIT, and each person takes part once. "
            "Please return this HIT on MTurk.",
            study,
        )
    return HttpResponseRedirect(_session_url(annotator))


@_annotator_page
@require_http_methods(["GET"])
def prolific_entry(request: HttpRequest, slug: str) -> HttpResponse:
    study = _open_study(slug)
    pid = request.GET.get("PROLIFIC_PID", "")
    if not pid or not re.fullmatch(r"[A-Za-z0-9]{1,64}", pid):
        return _reject(request, 400, "The Prolific link has no valid PROLIFIC_PID.", study)
    try:
        annotator = sessions.annotator_enter(
            study=study,
            source=Annotator.Source.PROLIFIC,
            external_id=pid,
            external_assignment_id=request.GET.get("SESSION_ID", "")[:128],
            platform_data={"STUDY_ID": request.GET.get("STUDY_ID", "")[:64]},
        )
    except sessions.SessionError as exc:
        return _reject(request, exc.status, str(exc), study)
    return HttpResponseRedirect(_session_url(annotator))


def _annotator_from_token(slug: str, token: str) -> Annotator:
    """The annotator a session token names, with their study, in one query; raises InvalidToken (or
    Http404 for a study that does not exist)."""
    try:
        parsed = parse_annotator_token(token)
    except InvalidToken:
        _open_study(slug)  # an unknown study is a 404 whatever the token
        raise
    annotator = selectors.annotator_in_study(slug, parsed.annotator_public_id)
    if annotator is None:
        _open_study(slug)
        raise InvalidToken("no such annotator")
    if annotator.study_id != parsed.study_id:
        raise InvalidToken("token is for another study")
    return annotator


@_annotator_page
@require_http_methods(["GET", "POST"])
@limit_writes
def session(request: HttpRequest, slug: str, token: str) -> HttpResponse:
    try:
        annotator = _annotator_from_token(slug, token)
    except InvalidToken as exc:
        return _reject(request, 403, f"This link is not valid ({exc}).", selectors.study_for_slug(slug))
    sessions.annotator_touch(annotator)
    if request.method == "POST":
        return _session_post(request, annotator, token)
    return _session_get(request, annotator, token)


def _context(annotator: Annotator, token: str, progress: tuple[int, int] | None = None, **extra) -> dict:
    done, total = progress if progress is not None else selectors.session_progress(annotator)
    return {
        "study": annotator.study,
        "annotator": annotator,
        "token": token,
        "action_url": reverse("annotations:session", args=[annotator.study.slug, token]),
        "answer_url": reverse("annotations:answer", args=[annotator.study.slug, token]),
        "done": done,
        "total": total,
        **extra,
    }


def _session_get(request: HttpRequest, annotator: Annotator, token: str, error: str = "", status: int = 200):
    study = annotator.study
    if annotator.finished_at is not None:
        return _done_page(request, annotator, token)
    if annotator.consented_at is None:
        return render(request, "annotations/consent.html", _context(annotator, token, error=error), status=status)
    if annotator.demographics_at is None:
        template = "annotations/instructions.html"
        if request.GET.get("step") == "demographics" or error:
            template = "annotations/demographics.html"
        questions = study.demographics_questions or []
        return render(
            request,
            template,
            _context(annotator, token, error=error, questions=questions, given=request.POST),
            status=status,
        )
    try:
        # Allocates on the first visit, releases what is left past the time limit, closes a session whose
        # screens are done, and notes when a screen is first shown: a GET that writes, through the service.
        screen = sessions.session_next_screen(annotator=annotator)
    except sessions.SessionError as exc:
        return _reject(request, exc.status, str(exc), study)
    if screen.finished:
        return _done_page(request, annotator, token)
    progress = (screen.done, screen.total)
    assignment = screen.assignment
    if assignment is None:
        return render(request, "annotations/no_work.html", _context(annotator, token, progress), status=200)
    constructs = selectors.study_constructs(study)
    return render(
        request,
        "annotations/screen.html",
        _context(
            annotator,
            token,
            progress,
            error=error,
            assignment=assignment,
            shown=selectors.screen_explanations(
                annotator, assignment, constructs, with_saved=screen.shown_before or bool(error)
            ),
            item=assignment.explanation.item if assignment.explanation else None,
            constructs=constructs,
            attention_scale=range(1, max([c.scale_size for c in constructs] or [5]) + 1),
        ),
        status=status,
    )


def _session_post(request: HttpRequest, annotator: Annotator, token: str) -> HttpResponse:
    action = request.POST.get("action", "")
    try:
        if annotator.finished_at is not None:
            raise sessions.SessionError("this session is finished", status=409)
        if action == "consent":
            if request.POST.get("agree") != "yes":
                raise sessions.SessionError("please tick the box to agree, or close the page to leave")
            sessions.annotator_consent(annotator=annotator)
        elif action == "demographics":
            names = [q["name"] for q in annotator.study.demographics_questions or []]
            sessions.annotator_save_demographics(
                annotator=annotator, answers={n: request.POST.get(n, "") for n in names}
            )
        elif action == "screen":
            _submit_screen(request, annotator)
        else:
            raise sessions.SessionError("unknown action")
    except sessions.SessionError as exc:
        if exc.status >= 403:
            return _reject(request, exc.status, str(exc), annotator.study)
        logger.info("annotator %s: %s", annotator.pk, exc)
        return _session_get(request, annotator, token, error=str(exc), status=exc.status)
    return HttpResponseRedirect(reverse("annotations:session", args=[annotator.study.slug, token]))


def _int_or_error(raw: str | None, what: str) -> int:
    try:
        return int(raw or "")
    except ValueError as exc:
        raise sessions.SessionError(f"{what} is not a number") from exc


def _submit_screen(request: HttpRequest, annotator: Annotator) -> None:
    answers = []
    for key, raw in request.POST.items():
        match = _RATING_FIELD.match(key)
        if match:
            answers.append(
                sessions.ScreenAnswer(int(match.group(1)), int(match.group(2)), _int_or_error(raw, "a rating"))
            )
    attention = request.POST.get("attention")
    preference = request.POST.get("preference", "")
    sessions.screen_submit(
        annotator=annotator,
        assignment_id=_int_or_error(request.POST.get("assignment"), "the screen"),
        answers=answers,
        attention_value=_int_or_error(attention, "the answer") if attention else None,
        preferred_explanation_id=_int_or_error(preference, "the preference") if preference.isdigit() else None,
        no_preference=preference == "none",
    )


@_annotator_page
@require_POST
@limit_writes
def answer(request: HttpRequest, slug: str, token: str) -> HttpResponse:
    """Save one answer as it is given (called by the page's script); the full form still submits all."""
    try:
        annotator = _annotator_from_token(slug, token)
        if annotator.finished_at is not None:
            raise sessions.SessionError("this session is finished", status=409)
        if "preference" in request.POST:  # a pair screen's preference, autosaved like a rating
            sessions.preference_save(
                annotator=annotator,
                assignment_id=_int_or_error(request.POST.get("assignment"), "the screen"),
                preference=request.POST["preference"],
            )
            return JsonResponse({"saved": True})
        sessions.answer_save(
            annotator=annotator,
            assignment_id=_int_or_error(request.POST.get("assignment"), "the screen"),
            answer=sessions.ScreenAnswer(
                _int_or_error(request.POST.get("explanation"), "the explanation"),
                _int_or_error(request.POST.get("construct"), "the construct"),
                _int_or_error(request.POST.get("value"), "the rating"),
            ),
        )
    except InvalidToken as exc:
        logger.warning("answer refused (403) %s: %s", request.path, exc)
        return JsonResponse({"error": "invalid token"}, status=403)
    except sessions.SessionError as exc:
        logger.warning("answer refused (%s) %s: %s", exc.status, request.path, exc)
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse({"saved": True})


def _done_page(request: HttpRequest, annotator: Annotator, token: str) -> HttpResponse:
    context = _context(annotator, token, code=annotator.completion_code)
    if annotator.source == Annotator.Source.MTURK:
        context["mturk_submit_url"] = annotator.platform_data.get("turkSubmitTo", "") + "/mturk/externalSubmit"
        context["assignment_id"] = annotator.external_assignment_id
    elif annotator.source == Annotator.Source.PROLIFIC:
        context["prolific_url"] = f"{PROLIFIC_COMPLETE_URL}?{urlencode({'cc': annotator.completion_code})}"
    return render(request, "annotations/done.html", context)


@staff_member_required
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    if not request.user.has_perm("annotations.view_study"):
        raise PermissionDenied("needs the view permission on studies")
    study = get_object_or_404(Study, slug=slug)
    return render(request, "annotations/dashboard.html", {"dashboard": selectors.study_dashboard(study)})
