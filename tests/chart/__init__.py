"""Helm chart tests: charts/trustwire rendered and linted with the real Helm v4 engine."""
