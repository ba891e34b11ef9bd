"""What a search means: its words, and the catalogue words a mistyped one may mean.

Typos are forgiven as Elasticsearch's `match` with `fuzziness: AUTO` forgives them, on
the engines the project already runs. A word that is not one of the catalogue's (nor,
when it is the last, the beginning of one) also matches the catalogue's words within its
edit budget, its "near words": none for 1-2 letters, one edit for 3-5, two for longer
words, a swap of two neighbouring letters counting as one edit (optimal string
alignment, as in Lucene's fuzzy queries). Cars that match the word as typed (the engine
stems it) come first, then those needing fewer edits, then the more relevant. The
catalogue's words are the vocabulary (`SearchWord`), rebuilt in bulk at the end of each
import that writes cars. Reading it and correcting against it is the same Python on
both engines, so both correct a query the same way; `cars.fulltext` runs the result on
the database's own full-text index, `cars.search_engine` on OpenSearch.

Words with a digit are numbers and codes (years, engine sizes, model names): one digit
off is another car, not a typo, so they are matched as typed and never corrected.
"""

import re
import string
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Q
from rapidfuzz import process
from rapidfuzz.distance import OSA

from .catalog import catalog_state
from .models import Car, SearchWord

# Letters and digits, as both indexes split text: underscores and punctuation separate.
_WORD = re.compile(r"[^\W_]+")
MAX_WORDS = 16
MAX_EXPANSIONS = 50  # near words per corrected word: Elasticsearch's max_expansions
MAX_WORD_LENGTH = 64  # a longer run of letters is not a word anyone mistypes


def words_of(text: str) -> list[str]:
    """The words of `text` as typed. NFC first, so that a letter followed by a combining
    accent is one letter, not a word boundary."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return _WORD.findall(text)


def search_terms(query: str) -> list[str]:
    return words_of(query)[:MAX_WORDS]


def fold(word: str) -> str:
    """Lower case without accents, as both indexes compare words (`Citroën` → `citroen`)."""
    lowered = word.lower()
    if lowered.isascii():
        return lowered
    bare = "".join(c for c in unicodedata.normalize("NFD", lowered) if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", bare)  # Hangul and the like come back together


def allowed_edits(word: str) -> int:
    """Elasticsearch's `fuzziness: AUTO`: 0 edits for 1-2 letters, 1 for 3-5, 2 beyond."""
    return 0 if len(word) <= 2 else 1 if len(word) <= 5 else 2


def correctable(word: str) -> bool:
    return word.isalpha() and allowed_edits(word) > 0 and len(word) <= MAX_WORD_LENGTH


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Near:
    """A catalogue word that a word which is not in the catalogue may have meant."""

    word: str  # folded, as the indexes hold it
    spelling: str  # as the catalogue writes it most often (lower case)
    edits: int


@dataclass(frozen=True)
class Word:
    typed: str
    # The last word also matches as a prefix, so that results follow typing; unless no
    # catalogue word begins with it (then an engine would only prefix-match its stem:
    # PostgreSQL's for `famly` is `fam`, which begins `famous`).
    prefix: bool
    near: tuple[Near, ...] = ()  # set when the catalogue has no such word: nearest first
    # For a prefix: the catalogue words (folded) that begin with it, once the vocabulary
    # was asked (None: not asked). The database indexes hold stems, so a prefix of the
    # stems is not a prefix of the words: `electri` begins no stem (electric's is
    # `electr`), and SQLite's stem of `fas` is `fa`, which begins `family`'s. The
    # database matches these words instead, as the engine's prefixes of the words do.
    begun: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Search:
    """A query as searched: its words, and the catalogue words each mistyped one may mean."""

    text: str
    words: tuple[Word, ...]

    @property
    def corrected(self) -> str | None:
        """The query with each corrected word replaced by its nearest catalogue word;
        None when no word was corrected."""
        if not any(word.near for word in self.words):
            return None
        return " ".join(w.near[0].spelling if w.near else w.typed for w in self.words)


