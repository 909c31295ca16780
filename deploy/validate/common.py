"""Shared by the Python checks of deploy/validate.sh: YAML loading that rejects duplicate
keys, the settings README.md documents, Markdown anchors, and the run() that prints a
check's notes and errors and sets its exit status. Run from the repository root."""

import re
import sys

import yaml

errors = []
notes = []


def err(msg):
    errors.append(msg)


def note(msg):
    notes.append(msg)


def run(checks):
    """Runs checks[sys.argv[1]] (or the only one); exit 1 if it reported an error."""
    name = sys.argv[1] if len(sys.argv) > 1 else next(iter(checks))
    try:
        checks[name]()
    except Exception as e:  # noqa: BLE001 - a crash is a failure, with its reason
        err(f"{type(e).__name__}: {e}")
    for n in notes:
        print(n)
    for e in errors:
        print("ERROR:", e)
    sys.exit(1 if errors else 0)


class Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML keeps the last one silently)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for k, _ in node.value:
        if k.tag == "tag:yaml.org,2002:merge":
            continue
        key = getattr(k, "value", None)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", k.start_mark)
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


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def settings():
    """The settings of README.md's Configuration table, plus RUST_LOG."""
    names = set()
    for line in read("README.md").splitlines():
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
    for line in read(md).splitlines():
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
