"""deploy/docker-compose.yml beyond its schema: the four services, their dependencies,
Compose interpolation (CLERK_WEBHOOK_SECRET required), settings, ports and healthchecks."""

import os
import re

from common import err, load, port_of, run, seconds, settings

COMPOSE = "deploy/docker-compose.yml"
VAR = re.compile(
    r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}$]|\$\$)*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


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


def compose():
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
    for name, cmd, addr_key, default_port in (
        ("ingest", "clerk-sync-ingest", "LISTEN_ADDR", 8080),
        ("worker", "clerk-sync-worker", "METRICS_ADDR", 9091),
    ):
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
    if "${CLERK_WEBHOOK_SECRET:?" not in str(
        raw["services"]["ingest"]["environment"].get("CLERK_WEBHOOK_SECRET")
    ):
        err("compose: ingest CLERK_WEBHOOK_SECRET should be ${CLERK_WEBHOOK_SECRET:?...}")
    if "CLERK_WEBHOOK_SECRET" in services["worker"].get("environment", {}):
        err("compose: worker should not get CLERK_WEBHOOK_SECRET")
    if seconds(services["worker"].get("stop_grace_period", "10s")) < 35:
        err("compose: worker stop_grace_period should exceed the 30 s drain")


if __name__ == "__main__":
    run({"compose": compose})
