"""deploy/prometheus/alerts.yml: the copy in docs/alerts.md, each rule's labels and
annotations, runbook anchors, and that every metric it reads is one the code exports.
PromQL and the rules' behaviour are promtool's job (check rules, test rules)."""

import glob
import re

from common import anchors, err, load, note, read, run


def alerts():
    path = "deploy/prometheus/alerts.yml"
    text = read(path)
    doc = load(path)
    # docs/alerts.md carries the same rules, verbatim.
    md = read("docs/alerts.md")
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
        exported |= set(re.findall(r'"(clerk_sync_[a-z0-9_]+)"', read(src)))
    for m in sorted(set(re.findall(r"\b(clerk_sync_[a-z0-9_]+)", text))):
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        if m not in exported and base not in exported:
            err(f"{path}: metric {m} is not exported by any crate")
    note(f"{len(names)} alerts: {', '.join(sorted(names))}")


if __name__ == "__main__":
    run({"alerts": alerts})
