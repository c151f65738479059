"""CyberVPN / External services: the dependencies' health probes, circuit breakers, and the calls to
Remnawave and Crypto Pay by route or method and status."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from deploy.grafana.panels import BREAKER_STATES, RATE, Panel, Query, board, graph, row, single

UP = {0: ("down", "red"), 1: ("up", "green")}
SERVICES = ("remnawave", "postgresql", "redis", "rabbitmq", "telegram")
"""What check_external_services probes (actors/monitoring/services.py); Crypto Pay is not probed."""


def _probes() -> list[Panel]:
    tiles: list[Panel] = [
        single(
            name,
            f"The last probe of {name} (check_external_services, every 60 s).",
            "none",
            Query(f'max(cybervpn_service_up{{service="{name}"}})'),
            mappings=UP,
            span=4,
        )
        for name in SERVICES
    ]
    tiles.append(
        single(
            "cryptobot breaker",
            "Crypto Pay has no probe: its circuit breaker.",
            "none",
            Query('max(cybervpn_breaker_state{service="cryptobot"}) or vector(0)'),
            mappings=BREAKER_STATES,
            span=4,
        )
    )
    return [
        *tiles,
        graph(
            "Probe results",
            "1 up, 0 down, per dependency.",
            "none",
            Query("max by (service) (cybervpn_service_up)", "{{service}}"),
        ),
        graph(
            "Probe latency",
            "The last probe's latency.",
            "s",
            Query("max by (service) (cybervpn_service_latency_seconds)", "{{service}}"),
        ),
        graph(
            "Circuit breakers",
            "0 closed, 1 half-open, 2 open; worst of the live worker processes.",
            "none",
            Query("max by (service) (cybervpn_breaker_state)", "{{service}}"),
        ),
        graph(
            "Breaker openings",
            "Closed to open, per service.",
            "short",
            Query(f"sum by (service) (increase(cybervpn_breaker_opens_total[{RATE}]))", "{{service}}"),
            bars=True,
        ),
    ]


def _calls() -> list[Panel]:
    remnawave = f"rate(cybervpn_remnawave_requests_total[{RATE}])"
    return [
        graph(
            "Remnawave calls by status",
            "HTTP status, or error when no answer came; per second.",
            "ops",
            Query(f"sum by (status) ({remnawave})", "{{status}}"),
        ),
        graph(
            "Remnawave calls by route",
            "Ids shown as {id}; per second.",
            "ops",
            Query(f"sum by (route) ({remnawave})", "{{route}}"),
        ),
        graph(
            "Remnawave failing calls",
            "Share of calls with no answer or a 5xx.",
            "percentunit",
            Query(
                f'sum(rate(cybervpn_remnawave_requests_total{{status=~"error|5.."}}[{RATE}])) '
                f"/ sum({remnawave})",
                "failing",
            ),
        ),
        graph(
            "Crypto Pay calls",
            "By method and HTTP status (error: no answer); per second.",
            "ops",
            Query(
                f"sum by (method, status) (rate(cybervpn_cryptobot_requests_total[{RATE}]))",
                "{{method}} {{status}}",
            ),
        ),
    ]


def dashboard() -> Dashboard:
    """The external services dashboard."""
    return board(
        "cybervpn-external",
        "CyberVPN / External services",
        "Health probes, circuit breakers, Remnawave and Crypto Pay calls.",
        [(row("Dependencies"), _probes()), (row("Calls"), _calls())],
    )
