# shellcheck shell=bash
# Ports and HTTP probes for deploy/dev.sh and deploy/db.sh (sourced), with what a fresh
# Debian box has: ss (iproute2) or lsof when present, else bash's /dev/tcp.

# addr_port HOST:PORT / [V6]:PORT -> PORT
addr_port() { printf '%s' "${1##*:}"; }
# connect_host ADDR -> a host to connect to: a wildcard listen address means this machine.
connect_host() {
  local host=${1%:*}
  host=${host#[}
  host=${host%]}
  case $host in
    0.0.0.0 | "") host=127.0.0.1 ;;
    ::) host=::1 ;;
  esac
  printf '%s' "$host"
}

# port_in_use PORT: true when some process listens on TCP PORT (any address).
port_in_use() {
  if command -v ss >/dev/null; then
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
  elif command -v lsof >/dev/null; then
    lsof -nP -iTCP:"$1" -sTCP:LISTEN >/dev/null 2>&1
  else
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null
  fi
}

# port_holder PORT -> "NAME (pid N)" of what listens on PORT, when ss or lsof can tell
# (for another user's process they need root); nothing otherwise.
port_holder() {
  local out name="" pid=""
  if command -v ss >/dev/null; then
    out=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n1)
    [[ $out =~ \"([^\"]*)\",pid=([0-9]+) ]] && name=${BASH_REMATCH[1]} pid=${BASH_REMATCH[2]}
  fi
  if [[ -z $pid ]] && command -v lsof >/dev/null; then
    out=$(lsof -nP -iTCP:"$1" -sTCP:LISTEN -Fpc 2>/dev/null | head -n2 | tr '\n' ' ')
    [[ $out =~ p([0-9]+)\ c([^ ]+) ]] && name=${BASH_REMATCH[2]} pid=${BASH_REMATCH[1]}
  fi
  [[ -n $pid ]] || return 0
  # Both report the kernel's 15-character command name; the executable's is whole.
  out=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [[ -n $out ]] && name=${out##*/}
  printf '%s (pid %s)' "$name" "$pid"
}

# free_port_after PORT [SKIP...] -> the first port above PORT that nothing listens on and
# that is not one of SKIP (ports promised to something else).
free_port_after() {
  local p=$1
  shift
  for _ in $(seq 100); do
    p=$((p + 1))
    [[ " $* " == *" $p "* ]] && continue
    port_in_use "$p" || { printf '%s' "$p"; return 0; }
  done
  return 1
}

# http_status ADDR PATH -> the HTTP status code a GET of PATH on ADDR answers (within 2 s),
# or nothing if nothing answers.
http_status() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$0" >&3
    read -r _ code _ <&3 && printf "%s" "$code"' "$(connect_host "$1")" "$(addr_port "$1")" "$2" 2>/dev/null || true
}
