"""Request-targets -> names under the document root, and names -> a ``Location``.

What this module knows: the request-target forms (RFC 9112 3.2), percent-encoding (RFC 3986 2.1)
and which names the handler refuses to look up. What it must not know: the filesystem (it never
touches it: a name is checked before any file is opened), requests, responses. A target that
cannot name a file raises :class:`~evserver.static.refusals.Refusal` with its status.

Decisions on request-targets (RFC 9110 4.2 and 7.1, RFC 9112 3.2 leave them to the server):

- Origin-form and absolute-form (``http``/``https``, non-empty authority) are served; the path is
  taken and the query dropped (the handler splits the origin-form itself, on its fast path).
  ``*`` and the authority-form are 400 here (the handler answers ``*`` for OPTIONS first).
- The path is split on ``/`` and each segment percent-decoded ONCE as UTF-8. "Malformed" is 400:
  an invalid %-escape, invalid UTF-8 (including overlong forms like ``%c0%ae``), a NUL (raw or
  ``%00``: POSIX names cannot hold it), a ``#``. "A name that cannot be served" is 404: a ``.`` or
  ``..`` segment (raw or encoded: never normalised, never silently dropped as ``http.server``
  does), an encoded slash ``%2F`` (a name never contains "/"), a backslash (raw or ``%5C``:
  a Windows separator, refused so ``..\\`` tricks mean nothing), an empty segment (``//``) other
  than the final one. So a path never reaches a file by normalisation (``a/../b``, ``a//b``); the
  cache is keyed by the raw path, so ``/%69ndex.html`` and ``/index.html`` are two entries for one
  file (bounded like every entry).
  Double encoding stays literal: ``%252e%252e`` names a file called ``%2e%2e``.
- Dotfiles: a name beginning with a dot is hidden (:func:`hidden_name`) unless the operator asks
  for them, except ``.well-known`` at the root (RFC 8615: ACME challenges, ``security.txt``).
  A path through a hidden name is 404, decided on the names alone, before any file is opened:
  the answer is the same whether the file exists or not, so it reveals nothing (403 would say
  "it is there"). The rule is on the names of the URL: a symlink with a plain name that leads
  to a dotfile is served, since the operator made it.
- A directory's ``Location`` (RFC 9110 10.2.2 allows a relative reference; an absolute path is
  sent) re-encodes each name with ``urllib.parse.quote`` and keeps the query as sent, with
  anything not printable ASCII percent-encoded, so the field can never carry a control character.

Invariant: the names returned by :func:`decode_path` hold no ``.`` or ``..``, no ``/``, ``\\`` or
NUL, and only the last may be empty, so joining them under the root cannot leave it lexically.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes

from evserver.static.refusals import Refusal

WELL_KNOWN: Final = ".well-known"
"""The dot-name served at the root even when dotfiles are hidden (RFC 8615)."""


def split_absolute_form(target: str) -> tuple[str, str]:
    """``(path, query)`` of an absolute-form target (RFC 9112 3.2.2); anything else is 400."""
    scheme_end = target.find("://")
    if scheme_end < 0 or target[:scheme_end].lower() not in ("http", "https"):
        raise Refusal(400)
    rest = target[scheme_end + 3 :]
    authority_end = len(rest)
    for delimiter in "/?":  # (no "#": the parser rejects a fragment in a request-target)
        found = rest.find(delimiter)
        if 0 <= found < authority_end:
            authority_end = found
    if authority_end == 0:
        raise Refusal(400)  # RFC 9110 4.2.1: an http URI with an empty host is invalid
    path, _, query = rest[authority_end:].partition("?")
    return (path or "/"), query


def decode_path(raw_path: str) -> list[str]:
    """The path's segments, each percent-decoded once as UTF-8; a 400 or 404 refusal otherwise.

    The result is never empty; its last element is ``""`` when the path ends with ``/``.
    """
    names = raw_path[1:].split("/")
    last = len(names) - 1
    for index, raw in enumerate(names):
        if "#" in raw:
            raise Refusal(400)  # a fragment is never part of a request-target (RFC 9112 3.2)
        octets = raw.encode("latin-1")  # the parser's strings map bytes 1:1 to characters
        if "%" in raw:
            if not _percent_escapes_valid(raw):
                raise Refusal(400)
            octets = unquote_to_bytes(octets)
        try:
            name = octets.decode("utf-8")  # strict: overlong forms and surrogates fail
        except UnicodeDecodeError:
            raise Refusal(400) from None
        if "\0" in name:
            raise Refusal(400)
        if not name:
            if index != last:
                raise Refusal(404)
        elif name == "." or name == ".." or "/" in name or "\\" in name:
            raise Refusal(404)
        names[index] = name
    return names


def hidden_name(name: str, in_root: bool) -> bool:
    """Is ``name`` a dotfile, neither served nor listed unless dotfiles are on? ``in_root``: the
    name is directly under the document root (where ``.well-known`` is not hidden)."""
    return name[:1] == "." and not (in_root and name == WELL_KNOWN)


def has_hidden_name(names: list[str]) -> bool:
    """Does a path of :func:`decode_path` go through a hidden name?"""
    for index, name in enumerate(names):
        if name[:1] == "." and hidden_name(name, index == 0):
            return True
    return False


def _percent_escapes_valid(raw: str) -> bool:
    position = raw.find("%")
    while position >= 0:
        escape = raw[position + 1 : position + 3]
        if len(escape) != 2 or not all(c in "0123456789abcdefABCDEF" for c in escape):
            return False
        position = raw.find("%", position + 3)
    return True


def directory_location(names: list[str], query: str) -> str:
    """The absolute path of the directory ``names`` with its trailing slash, and the query."""
    location = "/" + "".join(quote(name, safe="") + "/" for name in names)
    if query:
        # The query is passed on as sent; anything not printable ASCII is percent-encoded so
        # the field can never carry a control character.
        location += "?" + quote_from_bytes(query.encode("latin-1"), safe="!$&'()*+,;=:@/?%")
    return location
