"""App config for studies, annotators, ratings, crowd platforms and analysis."""

from django.apps import AppConfig


class AnnotationsConfig(AppConfig):
    name = "annotations"
