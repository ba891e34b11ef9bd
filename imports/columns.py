"""Which column gives which field of a car (SPEC §3): names, aliases, `--map`, values.

Exports name the same field many ways (Shopify's `Body (HTML)`, PrestaShop's `Name *`,
Google's `image_link`), so a header name is normalised (case, spaces, underscores, a
trailing `*`, a parenthesised hint) and matched against built-in aliases, best alias
first. `--map FIELD=COLUMN` names a column outright; `--map 'title={mark} {model}'` builds
a field from a template of columns. A column that matches no alias but whose values are
mostly picture URLs is taken as the image column. Every other column is an attribute.

No Django here.
"""

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from .cells import picture_refs  # the same splitting the import uses

FIELDS = ("id", "title", "description", "image")
# Best first: when several columns match a field, the earlier alias wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("title", "name", "product name", "item name", "product title", "full name"),
    "description": (
        "description",
        "body",
        "long description",
        "product description",
        "short description",
    ),
    "image": (
        "image",
        "image url",
        "image src",
        "image link",
        "images",
        "image urls",
        "pictures",
        "picture",
        "photos",
        "photo",
        "main image",
        "picture url",
        "photo url",
    ),
    "id": (
        "id",
        "external id",
        "handle",
        "sku",
        "vehicle id",
        "product id",
        "item id",
        "offer id",
    ),
}
# Columns whose pictures follow the image column's, in this order.
MORE_IMAGES = ("additional image link", "additional image links", "variant image")

_HINT = re.compile(r"\([^)]*\)")
_SEPARATORS = re.compile(r"[\s_\-]+")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_PICTURE_URL = re.compile(
    r"^https?://\S+?(\.(jpe?g|png|webp|gif|avif)([?#]\S*)?$|/(images?|img|photos?|pictures?)/)",
    re.IGNORECASE,
)


class MappingError(Exception):
    """Fatal: `--map` names a field or a column that does not exist (one clear line)."""


def normalise(name: str) -> str:
    """`Name *` → `name`, `Image URLs (x,y,z...)` → `image urls`, `image_link` → `image link`."""
    name = name.replace("\ufeff", "").strip().lower()
    name = _HINT.sub(" ", name).strip().rstrip("*").strip()
    return _SEPARATORS.sub(" ", name).strip()


Getter = Callable[[list[str]], str]


@dataclass
class ColumnMap:
    """Where each field comes from in a record, as getters, and what it says of itself."""

    fields: dict[str, Getter] = field(default_factory=dict)
    described: dict[str, str] = field(default_factory=dict)  # field -> column or template
    more_images: list[int] = field(default_factory=list)
    attributes: list[tuple[str, int]] = field(default_factory=list)  # (name as written, pos)
    guessed_image: bool = False  # the image column was recognised by its values
    repeated: list[str] = field(default_factory=list)  # names met again, as written
    single: dict[str, int] = field(default_factory=dict)  # field -> its one column
    unnamed: list[int] = field(default_factory=list)  # columns with no name: not kept
    image_position: int | None = None  # Shopify's `Image Position`: the order of pictures

    def report(self) -> dict:
        """The mapping as the report and the job show it: field -> column or template."""
        return {**self.described, "attributes": [name for name, _ in self.attributes]}


