"""evserver: an HTTP/1.1 static-file server written from raw sockets, for teaching and experiments.

The package is layered; each folder answers "what does this code know about?"::

    cli ──> servers ──> connection ──> protocol ──> http      (bytes and RFC 9112 only)
                    │              ├─> net      ──> bodies    (sockets, sendfile)
                    │              └─> event                  (selectors, timers, time)
                    └─> static ──> http, bodies               (files and HTTP semantics)

``tests/test_layers.py`` walks the package with ``ast`` and keeps this picture true.
"""

__version__ = "0.1.0"
SERVER_NAME = f"evserver/{__version__}"
