"""Grafana dashboards as code; each module writes its committed JSON beside it."""
