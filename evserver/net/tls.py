"""TLS: the server's context, a socket that never speaks clear text, a transport that encrypts.

What this module knows: the ``ssl`` module and OpenSSL's ways -- a handshake is a conversation of
its own; a write that could not finish must be retried with the same bytes; a readable socket may
hold no application bytes, and decrypted bytes may wait inside the TLS object where no selector
sees them; ``sendfile`` cannot encrypt, unless the kernel does (kTLS). And file regions
(:mod:`evserver.bodies`). What it must not know: HTTP, selectors, threads, deadlines. The drivers
decide when to shake hands and how long to wait; the protocol and the file handler never hear
of TLS (``tests/unit/test_layers.py`` forbids them ``ssl``).

The pieces::

    server_context(cert, key, password_file)   built once at start-up, before any worker forks
                                               (each inherits it); bad files: TLSSetupError,
                                               one line for the command line to print
    TLSSocket          the SSLSocket subclass the context makes on accept: the handshake step
                       (non-blocking) or whole (blocking, under a timeout), close_notify on a
                       clean close, and never a byte of clear text
    TLSTransport       the evented write queue of :mod:`evserver.net.transport` over a TLSSocket
    send_tls           the blocking models' sender (their ``send_items`` for a TLSSocket)

Decisions:

- **Versions and defaults**: ``ssl.create_default_context(Purpose.CLIENT_AUTH)`` (its ciphers,
  no compression, the server's cipher order), TLS 1.2 and 1.3 only, client-initiated
  renegotiation refused (a cheap way to make a server work hard), ALPN ``http/1.1`` (a client
  offering ``h2`` first still gets HTTP/1.1). TLS 1.3 session tickets stay at OpenSSL's
  default, so clients may resume; workers forked after the context share its ticket key.
  ``--tls-no-tickets`` turns resumption off: a full handshake per connection (what the
  benchmark's new-connection case measures; also the forward-secrecy-minded choice, since the
  ticket key lives as long as the process).
- **File bodies**: ``os.sendfile`` would put the file's clear text on the wire, so a region is
  read with ``pread`` in ``TLS_RECORD_SIZE`` pieces, one TLS record each, and written through
  OpenSSL; a whole file is never loaded. Where the running Python has ``ssl.OP_ENABLE_KTLS``
  (3.12+) the context asks OpenSSL for kernel TLS, and on a connection whose sending side the
  kernel then encrypts (``kernel_sends``), regions go out with ``os.sendfile`` again. The
  banner says which path is active (``body_path``); ``sendfile_bytes`` in the stats counts kTLS
  bytes only.
- **Plain HTTP sent to the TLS port** is closed without a word (after a lingering close, so the
  client sees an end of stream, not a reset), as ``python -m http.server --tls-cert`` does: an
  answer in clear text would have this layer speak HTTP. The server logs one line saying so.
  (A TLS ClientHello sent to a plain port is the parser's business: a 400, as before.)
- **Half-closing clients**: a client that ends its sending side with a plain TCP FIN and no
  close_notify (the usual way to say "no more requests" while reading the answers) gets every
  answer due, as over plain HTTP. OpenSSL 3 would take that end of stream for an attack: a
  fatal alert, and no more writes; ``OP_IGNORE_UNEXPECTED_EOF`` reads it as an end of input.
  A truncated request cannot be answered anyway: the parser only answers whole ones.
- **close_notify** (RFC 8446 6.1) goes out on every clean close -- after the last response, on
  an idle timeout, when the client closed first -- with one non-blocking try, never waiting for
  the client's own; not after an error, and not with a response cut short.

Invariants:

- No byte leaves in clear text: the transport and the sender write through OpenSSL only
  (``write``), and ``TLSSocket``'s ``send``/``sendall``/``sendfile`` refuse to fall back to the
  raw socket (``ssl.SSLSocket`` does fall back once its TLS object is gone). ``os.sendfile``
  is used only where ``kernel_sends`` says the kernel encrypts.
- A write OpenSSL could not finish (``SSLWantWriteError``) is retried with the same bytes: the
  queue item stays at the head, and each write is at most one record (``TLS_RECORD_SIZE``), so
  ``pending_bytes`` moves record by record.
- Every evented ``recv`` also takes what the TLS object decrypted beyond the size asked for
  (``decrypted``), so nothing waits where the selector cannot see it. (The blocking driver,
  which asks no selector, simply reads it with its next ``recv_into``.)
- Only the connection's own thread touches the TLS object: ``TLSSocket.shutdown`` from another
  thread (the blocking models' graceful stop) shuts the socket down, nothing more.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from evserver.bodies import FileRegion, Item, release_all
from evserver.net.blocking import (
    TIMEVAL,
    FileShrankError,
    note_part_sent,
    note_unsent,
    send_region,
)
from evserver.net.listener import peer_name
from evserver.net.transport import QUIET_ERRNOS, Transport, _RegionCursor
from evserver.stats import Stats

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = logging.getLogger("evserver.tls")

TLS_RECORD_SIZE = 16 * 1024
"""The largest TLS record's plaintext (RFC 8446 5.1: 2^14 bytes): each write is at most one
record, and file regions are read in pieces of this size."""

ALPN_PROTOCOLS = ("http/1.1",)
"""What the server agrees to speak inside TLS (RFC 7301): HTTP/1.1 only."""

IGNORE_EOF_OPTION: int = getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
"""``ssl.OP_IGNORE_UNEXPECTED_EOF`` (OpenSSL 3): an end of stream without close_notify is an end
of input, not a fatal error (see "Half-closing clients" in the module docstring)."""

KTLS_OPTION: int = getattr(ssl, "OP_ENABLE_KTLS", 0)
"""``ssl.OP_ENABLE_KTLS`` (Python 3.12+), or 0 where the ``ssl`` module cannot ask for kTLS."""

SOL_TLS = 282
TLS_TX = 1
"""linux/tls.h: the socket option level and name of kTLS's sending side (the ``socket`` module
does not name them); ``getsockopt`` on them succeeds only once the kernel encrypts."""

ULP_LIST = "/proc/sys/net/ipv4/tcp_available_ulp"
"""Linux lists here the TCP upper-layer protocols it can attach; ``tls`` is kTLS's module."""