def understand(query: str) -> Search:
    """Split `query` into words and find near words for those the catalogue lacks.

    Whether a word is the catalogue's is asked of the vocabulary, never of an engine's
    index: PostgreSQL's stemmer makes `famly` the prefix `fam`, SQLite's `famli`, and a
    correction must not depend on the engine. A word that is the catalogue's (or, last,
    begins one of its words) costs one indexed look-up; only a mistyped one costs a look
    for near words.
    """
    typed = search_terms(query)
    words = [Word(t, prefix=i == len(typed) - 1) for i, t in enumerate(typed)]
    folded = [fold(t) for t in typed]
    suspects = [i for i, f in enumerate(folded) if correctable(f)]
    if not suspects:
        return Search(query, tuple(words))
    # One look-up: the suspect words the catalogue has, and the words the last begins.
    last = suspects[-1] if words[suspects[-1]].prefix else None
    wanted = Q(word__in={folded[i] for i in suspects})
    if last is not None:
        wanted |= _beginning_with(folded[last])
    found = set(SearchWord.objects.filter(wanted).values_list("word", flat=True))
    for i in suspects:
        if i == last:
            begun = tuple(sorted(w for w in found if w.startswith(folded[i])))
            words[i] = replace(words[i], begun=begun)
            if begun:  # the word itself, or the beginning of one
                continue
        elif folded[i] in found:
            continue
        if near := near_words(folded[i]):
            words[i] = replace(words[i], prefix=False, near=near, begun=None)
    return Search(query, tuple(words))


def with_beginnings(search: Search) -> Search:
    """`search` with the catalogue words its last word begins, when it is a prefix the
    vocabulary can answer for and was not asked about (a search the engine understood,
    answered by the database while the engine is down)."""
    words = list(search.words)
    if not words or not words[-1].prefix or words[-1].begun is not None:
        return search
    folded = fold(words[-1].typed)
    if not correctable(folded):
        return search
    rows = SearchWord.objects.filter(_beginning_with(folded)).values_list("word", flat=True)
    words[-1] = replace(words[-1], begun=tuple(sorted(rows)))
    return Search(search.text, tuple(words))


def _beginning_with(folded: str) -> Q:
    """The vocabulary's words that begin with `folded`. On SQLite, also as a range of the
    primary key, which its index answers (LIKE cannot use a case-sensitive index); the
    range is exact there (UTF-8 compares in code point order), not under every
    PostgreSQL collation, whose LIKE has Django's pattern index."""
    beginning = Q(word__startswith=folded)
    if connection.vendor == "sqlite":
        beginning &= Q(word__gte=folded, word__lt=folded + "\U0010ffff")
    return beginning


def near_words(word: str) -> tuple[Near, ...]:
    """Catalogue words within `word`'s edit budget: fewest edits first, then the commoner.

    Only words whose length the budget can bridge are compared, by rapidfuzz in C
    (bit-parallel OSA distance), against this process's copy of the vocabulary.
    """
    edits = allowed_edits(word)
    vocabulary = _vocabulary()
    found = []
    for length in range(len(word) - edits, len(word) + edits + 1):
        choices = vocabulary.by_length.get(length, [])
        found += process.extract(word, choices, scorer=OSA.distance, score_cutoff=edits, limit=None)
    near = [(int(distance), -vocabulary.details[w][1], w) for w, distance, _ in found]
    return tuple(
        Near(w, vocabulary.details[w][0], distance)
        for distance, _, w in sorted(near)[:MAX_EXPANSIONS]
    )


@dataclass(frozen=True)
class _Vocabulary:
    by_length: dict[int, list[str]]
    details: dict[str, tuple[str, int]]  # word → (spelling, occurrences)


_cached: tuple[object, _Vocabulary] | None = None


def _vocabulary() -> _Vocabulary:
    """The vocabulary, read once per catalogue state in each process.

    Reading the words of the right lengths for every mistyped word through the ORM cost
    far more than comparing them in memory. Every import or admin change that rebuilds
    the vocabulary bumps the catalogue version, so a copy is never used once stale.
    """
    global _cached
    state = catalog_state()
    cached = _cached
    if cached is None or cached[0] != state:
        by_length: dict[int, list[str]] = defaultdict(list)
        details = {}
        rows = SearchWord.objects.values_list("word", "spelling", "occurrences")
        for word, spelling, occurrences in rows.iterator(chunk_size=10_000):
            by_length[len(word)].append(word)
            details[word] = (spelling, occurrences)
        cached = _cached = (state, _Vocabulary(dict(by_length), details))
    return cached[1]


# --------------------------------------------------------------------------- the vocabulary

_CHUNK_ROWS = 5_000  # ~1 MB of text at a time: memory stays flat


def _ascii_words_table() -> bytes:
    """bytes.translate table: ASCII letters to lower case, digits to `0`, other ASCII to a
    space; bytes of non-ASCII characters (UTF-8 never uses ASCII bytes for them) kept."""
    table = bytearray(b" " * 128 + bytes(range(128, 256)))
    for letter in string.ascii_letters:
        table[ord(letter)] = ord(letter.lower())
    for digit in string.digits:
        table[ord(digit)] = ord("0")
    return bytes(table)


_ASCII_WORDS = _ascii_words_table()


