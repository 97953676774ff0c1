"""App config for teacher generation, student training, evaluation and inference."""

from django.apps import AppConfig


class DistillationConfig(AppConfig):
    name = "distillation"
