"""Making and forgetting renditions.

Renditions are django-imagekit cache files (`CACHE/images/...`), one ImageSpecField per
platform on `Picture`. They are made here, by the import pipeline, once per distinct
picture, and their names and sizes are written on the picture, so that reading the
catalogue never processes an image nor asks the storage anything.
"""

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from imagekit.models import ImageSpecField
from PIL import Image
from pilkit.processors import ProcessorPipeline
from pilkit.utils import save_image

from ..models import Picture
from .platforms import get_platforms
from .processors import Fit, decode, upright_size

# Pillow hands each image's memory back to the system and maps it again for the next
# one, faulting every page in anew: a tenth of a picture's CPU time. Renditions allocate
# the same sizes picture after picture, so keep some freed blocks (16 MiB at most each)
# for the next one, unless PILLOW_BLOCKS_MAX already says how many.
RECYCLED_BLOCKS = 16
if not Image.core.get_blocks_max():
    Image.core.set_blocks_max(RECYCLED_BLOCKS)


class GeneratedByImport:
    """imagekit cache-file strategy: never generate on access.

    imagekit's default (JustInTime) would render inside the first request that reads
    `.url`; here the import renders, and reads use the names stored on the picture.
    """

    def on_existence_required(self, file) -> None:
        pass

    def on_content_required(self, file) -> None:
        pass

    def on_source_saved(self, file) -> None:
        pass

    def should_verify_existence(self, file) -> bool:
        return False


def add_rendition_specs() -> None:
    """Give `Picture` one imagekit ImageSpecField per configured platform (`image_<name>`).

    Called once, when the app is ready (cars.apps): the model module does not read the
    platforms, so the catalogue's models know nothing of the pictures package above them.
    The fields are not database columns: they name and describe the renditions.
    """
    for platform in get_platforms().values():
        Picture.add_to_class(
            platform.attname,
            ImageSpecField(
                source="image",
                processors=list(platform.processors),
                format=platform.format,
                options=platform.options,
            ),
        )


@dataclass(frozen=True)
class Rendition:
    """One platform's rendition, made but not stored yet."""

    name: str  # imagekit's cache-file name
    width: int
    height: int
    data: bytes

    def stored(self) -> dict:
        """What a picture keeps of it: reads need no storage call."""
        return {"name": self.name, "width": self.width, "height": self.height}


def render_all(image_name: str, original: Image.Image) -> dict[str, Rendition]:
    """Every platform's rendition of `original` (the lazy image from ``Image.open``), the
    picture stored as `image_name`.

    Names and specs are imagekit's (the picture's ImageSpecFields): they derive from the
    original's name, which is its content hash, so the same bytes always give the same
    names. Nothing is stored here: the caller writes the files when it records the
    picture. The original is decoded once, on this thread, at the smallest JPEG DCT scale
    that covers every platform; a caller that checks the bytes watches this decode. The
    platforms whose first processor is a `fit` are then made largest first, each from the
    previous one, the largest on a thread of its own; any other platform from the decoded
    picture, on a thread of its own. Pillow releases the GIL while it resizes and while it
    encodes to a file (see `_encoded`).
    """
    platforms = get_platforms().values()
    picture = Picture(image=image_name)  # names only: nothing is read from the storage
    size = upright_size(original)
    scales = {p.name: p.processors[0].scale(size) for p in platforms}
    base = decode(original, max(scales.values()))
    largest_first = sorted(platforms, key=lambda p: scales[p.name], reverse=True)
    cachefiles = {p.name: getattr(picture, p.attname) for p in largest_first}
    fits = [p.name for p in largest_first if isinstance(p.processors[0], Fit)]
    chains = [fits[:1], fits[1:], *([p.name] for p in largest_first if p.name not in fits)]
    chains = [chain for chain in chains if chain]
    with ThreadPoolExecutor(len(chains), thread_name_prefix="rendition") as pool:
        jobs = [pool.submit(_render_chain, chain, cachefiles, base, size) for chain in chains]
        made = {name: result for job in jobs for name, result in job.result().items()}
    return {
        name: Rendition(cachefiles[name].name, *made[name][0], made[name][1])
        for name in get_platforms()
    }


def _render_chain(
    chain: list[str], cachefiles: dict, base: Image.Image, size: tuple[int, int]
) -> dict[str, tuple[tuple[int, int], bytes]]:
    """Each platform of `chain` in turn: {name: ((width, height), encoded bytes)}.

    Each is resized from the previous (larger) output of the chain, the first from the
    decoded original; the rest of a platform's processors then run on the result.
    """
    made = {}
    previous = base
    for name in chain:
        spec = cachefiles[name].generator
        first, *rest = spec.processors  # Fit, Fill or Normalize (cars.pictures.platforms)
        img = previous = first.resize(previous, size)
        if rest:
            img = ProcessorPipeline(rest).process(img)
        made[name] = (img.size, _encoded(img, spec))
    return made


def _encoded(img: Image.Image, spec) -> bytes:
    """The spec's file format, through pilkit's `save_image` (imagekit's own path).

    Written to a real file, not a BytesIO: Pillow holds the GIL while it encodes into a
    Python object but releases it while it encodes to a file descriptor. memfd_create
    keeps the file in memory (Linux); elsewhere a temporary file.
    """
    with _scratch_file() as scratch:
        save_image(img, scratch, spec.format, dict(spec.options or {}), spec.autoconvert)
        scratch.seek(0)
        return scratch.read()


def _scratch_file():
    """A file in memory (memfd, Linux), else a temporary file (other systems, sandboxes)."""
    try:
        return open(os.memfd_create("rendition", os.MFD_CLOEXEC), "w+b")
    except (AttributeError, OSError):  # no memfd_create, or refused (seccomp, fd limit)
        return tempfile.TemporaryFile()
