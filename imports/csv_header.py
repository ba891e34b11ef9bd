"""The header line of a feed: the delimiter, the field size limit, and what the reader says
when the header will not do (names shown on one short line, a --map hint for the title).

Read once per source, before the rows; the row loop in `csv_reader` never calls these.
"""

import csv
from collections.abc import Iterator

from .columns import likeliest_title

FIELD_SIZE_LIMIT = 200 * 1024 * 1024  # one field may be as large as the whole CSV may be
DELIMITERS = (",", ";", "\t", "|")  # order matters: the first one wins a tie


def raise_csv_field_size_limit() -> None:
    """Allow fields up to the CSV size limit (the stdlib default is only 128 KiB)."""
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)


def split_leading_blank_lines(lines: Iterator[str]) -> tuple[list[str], str | None]:
    """Consume lines up to the first non-blank one, returned separately for sniffing.

    The blank lines are returned too, so they still count in the line numbers.
    """
    blank: list[str] = []
    for line in lines:
        if line.strip():
            return blank, line
        blank.append(line)
    return blank, None


def sniff_delimiter(header_line: str) -> str:
    """Pick the delimiter that splits the header line into the most fields.

    Quotes are respected (a comma inside a quoted name does not count); comma wins
    ties, so a one-column header reads as comma-separated.
    """

    def field_count(delimiter: str) -> int:
        return len(next(csv.reader([header_line], delimiter=delimiter), []))

    return max(DELIMITERS, key=field_count)


def no_title(header: list[str]) -> str:
    message = f"no 'title' column (found: {names_found(header)})"
    guess = " ".join((likeliest_title(header) or "").split())  # one line, whatever the name
    if len(guess) > 40:
        return message
    return message + (f'; try --map "title={guess}"' if guess else "")


def names_found(header: list[str], *, limit: int = 200) -> str:
    """The header's names for an error message: one line, and short whatever the file.

    A quoted name may hold newlines (the message must stay one line) or be megabytes
    long (the message is stored on the job and printed).
    """
    names = [" ".join(name.split()) for name in header]
    shown = ", ".join(name if len(name) <= 40 else name[:37] + "..." for name in names if name)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def names(names: list[str], limit: int = 200) -> str:
    shown = ", ".join(names)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
