"""File name -> ``Content-Type``: the one table the file handler types its answers with.

What this module knows: Python's built-in extension table, which types are text (and so get
``charset=utf-8``, and are worth compressing), and that a compressed file is served as what it
is. What it must not know: files, requests, responses; it is handed a name and answers with a
field value.

Invariants: the table is built once, at import, from Python's built-in defaults only (never from
/etc/mime.types), so the answers are the same on every machine and in tests; the lookup is by the
last extension, case-insensitive; a name without one is ``application/octet-stream``.
"""

from __future__ import annotations

from mimetypes import MimeTypes
from typing import Final

_TEXT_LIKE_TYPES: Final = frozenset(
    {"application/javascript", "application/json", "application/xml"}
)
"""Types that are text and get ``charset=utf-8`` like every ``text/*`` type."""

_COMPRESSED_TYPES: Final = {
    ".gz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
    ".br": "application/x-brotli",
    ".z": "application/x-compress",
    ".zst": "application/zstd",
}
"""mimetypes treats these as content *encodings* of the inner type; a static server sends the
file as it is, so it is its own type (no Content-Encoding is ever added)."""


def _build_content_types() -> dict[str, str]:
    """Extension (lower case) -> Content-Type value, from Python's built-in table only.

    A private ``MimeTypes`` starts from the built-in defaults and ignores /etc/mime.types, so the
    answers are the same on every machine (and in tests).
    """
    table = MimeTypes()
    types = dict(table.types_map[False])  # non-strict: common extras such as .jpg, .rtf
    types.update(table.types_map[True])
    types.update(_COMPRESSED_TYPES)
    result = {}
    for extension, media_type in types.items():
        if media_type.startswith("text/") or media_type in _TEXT_LIKE_TYPES:
            media_type += "; charset=utf-8"
        result[extension.lower()] = media_type
    return result


_CONTENT_TYPES: Final = _build_content_types()
_DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"

_COMPRESSIBLE_TYPES: Final = frozenset(
    {value for value in _CONTENT_TYPES.values() if value.endswith("; charset=utf-8")}
    | {"image/svg+xml", "application/manifest+json"}
)
"""The Content-Type values worth compressing on the fly: text (what gets a charset), and the
text formats among the other types. Images, archives, fonts and media are compressed already."""


def content_type_for(name: str) -> str:
    """The Content-Type for a file name, from its last extension (case-insensitive)."""
    dot = name.rfind(".")
    if dot <= 0:  # no extension, or a dotfile such as ".bashrc"
        return _DEFAULT_CONTENT_TYPE
    return _CONTENT_TYPES.get(name[dot:].lower(), _DEFAULT_CONTENT_TYPE)


def compressible(content_type: str) -> bool:
    """Is a file of this Content-Type (a value :func:`content_type_for` gave) text worth
    compressing on the fly?"""
    return content_type in _COMPRESSIBLE_TYPES
