"""What the tests and the tools share; no tests here (the map is in ``tests/__init__.py``).

Import the modules themselves (``from tests.support.responses import exchange``): this package
imports nothing, so a tool that takes a standard-library-only module (``responses``, ``trees``,
``processes``, ``procfs``, ``waiting``) does not pull in ``evserver`` with it.
"""
