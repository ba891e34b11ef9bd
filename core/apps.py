from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app may use: API plumbing, client addresses, throttles, middleware."""

    name = "core"
    verbose_name = "Foundation"
