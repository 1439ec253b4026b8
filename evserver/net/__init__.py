"""The network layer: sockets, buffers and ``os.sendfile``; never HTTP.

- ``listener``: the listening socket (address family, backlog, options) and accept-time settings.
- ``transport``: the non-blocking write queue of one connection (bytes and file regions).
- ``blocking``: send helpers for the blocking (threaded and iterative) models.
- ``sendfile``: what both senders agree on about files (``os.sendfile``'s limits and errors,
  ``MSG_MORE``, the read+send fallback's chunk).
"""
