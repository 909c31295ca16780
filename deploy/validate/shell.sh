#!/usr/bin/env bash
# Shell: shellcheck on the scripts under deploy/ (this validator's included).
set -euo pipefail
source deploy/validate/lib.sh

mapfile -t scripts < <(find deploy -name '*.sh' -type f | sort)
if have shellcheck; then
  # -x follows `source` into deploy/validate/lib.sh (paths are relative to the repository root).
  check "Shell: shellcheck on every deploy/**/*.sh" "$(tool shellcheck)" -x -P SCRIPTDIR:. "${scripts[@]}"
else
  skip "Shell: shellcheck" "shellcheck not available"
fi
