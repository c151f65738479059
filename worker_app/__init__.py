"""CyberVPN Task Worker.

``dramatiq worker_app`` imports this package: it builds the broker from the settings and installs
it *before* any actor module is imported (Dramatiq would otherwise create a default localhost
broker), then imports every domain module in :mod:`actors`. No network I/O happens here.
"""

from __future__ import annotations

from worker_app.bootstrap import bootstrap

broker = bootstrap()

import actors  # noqa: E402,F401  (registers every actor on the broker above)

__all__ = ["broker"]