def map_columns(
    header: Sequence[str],
    sample: Callable[[], Sequence[Sequence[str]]],
    explicit: Mapping[str, str] | None = None,
) -> ColumnMap:
    """Decide the mapping from the header, `--map`, and (only when no column is named
    for the image) the first records, which `sample()` reads ahead."""
    explicit = dict(explicit or {})
    unknown = sorted(set(explicit) - set(FIELDS))
    if unknown:
        raise MappingError(f"--map: unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    names = [normalise(name) for name in header]
    mapped = ColumnMap()
    used: set[int] = set()
    for name in FIELDS:
        if name in explicit:
            getter, columns, single = _explicit(name, explicit[name], header, names)
            mapped.fields[name] = getter
            mapped.described[name] = explicit[name]
            used |= columns
            if single is not None:
                mapped.single[name] = single
            continue
        position = _by_alias(name, names, used)
        if position is not None:
            mapped.fields[name] = _column(position)
            mapped.described[name] = header[position].strip()
            mapped.single[name] = position
            used.add(position)
    if "image" not in mapped.fields:
        position = _by_values(sample(), names, used)
        if position is not None:
            mapped.fields["image"] = _column(position)
            mapped.described["image"] = header[position].strip()
            mapped.guessed_image = True
            mapped.single["image"] = position
            used.add(position)
    if "image" in mapped.fields:
        for position, name in enumerate(names):
            if name == "image position" and position not in used:
                mapped.image_position = position
                used.add(position)
                break
    for alias in MORE_IMAGES:
        for position, name in enumerate(names):
            if name == alias and position not in used:
                mapped.more_images.append(position)
                used.add(position)
    if mapped.more_images:
        mapped.described["more_images"] = ", ".join(header[p].strip() for p in mapped.more_images)
    seen: set[str] = set()
    for position, written in enumerate(header):
        name = written.replace("\ufeff", "").strip()
        if position in used:
            continue
        if not name:
            mapped.unnamed.append(position)
            continue
        if name.lower() in seen:
            mapped.repeated.append(name)
            continue
        seen.add(name.lower())
        mapped.attributes.append((name, position))
    return mapped


def checked_map(specs: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    """`--map` as given (a mapping, or `FIELD=COLUMN` strings): {field: column or
    template}, lower-case fields. Raises MappingError for a bad one (a usage error)."""
    pairs = specs.items() if isinstance(specs, Mapping) else (_pair(s) for s in specs)
    mapping = {}
    for name, column in pairs:
        name = str(name).strip().lower()
        if name not in FIELDS:
            raise MappingError(f"--map {name}: the field is one of {', '.join(FIELDS)}")
        if not isinstance(column, str) or not column.strip():
            raise MappingError(f"--map {name}: name a column, or a template like '{{a}} {{b}}'")
        mapping[name] = column
    return mapping


def _pair(spec: str) -> tuple[str, str]:
    name, equals, column = spec.partition("=")
    if not equals:
        raise MappingError(f"--map {spec!r}: write FIELD=COLUMN")
    return name, column


def likeliest_title(header: Sequence[str]) -> str | None:
    """The column a user most likely meant as the title, for the error that has none: the
    first text-like column that is not an id, an image or a number-like field."""
    skip = {*ALIASES["id"], *ALIASES["image"], *MORE_IMAGES, "price", "year", "mileage"}
    for written in header:
        name = normalise(written)
        if name and name not in skip and not any(w in name for w in ("url", "link", "id")):
            return written.strip()
    return None


def _by_alias(name: str, names: list[str], used: set[int]) -> int | None:
    for alias in ALIASES[name]:
        for position, candidate in enumerate(names):
            if candidate == alias and position not in used:
                return position
    return None


def _by_values(sample: Sequence[Sequence[str]], names: list[str], used: set[int]) -> int | None:
    """The column whose non-empty sampled values are mostly picture URLs (or lists of
    them), if any: the one with the largest share, more than half of its values."""
    best, best_share = None, 0.5
    for position in range(len(names)):
        if position in used:
            continue
        values = [r[position].strip() for r in sample if position < len(r) and r[position].strip()]
        if not values:
            continue
        share = sum(_looks_like_pictures(v) for v in values) / len(values)
        if share > best_share:
            best, best_share = position, share
    return best


def _looks_like_pictures(value: str) -> bool:
    refs = picture_refs(value)
    return bool(refs) and all(_PICTURE_URL.match(ref) for ref in refs)


def _column(position: int) -> Getter:
    return itemgetter(position)  # in C: called for every field of every row


def _explicit(
    name: str, spec: str, header: Sequence[str], names: list[str]
) -> tuple[Getter, set[int], int | None]:
    """`--map FIELD=COLUMN` or `--map 'FIELD={a} {b}'`: the getter, the columns used, and
    the column when it is one."""
    placeholders = _PLACEHOLDER.findall(spec)
    if not placeholders:
        position = _find(spec, header, names, name)
        return _column(position), {position}, position
    parts: list[str | int] = []
    start = 0
    for match in _PLACEHOLDER.finditer(spec):
        parts.append(spec[start : match.start()])
        parts.append(_find(match.group(1), header, names, name))
        start = match.end()
    parts.append(spec[start:])

    def template(record: list[str]) -> str:
        text = "".join(p if isinstance(p, str) else record[p].strip() for p in parts)
        return " ".join(text.split())

    return template, {p for p in parts if isinstance(p, int)}, None


def _find(column: str, header: Sequence[str], names: list[str], field_name: str) -> int:
    """A column named exactly, else by its normalised name."""
    for position, written in enumerate(header):
        if written.replace("\ufeff", "").strip() == column.strip():
            return position
    wanted = normalise(column)
    for position, name in enumerate(names):
        if name == wanted:
            return position
    found = ", ".join(w.strip() for w in header if w.strip())[:200]
    raise MappingError(f"--map {field_name}: no column {column!r} (found: {found})")
