"""What the two senders (the evented transport and the blocking helpers) agree on about files.

What this module knows: ``os.sendfile`` and its limits, the errno values that mean "not for
these descriptors", ``MSG_MORE``, and the chunk size of the read-and-send fallback. What it must
not know: anything else. One definition each, so that the models differ in their concurrency
and in nothing else.
"""

from __future__ import annotations

import errno
import os
import socket

HAVE_SENDFILE = hasattr(os, "sendfile")
"""``os.sendfile`` exists on Linux, macOS and the BSDs; elsewhere the read+send path is used."""

MAX_SENDFILE_COUNT = 0x7FFFF000
"""Linux transfers at most 2 GiB - 4 KiB per sendfile call; asking for more is pointless."""

SENDFILE_UNSUPPORTED_ERRNOS = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                                         errno.ENOTSOCK})
"""sendfile() failures that mean "this kernel or this pair of descriptors cannot" (a file system
without splice support, an output that is not a socket on an old kernel): fall back to read+send
for the rest of the region."""

MSG_MORE = getattr(socket, "MSG_MORE", 0)
"""Linux: "more is coming", so a head sent just before a file region shares a segment with the
region's first bytes instead of leaving alone; 0 (no flag) elsewhere."""

FALLBACK_CHUNK_SIZE = 256 * 1024
"""Bytes read per pread() when sendfile is not used: big enough to amortise the two system
calls, small enough not to hold much more than a socket buffer in memory per connection."""
