"""docs/supabase.md and docs/alerts.md: the repository paths they name exist, and their
links (relative files, docs/operations.md anchors) lead somewhere."""

import os
import re

from common import anchors, err, read, run


def docs():
    ops = anchors("docs/operations.md")
    for md in ("docs/supabase.md", "docs/alerts.md"):
        if not os.path.isfile(md):
            err(f"{md} missing")
            continue
        text = read(md)
        for p in sorted(
            set(re.findall(r"(?<![\w/.-])((?:deploy|docs|crates|migrations)/[\w./-]*[\w])", text))
        ):
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


if __name__ == "__main__":
    run({"docs": docs})
