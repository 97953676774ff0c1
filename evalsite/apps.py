"""App config for the project-level app that holds job records."""

from django.apps import AppConfig


class EvalsiteConfig(AppConfig):
    name = "evalsite"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from evalsite.cli import quiet_library_output

        quiet_library_output()
