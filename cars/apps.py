import contextlib

from django.apps import AppConfig


class CarsConfig(AppConfig):
    name = "cars"
    verbose_name = "Catalogue"

    def ready(self) -> None:
        from .pictures.rendering import add_rendition_specs

        _make_pilkit_saves_thread_safe()
        add_rendition_specs()


def _make_pilkit_saves_thread_safe() -> None:
    """Stop pilkit from swapping the process's stderr during every image save.

    pilkit's `save_image` (which imagekit uses) wraps each save in `quiet()`, which
    dup2()s /dev/null onto file descriptor 2 and back. Two threads saving at once (our
    import renders in a thread pool) interleave those swaps and leave stderr pointing at
    /dev/null for the rest of the process: every later log line and error is lost. The
    libjpeg chatter it hid is long gone from Pillow, so the swap is simply dropped.
    """
    import pilkit.utils

    pilkit.utils.quiet = contextlib.nullcontext
