from django.apps import AppConfig


class ImportsConfig(AppConfig):
    name = "imports"
    verbose_name = "Imports"

    def ready(self) -> None:
        from . import tasks  # noqa: F401  (registers the tasks that imports.dispatch sends by name)
