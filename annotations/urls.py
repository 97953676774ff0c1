"""URL routes of annotator pages and the study dashboard."""

from django.urls import path

from annotations import report_views, views

app_name = "annotations"

urlpatterns = [
    path("study/<slug:slug>/invite/<str:token>/", views.invite_entry, name="invite"),
    path("study/<slug:slug>/mturk/", views.mturk_entry, name="mturk"),
    path("study/<slug:slug>/prolific/", views.prolific_entry, name="prolific"),
    path("study/<slug:slug>/s/<str:token>/", views.session, name="session"),
    path("study/<slug:slug>/s/<str:token>/answer/", views.answer, name="answer"),
    path("studies/<slug:slug>/dashboard/", views.dashboard, name="dashboard"),
    path("studies/<slug:slug>/report/", report_views.study_report, name="report"),
    path("studies/<slug:slug>/report/<int:report_id>/<str:name>", report_views.report_file, name="report_file"),
]
