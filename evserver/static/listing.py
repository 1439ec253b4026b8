"""Directory listings for the file handler: scan one directory, render an HTML5 page.

What this module knows: how to read a directory and how to write a safe HTML table of its entries.
What it must not know: requests, responses, caching. ``evserver.static.handler`` decides when a
listing is due and wraps the bytes returned here in a response.

Invariants: every name reaches the page through ``html.escape`` (text) or ``urllib.parse.quote``
with no safe characters (links), so no name, whatever it holds (``<``, quotes, CR/LF, ``:``), can
inject markup, a script or an absolute URL; and only names the handler would serve are listed:
valid UTF-8 (a name that is not cannot be requested), no backslash, regular files and directories
only, and (without ``follow_symlinks``) no symlink leading out of the root; names the handler
hides (dotfiles, unless they are on) are left out.
Order: directories first, then files, each group by name (code point order); times are UTC.
"""

from __future__ import annotations

import html
import os
import stat
import time
from collections.abc import Callable
from urllib.parse import quote

_Row = tuple[bool, str, bool, int, float]
"""(is a file, name, is a directory, size, mtime): sorting the tuples gives the listing order."""


def listing_page(
    real_dir: str, url_path: str, root: str, *, follow_symlinks: bool,
    hidden: Callable[[str, bool], bool] | None = None,
) -> bytes:
    """The listing of ``real_dir`` (shown as ``url_path``, which ends with ``/``) as UTF-8 HTML.

    ``root`` is the resolved document root, for the symlink check. ``hidden(name, in_root)``
    says which names are left out (the handler's dotfile rule), ``None`` to list them all.
    Raises ``OSError`` when the directory cannot be read (the caller maps the errno to a status).
    """
    root_prefix = root.rstrip("/") + "/"
    rows: list[_Row] = []
    with os.scandir(real_dir) as entries:
        for entry in entries:
            if hidden is not None and hidden(entry.name, url_path == "/"):
                continue
            row = _listing_row(entry, root, root_prefix, follow_symlinks)
            if row is not None:
                rows.append(row)
    rows.sort()
    title = html.escape(f"Index of {url_path}")
    lines = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title></head>\n<body><h1>{title}</h1>\n<table>",
        "<tr><th>Name</th><th>Last modified (UTC)</th><th>Size</th></tr>",
    ]
    if url_path != "/":
        lines.append('<tr><td><a href="../">../</a></td><td></td><td>-</td></tr>')
    for _, name, is_dir, size, mtime in rows:
        suffix = "/" if is_dir else ""
        modified = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(mtime))
        lines.append(
            f'<tr><td><a href="{quote(name, safe="")}{suffix}">'
            f"{html.escape(name)}{suffix}</a></td><td>{modified}</td>"
            f"<td>{'-' if is_dir else size}</td></tr>"
        )
    lines.append("</table>\n</body></html>\n")
    return "\n".join(lines).encode("utf-8")


def _listing_row(
    entry: os.DirEntry[str], root: str, root_prefix: str, follow_symlinks: bool
) -> _Row | None:
    name = entry.name
    try:
        name.encode("utf-8")  # names that are not UTF-8 on disk carry surrogates: refused
    except UnicodeEncodeError:
        return None
    if "\\" in name:
        return None
    try:
        if not follow_symlinks and entry.is_symlink():
            target = os.path.realpath(entry.path)
            if target != root and not target.startswith(root_prefix):
                return None
        st = entry.stat()  # follows symlinks; a dangling one raises and is skipped
    except OSError:
        return None
    is_dir = stat.S_ISDIR(st.st_mode)
    if not is_dir and not stat.S_ISREG(st.st_mode):
        return None  # FIFOs, sockets, devices are never served, so not listed
    return (not is_dir, name, is_dir, st.st_size, st.st_mtime)
