"""Client platforms (web, mobile, …) are configuration: `settings.CARS_PLATFORMS`.

Each entry maps a platform name to a spec::

    {"processors": [["fit", 1280, 960]], "format": "JPEG", "quality": 85, "progressive": True}

A JPEG platform may say `"progressive"` (default: true, except for `mobile`, whose small
files gain nothing from it) and `"optimize"` (Huffman tables optimised for a baseline
JPEG; default: false; a progressive JPEG always has them).

A processor is `["fit", w, h]`, `["fill", w, h]`, or `["dotted.path.Processor", {kwargs}]`
for any pilkit-style processor. Adding a platform is a settings change only: `Picture`
grows one ImageSpecField per platform when the app is ready (cars.pictures.rendering).
"""

from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from . import processors

DEFAULT_PLATFORM = "default"
_BUILTIN = {"fit": processors.Fit, "fill": processors.Fill}


@dataclass(frozen=True)
class Platform:
    name: str
    processors: tuple[Any, ...]
    format: str
    quality: int
    progressive: bool = True
    optimize: bool = False

    @property
    def attname(self) -> str:
        """Name of the Car attribute holding this platform's ImageSpecField."""
        return f"image_{self.name}"

    @property
    def options(self) -> dict[str, Any]:
        if self.format.upper() in ("JPEG", "JPG"):
            return {
                "quality": self.quality,
                "progressive": self.progressive,
                "optimize": self.optimize,
            }
        return {"quality": self.quality}


def _build_processor(entry: Any) -> Any:
    if not isinstance(entry, list | tuple) or not entry:
        raise ImproperlyConfigured(f"CARS_PLATFORMS: bad processor {entry!r}")
    kind, *args = entry
    if kind in _BUILTIN:
        return _BUILTIN[kind](*args)
    kwargs = args[0] if args and isinstance(args[0], dict) else {}
    return import_string(kind)(**kwargs)


def _build_platform(name: str, spec: dict[str, Any]) -> Platform:
    if not name.isidentifier():
        raise ImproperlyConfigured(f"CARS_PLATFORMS: {name!r} is not a valid platform name")
    chain = tuple(_build_processor(entry) for entry in spec.get("processors", []))
    if not chain or not isinstance(chain[0], processors.Fit | processors.Fill):
        # The first processor decodes (see cars.pictures.processors); foreign ones expect
        # a decoded upright RGB image.
        chain = (processors.Normalize(), *chain)
    return Platform(
        name=name,
        processors=chain,
        format=spec.get("format", "JPEG").upper(),
        quality=int(spec.get("quality", 85)),
        progressive=bool(spec.get("progressive", name != "mobile")),
        optimize=bool(spec.get("optimize", False)),
    )


def build_platforms(config: dict[str, dict[str, Any]]) -> dict[str, Platform]:
    if DEFAULT_PLATFORM not in config:
        raise ImproperlyConfigured("CARS_PLATFORMS must define a 'default' platform")
    return {name: _build_platform(name, spec) for name, spec in config.items()}


@cache
def get_platforms() -> dict[str, Platform]:
    """All configured platforms, `default` always included (read once per process)."""
    return build_platforms(settings.CARS_PLATFORMS)
