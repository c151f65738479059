"""Grafana dashboards as code.

Each dashboard is a module building it with ``grafana_foundation_sdk``; :mod:`deploy.grafana.build`
renders them to the committed JSON files in ``deploy/grafana/dashboards/``, which Grafana loads
through ``deploy/grafana/provisioning/``. Regenerate after a change with
``.venv/bin/python -m deploy.grafana``; ``--check`` fails when the committed JSON is stale.

Every query reads metrics the code exports (docs/operations.md, "Metrics"); the e2e test
``tests/e2e/test_prometheus.py`` runs each one against a real Prometheus scraping the real
processes.
"""
