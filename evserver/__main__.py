"""``python -m evserver`` is the same as the ``evserver`` command."""

from evserver.cli import main

raise SystemExit(main())
