"""deploy/systemd: the keys each unit must have (sandboxing, binaries, ordering, stop
timeouts) and the environment file example against README.md's settings. Syntax and
unknown keys are systemd-analyze verify's job."""

import os
import re

from common import EXTRA_SETTINGS, err, run, seconds, settings

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
    "DynamicUser": "yes",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "SystemCallArchitectures": "native",
}


def systemd():
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
    for name, binary, stop in (
        ("clerk-sync-ingest", "clerk-sync-ingest", 15),
        ("clerk-sync-worker", "clerk-sync-worker", 45),
    ):
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


if __name__ == "__main__":
    run({"systemd": systemd})
