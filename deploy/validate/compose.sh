#!/usr/bin/env bash
# Compose: deploy/docker-compose.yml by `docker compose config` where the plugin exists,
# against the Compose specification schema (check-jsonschema), and our own checks (compose.py).
set -euo pipefail
source deploy/validate/lib.sh

compose_config() {
  CLERK_WEBHOOK_SECRET=whsec_dGVzdA== docker compose -f deploy/docker-compose.yml config -q || return 1
  if env -u CLERK_WEBHOOK_SECRET docker compose -f deploy/docker-compose.yml config -q 2>/dev/null; then
    echo "config succeeded without CLERK_WEBHOOK_SECRET"
    return 1
  fi
}
if docker compose version >/dev/null 2>&1; then
  check "Compose: docker compose config -q (and it refuses a missing CLERK_WEBHOOK_SECRET)" compose_config
else
  skip "Compose: docker compose config" "no docker compose plugin; the schema and Python checks below stand in"
fi
if have check-jsonschema; then
  check "Compose: deploy/docker-compose.yml valid against the Compose specification schema (check-jsonschema)" \
    "$(tool check-jsonschema)" --builtin-schema vendor.compose-spec deploy/docker-compose.yml
else
  skip "Compose: schema validation" "check-jsonschema not available"
fi
check "Compose: services, dependencies, interpolation (CLERK_WEBHOOK_SECRET required), ports, healthchecks" py compose
