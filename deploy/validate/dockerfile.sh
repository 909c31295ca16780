#!/usr/bin/env bash
# Dockerfile: our own checks (dockerfile.py), hadolint, and `docker build` when asked for.
set -euo pipefail
source deploy/validate/lib.sh

check "Dockerfile: stages, build command, runtime user, ports, CMD; .dockerignore" py dockerfile
if have hadolint; then
  check "Dockerfile: hadolint (ignores only what the file marks with '# hadolint ignore=')" \
    "$(tool hadolint)" --no-color deploy/Dockerfile
else
  skip "Dockerfile: hadolint" "hadolint not available"
fi
if [[ -n ${VALIDATE_DOCKER_BUILD:-} ]] && docker info >/dev/null 2>&1; then
  check "Dockerfile: docker build" docker build -f deploy/Dockerfile -t clerk-sync:validate .
else
  not_validated "the image build itself (no Docker engine here; VALIDATE_DOCKER_BUILD=1 runs it where there is one)"
fi
