"""evserver's test suite: the layers one by one, then whole servers, then hostile clients.

The folders follow the architecture (each is a package, so tests import shared code as
``tests.<folder>.<module>``):

``unit/``
    Each layer on its own, without a running server: the HTTP parser (and its request corpus
    in ``unit/corpus/``), responses and dates, the sans-I/O protocol, the static file handler
    (with its content codings and the options of a folder's operator), the timers, reactor,
    loop trace, transport, listener and blocking send helpers, TLS, the evented driver against
    its table of states (``test_connection_life.py``), the access log, the workers' shared board
    (``test_fleet.py``), the hot path's shortcuts and its hand-inlined copies (each pinned to
    what it copies), and ``test_layers.py`` (which layer may import which).
``servers/``
    Whole servers over real sockets: what every model shares (``test_e2e.py``, once per model
    and selector), each model's own promises (evented, threaded, iterative, the blocking driver
    both blocking models share), ``select()``'s descriptor limit, the command line, the options
    labs use (``test_lab_options.py``: the Nagle switches, ``--trace``, ``-v``), serving a
    folder (``test_serve_live.py``, ``test_serve_cli.py``: compression, fields, CORS, pages,
    fallback, dotfiles, with curl and Python's clients), and worker processes under a master
    (``test_workers.py``: supervision, reload under load, port sharing).
``hostile/``
    Hostile clients against every model: request smuggling, paths out of the root, slow and
    vanishing clients, resource exhaustion, files changing under the server, fuzzing.
``tooling/``
    The tools (``tools/``; the state diagrams against the code's tables in
    ``test_statediagram.py``), a quick run of the experiment runner, and README's commands.
``support/``
    No tests: what the tests and the tools share. Server starters in this process
    (``servers.py``) and in a child process (``processes.py``), document trees (``trees.py``),
    raw clients (``clients.py``), a retrying keep-alive client under load (``load.py``), the
    strict HTTP response reader (``responses.py``), ``/proc`` readings (``procfs.py``),
    deadlines (``waiting.py``), certificates and TLS clients (``tls.py``), and the static
    handler's test tree (``static.py``). The modules that tools import use only the standard
    library.

``conftest.py`` holds the fixtures (``docroot``, ``start_server``, ``server``, ``model_name``,
``start_process``), built on ``support/``; pytest applies it to every folder.

Run everything with ``python -m pytest``; one part with ``python -m pytest tests/unit`` (the
quickest), ``tests/servers``, ``tests/hostile`` or ``tests/tooling``; one file with
``python -m pytest tests/unit/test_parser.py``; and skip the long tests with ``-m "not slow"``.
"""
