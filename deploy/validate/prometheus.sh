#!/usr/bin/env bash
# Prometheus: deploy/prometheus/alerts.yml by our own checks (alerts.py), promtool check rules,
# and its unit tests (deploy/prometheus/alerts.test.yml).
set -euo pipefail
source deploy/validate/lib.sh

check "Prometheus: alerts.yml structure, docs/alerts.md copy, metric names exported, runbook anchors" py alerts
if [[ -n ${VALIDATE_PROMTOOL:-} ]]; then
  check "Prometheus: promtool check rules" "$VALIDATE_PROMTOOL" check rules deploy/prometheus/alerts.yml
  check "Prometheus: promtool test rules (each alert fires, and stays quiet, on synthetic series)" \
    "$VALIDATE_PROMTOOL" test rules deploy/prometheus/alerts.test.yml
else
  skip "Prometheus: promtool check/test rules" "promtool not available; YAML and structure checks only"
fi