# What a handshake step comes to (``TLSSocket.handshake``, ``TLSTransport.handshake``).
HANDSHAKE_DONE = 0
"""The handshake is over: application bytes may flow."""
WANTS_READ = 1
"""Non-blocking: OpenSSL waits for the client's bytes (the value of ``selectors.EVENT_READ``)."""
WANTS_WRITE = 2
"""Non-blocking: OpenSSL waits for room to send (the value of ``selectors.EVENT_WRITE``)."""
HANDSHAKE_FAILED = 4
"""The client broke the protocol (plain HTTP, no common version or cipher, it rejected the
certificate); OpenSSL has sent its alert. Close lingering, reading raw bytes (logged at info)."""
PEER_GONE = 8
"""The client vanished mid-handshake (reset, end of stream): close at once (logged at debug)."""
HANDSHAKE_TIMED_OUT = 16
"""Blocking: the handshake did not end within its timeout."""

_VANISHED_REASONS = frozenset({"UNEXPECTED_EOF_WHILE_READING"})
"""OpenSSL's reasons (``SSLError.reason``) that mean the client went away, not that it erred."""

_REASON_HINTS = {
    "HTTP_REQUEST": "plain HTTP sent to the HTTPS port",
    "HTTPS_PROXY_REQUEST": "a plain proxy request sent to the HTTPS port",
    "WRONG_VERSION_NUMBER": "not TLS, or a version this server does not speak",
    "UNSUPPORTED_PROTOCOL": "the client offers only TLS older than 1.2",
    "NO_SHARED_CIPHER": "no cipher in common",
    "TLSV1_ALERT_UNKNOWN_CA": "the client does not trust the certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the client rejected the certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the client rejected the certificate",
}
"""A few words for the reasons a user can do something about."""


class TLSSetupError(ValueError):
    """The certificate, key or password cannot be used; the message is one line naming the
    option at fault, for the command line to print before it exits with status 2."""


class _PasswordNeeded(Exception):
    """Raised in OpenSSL's password callback: the key is encrypted and no password was given.
    (Without a callback OpenSSL would ask for it on the terminal, and a server must not.)"""


def _no_password() -> str:
    raise _PasswordNeeded


# -- the context ---------------------------------------------------------------------------


