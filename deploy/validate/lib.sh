# shellcheck shell=bash
# Sourced by deploy/validate.sh and by each of its steps (deploy/validate/*.sh).
# A step records each check as a line "STATUS<TAB>NAME<TAB>DETAIL" in $VALIDATE_OUT/results,
# and what it leaves unvalidated in $VALIDATE_OUT/not-validated; the driver reports them.

if [[ -z ${VALIDATE_OUT:-} ]]; then
  echo "run the steps through the driver: bash deploy/validate.sh [STEP...]" >&2
  exit 2
fi
export VALIDATE_TMP=$VALIDATE_OUT/tmp

say() { printf '%s\n' "$*"; }
indent() { sed 's/^/    /'; }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >>"$VALIDATE_OUT/results"; }
not_validated() { printf '%s\n' "$*" >>"$VALIDATE_OUT/not-validated"; }

# check NAME COMMAND...: runs COMMAND, records PASS/FAIL, shows its output on failure
# (always with VERBOSE=1).
check() {
  local name=$1 out rc=0
  shift
  say "-- $name"
  out=$("$@" 2>&1) || rc=$?
  if ((rc == 0)); then
    [[ -n ${VERBOSE:-} && -n $out ]] && printf '%s\n' "$out" | indent
    record PASS "$name"
  else
    printf '%s\n' "$out" | indent
    record FAIL "$name"
  fi
  return 0
}
skip() { say "-- $1: SKIPPED ($2)"; record SKIP "$1" "$2"; }

# Tools come from the driver's Python venv ($VALIDATE_BIN) or else from PATH.
have() { [[ -x ${VALIDATE_BIN:-/nonexistent}/$1 ]] || command -v "$1" >/dev/null 2>&1; }
tool() { if [[ -x ${VALIDATE_BIN:-/nonexistent}/$1 ]]; then printf '%s' "$VALIDATE_BIN/$1"; else command -v "$1"; fi; }

# py NAME ARGS...: runs deploy/validate/NAME.py with the driver's Python (PyYAML in it).
py() { "$VALIDATE_PY" "deploy/validate/$1.py" "${@:2}"; }
