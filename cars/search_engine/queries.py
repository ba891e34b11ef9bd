"""The engine's requests for a `cars.search.Search`, and what its answers mean.

No I/O here: `opensearch.py` sends these and hands the answers back.

Matching follows the embedded search word for word: every word must match (AND), in
title or description, as typed (folded, or by its English stem), the last one also as
a prefix; a word the catalogue lacks and for which the engine's suggester found near
words also matches the words within `fuzziness: AUTO`'s edits (the engine's own typo
rule: 0 edits for 1-2 letters, 1 for 3-5, 2 beyond; a swap of two letters is one edit):
the near words themselves for a word of up to 5 letters, a fuzzy query beyond. Words
with a digit are never corrected.

Best match first, as `cars.fulltext.best_match_first`: fewer edits first, then relevance
(BM25, a title hit weighing ten description hits, as SQLite's bm25 weights), then id.
Each word scores its best way of matching (`dis_max`), so a car scores for `famly` as
it does for `family` (and for a longer word, times the engine's constant factor for its
edits), and the same query corrected or spelled right lists the same cars in the same
order. The engine sorts by score (then id), so the edits are in the score: a corrected
word adds a constant `TIER` per edit the car did not need (for a word of up to 5
letters, TIER when the car has it as typed). Relevance stays far below `TIER`.
"""

from rapidfuzz.distance import OSA

from cars.search import MAX_EXPANSIONS, Near, Search, Word, allowed_edits, correctable, fold

TITLE_BOOST = 10
TIER = 10_000.0
TYPED_FIELDS = [
    f"title^{TITLE_BOOST}",
    f"title.stemmed^{TITLE_BOOST}",
    "description",
    "description.stemmed",
]
PREFIX_FIELDS = [f"title.prefix^{TITLE_BOOST}", "description.prefix"]
REWRITE = f"top_terms_blended_freqs_{MAX_EXPANSIONS}"
FLOOR = 0.01  # the score of a car matching only through a beginning past those 50
FUZZY_FIELDS = [f"title^{TITLE_BOOST}", "description"]
BEST_FIRST = [{"_score": {"order": "desc"}}, {"id": {"order": "asc"}}]


def _match(text: str, fields: list[str], **options) -> dict:
    # operator "and": a word the analyzer splits (日本語, a 300-letter run) needs all its
    # pieces, as the database engines match a quoted term.
    return {
        "multi_match": {
            "query": text,
            "fields": fields,
            "type": "most_fields",
            "operator": "and",
            **options,
        }
    }


def _fuzzy(text: str, fuzziness: str | int) -> dict:
    return _match(
        text,
        FUZZY_FIELDS,
        fuzziness=fuzziness,
        prefix_length=0,
        max_expansions=MAX_EXPANSIONS,
        fuzzy_transpositions=True,
    )


def _begins(word: Word) -> list[dict]:
    """The words `word` begins: matched through the edge n-grams (every one of them,
    whatever its length), scored as the words themselves score (the 50 commonest, their
    frequencies blended: a prefix query on the folded fields)."""
    folded = fold(word.typed)
    scored = [
        {"prefix": {field: {"value": folded, "rewrite": REWRITE, "boost": boost}}}
        for field, boost in (("title", TITLE_BOOST), ("description", 1))
    ]
    return [
        {"bool": {"should": scored}},
        {"constant_score": {"filter": _match(word.typed, PREFIX_FIELDS), "boost": FLOOR}},
    ]


def _word(word: Word) -> dict:
    """A word's clause: it must match, and it scores its best way of matching, so that a
    car scores for a corrected word as it would for the word spelled right."""
    typed = _match(word.typed, TYPED_FIELDS)
    if word.near and _budget(word) == 1:
        return {"dis_max": {"queries": _one_edit(word, typed)}}
    if word.near:
        return {"dis_max": {"queries": [typed, _fuzzy(word.typed, "AUTO")]}}
    if word.prefix:
        return {"dis_max": {"queries": [typed, *_begins(word)]}}
    return typed


def _budget(word: Word) -> int:
    return allowed_edits(fold(word.typed))


def _one_edit(word: Word, typed: dict) -> list[dict]:
    """A corrected word of 3-5 letters: as typed (TIER above), or as one of its near words
    (the live ones `understand` found, all one edit away), matched as a typed word is
    (folded, or by its stem, as the database engines OR them in) and scored as it is.

    Asked as words, not as a fuzzy query: the suggester's list of words one edit away is
    complete, and a fuzzy expansion was made twice on every page, its score scaled down
    (`famly red` did not list cars in the order of `family red`). And the near words get
    no TIER: every car has the word one way or the other, so only what the typed way adds
    matters, and raising the common way's score by any constant (a `bool` with a
    `match_all`, a `function_score`) cost the page query about twice its time on 1M cars:
    about half as long as the fuzzy query, measured. Longer words keep the fuzzy query:
    the suggester offers words two edits away only when they share the first letter."""
    near = " ".join(n.word for n in word.near)
    return [_plus(typed, TIER), _match(near, TYPED_FIELDS, operator="or")]


def _plus(clause: dict, constant: float) -> dict:
    """`clause`, its score raised by `constant` (`clause` is evaluated once)."""
    return {"bool": {"must": [clause], "should": [{"match_all": {"boost": constant}}]}}


def _edits_spared(word: Word) -> dict:
    """TIER × (2 − edits the car needs for this word), for a corrected word of 6 letters
    or more."""
    return {
        "dis_max": {
            "queries": [
                {"constant_score": {"filter": _match(word.typed, TYPED_FIELDS), "boost": 2 * TIER}},
                {"constant_score": {"filter": _fuzzy(word.typed, 1), "boost": TIER}},
            ]
        }
    }