def server_context(cert: str, key: str | None = None, password_file: str | None = None,
                   tickets: bool = True) -> ssl.SSLContext:
    """The server's TLS context from PEM files: the certificate chain (``cert``, which may hold
    the key too), its private key, and a file whose content (stripped, as CPython's
    ``http.server`` reads it) is the key's password. ``tickets=False`` sends no session
    tickets, so no client can resume: every connection is a full handshake (nginx's
    ``ssl_session_tickets off``). Raises :class:`TLSSetupError`."""
    for option, path in (("--tls-cert", cert), ("--tls-key", key),
                         ("--tls-password-file", password_file)):
        if path is not None:
            _check_readable(option, path)
    password = _read_password(password_file) if password_file is not None else None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION | IGNORE_EOF_OPTION | KTLS_OPTION
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    if not tickets:
        context.num_tickets = 0  # TLS 1.3
        context.options |= ssl.OP_NO_TICKET  # TLS 1.2
    try:
        context.load_cert_chain(cert, key, _no_password if password is None else password)
    except _PasswordNeeded:
        raise TLSSetupError(f"--tls-key: the key in {key or cert!r} is encrypted; give its "
                            "password with --tls-password-file") from None
    except ssl.SSLError as error:
        raise TLSSetupError(_why_not_loaded(error, cert, key, password is not None)) from None
    context.sslsocket_class = TLSSocket
    return context


