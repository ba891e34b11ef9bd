"""What one cell holds: a list of pictures, or a description written in HTML (SPEC §3).

Feeds put several picture URLs in one cell (WooCommerce and PrestaShop: commas; others:
pipes, spaces, a JSON array) and write descriptions in HTML (Shopify's `Body (HTML)`,
pasted from Word). Pictures come out as a list in cell order; HTML as plain text for
`description` and search, and a sanitised copy (nh3, an allow-list) for the detail.

No Django here.
"""

import json
import re
from html.parser import HTMLParser

import nh3

# Before each further http(s) URL in a cell: the separators people use between them.
_BEFORE_URL = re.compile(r"[\s,|;]+(?=https?://)", re.IGNORECASE)
_LIST_SEPARATORS = re.compile(r"\s*[|,]\s*|\s+")
_HAS_EXTENSION = re.compile(r"\.[A-Za-z0-9]{2,5}$")
_LOOKS_HTML = re.compile(r"<[A-Za-z/!][^>]*>|&(#\d+|#x[0-9A-Fa-f]+|[A-Za-z]+);")

# Tags kept in `description_html`: text structure only. nh3 drops everything else, and
# with it scripts, styles, event handlers and `javascript:` URLs.
ALLOWED_TAGS = {
    "p", "br", "b", "strong", "i", "em", "u", "s", "sub", "sup", "small", "mark",
    "ul", "ol", "li", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "pre", "code", "hr", "table", "thead", "tbody", "tfoot", "tr", "th", "td",
    "caption", "a", "span", "div",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
_BLOCKS = {
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "pre", "hr", "dt", "dd", "section", "article", "header", "footer",
}  # fmt: skip
_INVISIBLE = {"script", "style", "head", "title", "template", "noscript"}
_PARAGRAPHS = {"p", "ul", "ol", "dl", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
               "pre", "hr", "section", "article", "header", "footer"}  # fmt: skip
_WHITESPACE = re.compile(r"[ \t\n\r\f\v\xa0]+")


def picture_refs(cell: str) -> list[str]:
    """The picture references in a cell, in order: a JSON array of strings, URLs one after
    the other (separated by commas, pipes, semicolons or spaces), or local paths separated
    by pipes or commas when each looks like a file name. Else the cell is one reference."""
    cell = cell.strip()
    if not cell:
        return []
    if cell.startswith("[") and cell.endswith("]"):
        try:
            values = json.loads(cell)
        except ValueError:
            values = None
        if isinstance(values, list):
            return [v.strip() for v in values if isinstance(v, str) and v.strip()]
    if "://" in cell:
        if cell.count("://") == 1:
            return [cell.strip(" ,|;")]
        return [ref for part in _BEFORE_URL.split(cell) if (ref := part.strip(" ,|;"))]
    if "|" in cell or "," in cell:
        parts = [p for p in _LIST_SEPARATORS.split(cell) if p]
        if len(parts) > 1 and all(_HAS_EXTENSION.search(p) for p in parts):
            return parts
    return [cell]


def looks_like_html(text: str) -> bool:
    return bool(_LOOKS_HTML.search(text))


def html_to_text(html: str) -> str:
    """Tags removed, entities decoded, block ends as line breaks, runs of spaces (and
    non-breaking spaces) collapsed, at most one empty line in a row."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def sanitised_html(html: str) -> str:
    """The HTML as the detail may show it: the allow-list above, links made safe."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    ).strip()


class _TextParser(HTMLParser):
    """Text as a browser lays it out, roughly: source whitespace is one space; `<br>`,
    list items and table rows end lines; paragraphs, headings and lists end blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self._newlines: int | None = None  # line breaks ending the text; None: no text yet

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _INVISIBLE:
            self._hidden += 1
        elif tag == "br":
            self._line_break()
        elif tag in _BLOCKS:
            self._break(2 if tag in _PARAGRAPHS else 1)

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag == "br":
            self._line_break()
        elif tag in _BLOCKS:
            self._break(1)

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self._break(2 if tag in _PARAGRAPHS else 1)

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        text = _WHITESPACE.sub(" ", data)
        self.parts.append(text)
        if text.strip():
            self._newlines = 0

    def _line_break(self) -> None:
        """`<br>`: a line break whatever came before (two make an empty line)."""
        if self._newlines is not None:
            self.parts.append("\n")
            self._newlines += 1

    def _break(self, lines: int) -> None:
        """End the text with at least `lines` line breaks (none before any text)."""
        if self._newlines is not None and self._newlines < lines:
            self.parts.append("\n" * (lines - self._newlines))
            self._newlines = lines
