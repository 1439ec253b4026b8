"""The ``evserver`` command: argv in, a configured server running, signals handled.

What this module knows: command-line syntax, the start-up banner, signals and exit statuses. What
it must not know: how anything is served. Options shared with ``python -m http.server`` (``PORT``,
``-b/--bind``, ``-d/--directory``, and from Python 3.14 ``--tls-cert``, ``--tls-key``,
``--tls-password-file``) mean the same thing, so one can replace the other.

Exit statuses: 0 after a graceful stop (SIGINT or SIGTERM), 2 for bad arguments (one line on
standard error, like every Unix tool; a certificate, key or password that cannot be used is a
bad argument: the TLS context is built here, once, before anything is served or any worker is
forked), 1 when the server cannot start (port in use, no permission, an access log file that
cannot be opened; with ``--workers``, a worker that fails to start again and again, as one that
cannot open the access log does), 128+N when a second signal N forces an immediate exit (the
access log's buffered lines are written first).

SIGUSR1 reopens the access log file by name (logrotate's ``postrotate``), in every model; with
``--workers`` the master passes it on to every worker.

With ``--workers`` this process becomes the master (``evserver.servers.master``): it binds, forks
the workers and supervises them; signals then mean what the master's docstring says.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import logging
import os
import signal
import socket
import sys
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from evserver import __version__, config
from evserver.accesslog import LOG_FORMATS, CannotOpenLog
from evserver.config import ServerConfig
from evserver.event.reactor import available_selectors, exclusive_registration_available
from evserver.http.limits import DEFAULT_LIMITS, ParserLimits
from evserver.static.handler import ERROR_PAGE_STATUSES, load_error_page
from evserver.static.headers import OperatorFields, check_field_value, parse_header_option

EVERY_INTERFACE_HOSTS = (None, "", "0.0.0.0", "::")
"""``-b`` values (``None``: none given) that listen on every network interface."""

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage before an error; a tool should print one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    if not text.isdigit() or not text.isascii() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _workers(text: str) -> int:
    if text == "auto":
        return min(config.available_cores(), config.MAX_WORKERS)
    if not text.isdigit() or not text.isascii() or int(text) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number or 'auto', got {text!r}")
    if int(text) > config.MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"at most {config.MAX_WORKERS} workers, got {text}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _header(text: str) -> tuple[str, str]:
    try:
        return parse_header_option(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _cache_control(text: str) -> str:
    try:
        check_field_value("Cache-Control", text.strip(" \t"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip(" \t")


def _error_page(text: str) -> tuple[int, str]:
    code, equals, path = text.partition("=")
    if not equals or not code.isdigit() or not code.isascii() or not path:
        raise argparse.ArgumentTypeError(f"expected CODE=FILE, got {text!r}")
    if int(code) not in ERROR_PAGE_STATUSES:
        statuses = ", ".join(map(str, sorted(ERROR_PAGE_STATUSES)))
        raise argparse.ArgumentTypeError(f"no error page is sent with status {code} "
                                         f"(the file handler's errors are {statuses})")
    try:
        load_error_page(path)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {path!r}: {error.strerror or error}"
                                         ) from None
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{path!r}: {error}") from None
    return int(code), os.path.abspath(path)


def every_interface_warning(host: str | None) -> str | None:
    """The start-up warning for a server that anyone on the network can reach, or ``None``."""
    if host not in EVERY_INTERFACE_HOSTS:
        return None
    return ("evserver: warning: listening on every network interface, so anyone who can reach "
            "this machine can read the folder; -b 127.0.0.1 serves this machine only")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog="evserver",
        description="Serve a folder over HTTP/1.1 (a teaching and experimenting server).",
        epilog="Options PORT, -b and -d work as in 'python -m http.server'.",
    )
    p.add_argument("port", nargs="?", type=_port, default=config.DEFAULT_PORT,
                   help=f"port to listen on, 0 for any free port (default {config.DEFAULT_PORT})")
    p.add_argument("-b", "--bind", metavar="ADDRESS",
                   help="address to bind (default: every IPv6 and IPv4 address)")
    p.add_argument("-d", "--directory", default=os.curdir,
                   help="folder to serve (default: the current folder)")
    p.add_argument("--model", choices=config.MODELS, default="evented",
                   help="concurrency model (default evented)")
    p.add_argument("--selector", choices=config.SELECTORS, default="auto",
                   help="readiness API of the evented model (default auto: epoll on Linux)")
    p.add_argument("--workers", type=_workers, default=0, metavar="N|auto",
                   help="run N worker processes of the model under a master process that "
                   "supervises them ('auto': one per core; default: one process, no master)")
    p.add_argument("--port-sharing", choices=config.PORT_SHARING_MODES, metavar="MODE",
                   help="how the workers share the port: reuseport (a socket each, the kernel "
                   "spreads connections), inherited (one socket, every idle worker woken), "
                   f"exclusive (one socket, EPOLLEXCLUSIVE) (default "
                   f"{config.DEFAULT_PORT_SHARING})")
    p.add_argument("--index", action="append", metavar="NAME",
                   help="index file name of a folder, may repeat (default index.html)")
    p.add_argument("--no-listing", action="store_true",
                   help="answer 403 for a folder without an index instead of listing it")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="serve symbolic links that point outside the folder")
    p.add_argument("--max-connections", type=_positive_int, default=config.DEFAULT_MAX_CONNECTIONS,
                   metavar="N", help="open connections at most; then stop accepting "
                   f"(default {config.DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--backlog", type=_positive_int, default=config.DEFAULT_BACKLOG, metavar="N",
                   help=f"listen queue length (default {config.DEFAULT_BACKLOG})")
    p.add_argument("--header-timeout", type=_seconds, default=config.DEFAULT_HEADER_TIMEOUT,
                   metavar="S", help="seconds to receive a whole request head "
                   f"(default {config.DEFAULT_HEADER_TIMEOUT:g})")
    p.add_argument("--idle-timeout", type=_seconds, default=config.DEFAULT_IDLE_TIMEOUT,
                   metavar="S", help="seconds an idle keep-alive connection is kept "
                   f"(default {config.DEFAULT_IDLE_TIMEOUT:g})")
    p.add_argument("--send-timeout", type=_seconds, default=config.DEFAULT_SEND_TIMEOUT,
                   metavar="S", help="seconds a client may read nothing before it is dropped "
                   f"(default {config.DEFAULT_SEND_TIMEOUT:g})")
    p.add_argument("--drain-timeout", type=_seconds, default=config.DEFAULT_DRAIN_TIMEOUT,
                   metavar="S", help="seconds a graceful stop waits for responses in flight "
                   f"(default {config.DEFAULT_DRAIN_TIMEOUT:g})")
    p.add_argument("--max-body", type=_positive_int, default=DEFAULT_LIMITS.max_body,
                   metavar="BYTES", help="largest request body read, else 413 "
                   f"(default {DEFAULT_LIMITS.max_body})")
    p.add_argument("--no-sendfile", action="store_true",
                   help="send files with read()+send() instead of os.sendfile()")
    p.add_argument("--stat-every-request", action="store_true",
                   help="evented model: re-check a cached file with stat() on every request "
                   "instead of once per loop iteration")
    chatter = p.add_mutually_exclusive_group()
    chatter.add_argument("-q", "--quiet", action="store_true",
                         help="no access log, warnings and errors only")
    chatter.add_argument("-v", "--verbose", action="store_true",
                         help="debug log lines too (timeouts, dropped connections)")
    p.add_argument("--access-log", default="-", metavar="FILE",
                   help="access log file, '-' for standard error (default '-')")
    p.add_argument("--log-format", choices=LOG_FORMATS, default="common",
                   help="access log format (default common)")
    p.add_argument("--stats-path", metavar="PATH",
                   help="serve counters as JSON at this path, e.g. /-/stats, and a live "
                   "dashboard there to a browser (default off)")
    p.add_argument("--metrics-path", metavar="PATH",
                   help="serve the same counters in Prometheus's text format at this path, "
                   "e.g. /-/metrics (default off)")
    p.add_argument("--health-path", metavar="PATH",
                   help="answer 200 'ok' at this path while serving and 503 once a graceful "
                   "stop has begun, for a load balancer's health check, e.g. /-/health "
                   "(default off)")
    tls = p.add_argument_group("HTTPS", "serve HTTPS (TLS 1.2 and 1.3, HTTP/1.1) instead of HTTP; "
                               "the names of python -m http.server")
    tls.add_argument("--tls-cert", metavar="FILE",
                     help="the certificate chain, PEM (it may hold the private key too)")
    tls.add_argument("--tls-key", metavar="FILE", help="the private key, PEM")
    tls.add_argument("--tls-password-file", metavar="FILE",
                     help="a file holding the private key's password")
    tls.add_argument("--tls-no-tickets", action="store_true",
                     help="send no session tickets: no client resumes, every connection is a "
                     "full handshake (as nginx's ssl_session_tickets off)")
    p.add_argument("--trace", nargs="?", const="-", metavar="FILE",
                   help="evented model only: one line per event-loop iteration (poll time, "
                   "ready descriptors) and one per event (accept, read, write, timer), to FILE "
                   "or standard error; slow, for watching the loop (default off)")
    folder = p.add_argument_group("serving a folder")
    folder.add_argument("--dotfiles", action="store_true",
                        help="serve and list names beginning with a dot (default: they are "
                        "404 and not listed; .well-known/ is always served)")
    folder.add_argument("--no-precompressed", action="store_true",
                        help="never send NAME.br, NAME.zst or NAME.gz in place of NAME (default: "
                        "sent when the client accepts that coding and it is not older than NAME)")
    folder.add_argument("--gzip", action="store_true",
                        help="compress text files of up to 64 KiB with gzip, once, in memory, "
                        "for clients that accept it")
    folder.add_argument("-H", "--header", action="append", type=_header, metavar="'NAME: VALUE'",
                        help="add this field to every answer below 400, may repeat")
    folder.add_argument("--cors", action="store_true",
                        help="let scripts of any other site read the files (CORS: "
                        "Access-Control-Allow-Origin: *, preflight requests answered)")
    folder.add_argument("--cache-control", type=_cache_control, metavar="VALUE",
                        help="Cache-Control value of every answer below 400, e.g. "
                        "'max-age=3600' or 'no-cache'")
    folder.add_argument("--error-page", action="append", type=_error_page, metavar="CODE=FILE",
                        help="send FILE (read at start-up) as the page of errors with status "
                        "CODE, e.g. 404=404.html; the status stays; may repeat")
    folder.add_argument("--fallback", metavar="FILE",
                        help="answer GET and HEAD of a path that does not exist with FILE and "
                        "200, e.g. a single-page app's index.html")
    lab = p.add_argument_group("teaching switches", "off by default; each makes the server "
                               "slower on purpose, to show what the default buys")
    lab.add_argument("--no-nodelay", action="store_true",
                     help="leave TCP_NODELAY off on accepted sockets (Nagle's algorithm on)")
    lab.add_argument("--split-writes", action="store_true",
                     help="send a response's head and body with separate send calls, never "
                     "in one; with --no-nodelay a small response then waits for the client's "
                     "delayed ACK (about 40 ms on Linux)")
    p.add_argument("--version", action="version", version=f"evserver {__version__}")
    return p


def parse_config(argv: list[str] | None = None) -> ServerConfig:
    """Turn argv into a ServerConfig, exiting with status 2 and one line on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not os.path.isdir(args.directory):
        parser.error(f"-d/--directory: {args.directory!r} is not a folder")
    if args.selector != "auto" and args.selector not in available_selectors():
        parser.error(f"--selector {args.selector} is not available on this system")
    own_paths = (("--stats-path", args.stats_path), ("--metrics-path", args.metrics_path),
                 ("--health-path", args.health_path))
    for option, path in own_paths:
        if path is not None and not path.startswith("/"):
            parser.error(f"{option} must start with '/'")
    for (option, path), (other, other_path) in itertools.combinations(own_paths, 2):
        if path is not None and path == other_path:
            parser.error(f"{option} and {other} must differ")
    if args.workers:
        _check_workers(parser, args)
    elif args.port_sharing is not None:
        parser.error("--port-sharing shares the port between worker processes: give --workers")
    if args.index and any("/" in name or name in ("", ".", "..") for name in args.index):
        parser.error("--index takes a plain file name")
    error_pages = dict(args.error_page or ())
    if len(error_pages) != len(args.error_page or ()):
        parser.error("--error-page names one status twice")
    headers = tuple(args.header or ())
    try:
        OperatorFields(headers, cache_control=args.cache_control, cors=args.cors)
    except ValueError as error:
        parser.error(str(error))
    if args.fallback is not None and not (os.path.isfile(args.fallback)
                                          and os.access(args.fallback, os.R_OK)):
        parser.error(f"--fallback: {args.fallback!r} is not a readable file")
    if args.trace is not None:
        if args.model != "evented":
            parser.error(f"--trace watches the evented model's loop; --model {args.model} "
                         "has none")
        if args.trace.isdigit():  # ``evserver --trace 8080`` would serve 8000 into a file
            parser.error(f"--trace {args.trace}: that looks like a port; put the port first "
                         f"('evserver {args.trace} --trace') or name the file --trace=./FILE")
        if args.trace != "-":
            try:
                open(args.trace, "a").close()  # the server appends to it
            except OSError as error:
                parser.error(f"--trace: cannot write {args.trace!r}: {error.strerror or error}")
    tls_context = _tls_context(parser, args)
    return ServerConfig(
        tls_context=tls_context,
        tls_reload=None if tls_context is None else _tls_loader(args),
        root=os.path.abspath(args.directory),
        host=args.bind,
        port=args.port,
        model=args.model,
        selector=args.selector,
        workers=args.workers,
        port_sharing=args.port_sharing or config.DEFAULT_PORT_SHARING,
        index_names=tuple(args.index) if args.index else ("index.html",),
        listing=not args.no_listing,
        follow_symlinks=args.follow_symlinks,
        dotfiles=args.dotfiles,
        precompressed=not args.no_precompressed,
        gzip=args.gzip,
        headers=headers,
        cache_control=args.cache_control,
        cors=args.cors,
        error_pages=tuple(sorted(error_pages.items())),
        fallback=None if args.fallback is None else os.path.abspath(args.fallback),
        max_connections=args.max_connections,
        backlog=args.backlog,
        header_timeout=args.header_timeout,
        idle_timeout=args.idle_timeout,
        send_timeout=args.send_timeout,
        drain_timeout=args.drain_timeout,
        use_sendfile=not args.no_sendfile,
        stat_every_request=args.stat_every_request,
        quiet=args.quiet,
        access_log=args.access_log,
        log_format=args.log_format,
        stats_path=args.stats_path,
        metrics_path=args.metrics_path,
        health_path=args.health_path,
        limits=ParserLimits(max_body=args.max_body),
        verbose=args.verbose,
        trace=args.trace,
        nodelay=not args.no_nodelay,
        split_writes=args.split_writes,
    )


