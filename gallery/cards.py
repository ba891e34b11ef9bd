"""What one gallery card shows, built from a selector row (GALLERY_FIELDS).

Rendition URLs come from the names stored on the car, like the API's: no storage call and
no image processing while a page is served.
"""

from dataclasses import dataclass

from cars.models import ImageStatus
from cars.rendition_urls import RenditionUrls
from imports.pictures.reasons import IMAGE_REASON_TEXT

# The two platforms the page offers the browser (SPEC §5): `mobile` for narrow slots,
# `web` for wide ones and for desktop-sized windows. `default` stands in for either
# when a deployment's CARS_PLATFORMS leaves it out.
SMALL, LARGE, FALLBACK = "mobile", "web", "default"


@dataclass(frozen=True)
class Rendition:
    url: str
    width: int
    height: int


@dataclass(frozen=True)
class Card:
    id: int
    title: str
    description: str
    small: Rendition | None  # the <img> src; its width/height reserve the space
    large: Rendition | None  # offered in srcset, and alone to desktop-sized windows
    missing: str  # why there is no picture, in words ("" when there is one)

    @property
    def srcset(self) -> str:
        return ", ".join(f"{r.url} {r.width}w" for r in (self.small, self.large) if r)


def _rendition(urls: RenditionUrls, renditions: dict, platform: str) -> Rendition | None:
    entry = urls.rendition(renditions, platform)
    return Rendition(**entry) if entry else None


def missing_text(status: str, error: str | None) -> str:
    """The reason a car has no picture, as a sentence for people (SPEC §4 reason codes)."""
    if status == ImageStatus.FAILED:
        words = IMAGE_REASON_TEXT.get(error or "", "the image could not be fetched")
        return f"No picture: {words}."
    if status == ImageStatus.NONE:
        return "No picture was given for this car."
    return "The picture is still being prepared."


def card_from_row(row: dict, urls: RenditionUrls | None = None) -> Card:
    """One card; `urls` is shared by the page's cards (relative URLs by default)."""
    urls = urls or RenditionUrls()
    renditions = row["renditions"]
    fallback = _rendition(urls, renditions, FALLBACK)
    small = _rendition(urls, renditions, SMALL) or fallback
    large = _rendition(urls, renditions, LARGE) or fallback
    small = small or large
    if small and large and large.width <= small.width:
        large = None  # never upscaled: both are the same picture, offer it once
    return Card(
        id=row["id"],
        title=row["title"],
        description=row["description"],
        small=small,
        large=large,
        missing="" if small else missing_text(row["image_status"], row["image_error"]),
    )
