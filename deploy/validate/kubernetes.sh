#!/usr/bin/env bash
# Kubernetes: deploy/kubernetes against the API schemas (kubernetes-validate), our own
# cross-checks (kubernetes.py), and the kustomize build.
set -euo pipefail
source deploy/validate/lib.sh

k8s_versions=(1.30.0 1.37.0)
mapfile -t manifests < <(find deploy/kubernetes -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml | sort)

if have kubernetes-validate; then
  for v in "${k8s_versions[@]}"; do
    check "Kubernetes: manifests valid against the $v schemas (kubernetes-validate --strict)" \
      "$(tool kubernetes-validate)" -k "$v" --strict --quiet "${manifests[@]}"
  done
else
  skip "Kubernetes: schema validation" "kubernetes-validate not available"
fi
check "Kubernetes: kustomization.yaml lists every manifest (secret.example.yaml excepted)" py kubernetes kustomization
check "Kubernetes: cross-checks (selectors, ports, probes, security contexts, secret keys, settings)" py kubernetes objects

kustomize_build() {
  local out=$VALIDATE_TMP/kustomized.yaml
  kubectl kustomize deploy/kubernetes >"$out" || return 1
  if have kubernetes-validate; then
    "$(tool kubernetes-validate)" -k "${k8s_versions[0]}" --strict --quiet "$out" || return 1
  fi
  echo "objects: $(grep -c '^kind:' "$out")"
}
if command -v kubectl >/dev/null; then
  check "Kubernetes: kubectl kustomize builds and its output validates" kustomize_build
else
  skip "Kubernetes: kustomize build" "kubectl not available"
fi
not_validated "Kubernetes admission and policy on a real cluster (schemas and kustomize only)"
