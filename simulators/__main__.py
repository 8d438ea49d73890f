"""``python -m simulators …`` is ``stallwatch simulate …``."""

from simulators.cli import simulate_main

raise SystemExit(simulate_main())
