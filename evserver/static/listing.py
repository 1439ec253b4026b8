"""Directory listings for the file handler: scan one directory (bounded), sort it, render it.

What this module knows: how to read a directory, which of its entries may be listed, the orders a
listing can be sorted in (chosen by the query string) and how to write the listing as an HTML5
page or as JSON. What it must not know: requests, responses, caching, negotiation.
``evserver.static.handler`` decides when a listing is due and in which form, and wraps the bytes
returned here in a response (with the validators and ``Vary``).

Invariants:

- Every name reaches the page through ``html.escape`` (text) or ``urllib.parse.quote`` with no
  safe characters (links), so no name, whatever it holds (``<``, quotes, ``&``, ``%``, CR/LF,
  ``:``), can inject markup, a script or an absolute URL; in JSON, ``json.dumps`` escapes it.
  The page carries no script, and its one stylesheet is covered by ``CONTENT_SECURITY_POLICY``.
- Only names the handler would serve are listed (:func:`_listable_name` and
  :func:`_examine`): valid UTF-8 (a name that is not cannot be requested: the path decoder
  refuses invalid UTF-8), no backslash, none the handler hides (dotfiles, unless they are on),
  regular files and directories only, and (without ``follow_symlinks``) no symlink leading out
  of the root. A hidden name is not counted among the omitted ones either.
- Bounded work: a scan examines (``stat``) at most ``MAX_LISTED_ENTRIES`` entries and only
  counts the names after those, up to ``MAX_COUNTED_ENTRIES``; the page and the JSON say how
  many were left out. A folder of a million entries so costs one bounded scan, not seconds of
  the evented loop that other clients wait on.
- Order: folders first, always; then by the chosen key, names in natural, case-insensitive order
  (``file2`` before ``File10``), ties broken by that order too. Times are UTC.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NamedTuple
from urllib.parse import quote

MAX_LISTED_ENTRIES: Final = 5_000
"""Entries examined (one ``stat`` each) and listed at most: as many as a person scrolls through,
few enough that the evented loop, which builds the listing between two polls, is held up only
briefly (README, "Decisions", gives the measured cost)."""

MAX_COUNTED_ENTRIES: Final = 20_000
"""Names read past ``MAX_LISTED_ENTRIES`` only to say how many were left out (no ``stat``, but
each still costs a Python object); past this many the note says "more than"."""

SORT_KEYS: Final = ("name", "size", "date")
"""The query's ``sort`` values; ``order`` is ``asc`` or ``desc``."""

_FIRST_ORDER: Final = {"name": False, "size": True, "date": True}
"""Whether a column's link sorts descending at first: names A to Z, the largest and the newest
first (what one looks for); a second click on the same column reverses it."""

_SIZE_UNITS: Final = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_DIGIT_RUNS: Final = re.compile(r"([0-9]+)")


@dataclass(frozen=True)
class ListingOrder:
    """How to sort a listing: ``key`` of ``SORT_KEYS``; folders always come first."""

    key: str = "name"
    descending: bool = False

    @classmethod
    def from_query(cls, query: str) -> ListingOrder:
        """``sort=name|size|date`` and ``order=asc|desc`` from a raw query string; anything
        else (unknown keys or values, bad escapes, repeats after the first) is ignored."""
        key = order = ""
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if name == "sort" and not key and value in SORT_KEYS:
                key = value
            elif name == "order" and not order and value in ("asc", "desc"):
                order = value
        key = key or "name"
        descending = order == "desc" if order else _FIRST_ORDER[key]
        return cls(key, descending)

    @property
    def query(self) -> str:
        return f"?sort={self.key}&order={'desc' if self.descending else 'asc'}"


class Entry(NamedTuple):
    """One listed entry (a symlink shows what it points to; a folder's size is 0)."""

    name: str
    is_dir: bool
    size: int
    mtime: float


@dataclass
class Scan:
    """What a bounded scan found: the entries examined, and how many listable names it left
    out (``omitted``; when ``omitted_exact`` is false, at least that many)."""

    entries: list[Entry]
    omitted: int = 0
    omitted_exact: bool = True


def scan_directory(
    real_dir: str, root: str, *, follow_symlinks: bool,
    hidden: Callable[[str, bool], bool] | None = None, in_root: bool = False,
) -> Scan:
    """The listable entries of ``real_dir``, in the filesystem's order, within the bounds.

    ``root`` is the resolved document root, for the symlink check. ``hidden(name, in_root)``
    says which names are left out (the handler's dotfile rule), ``None`` to list them all;
    ``in_root``: ``real_dir`` is the root itself. Raises ``OSError`` when the directory cannot be
    read (the caller maps the errno to a status).
    """
    root_prefix = root.rstrip("/") + "/"
    scan = Scan([])
    examined = 0
    with os.scandir(real_dir) as found:
        for dir_entry in found:
            if not _listable_name(dir_entry.name, hidden, in_root):
                continue
            if examined < MAX_LISTED_ENTRIES:
                examined += 1
                entry = _examine(dir_entry, root, root_prefix, follow_symlinks)
                if entry is not None:
                    scan.entries.append(entry)
            elif scan.omitted < MAX_COUNTED_ENTRIES:
                scan.omitted += 1
            else:
                scan.omitted_exact = False
                break
    return scan


