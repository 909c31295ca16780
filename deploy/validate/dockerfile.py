"""deploy/Dockerfile: stages, build command, runtime user, ports, CMD; and .dockerignore.
Dockerfile lint in general is hadolint's job."""

import re

from common import err, read, run


def dockerfile():
    text = read("deploy/Dockerfile")
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    if len(froms) < 2:
        err("Dockerfile: expected a multi-stage build (two FROM lines)")
    else:
        if not re.match(r"FROM rust:\S*slim\S* AS builder$", froms[0], re.I):
            err(f"Dockerfile: the first stage should be a slim rust image named builder: {froms[0]}")
        if not re.match(r"FROM debian:bookworm-slim\b", froms[-1], re.I):
            err(f"Dockerfile: the runtime should be debian:bookworm-slim: {froms[-1]}")
    runtime = text[text.rfind("\nFROM ") :]
    needs = {
        "SQLX_OFFLINE=true": r"SQLX_OFFLINE=true",
        "cargo build --release --locked --bins": r"cargo build --release --locked --bins",
        "all three binaries copied out": r"clerk-sync\b.*clerk-sync-ingest.*clerk-sync-worker",
        "COPY --from=builder into /usr/local/bin": r"COPY --from=builder \S+ /usr/local/bin/",
        "ca-certificates only": r"install -y --no-install-recommends ca-certificates\s",
        "a uid 10001 user": r"useradd [^\n]*--uid 10001",
        "USER 10001 (numeric)": r"\nUSER 10001(:10001)?\n",
        "EXPOSE 8080 9091 9092": r"\nEXPOSE 8080 9091 9092\n",
        'CMD ["clerk-sync-ingest"]': r'\nCMD \["clerk-sync-ingest"\]',
    }
    for what, rx in needs.items():
        where = runtime if what.startswith(("USER", "EXPOSE", "CMD", "ca-", "a uid")) else text
        if not re.search(rx, where, re.S):
            err(f"Dockerfile: {what} not found")
    if re.search(r"^\s*USER\s+(root|0)\b", runtime, re.M):
        err("Dockerfile: the runtime stage must not run as root")
    ignore = {
        l.strip().rstrip("/")
        for l in read(".dockerignore").splitlines()
        if l.strip() and not l.startswith("#")
    }
    for d in ("target", ".local", ".git"):
        if d not in ignore:
            err(f".dockerignore: {d}/ missing")


if __name__ == "__main__":
    run({"dockerfile": dockerfile})
