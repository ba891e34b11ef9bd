"""What the gallery shows of a car: a card of the grid, built from a selector row
(GALLERY_FIELDS), and the car's page, built from the detail selector's row (`car_detail`).

Rendition URLs come from the names stored on the car, like the API's: no storage call and
no image processing while a page is served.
"""

from dataclasses import dataclass

from cars.models import ImageStatus
from cars.pictures.reasons import IMAGE_REASON_TEXT
from cars.pictures.urls import RenditionUrls

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
        return _srcset(self.small, self.large)


def _rendition(urls: RenditionUrls, renditions: dict, platform: str) -> Rendition | None:
    entry = urls.rendition(renditions, platform)
    return Rendition(**entry) if entry else None


def _small_and_large(
    urls: RenditionUrls, renditions: dict | None
) -> tuple[Rendition | None, Rendition | None]:
    """The renditions one picture offers the browser: (the <img> src, the wider one in
    srcset, or None when it would be no wider)."""
    renditions = renditions or {}
    fallback = _rendition(urls, renditions, FALLBACK)
    small = _rendition(urls, renditions, SMALL) or fallback
    large = _rendition(urls, renditions, LARGE) or fallback
    small = small or large
    if small and large and large.width <= small.width:
        large = None  # never upscaled: both are the same picture, offer it once
    return small, large


def _srcset(*renditions: Rendition | None) -> str:
    return ", ".join(f"{r.url} {r.width}w" for r in renditions if r)


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
    small, large = _small_and_large(urls, row["renditions"])
    return Card(
        id=row["id"],
        title=row["title"],
        description=row["description"],
        small=small,
        large=large,
        missing="" if small else missing_text(row["image_status"], row["image_error"]),
    )


# --------------------------------------------------------------------------- a car's page


@dataclass(frozen=True)
class Photo:
    """One of the car's pictures, as the car's page shows it."""

    number: int  # 1, 2, ...: its place in the feed
    small: Rendition | None
    large: Rendition | None
    missing: str  # why it cannot be shown, in words ("" when it can)

    @property
    def srcset(self) -> str:
        return _srcset(self.small, self.large)


@dataclass(frozen=True)
class CarPage:
    id: int
    title: str
    description: str  # plain text, shown when there is no HTML
    description_html: str  # sanitised with nh3 at import (imports.cells.sanitised_html)
    attributes: list[tuple[str, str]]  # (name, value) in the feed's column order
    photos: list[Photo]
    missing: str  # why the car has no picture at all ("" when it has some)


def photo_from_picture(picture: dict, number: int, urls: RenditionUrls) -> Photo:
    """A picture of `car_detail`'s `pictures`: {"source_url", "error", "renditions"}.

    Such a picture was given by the feed, so without renditions it either failed (its
    reason code says why) or is still being made."""
    small, large = _small_and_large(urls, picture["renditions"])
    if small:
        missing = ""
    else:
        status = ImageStatus.FAILED if picture["error"] else ImageStatus.PENDING
        missing = missing_text(status, picture["error"])
    return Photo(number=number, small=small, large=large, missing=missing)


def car_page_from_detail(row: dict, urls: RenditionUrls | None = None) -> CarPage:
    """The car's page from the detail selector's row (`cars.selectors.car_detail`)."""
    urls = urls or RenditionUrls()
    photos = [
        photo_from_picture(picture, number, urls)
        for number, picture in enumerate(row["pictures"], start=1)
    ]
    return CarPage(
        id=row["id"],
        title=row["title"],
        description=row["description"],
        description_html=row["description_html"] or "",
        # Pairs, not the dict: a template looks `.items` up as a key first, and a feed
        # may well have a column named "items".
        # By name: PostgreSQL's jsonb keeps no column order, so both databases show the same.
        attributes=sorted(
            ((str(name), str(value)) for name, value in (row["attributes"] or {}).items()),
            key=lambda pair: pair[0].casefold(),
        ),
        photos=photos,
        # The detail lists a car's own picture whenever the feed named one.
        missing="" if photos else missing_text(ImageStatus.NONE, None),
    )
