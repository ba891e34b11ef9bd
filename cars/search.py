"""Full-text search over title and description, best match first.

SQLite uses an FTS5 index (`cars_car_fts`, kept in sync by triggers; unicode61 removes
diacritics); PostgreSQL a stored tsvector column with a GIN index, in the `cars_search`
configuration (unaccent, then English stems). Migrations 0002 and 0003 create them; both
fold case and accents, on the text and on the query.

The catalogue's words are also kept as a vocabulary (`SearchWord`), rebuilt in bulk at
the end of each import that writes cars, for what the indexes cannot tell cheaply: which
words the catalogue has, to correct the words a query has and the catalogue has not.
"""

import re
import string
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Q, QuerySet, Value

from .models import Car, SearchWord

# Letters and digits, as both indexes split text: underscores and punctuation separate.
_WORD = re.compile(r"[^\W_]+")
MAX_WORDS = 16
MAX_WORD_LENGTH = 64  # a longer run of letters is not a word anyone mistypes
POSTGRES_CONFIG = "cars_search"  # migration 0003


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


def apply_search(queryset: QuerySet, query: str) -> QuerySet:
    """Filter `queryset` to cars matching every word of `query`, ranked by relevance.

    The last word matches as a prefix, so results follow the user as they type.
    The queryset gains a `search_rank` annotation (higher is better on both engines).
    """
    terms = search_terms(query)
    if not terms:
        return queryset.none()
    if connection.vendor == "postgresql":
        return _postgres(queryset, terms)
    if connection.vendor == "sqlite":
        return _sqlite(queryset, terms)
    return _portable(queryset, terms)


def _sqlite(queryset: QuerySet, terms: list[str]) -> QuerySet:
    # Quote every term so user input is never read as FTS5 syntax.
    quoted = ['"{}"'.format(t.replace('"', '""')) for t in terms]
    quoted[-1] += "*"
    match = " ".join(quoted)
    return queryset.extra(
        tables=["cars_car_fts"],
        where=["cars_car_fts.rowid = cars_car.id", "cars_car_fts MATCH %s"],
        params=[match],
        # bm25 is lower-is-better; weight a title hit ten times a description hit.
        select={"search_rank": "-bm25(cars_car_fts, 10.0, 1.0)"},
    )


def _postgres(queryset: QuerySet, terms: list[str]) -> QuerySet:
    # Terms are letters and digits only, so joining them is a safe to_tsquery expression.
    tsquery = " & ".join(terms) + ":*"
    return queryset.extra(
        where=[f"cars_car.search_vector @@ to_tsquery('{POSTGRES_CONFIG}', %s)"],
        params=[tsquery],
        select={
            "search_rank": f"ts_rank(cars_car.search_vector, to_tsquery('{POSTGRES_CONFIG}', %s))"
        },
        select_params=[tsquery],
    )


def _portable(queryset: QuerySet, terms: list[str]) -> QuerySet:
    """Other engines: every term in title or description, unranked."""
    for term in terms:
        queryset = queryset.filter(Q(title__icontains=term) | Q(description__icontains=term))
    return queryset.annotate(search_rank=Value(0.0))


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
    cars without their words. Tokenising with a regular expression per row was 3.2 s for
    1M bench cars; here whole chunks go through `bytes.translate` and `split` in C, and
    only distinct pieces are looked at in Python (digits all become `0`, so a million
    distinct numbers are a handful of pieces): ~1.5 µs per car.
    """
    db = connections[using]
    pieces: Counter[bytes] = Counter()
    with db.chunked_cursor() as cursor:  # server-side on PostgreSQL: memory stays flat
        cursor.execute(f"SELECT title || ' ' || description FROM {Car._meta.db_table}")
        while rows := cursor.fetchmany(_CHUNK_ROWS):
            text = " ".join([text for (text,) in rows])
            pieces.update(text.encode().translate(_ASCII_WORDS).split())
    table = SearchWord._meta.db_table
    with transaction.atomic(using=using), db.cursor() as cursor:  # never seen half-written
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
