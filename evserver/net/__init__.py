"""The network layer: sockets, buffers and ``os.sendfile``; never HTTP.

- ``listener``: the listening socket (address family, backlog, options) and accept-time settings.
- ``transport``: the non-blocking write queue of one connection (bytes and file regions).
- ``blocking``: send helpers for the blocking (threaded and iterative) models.
"""
