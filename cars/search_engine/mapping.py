"""The engine's index: its analyzers, its fields, and a car as a document.

Every text field is split as the database indexes split it (Unicode words), in lower
case and without accents (`asciifolding`), so `Citroën`, `citroen` and `CITROEN` are one
term. Beside that folded form each field keeps:

- `stemmed`: English stems, as both database engines match a word (`roadsters` finds
  `roadster`);
- `prefix`: every beginning of every word (edge n-grams, 1 to 20 letters), so the last
  word of a query matches as a prefix with a plain term look-up.

`words` (folded) and `spelled` (lower case, accents kept) gather title and description:
the term suggesters read them to say which catalogue word a mistyped one meant, and how
the catalogue spells it (`citroan` → `citroën`). `attributes` holds a feed's other
columns as keywords (a `flat_object`: any column name, no mapping growth), ready for
when cars keep them.
"""

from django.conf import settings

MAX_PREFIX = 20  # longer beginnings are rare enough to match through the word itself
# OpenSearch's default `index.max_result_window`: the deepest result a search may page to.
WINDOW = 10_000

ANALYSIS = {
    "filter": {
        "prefixes": {"type": "edge_ngram", "min_gram": 1, "max_gram": MAX_PREFIX},
        "english_stems": {"type": "stemmer", "language": "english"},
    },
    "analyzer": {
        "folded": {"tokenizer": "standard", "filter": ["lowercase", "asciifolding"]},
        "stemmed": {
            "tokenizer": "standard",
            "filter": ["lowercase", "asciifolding", "english_stems"],
        },
        "prefixes": {"tokenizer": "standard", "filter": ["lowercase", "asciifolding", "prefixes"]},
        "spelled": {"tokenizer": "standard", "filter": ["lowercase"]},
    },
}

_PREFIX = {"type": "text", "analyzer": "prefixes", "search_analyzer": "folded"}
_TEXT = {
    "type": "text",
    "analyzer": "folded",
    "copy_to": ["words", "spelled"],
    "fields": {"stemmed": {"type": "text", "analyzer": "stemmed"}, "prefix": _PREFIX},
}

MAPPINGS = {
    "dynamic": "strict",
    "properties": {
        "id": {"type": "long"},
        "title": _TEXT,
        "description": _TEXT,
        "words": {"type": "text", "analyzer": "folded", "fields": {"prefix": _PREFIX}},
        "spelled": {"type": "text", "analyzer": "spelled"},
        "attributes": {"type": "flat_object"},
    },
}

# What a document is read from.
CAR_FIELDS = ("id", "title", "description", "attributes")


def index_body(*, building: bool = False) -> dict:
    """Settings and mappings of a new index. While `building` (a rebuild filling it in
    bulk) it has no replica and no refresh; `live_settings()` then gives it its own."""
    live = live_settings()
    return {
        "settings": {
            "index": {
                "number_of_shards": settings.SEARCH_SHARDS,
                **({"number_of_replicas": 0, "refresh_interval": "-1"} if building else live),
            },
            "analysis": ANALYSIS,
        },
        "mappings": MAPPINGS,
    }


def live_settings() -> dict:
    return {
        "number_of_replicas": settings.SEARCH_REPLICAS,
        "refresh_interval": settings.SEARCH_REFRESH_INTERVAL,
    }


def document(car: dict) -> dict:
    """A car (CAR_FIELDS) as the engine stores it."""
    return {
        "id": car["id"],
        "title": car["title"],
        "description": car["description"],
        "attributes": car.get("attributes") or {},
    }
