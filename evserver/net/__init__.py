"""The network layer: sockets, buffers, ``os.sendfile`` and TLS; never HTTP.

- ``listener``: the listening socket (address family, backlog, options) and accept-time settings.
- ``transport``: the non-blocking write queue of one connection (bytes and file regions).
- ``blocking``: send helpers for the blocking (threaded and iterative) models.
- ``sendfile``: what both senders agree on about files (``os.sendfile``'s limits and errors,
  ``MSG_MORE``, the read+send fallback's chunk).
- ``tls``: HTTPS: the context (built once), the server's TLS socket (handshake, close_notify,
  never clear text), the transport that encrypts, the blocking models' TLS sender.
"""