# -- which entries a listing shows -----------------------------------------------------------


def _listable_name(name: str, hidden: Callable[[str, bool], bool] | None,
                   in_root: bool) -> bool:
    """THE ONE PLACE where listed entries are filtered by name (before any ``stat``), so that the
    HTML page, the JSON and the count of omitted names all obey the same rules: ``hidden`` (the
    handler's dotfile rule), then what cannot be requested."""
    if hidden is not None and hidden(name, in_root):
        return False
    try:
        name.encode("utf-8")  # names that are not UTF-8 on disk carry surrogates: refused
    except UnicodeEncodeError:
        return False
    return "\\" not in name


def _examine(
    dir_entry: os.DirEntry[str], root: str, root_prefix: str, follow_symlinks: bool
) -> Entry | None:
    """The entry as listed, or None for what is never served (links out, FIFOs, devices)."""
    try:
        if not follow_symlinks and dir_entry.is_symlink():
            target = os.path.realpath(dir_entry.path)
            if target != root and not target.startswith(root_prefix):
                return None
        st = dir_entry.stat()  # follows symlinks; a dangling one raises and is skipped
    except OSError:
        return None
    is_dir = stat.S_ISDIR(st.st_mode)
    if not is_dir and not stat.S_ISREG(st.st_mode):
        return None  # FIFOs, sockets, devices are never served, so not listed
    return Entry(dir_entry.name, is_dir, 0 if is_dir else st.st_size, st.st_mtime)


# -- order ---------------------------------------------------------------------------------------


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key: case-insensitive, runs of digits compared as numbers (``a2`` < ``a10``).

    The split alternates text and digit runs from a text run (maybe empty), so two keys compare
    text with text and number with number; the name itself breaks ties (``a`` before ``A``,
    ``1`` before ``01``). A file name has at most 255 bytes, far below ``int``'s digit limit.
    """
    parts: list[str | int] = list(_DIGIT_RUNS.split(name.casefold()))
    parts[1::2] = [int(run) for run in parts[1::2]]
    return tuple(parts), name


def sorted_entries(entries: list[Entry], order: ListingOrder) -> list[Entry]:
    """Folders first, then files, each group in ``order`` (ties in natural name order)."""
    by_name = sorted(entries, key=lambda entry: natural_key(entry.name),
                     reverse=order.key == "name" and order.descending)
    # Python's sort is stable, with reverse too: equal sizes and dates keep the name order, and
    # so do folders when sorting by size (their size, 0 here, says nothing).
    if order.key == "size":
        by_name.sort(key=lambda entry: entry.size, reverse=order.descending)
    elif order.key == "date":
        by_name.sort(key=lambda entry: entry.mtime, reverse=order.descending)
    return [entry for entry in by_name if entry.is_dir] + [
        entry for entry in by_name if not entry.is_dir
    ]


# -- rendering -----------------------------------------------------------------------------------


def human_size(size: int) -> tuple[str, str]:
    """``(number, unit)`` with two or three significant digits, binary units: ``("20", "B")``,
    ``("1.5", "KiB")``, ``("300", "MiB")``; a value that would round to 1000 or more moves up
    a unit."""
    if size < 1000:
        return str(size), "B"
    for exponent, unit in enumerate(_SIZE_UNITS, start=1):
        value = size / 1024**exponent
        if value < 999.5 or unit == _SIZE_UNITS[-1]:
            return (f"{value:.1f}" if value < 9.95 else f"{value:.0f}"), unit
    raise AssertionError("unreachable")  # pragma: no cover


def utc_time(mtime: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(mtime))


_STYLESHEET: Final = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;
--stripe:#f6f8fa;--link:#0757ba;--folder:#7d4e00}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;
--line:#3d444d;--stripe:#151b23;--link:#4493f8;--folder:#e3b341}}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;max-width:64rem;padding:1rem}
h1{font-size:1.25rem;font-weight:600;margin:.25rem 0 1rem;overflow-wrap:anywhere}
a{color:var(--link);text-decoration:none}
a:hover,a:focus{text-decoration:underline}
table{border-collapse:collapse;width:100%}
th,td{padding:.35rem .5rem;text-align:left;vertical-align:baseline}
th{border-bottom:2px solid var(--line);font-weight:600;white-space:nowrap}
th a{color:inherit}
tbody tr:nth-child(even){background:var(--stripe)}
td{border-bottom:1px solid var(--line)}
td.name{overflow-wrap:anywhere;width:100%}
tr.dir td.name a{color:var(--folder);font-weight:600}
td.date,td.size{white-space:nowrap;color:var(--muted);font-variant-numeric:tabular-nums}
th.size,td.size{text-align:right}
td.size .unit{font-size:.85em;padding-left:.2em}
p.note{color:var(--muted);font-size:.9rem}
@media (max-width:40rem){body{padding:.5rem;font-size:14px}th,td{padding:.3rem}
td.date{white-space:normal;font-size:.85em;min-width:5.5em}}
"""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_STYLESHEET.encode()).digest()).decode()
    + "'; base-uri 'none'; form-action 'none'"
)
"""What the HTML page needs and nothing more: its one inline stylesheet (by hash), no script, no
image, no frame. Whatever a name did to the markup, the page could load nothing."""

