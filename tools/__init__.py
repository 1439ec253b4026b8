"""Experiment tools for evserver: they drive servers from the outside and never import them.

What this package knows: processes, sockets, ``/proc``, the load generators ``wrk`` and Locust,
and how to turn their numbers into tables and plots. What it must not know: anything inside
``evserver`` -- a server is a command line, a port and (optionally) a stats URL, so that
``python -m http.server`` and nginx can be measured exactly like evserver.

Modules:

- ``docroot``    -- deterministic document root (files from 1 KiB to 16 MiB, folders, an index)
- ``holdconns``  -- opens and holds N idle keep-alive connections, reports how many held
- ``procstat``   -- samples a process tree once a second from ``/proc``
- ``servers``    -- starts and stops evserver, ``http.server`` and nginx as pinned children
- ``wrkrun``     -- runs ``wrk`` and parses its output
- ``report``     -- medians, ratios, Markdown tables; ``plots`` -- PNG figures
- ``cores``      -- which core the server gets and which the load generators get
- ``experiment`` -- the one command: ``compare`` (a sweep) and ``bench`` (the README's table)
- ``lab``        -- the course lab's command (``list``, ``run NAME``); the labs themselves, one
  module each, and their guide are in ``labs/``
- ``openloop``   -- a constant-rate client whose latency counts from each request's due time
- ``balancer``   -- evserver instances behind HAProxy on this machine (``haproxy.cfg.template``)
- ``statediagram`` -- Graphviz diagrams of the parser's and a connection's states; unlike the
  rest it reads ``evserver``'s code, since it draws the tables found there
"""
