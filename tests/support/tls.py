"""Certificates made at test time, and TLS clients that verify them.

What this module knows: the ``openssl`` command (a self-signed certificate for ``localhost`` and
127.0.0.1, with an EC P-256 key: made in milliseconds), and the ``ssl`` module's client side.
What it must not know: the server's code; it imports only the standard library, so tools (the
fuzzer, the experiment runner) make and trust certificates the way the tests do.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.responses import Connect

OPENSSL_TIMEOUT = 30.0
"""Seconds the ``openssl`` command may take to make a key and a certificate (milliseconds, when
the machine is well)."""

INSTALL_OPENSSL = "the openssl command is not installed (Debian: sudo apt-get install openssl)"


@dataclass(frozen=True)
class Certificate:
    """A certificate and its key, PEM files; ``password`` is set when the key is encrypted
    (``password_file`` then holds it)."""

    cert: Path
    key: Path
    password: str | None = None
    password_file: Path | None = None

    def server_args(self) -> list[str]:
        """The command-line options that serve HTTPS with it."""
        args = ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]
        if self.password_file is not None:
            args += ["--tls-password-file", str(self.password_file)]
        return args


def openssl_missing() -> bool:
    return shutil.which("openssl") is None


def make_certificate(folder: Path, name: str = "server", password: str | None = None,
                     common_name: str = "localhost") -> Certificate:
    """A self-signed certificate for ``localhost`` and 127.0.0.1 (and its key) in ``folder``,
    valid for two days; with ``password``, the key is encrypted with it."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={common_name}",
             "-addext", f"subjectAltName=DNS:{common_name},IP:127.0.0.1")
    if password is None:
        return Certificate(cert, key)
    encrypted = folder / f"{name}-key-encrypted.pem"
    _openssl("pkey", "-in", str(key), "-aes256", "-passout", f"pass:{password}",
             "-out", str(encrypted))
    password_file = folder / f"{name}-password.txt"
    password_file.write_text(password + "\n")
    return Certificate(cert, encrypted, password, password_file)


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True,
                          timeout=OPENSSL_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def client_context(certificate: Certificate | Path) -> ssl.SSLContext:
    """A client context that trusts ``certificate`` only and checks the host name, offering
    ALPN ``http/1.1`` (as curl and browsers offer it)."""
    cafile = certificate.cert if isinstance(certificate, Certificate) else certificate
    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["http/1.1"])
    return context


def tls_connect(address: tuple[str, int], context: ssl.SSLContext,
                timeout: float = 10.0) -> ssl.SSLSocket:
    """A verified TLS connection to ``address`` (the handshake made)."""
    raw = socket.create_connection(address, timeout=timeout)
    try:
        return context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def connector(context: ssl.SSLContext) -> Connect:
    """``socket.create_connection``'s shape, over TLS: for tools that take a way to connect."""
    def connect(address: tuple[str, int], timeout: float = 10.0) -> socket.socket:
        return tls_connect(address, context, timeout)
    return connect


def half_close(sock: socket.socket) -> None:
    """End our sending side (a FIN), keeping the TLS object for reading the answers:
    ``ssl.SSLSocket.shutdown`` would drop it, and what follows would be read raw."""
    socket.socket.shutdown(sock, socket.SHUT_WR)


def client_hello(server_hostname: str = "localhost") -> bytes:
    """The bytes of a real TLS ClientHello (from a client that will never finish)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.create_default_context()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()
