"""The course lab: nine experiments, one command each (``python tools/lab.py``).

What this package knows: the labs, one module each, and their order in the guide
(``README.rst`` in this folder). What it must not know: how a run is framed and reported
(``base``), how servers are started and measured (the rest of ``tools``).

Each module defines ``LAB``, a :class:`tools.labs.base.Lab`: its name, question, expected
result, what to look for, and the ``measure`` function that runs it.
"""

from __future__ import annotations

from tools.labs import (
    backpressure,
    head_of_line,
    keep_alive,
    models,
    nagle,
    open_closed,
    selector_cost,
    sendfile_cost,
    workers,
)
from tools.labs.base import Lab

LABS: tuple[Lab, ...] = (
    selector_cost.LAB,
    models.LAB,
    head_of_line.LAB,
    sendfile_cost.LAB,
    nagle.LAB,
    keep_alive.LAB,
    backpressure.LAB,
    open_closed.LAB,
    workers.LAB,
)
"""Every lab that is ready, in the guide's order."""

BY_NAME = {lab.name: lab for lab in LABS}