_ARROWS: Final = {False: "\u2191", True: "\u2193"}  # up arrow: ascending, down: descending


def listing_html(url_path: str, scan: Scan, order: ListingOrder) -> bytes:
    """The page for ``url_path`` (decoded, ends with ``/``) as UTF-8 HTML."""
    title = html.escape(f"Index of {url_path}")
    lines = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>\n<style>{_STYLESHEET}</style></head>",
        f'<body>\n<h1>Index of <span class="crumbs">{_breadcrumbs(url_path)}</span></h1>',
        "<table>\n<thead><tr>",
        _column_head("name", "Name", order),
        _column_head("date", "Last modified (UTC)", order),
        _column_head("size", "Size", order),
        "</tr></thead>\n<tbody>",
    ]
    if url_path != "/":
        lines.append('<tr class="dir"><td class="name"><a href="../">../</a></td>'
                     '<td class="date"></td><td class="size">-</td></tr>')
    folders = files = total_bytes = 0
    for entry in sorted_entries(scan.entries, order):
        href = quote(entry.name, safe="")
        name = html.escape(entry.name)
        modified = utc_time(entry.mtime)
        if entry.is_dir:
            folders += 1
            lines.append(f'<tr class="dir"><td class="name"><a href="{href}/">{name}/</a></td>'
                         f'<td class="date">{modified}</td><td class="size">-</td></tr>')
        else:
            files += 1
            total_bytes += entry.size
            number, unit = human_size(entry.size)
            lines.append(f'<tr><td class="name"><a href="{href}">{name}</a></td>'
                         f'<td class="date">{modified}</td>'
                         f'<td class="size" title="{_count(entry.size, "byte")}">{number}'
                         f'<span class="unit">{unit}</span></td></tr>')
    lines.append("</tbody></table>")
    number, unit = human_size(total_bytes)
    lines.append(f'<p class="note">{_count(folders, "folder")}, {_count(files, "file")} '
                 f"({number} {unit}).</p>")
    if scan.omitted:
        more = "" if scan.omitted_exact else "more than "
        lines.append(
            f'<p class="note">Not listed: {more}{_count(scan.omitted, "further entry")}. A '
            f"listing shows at most {MAX_LISTED_ENTRIES:,} entries, the first the filesystem "
            f"returns, so that one listing cannot hold up the server.</p>"
        )
    lines.append("</body></html>\n")
    return "\n".join(lines).encode("utf-8")


def listing_json(url_path: str, scan: Scan, order: ListingOrder) -> bytes:
    """The listing as a JSON object: ``path``, ``entries`` (``name``, ``type`` ``"directory"``
    or ``"file"``, ``size`` in bytes or null for a folder, ``mtime`` as RFC 3339 UTC),
    ``omitted`` and ``omitted_exact``. ASCII only (names escaped as ``\\uXXXX``)."""
    entries = [
        {
            "name": entry.name,
            "type": "directory" if entry.is_dir else "file",
            "size": None if entry.is_dir else entry.size,
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.mtime)),
        }
        for entry in sorted_entries(scan.entries, order)
    ]
    document = {"path": url_path, "entries": entries, "omitted": scan.omitted,
                "omitted_exact": scan.omitted_exact}
    return json.dumps(document).encode("ascii") + b"\n"


def _breadcrumbs(url_path: str) -> str:
    """``/ a / b /`` with each piece a relative link to its folder (relative, so the page
    works under any prefix a proxy may put in front)."""
    names = [name for name in url_path.split("/") if name]
    depth = len(names)
    crumbs = [f'<a href="{"../" * depth or "./"}">/</a>']
    for level, name in enumerate(names, start=1):
        up = "../" * (depth - level) or "./"
        crumbs.append(f'<a href="{up}">{html.escape(name)}</a>/')
    return "".join(crumbs)


def _column_head(key: str, label: str, order: ListingOrder) -> str:
    """A column's heading: a link that sorts by it (reversing the order if it is the current
    key), with an arrow and ``aria-sort`` on the current one."""
    css = ' class="size"' if key == "size" else ""
    if key == order.key:
        target = ListingOrder(key, not order.descending)
        sort = "descending" if order.descending else "ascending"
        return (f'<th{css} aria-sort="{sort}"><a href="{html.escape(target.query)}">{label} '
                f"{_ARROWS[order.descending]}</a></th>")
    target = ListingOrder(key, _FIRST_ORDER[key])
    return f'<th{css}><a href="{html.escape(target.query)}">{label}</a></th>'


def _count(number: int, noun: str) -> str:
    if number == 1:
        return f"1 {noun}"
    return f"{number:,} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"
