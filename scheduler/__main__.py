"""``python -m scheduler``: see :mod:`scheduler.service`.

The scheduler re-executes itself with ``-OO`` (same pid, same arguments): a process that only
enqueues carries the code of the whole application, and dropping its docstrings keeps it ~5 MB
smaller (bench.scheduler). Assertions are off too; the scheduler does not rely on them.
"""

from __future__ import annotations

import os
import sys

if sys.flags.optimize < 2:
    os.execv(sys.executable, [sys.executable, "-OO", "-m", "scheduler", *sys.argv[1:]])

from scheduler.service import main

sys.exit(main())