def query(search: Search) -> dict:
    """The cars matching every word of `search`, scored best first."""
    return {
        "bool": {
            "must": [_word(w) for w in search.words],
            "should": [_edits_spared(w) for w in search.words if w.near and _budget(w) == 2],
        }
    }


def page(search: Search, *, offset: int, limit: int) -> dict:
    return {
        "query": query(search),
        "sort": BEST_FIRST,
        "from": offset,
        "size": limit,
        "_source": False,
        "track_total_hits": False,
    }


# --------------------------------------------------------------------------- corrections


def suspects(words: tuple[Word, ...]) -> list[int]:
    """Positions of the words that may be typos (letters only, long enough to correct)."""
    return [i for i, w in enumerate(words) if correctable(fold(w.typed))]


def _suggester(text: str, field: str, max_edits: int) -> dict:
    return {
        "text": text,
        "term": {
            "field": field,
            "suggest_mode": "always",  # whether the word is known is asked of live cars
            "max_edits": max_edits,
            "prefix_length": 0,  # a typo in the first letter is a typo too
            "min_word_length": 3,
            "size": MAX_EXPANSIONS,
            "string_distance": "damerau_levenshtein",
        },
    }


def understanding(words: tuple[Word, ...], positions: list[int]) -> dict[str, dict]:
    """Searches for one multi-search (one round trip), by name: for each suspect word,
    whether a car has it (`known<i>`) or, last, a word it begins (`begins<i>`), and the
    catalogue words near each, folded and as spelled (`suggest`).

    Each check is a search that stops at its first car (`terminate_after`): a filter
    aggregation counted every car that has the word, as long as the page query itself on
    a common word (1M cars: 200-320 ms against 30-45, uncached, load 11), and a first
    search, each keystroke of one typed, is never in the request cache."""
    checks, suggest = {}, {}
    for i in positions:
        word = words[i]
        checks[f"known{i}"] = _exists("words", word.typed)
        if word.prefix:
            checks[f"begins{i}"] = _exists("words.prefix", word.typed)
        suggest[f"near{i}"] = _suggester(word.typed, "words", allowed_edits(fold(word.typed)))
        suggest[f"spelled{i}"] = _suggester(word.typed, "spelled", 2)
    return {**checks, "suggest": {"size": 0, "suggest": suggest}}


def _exists(field: str, text: str) -> dict:
    query = {"match": {field: {"query": text, "operator": "and"}}}
    return {"size": 0, "query": query, "terminate_after": 1, "track_total_hits": True}


def _found(answer: dict | None) -> bool:
    return bool(answer and answer["hits"]["total"]["value"])


class Candidates:
    """Near words the suggester offered for one suspect word, before checking that a
    live car has them (a suggester also reads the terms of deleted documents)."""

    def __init__(self, folded: str, near: list[dict], spelled: list[dict]):
        budget = allowed_edits(folded)
        self.near: dict[str, tuple[int, int]] = {}  # word → (edits, frequency)
        for option in near:
            edits = OSA.distance(folded, option["text"])
            if 0 < edits <= budget:
                self.near[option["text"]] = (edits, option["freq"])
        self.spelled = {
            option["text"]: option["freq"]
            for option in spelled
            if fold(option["text"]) in self.near
        }


def candidates(answers: dict[str, dict], positions: list[int]) -> dict[int, Candidates]:
    """Suspect words the catalogue lacks (not as a word, nor, last, as a beginning), with
    the near words suggested for them (`answers`: `understanding`'s, by name)."""
    found = {}
    suggested = answers["suggest"]["suggest"]
    for i in positions:
        if _found(answers[f"known{i}"]) or _found(answers.get(f"begins{i}")):
            continue
        near, spelled = suggested[f"near{i}"], suggested[f"spelled{i}"]
        if len(near) != 1 or len(spelled) != 1:
            continue  # the analyzer split the word: not a word anyone mistyped
        found[i] = Candidates(near[0]["text"], near[0]["options"], spelled[0]["options"])
    return found


def liveness(found: dict[int, Candidates]) -> dict:
    """One request: which suggested words and spellings a live car has."""
    filters = {}
    for c in found.values():
        filters |= {f"w:{w}": {"term": {"words": w}} for w in c.near}
        filters |= {f"s:{s}": {"term": {"spelled": s}} for s in c.spelled}
    return {"size": 0, "aggs": {"live": {"filters": {"filters": filters}}}}


def corrected(search: Search, found: dict[int, Candidates], live_answer: dict | None) -> Search:
    """`search` with each mistyped word's live near words: fewest edits first, then the
    commoner, each spelled as the catalogue spells it most often."""
    buckets = live_answer["aggregations"]["live"]["buckets"] if live_answer else {}
    live = {key for key, bucket in buckets.items() if bucket["doc_count"]}
    words = list(search.words)
    for i, c in found.items():
        ranked = sorted(
            (edits, -freq, word) for word, (edits, freq) in c.near.items() if f"w:{word}" in live
        )[:MAX_EXPANSIONS]
        if ranked:
            spellings = {s: f for s, f in c.spelled.items() if f"s:{s}" in live}
            near = tuple(Near(w, _spelling(w, spellings), edits) for edits, _, w in ranked)
            words[i] = Word(words[i].typed, prefix=False, near=near)
    return Search(search.text, tuple(words))


def _spelling(word: str, spellings: dict[str, int]) -> str:
    """The accented spelling of `word` most cars use, unless more write it plain (the
    rule of the embedded search's vocabulary)."""
    accented = [(freq, s) for s, freq in spellings.items() if s != word and fold(s) == word]
    if not accented:
        return word
    uses, best = max(accented)
    return best if uses >= spellings.get(word, 0) else word
