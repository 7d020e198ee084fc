"""Dashboards and alerts as code: the Grafana dashboard, the Prometheus alert rules and their
PrometheusRule in deploy/monitoring are generated from here (`credit-risk monitoring`).

It reads the service only through the series it publishes (docs/operations.md lists them): the
queries here are checked against a real Prometheus scraping a real server
(tests/service/test_monitoring.py), not against the metric objects.
"""