def _tls_context(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 ) -> ssl.SSLContext | None:
    """The HTTPS options checked and the context built (once: worker processes inherit it),
    or None for plain HTTP. A file that cannot be used is one line and status 2."""
    if args.tls_cert is None:
        for option in ("tls_key", "tls_password_file", "tls_no_tickets"):
            if getattr(args, option) not in (None, False):
                parser.error(f"--{option.replace('_', '-')} requires --tls-cert")
        return None
    if args.split_writes:
        parser.error("--split-writes is a plain-HTTP teaching switch; it does not combine with "
                     "--tls-cert")
    from evserver.net.tls import TLSSetupError, server_context

    try:
        return server_context(args.tls_cert, args.tls_key, args.tls_password_file,
                              tickets=not args.tls_no_tickets)
    except TLSSetupError as error:
        parser.error(str(error))


def _tls_loader(args: argparse.Namespace) -> Callable[[], ssl.SSLContext]:
    """What builds the context again from the same files (a master's reload)."""
    from evserver.net.tls import server_context

    return functools.partial(server_context, args.tls_cert, args.tls_key,
                             args.tls_password_file, tickets=not args.tls_no_tickets)


def _check_workers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What ``--workers`` cannot be combined with, each refused in one line."""
    sharing = args.port_sharing or config.DEFAULT_PORT_SHARING
    if sharing == "exclusive":
        selector = args.selector if args.model == "evented" else "auto"
        if not exclusive_registration_available(selector):
            parser.error("--port-sharing exclusive needs epoll's EPOLLEXCLUSIVE (Linux): "
                         "with the evented model, --selector epoll (or auto)")
    if sharing == "reuseport" and not hasattr(socket, "SO_REUSEPORT"):
        parser.error("--port-sharing reuseport needs SO_REUSEPORT, which this system lacks")
    if args.trace is not None:
        parser.error("--trace follows one event loop; with --workers every worker would "
                     "write into it")


def _cannot_listen(cfg: ServerConfig, error: OSError) -> int:
    where = f"{cfg.host or '*'}:{cfg.port}"
    print(f"evserver: cannot listen on {where}: {error.strerror or error}", file=sys.stderr)
    return 1


def _cannot_open_log(error: CannotOpenLog) -> int:
    print(f"evserver: {error}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv)
    level = logging.DEBUG if cfg.verbose else logging.WARNING if cfg.quiet else logging.INFO
    # Under a master every process logs to the same standard error: say which one speaks.
    who = "%(name)s[%(process)d]" if cfg.workers else "%(name)s"
    logging.basicConfig(level=level, format=f"%(asctime)s {who}: %(message)s", stream=sys.stderr)
    if cfg.workers:
        from evserver.servers.master import Master

        try:
            master = Master(cfg)
        except OSError as error:
            return _cannot_listen(cfg, error)
        return master.run()
    from evserver.servers import make_server

    try:
        server = make_server(cfg)
    except CannotOpenLog as error:
        return _cannot_open_log(error)
    except OSError as error:
        return _cannot_listen(cfg, error)
    signals_seen = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            server.flush_log_before_exit()  # what is buffered is already true: keep it
            os._exit(128 + signum)  # the user insists: no draining, no other cleanup
        server.shutdown()

    def on_reopen(signum: int, frame: FrameType | None) -> None:
        if server.access_log is not None:
            server.access_log.reopen()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGUSR1, on_reopen)
    print(server.banner(), file=sys.stderr, flush=True)
    warning = every_interface_warning(cfg.host)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
