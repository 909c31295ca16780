#!/usr/bin/env bash
# systemd: the units' required keys (systemd.py), then systemd-analyze verify and security
# on copies whose binaries and environment file point at stubs.
set -euo pipefail
source deploy/validate/lib.sh

check "systemd: units and environment example have the required keys" py systemd

stubs=$VALIDATE_TMP/systemd
systemd_verify() {
  local f out rc=0
  mkdir -p "$stubs/bin" "$stubs/units"
  for b in clerk-sync clerk-sync-ingest clerk-sync-worker; do
    printf '#!/bin/sh\nexit 0\n' >"$stubs/bin/$b" && chmod +x "$stubs/bin/$b" || return 1
  done
  : >"$stubs/clerk-sync.env"
  for f in deploy/systemd/*.service; do
    sed -e "s#/usr/local/bin/#$stubs/bin/#g" -e "s#/etc/clerk-sync/clerk-sync.env#$stubs/clerk-sync.env#g" \
      "$f" >"$stubs/units/$(basename "$f")" || return 1
  done
  # verify warns (exit 0) about unknown keys and bad values: any output is a failure.
  out=$(systemd-analyze verify --man=no "$stubs"/units/*.service 2>&1) || rc=$?
  [[ -n $out ]] && printf '%s\n' "$out"
  [[ $rc == 0 && -z $out ]]
}
systemd_security() {
  local f rc=0
  for f in "$stubs"/units/*.service; do
    systemd-analyze security --offline=yes --threshold=20 "$f" >"$VALIDATE_TMP/security.out" 2>&1 || rc=1
    tail -n1 "$VALIDATE_TMP/security.out"
  done
  return $rc
}
if command -v systemd-analyze >/dev/null; then
  check "systemd: systemd-analyze verify (stub binaries; any warning fails)" systemd_verify
  if [[ -d $stubs/units ]]; then
    check "systemd: exposure level at most 2.0 (systemd-analyze security --offline)" systemd_security
  fi
else
  skip "systemd: systemd-analyze verify / security" "systemd-analyze not available; only the key checks above ran"
fi