def _check_readable(option: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise TLSSetupError(f"{option}: cannot read {path!r}: {error.strerror or error}") \
            from None


def _read_password(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as password_file:
            return password_file.read().strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise TLSSetupError(f"--tls-password-file: cannot read {path!r}: {reason}") from None


def _why_not_loaded(error: ssl.SSLError, cert: str, key: str | None, has_password: bool) -> str:
    """One line from OpenSSL's failure (mostly "PEM lib", so the files are looked at)."""
    if error.reason == "KEY_VALUES_MISMATCH":
        return f"--tls-key: the key in {key or cert!r} does not belong to the certificate"
    cert_text, key_text = _pem_text(cert), _pem_text(key or cert)
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        return f"--tls-cert: {cert!r} holds no PEM certificate"
    if "PRIVATE KEY-----" not in key_text:
        if key is None:
            return f"--tls-cert: {cert!r} holds no private key; give it with --tls-key"
        return f"--tls-key: {key!r} holds no PEM private key"
    if has_password and "ENCRYPTED" in key_text:
        return f"--tls-password-file: the password does not open the key in {key or cert!r}"
    return f"--tls-cert/--tls-key: OpenSSL cannot load {cert!r} and its key: {error}"


def _pem_text(path: str) -> str:
    try:
        with open(path, encoding="latin-1") as pem:
            return pem.read()
    except OSError:
        return ""


def wrap_server_socket(context: ssl.SSLContext, sock: socket.socket) -> TLSSocket:
    """An accepted socket as the server's side of a TLS connection, no handshake made yet (the
    driver makes it: non-blocking in the evented model, blocking in the others)."""
    if context.sslsocket_class is not TLSSocket:
        raise TypeError("the TLS context must come from evserver.net.tls.server_context")
    return cast(TLSSocket, context.wrap_socket(sock, server_side=True,
                                               do_handshake_on_connect=False))


def body_path(context: ssl.SSLContext) -> str:
    """How file bodies travel under this context, for the banner."""
    reads = f"{TLS_RECORD_SIZE // 1024} KiB reads"
    if not KTLS_OPTION or not context.options & KTLS_OPTION:
        return f"TLS bodies: {reads}"
    if not _kernel_tls_available():
        return f"TLS bodies: {reads} (kTLS: the kernel's tls module is not loaded)"
    return f"TLS bodies: kTLS sendfile (where the kernel takes the cipher; else {reads})"


def _kernel_tls_available() -> bool:
    try:
        with open(ULP_LIST) as ulps:
            return "tls" in ulps.read().split()
    except OSError:
        return False


def _kernel_encrypts(sock: ssl.SSLSocket) -> bool:
    """True when the kernel encrypts what this socket sends (kTLS): then ``os.sendfile`` on it
    sends TLS records, and file regions may use it."""
    if not KTLS_OPTION:
        return False
    probe = getattr(getattr(sock, "_sslobj", None), "uses_ktls_for_send", None)
    if probe is not None:  # Python 3.14+ asks OpenSSL
        return bool(probe())
    try:
        socket.socket.getsockopt(sock, SOL_TLS, TLS_TX, 4)  # the kernel knows too
    except OSError:
        return False
    return True


def _peer_vanished(error: BaseException) -> bool:
    """A handshake failure that means the client went away rather than broke a rule."""
    if isinstance(error, ConnectionError | ssl.SSLEOFError | ssl.SSLZeroReturnError
                  | ssl.SSLSyscallError):
        return True
    if isinstance(error, ssl.SSLError):
        return error.reason in _VANISHED_REASONS
    return getattr(error, "errno", None) in QUIET_ERRNOS or \
        getattr(error, "errno", None) == errno.ENOTCONN


def _describe(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        hint = _REASON_HINTS.get(error.reason)
        return f"{error.reason}: {hint}" if hint else error.reason
    return (error.strerror if isinstance(error, OSError) else None) or str(error) \
        or type(error).__name__


# -- the socket ----------------------------------------------------------------------------


class TLSSocket(ssl.SSLSocket):
    """The server's side of one TLS connection (the context's ``sslsocket_class``).

    What it adds to ``ssl.SSLSocket``:

    - ``handshake()``: one step on a non-blocking socket (``WANTS_READ``/``WANTS_WRITE`` until
      ``HANDSHAKE_DONE``), the whole of it on a blocking one (under the socket's timeout: see
      ``shake_hands``); a failure is logged in one line and leaves the socket reading raw bytes
      (``HANDSHAKE_FAILED``: for the lingering close) or done with (``PEER_GONE``).
    - ``close()`` and ``shutdown(SHUT_WR)`` send close_notify first, once, without blocking,
      unless the connection is ``broken`` (an error, or a response cut short).
    - For the blocking models, the manners of a blocking socket with kernel timeouts, which
      the blocking driver expects: ``SO_RCVTIMEO``/``SO_SNDTIMEO`` given with ``setsockopt``
      become the timeouts of ``recv_into`` and of ``use_send_timeout``, and a read that times
      out raises ``BlockingIOError``, as the kernel's timeout does. Why not the kernel's own:
      when it expires, OpenSSL sees EAGAIN, takes it for "try again", and CPython's blocking
      read loop retries it for ever. So the timeouts are Python's (``settimeout``), one per
      direction.

    Instances are made by ``SSLContext.wrap_socket``, which calls no ``__init__``; the state
    below starts as class attributes.
    """

    handshake_done = False
    """True once the handshake succeeded."""
    broken = False
    """An error, or a response cut short: no close_notify, which would say all was sent."""
    kernel_sends = False
    """The kernel encrypts what this socket sends (kTLS): ``os.sendfile`` may carry bodies."""
    _farewell_sent = False
    _sslobj: Any  # ssl.SSLSocket's TLS object (None once dropped): read here, and dropped
    _recv_timeout: float | None = None
    _send_timeout: float | None = None

    # -- the handshake -------------------------------------------------------------------

    def handshake(self) -> int:
        """Run the handshake on (a step of it when non-blocking); what it came to."""
        try:
            self.do_handshake()
        except ssl.SSLWantReadError:
            return WANTS_READ
        except ssl.SSLWantWriteError:
            return WANTS_WRITE
        except TimeoutError:  # blocking: the socket's timeout ran out
            self._abandon()
            return HANDSHAKE_TIMED_OUT
        except (OSError, ValueError) as error:
            gone = _peer_vanished(error)
            level = logging.DEBUG if gone else logging.INFO
            if log.isEnabledFor(level):
                log.log(level, "TLS handshake with %s failed (%s); closing", self._peer(),
                        _describe(error))
            self._abandon()
            return PEER_GONE if gone else HANDSHAKE_FAILED
        self.handshake_done = True
        self.kernel_sends = _kernel_encrypts(self)
        return HANDSHAKE_DONE

    def shake_hands(self, timeout: float) -> int:
        """The blocking handshake, all of it within ``timeout`` seconds (none if zero)."""
        self.settimeout(timeout if timeout > 0 else None)
        return self.handshake()

    def _abandon(self) -> None:
        """After a failed handshake the TLS object is of no more use: drop it, so that what
        the client still sends can be read raw (and discarded) while closing."""
        self.broken = True
        self._sslobj = None

    def _peer(self) -> str:
        try:
            return peer_name(self.getpeername())
        except OSError:
            return f"fd {self.fileno()}"

    # -- reading -------------------------------------------------------------------------

    def decrypted(self) -> bytes:
        """Bytes the TLS object has decrypted and not yet handed out (a record holds up to
        16 KiB; a read asking for less leaves the rest inside, where no selector sees it)."""
        chunks = []
        while count := self.pending():
            chunks.append(self.read(count))
        return b"".join(chunks)

    def raw_recv(self, size: int) -> bytes:
        """Bytes as they arrived, not decrypted: for discarding after a failed handshake."""
        return socket.socket.recv(self, size)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        """The blocking driver's read: decrypted bytes into ``buffer``, within the receive
        timeout, whose expiry raises ``BlockingIOError`` as ``SO_RCVTIMEO``'s does. Bytes the TLS
        object decrypted beyond the buffer wait inside it and come with the next call, at once."""
        timeout = self._recv_timeout
        if self.gettimeout() != timeout:
            socket.socket.settimeout(self, timeout)
        try:
            return super().recv_into(buffer, nbytes, flags)
        except TimeoutError:
            raise BlockingIOError(errno.EAGAIN, "nothing arrived within the receive timeout") \
                from None
        except OSError:
            self.broken = True
            raise

    # -- timeouts for the blocking models -------------------------------------------------

    def settimeout(self, value: float | None) -> None:
        """Python's timeout, now and for both directions."""
        super().settimeout(value)
        self._recv_timeout = self._send_timeout = value

    def setsockopt(self, level: int, optname: int, value: Any, *rest: Any) -> None:
        """``SO_RCVTIMEO``/``SO_SNDTIMEO`` become the timeouts of reading and of writing (see
        the class docstring); any other option goes to the socket."""
        if level == socket.SOL_SOCKET and optname in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO) \
                and isinstance(value, bytes):
            whole, micros = TIMEVAL.unpack(value)
            seconds = (whole + micros / 1_000_000) or None
            if optname == socket.SO_RCVTIMEO:
                self._recv_timeout = seconds
            else:
                self._send_timeout = seconds
            return
        super().setsockopt(level, optname, value, *rest)

    def use_send_timeout(self) -> None:
        """Before writing on a blocking socket: the send timeout bounds each write."""
        if self.gettimeout() != self._send_timeout:
            socket.socket.settimeout(self, self._send_timeout)

    # -- never in clear text ----------------------------------------------------------------

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        self._refuse_clear_text()
        return super().send(data, flags)

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        self._refuse_clear_text()
        super().sendall(data, flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        self._refuse_clear_text()
        return super().sendfile(file, offset, count)

    def _refuse_clear_text(self) -> None:
        if self._sslobj is None:  # ssl.SSLSocket would send on the raw socket now
            raise ValueError("no TLS on this socket (any more): not sending in clear text")

    # -- ending -----------------------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        """Shut the socket down, leaving the TLS object in place (``ssl.SSLSocket.shutdown``
        drops it, after which a send would go out in clear text). Another thread may call this
        to end a connection (the blocking models' graceful stop): it must not touch the TLS
        object, which is not thread-safe, and only ``SHUT_WR`` -- the lingering close, on the
        connection's own thread -- sends close_notify first."""
        if how == socket.SHUT_WR:
            self.say_goodbye()
        socket.socket.shutdown(self, how)

    def close(self) -> None:
        self.say_goodbye()
        super().close()

    def say_goodbye(self) -> None:
        """close_notify, once, unless the connection is ``broken`` or never shook hands: one
        non-blocking try, not waiting for the client's own (``SSLWantReadError`` after it is
        sent; ``SSLWantWriteError`` when there is no room: it is not sent; a reset: neither)."""
        sslobj = self._sslobj
        if self.broken or self._farewell_sent or not self.handshake_done or sslobj is None:
            return
        self._farewell_sent = True
        if self.gettimeout() != 0.0:
            socket.socket.settimeout(self, 0.0)
        try:
            sslobj.shutdown()
        except (OSError, ValueError):
            pass


# -- the evented transport -------------------------------------------------------------------


class TLSTransport(Transport):
    """:class:`~evserver.net.transport.Transport` over a non-blocking :class:`TLSSocket`.

    The same queue and the same contract (``pending_bytes``, ``write``, ``flush``, ``recv``,
    ``close``, ``abort``), with OpenSSL's rules: a write goes out whole or raises
    ``SSLWantWriteError`` (then the same bytes are written again: the item stays at the head,
    and each write is at most one record, so ``pending_bytes`` moves by records); consecutive
    small items are packed into records up to ``TLS_RECORD_SIZE``; file regions are read in
    records (``region_chunk_size``), or sent with ``os.sendfile`` where the kernel encrypts.
    ``handshake()`` runs a step of the handshake first (the driver calls it until it is done).

    A write that needs the client's bytes first (``SSLWantReadError``: renegotiation is
    refused, so OpenSSL should never ask) sets ``write_waits_for_read``: the driver then waits
    for readable instead of writable, and the next ``recv`` retries the writes.
    """

    __slots__ = ("_read", "_sendfile_wanted", "write_waits_for_read")

    region_chunk_size = TLS_RECORD_SIZE
    _more = 0  # no MSG_MORE: OpenSSL does the writing
    sock: TLSSocket

    def __init__(self, sock: TLSSocket, *, use_sendfile: bool = True,
                 stats: Stats | None = None) -> None:
        super().__init__(sock, use_sendfile=False, stats=stats)  # until kTLS is known
        self._queue = []  # made at once: this transport's writes append to it without a test
        self._sendfile_wanted = use_sendfile
        self._read: Callable[[int], bytes] = sock.read
        self.write_waits_for_read = False

    def __repr__(self) -> str:
        return "<TLS" + super().__repr__()[1:]

    def handshake(self) -> int:
        """One step of the handshake (``TLSSocket.handshake``). On ``PEER_GONE`` the transport
        is closed; on ``HANDSHAKE_FAILED`` it reads raw bytes, for the lingering close."""
        sock = self.sock
        outcome = sock.handshake()
        if outcome == HANDSHAKE_DONE:
            self._use_sendfile = self._sendfile_wanted and sock.kernel_sends
        elif outcome == PEER_GONE:
            self.abort()
        elif outcome == HANDSHAKE_FAILED:
            self._read = sock.raw_recv
        return outcome

    # -- reading -------------------------------------------------------------------------

    def recv(self, size: int) -> bytes | None:
        """As ``Transport.recv``: decrypted bytes, ``None`` if none are ready (a readable socket
        may hold only TLS's own records), ``b""`` at the end (close_notify or not)."""
        if self.write_waits_for_read:
            self.write_waits_for_read = False
            self.flush()
            return None
        try:
            data = self._read(size)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            return None
        except ValueError:  # the TLS object is gone: the socket was closed
            return b""
        except OSError as error:
            self._fail(error, "recv")
            return b""
        if len(data) == size:
            data += self.sock.decrypted()
        return data

    # -- writing -------------------------------------------------------------------------

    def _send_now(self, parts: list[bytes]) -> None:
        """The queue is empty: one record (a response and its small body) written at once."""
        data = parts[0]
        if len(parts) == 2:
            if len(data) + len(parts[1]) > TLS_RECORD_SIZE:
                self._enqueue_bytes(parts)
                self.flush()
                return
            data += parts[1]
        if len(data) > TLS_RECORD_SIZE:
            self._enqueue_bytes([data])
            self.flush()
            return
        try:
            self.sock.write(data)
            return
        except ssl.SSLWantWriteError:
            pass
        except ssl.SSLWantReadError:
            self.write_waits_for_read = True
        except (OSError, ValueError) as error:
            self._fail(error, "send")
            return
        self._queue.append(data)  # to be written again, the same bytes
        self._pending += len(data)

    def _enqueue_bytes(self, run: list[bytes]) -> None:
        """Queue ``run``, small items packed together into records (large ones as they are)."""
        queue = self._queue
        group: list[bytes] = []
        size = 0
        for data in run:
            if group and size + len(data) > TLS_RECORD_SIZE:
                queue.append(group[0] if len(group) == 1 else b"".join(group))
                group, size = [], 0
            group.append(data)
            size += len(data)
            self._pending += len(data)
        if group:
            queue.append(group[0] if len(group) == 1 else b"".join(group))

    def flush(self) -> None:
        """Write queued items, a record at a time, until OpenSSL would block or all is sent."""
        queue = self._queue
        write = self.sock.write
        while queue:
            item = queue[0]
            if isinstance(item, _RegionCursor):
                if not self._send_region(item):
                    return
                continue
            size = len(item)
            try:
                sent = write(item if size <= TLS_RECORD_SIZE
                             else memoryview(item)[:TLS_RECORD_SIZE])
            except ssl.SSLWantWriteError:
                return
            except ssl.SSLWantReadError:
                self.write_waits_for_read = True
                return
            except (OSError, ValueError) as error:
                self._fail(error, "send")
                return
            self._pending -= sent
            if sent < size:
                queue[0] = memoryview(item)[sent:]
            else:
                del queue[0]
        if self._close_when_drained:
            self._close_now()

    # -- ending ----------------------------------------------------------------------------

    def _close_now(self) -> None:
        if self._queue:
            self.sock.broken = True  # a response cut short: no close_notify
        super()._close_now()

    def _fail(self, error: Exception, operation: str) -> None:
        self.sock.broken = True
        if isinstance(error, OSError):
            super()._fail(error, operation)
        else:  # ValueError: the TLS object is gone
            log.debug("fd %d: %s failed (%s); aborting the connection", self.fd, operation,
                      error)
            self.abort()

    def _file_shrank(self, cursor: _RegionCursor) -> None:
        self.sock.broken = True
        super()._file_shrank(cursor)


# -- the blocking models' sender ---------------------------------------------------------------


def send_tls(sock: socket.socket, items: list[Item], use_sendfile: bool = True) -> int:
    """The blocking models' ``send_items`` for a :class:`TLSSocket`: every item, in order,
    completely; every region released. Consecutive bytes are packed into records; a region is
    read in records (or sent with ``os.sendfile`` where the kernel encrypts, and
    ``use_sendfile``). Each write waits at most the send timeout (``TimeoutError``). Returns
    the bytes sendfile carried. Any failure marks the socket ``broken`` (no close_notify)."""
    tls = cast(TLSSocket, sock)
    via_sendfile = 0
    run: list[bytes] = []
    sent = 0  # plaintext bytes of the items wholly written: the access log's count on failure
    try:
        tls.use_send_timeout()
        for item in items:
            if type(item) is FileRegion:
                if run:
                    sent += _write_run(tls, run)
                    run = []
                if use_sendfile and tls.kernel_sends:
                    via_sendfile += send_region(tls, item)
                else:
                    _write_region(tls, item)
                sent += item.count
            else:
                run.append(item)  # type: ignore[arg-type]  # not a FileRegion: bytes
        if run:
            _write_run(tls, run)
    except OSError as error:
        tls.broken = True
        note_unsent(error, items, sent)
        raise
    except BaseException:
        tls.broken = True
        raise
    finally:
        release_all(items)
    return via_sendfile


def _write_run(sock: TLSSocket, run: list[bytes]) -> int:
    """Write consecutive byte strings in records; return their length. On failure the
    exception tells how much of them was written (:func:`note_part_sent`)."""
    if len(run) > 1 and sum(map(len, run)) <= TLS_RECORD_SIZE:
        run = [b"".join(run)]
    written = 0
    try:
        for data in run:
            view = memoryview(data)
            for start in range(0, len(view), TLS_RECORD_SIZE):
                written += sock.write(view[start:start + TLS_RECORD_SIZE])
    except OSError as error:
        note_part_sent(error, written)
        raise
    return written


def _write_region(sock: TLSSocket, region: FileRegion) -> None:
    """Read ``region`` in records and write them; on failure the exception tells how much of
    it was written (:func:`note_part_sent`)."""
    offset, end = region.offset, region.offset + region.count
    try:
        while offset < end:
            chunk = os.pread(region.fd, min(end - offset, TLS_RECORD_SIZE), offset)
            if not chunk:
                raise FileShrankError(f"fd {region.fd} ended at offset {offset}, "
                                      f"{end - offset} bytes short of its region")
            sock.write(chunk)
            offset += len(chunk)
    except OSError as error:
        note_part_sent(error, offset - region.offset)
        raise
