"""Deployment artefacts kept as code: Prometheus rules and config (``deploy/prometheus``) and the
Grafana dashboards with their generator (``deploy/grafana``, ``python -m deploy.grafana``)."""
