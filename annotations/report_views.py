"""Staff pages for a study's rating analysis: the report (run as a job, cached until new ratings arrive)
and its files. The statistics core and pandas are not imported here: the page only reads stored JSON."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods

from annotations.analysis.render import FIGURE_CAPTIONS, REPORT_STYLE, render_body
from annotations.models import AnalysisReport, Study
from annotations.services import analysis

# While the job runs the page reloads itself; a few seconds is short next to a run, long next to a request.
REFRESH_SECONDS = 3
# Files the browser should save rather than show.
DOWNLOAD_SUFFIXES = (".csv",)


def _report_url(study: Study, reference: str) -> str:
    url = reverse("annotations:report", args=[study.slug])
    return f"{url}?{urlencode({'reference': reference})}" if reference else url


def _check_study_permission(request: HttpRequest, action: str) -> None:
    """Staff pages check the model permission: viewing a study's results, or changing it to start work."""
    if not request.user.has_perm(f"annotations.{action}_study"):
        raise PermissionDenied(f"needs the {action} permission on studies")


def _current_report(study: Study, reference: str) -> AnalysisReport | None:
    """The stored report for the study's current ratings, read only (GET never starts a job)."""
    if reference and not study.conditions.filter(label=reference).exists():
        raise analysis.AnalysisUnavailable(f"{reference!r} is not a condition of this study")
    fingerprint = analysis.ratings_fingerprint(study)
    if fingerprint.startswith("0@"):
        raise analysis.AnalysisUnavailable("the study has no ratings from completed screens yet")
    return analysis.latest_analysis_report(study, reference=reference, fingerprint=fingerprint)


@staff_member_required
@require_http_methods(["GET", "POST"])
def study_report(request: HttpRequest, slug: str) -> HttpResponse:
    """GET shows the stored report for the current ratings (view permission on studies). POST runs the
    analysis (change permission): the first time, after new ratings, or again after a failure."""
    study = get_object_or_404(Study, slug=slug)
    _check_study_permission(request, "change" if request.method == "POST" else "view")
    reference = (request.POST if request.method == "POST" else request.GET).get("reference", "")
    conditions = list(study.conditions.values_list("label", flat=True))
    context = {
        "study": study,
        "conditions": conditions,
        "reference": reference,
        "title": f"Analysis: {study.title}",
        "can_run": request.user.has_perm("annotations.change_study"),
    }
    try:
        report = _current_report(study, reference)
        if request.method == "POST":
            # Run when there is no report for these ratings, or again after a failure; never twice at once.
            failed = report is not None and report.report is None and not (report.job and report.job.is_active)
            analysis.analysis_report_get_or_run(study=study, reference=reference, user=request.user, rerun=failed)
            return HttpResponseRedirect(_report_url(study, reference))
    except analysis.AnalysisUnavailable as exc:
        return render(request, "annotations/report/study_report.html", {**context, "unavailable": str(exc)})
    if report is None:
        return render(request, "annotations/report/study_report.html", {**context, "not_run": True})
    job = report.job
    running = report.report is None and job is not None and job.is_active
    context.update(
        report=report,
        job=job,
        running=running,
        failed=report.report is None and not running,
        refresh_seconds=REFRESH_SECONDS if running else None,
    )
    if report.report is not None:
        files = analysis.analysis_report_files(report)
        context["files"] = [(name, _file_url(report, name)) for name in files]
        context["body"] = _report_body(report, files)
        context["report_style"] = mark_safe(REPORT_STYLE)
    return render(request, "annotations/report/study_report.html", context)


def _file_url(report: AnalysisReport, name: str) -> str:
    return reverse("annotations:report_file", args=[report.study.slug, report.pk, name])


def _report_body(report: AnalysisReport, files: list[str]) -> str:
    # Figures as links to their stored SVGs: an <img> never runs script, and the page stays light.
    stems = [name.removesuffix(".svg") for name in files if name.endswith(".svg")]
    stems.sort(key=lambda stem: list(FIGURE_CAPTIONS).index(stem) if stem in FIGURE_CAPTIONS else len(stems))
    figures = {
        stem: format_html('<img src="{}" alt="{} figure">', _file_url(report, f"{stem}.svg"), stem) for stem in stems
    }
    # render_body escapes every value it writes; it is the same markup as the downloadable report.html.
    return mark_safe(render_body(report.report, figures))


@staff_member_required
@require_http_methods(["GET"])
def report_file(request: HttpRequest, slug: str, report_id: int, name: str) -> FileResponse:
    _check_study_permission(request, "view")
    report = get_object_or_404(AnalysisReport, pk=report_id, study__slug=slug)
    path = analysis.analysis_report_file(report, name)
    if path is None:
        raise Http404("no such file in this report")
    response = FileResponse(path.open("rb"), as_attachment=name.endswith(DOWNLOAD_SUFFIXES), filename=name)
    # report.html and the SVGs are shown in the browser: sandbox them so nothing in them can act as the site.
    response["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
    return response
