#!/usr/bin/env bash
# YAML: every *.yml/*.yaml under deploy/ and the ```yaml blocks of docs/*.md, by yamllint
# (deploy/validate/yamllint.yml), else by PyYAML with duplicate keys rejected.
set -euo pipefail
source deploy/validate/lib.sh

mapfile -t files < <(find deploy \( -name '*.yml' -o -name '*.yaml' \) -type f | sort)
mapfile -t blocks < <(py yaml_check blocks "$VALIDATE_TMP/docs")
if ((${#files[@]} == 0)); then
  record FAIL "YAML: no *.yml/*.yaml files under deploy/"
elif have yamllint; then
  check "YAML: yamllint --strict on every *.yml/*.yaml under deploy/ and the YAML blocks in docs/ (syntax, duplicate keys, indentation)" \
    "$(tool yamllint)" --strict --format standard -c deploy/validate/yamllint.yml "${files[@]}" "${blocks[@]}"
else
  check "YAML: every *.yml/*.yaml under deploy/ and YAML blocks in docs/ parse (duplicate keys rejected; yamllint not available)" \
    py yaml_check parse "${files[@]}" "${blocks[@]}"
fi