def rebuild_vocabulary(*, using: str = DEFAULT_DB_ALIAS) -> None:
    """Replace the vocabulary with the words of every car, in one pass over the table.

    Run inside the transaction that changed the cars (the import's), so readers never see
    cars without their words. Whole chunks go through `bytes.translate` and `split` in C
    rather than a regular expression per row, and only distinct pieces are looked at in
    Python (digits all become `0`, so a million distinct numbers are a handful of pieces).
    """
    db = connections[using]
    table = SearchWord._meta.db_table
    with transaction.atomic(using=using):  # never seen half-written
        if db.vendor == "postgresql":
            # Two imports of different sources may finish at once: the second waits for
            # the first to commit, then reads the cars with the first one's words in them
            # (a new statement, READ COMMITTED) and replaces its vocabulary. SQLite's
            # writers are one at a time already. Readers of the vocabulary never wait.
            with db.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        pieces: Counter[bytes] = Counter()
        with db.chunked_cursor() as cursor:  # server-side on PostgreSQL: memory stays flat
            cursor.execute(f"SELECT title || ' ' || description FROM {Car._meta.db_table}")
            while rows := cursor.fetchmany(_CHUNK_ROWS):
                text = " ".join([text for (text,) in rows])
                pieces.update(text.encode().translate(_ASCII_WORDS).split())
        with db.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table}")
            cursor.executemany(
                f"INSERT INTO {table} (word, spelling, occurrences) VALUES (%s, %s, %s)",
                _vocabulary_rows(pieces),
            )


def _vocabulary_rows(pieces: Counter[bytes]) -> list[tuple[str, str, int]]:
    """(word, spelling, occurrences) rows from the translated pieces of text."""
    occurrences: Counter[str] = Counter()
    accented: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for piece, count in pieces.items():
        if piece.isalpha():  # ASCII letters only, already in lower case
            occurrences[piece.decode()] += count
        elif not piece.isascii():  # split again by Unicode's rules
            for typed in words_of(piece.decode()):
                if typed.isalpha():
                    word, spelling = fold(typed), typed.lower()
                    occurrences[word] += count
                    if spelling != word:
                        accented[word][spelling] += count
        # else: ASCII with a digit (now `0`), a number or a code: never corrected
    rows = []
    for word, count in occurrences.items():
        if len(word) > MAX_WORD_LENGTH:
            continue
        spelling = word
        if word in accented:  # the accented spelling, unless the plain one is commoner
            best, uses = max(accented[word].items(), key=lambda item: (item[1], item[0]))
            plain = count - sum(accented[word].values())
            if uses >= plain and len(best) <= MAX_WORD_LENGTH:
                spelling = best
        rows.append((word, spelling, count))
    return rows


def _car_writes() -> int | None:
    """A counter that moves when this transaction writes rows (of cars, on PostgreSQL);
    None where no engine counter is known."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT total_changes()")
        elif connection.vendor == "postgresql":
            cursor.execute(
                "SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables "
                "WHERE relid = %s::regclass",
                [Car._meta.db_table],
            )
        else:
            return None
        row = cursor.fetchone()
    return row[0] if row else 0


# Kept identical to the trigger created by migration 0002.
_SQLITE_INSERT_TRIGGER = """CREATE TRIGGER cars_car_fts_ai AFTER INSERT ON cars_car BEGIN
        INSERT INTO cars_car_fts(rowid, title, description)
        VALUES (new.id, new.title, new.description);
    END"""


@contextmanager
def deferred_search_index() -> Iterator[None]:
    """Index the rows written inside the block in bulk at its end: the FTS5 index of the
    new rows on SQLite, and the vocabulary on every engine when a car was written.

    FTS5 indexing row by row from a trigger was 2.5 s of a 100k-row import; one
    INSERT … SELECT at the end takes 0.4 s. Use inside the import's transaction: the
    trigger is dropped and re-created in it, so a rollback restores it. New rows are
    those above the highest id before the block (SQLite allocates max(rowid) + 1, and
    the transaction holds the write lock). PostgreSQL's generated column needs nothing.
    An import that wrote no car (an unchanged source) does not rebuild the vocabulary.
    """
    writes = _car_writes()
    if connection.vendor != "sqlite":
        yield
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM cars_car")
            (highest,) = cursor.fetchone()
            cursor.execute("DROP TRIGGER cars_car_fts_ai")
        yield
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO cars_car_fts(rowid, title, description) "
                "SELECT id, title, description FROM cars_car WHERE id > %s",
                [highest],
            )
            cursor.execute(_SQLITE_INSERT_TRIGGER)
    if writes is None or _car_writes() != writes:
        rebuild_vocabulary()
