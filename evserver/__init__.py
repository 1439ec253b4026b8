"""evserver: an HTTP/1.1 static-file server written from raw sockets, for teaching and experiments.

The design in one picture. Each folder answers "what does this code know about?"; an arrow is
"imports", and imports flow one way only (``tests/unit/test_layers.py`` walks the package with
``ast`` and fails the build when a module imports a layer above it)::

    cli, config ──> servers ──> drivers ──┬─> protocol ──> http     bytes and RFC 9110/9112 only
                      │                   ├─> net ──────> bodies    sockets, sendfile, buffers
                      │                   └─> event                 selectors, timers, the clock
                      └──> static ──> http, bodies                  files and HTTP semantics

- ``http/``: the request parser (fed bytes, gives events; never reads a socket), the response
  head, the one table of reason phrases, errors that carry their status.
- ``bodies``: the contract between handler and transport: a body is bytes or a file region.
- ``static/``: the file handler, ``request -> Response``; it never sends anything. Compression
  (precompressed sidecars, gzip) will be chosen here, since it is a choice of representation.
- ``protocol``: one connection's conversation, sans I/O: ``receive(bytes) -> items to send``,
  keep-alive, pipelining, error -> response -> close.
- ``event/``: the single-threaded reactor on ``selectors`` and its timer heap.
- ``net/``: the listener, the non-blocking transport (write queue, ``os.sendfile``), the blocking
  send helpers, and TLS (``net/tls.py``): a transport that encrypts, under drivers that only pick
  it at accept and run its handshake; the protocol and the file handler never see it.
- ``drivers/``: how bytes move between one socket and its protocol: ``evented`` (callbacks from
  the reactor, never blocking) and ``blocking`` (recv and send with kernel timeouts).
- ``servers/``: concurrency only: iterative, threaded and evented, one sentence each (see
  ``servers/__init__.py``), and worker processes (``master``: a process forking N servers of any
  model and supervising them; ``worker``: a worker's life; ``fleet``: the memory they share),
  one more way of running the same drivers. Only this layer may use threads, ``fork`` or
  signals.
- ``cli``, ``config``, ``accesslog``, ``stats``, ``statspage``: thin edges (argv, settings, log
  lines, counters).
"""

__version__ = "0.1.0"
SERVER_NAME = f"evserver/{__version__}"
