"""YAML for deploy/validate.sh.

yaml_check.py blocks DIR    writes each ```yaml block of docs/*.md to DIR, for the linter
yaml_check.py parse FILE... parses each file, duplicate keys rejected (used when yamllint
                            is not available)
"""

import glob
import os
import re
import sys

import yaml

from common import Loader


def blocks(out):
    os.makedirs(out, exist_ok=True)
    for md in sorted(glob.glob("docs/*.md")):
        with open(md, encoding="utf-8") as f:
            found = re.findall(r"```ya?ml\n(.*?)```", f.read(), re.S)
        for i, block in enumerate(found, 1):
            path = os.path.join(out, f"{os.path.basename(md)}.block{i}.yaml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(block)
            print(path)


def parse(files):
    failed = 0
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                n = len([d for d in yaml.load_all(f, Loader=Loader) if d is not None])
            print(f"{path}: {n} document(s)")
        except Exception as e:  # noqa: BLE001 - any error is this file's failure
            print(f"ERROR: {path}: {e}")
            failed += 1
    return failed


if __name__ == "__main__":
    if sys.argv[1] == "blocks":
        blocks(sys.argv[2])
    else:
        sys.exit(1 if parse(sys.argv[2:]) else 0)
