"""URL routes of the site."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("annotations.urls")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
