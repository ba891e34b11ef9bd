from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Endpoints for operators, at the top of the layers: health probes, metrics, media."""

    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from .metrics import register

        register()
