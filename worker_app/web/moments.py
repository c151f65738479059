"""How the dashboard shows a moment to a person: how long ago (or until) and when exactly.

:func:`moment` renders ``<time datetime="2026-12-07T22:53:15Z" title="…">3 min ago ·
2026-12-07 22:53:15 UTC</time>``: the server writes the absolute part in UTC; the dashboard's one
script (``dashboard_static/moments.js``, served by ``worker-app serve`` itself and allowed by the
Content-Security-Policy as ``script-src 'self'``) rewrites it into the viewer's own time zone. Without
the script the page still reads correctly, in UTC. The relative part is the server's, as of the
page's render (pages that change refresh themselves).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from markupsafe import Markup

from worker_app.timefmt import utc_stamp


def ago(seconds: float) -> str:
    """``seconds`` in the past as ``just now``, ``42 s ago``, ``3 min ago``, ``5 h ago``, ``2 d ago``;
    a negative value is in the future (``in 3 min``)."""
    future, span = seconds < 0, abs(seconds)
    if span < 1:
        return "just now"
    if span < 60:
        text = f"{span:.0f} s"
    elif span < 3600:
        text = f"{span // 60:.0f} min"
    elif span < 86400 * 2:
        text = f"{span / 3600:.0f} h" if span >= 36000 else f"{span / 3600:.1f} h".replace(".0 h", " h")
    else:
        text = f"{span / 86400:.0f} d"
    return f"in {text}" if future else f"{text} ago"


def moment(value: datetime | float | None, now: float | None = None) -> Markup:
    """``value`` (an aware datetime or epoch seconds; ``None`` → ``-``) as a ``<time>`` element."""
    if value is None:
        return Markup("-")
    at = value.timestamp() if isinstance(value, datetime) else float(value)
    iso = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    stamp = utc_stamp(at)
    relative = ago((time.time() if now is None else now) - at)
    return Markup('<time datetime="{}" title="{} UTC">{} · <span class="abs">{} UTC</span></time>').format(
        iso, stamp, relative, stamp
    )
