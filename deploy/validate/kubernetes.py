"""Kubernetes manifests under deploy/kubernetes, beyond their schemas: kustomization.yaml
lists every manifest; selectors, ports, probes, security contexts, secret keys and settings
agree with each other and with README.md.

  kubernetes.py kustomization | objects
"""

import glob
import os

from common import EXTRA_SETTINGS, err, load, load_all, note, port_of, run, settings

K8S = "deploy/kubernetes"
PLACEHOLDER_IMAGE = "ghcr.io/example/clerk-sync:latest"


def kustomization():
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


def objects():
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
        err(
            f"secret.example.yaml: keys {sorted(secret_keys)}, expected DATABASE_URL and CLERK_WEBHOOK_SECRET"
        )
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
                err(
                    f"{f}: {c['name']}: image {c.get('image')!r}, expected the placeholder {PLACEHOLDER_IMAGE}"
                )
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
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(ports.get("metrics")):
        err("ingest: prometheus.io annotations should scrape the metrics port (METRICS_ADDR)")
    ingest_metrics = {e["name"]: e.get("value") for e in c.get("env", [])}.get("METRICS_ADDR")
    if ingest_metrics is None or ports.get("metrics") != port_of(ingest_metrics):
        err("ingest: container port metrics differs from its METRICS_ADDR")
    if ports.get("metrics") == ports.get("http"):
        err("ingest: /metrics must not share the public http port")
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


if __name__ == "__main__":
    run({"kustomization": kustomization, "objects": objects})
