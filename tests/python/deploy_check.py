"""Reads canopy's shipped manifests for tests/deploy.rs.

  deploy_check.py rules PROMETHEUSRULE.yaml OUT.yaml   the PrometheusRule's groups as a promtool rule file
  deploy_check.py manifests BUILT.yaml                 structural checks of `kubectl kustomize` output;
                                                       prints the kinds found, exits 1 naming each problem
  deploy_check.py commands BUILT.yaml                  each CronJob (its schedule) and ServingRuntime with its
                                                       containers' args, env and mounts, as JSON, for a test
                                                       to run them as they are
"""
import json
import sys

import yaml


def rules(src, out):
    with open(src) as f:
        doc = yaml.safe_load(f)
    assert doc["kind"] == "PrometheusRule", f"{src} is a {doc['kind']}, not a PrometheusRule"
    with open(out, "w") as f:
        yaml.safe_dump({"groups": doc["spec"]["groups"]}, f, sort_keys=False)


def canopy_containers(doc):
    spec = doc.get("spec", {})
    if doc["kind"] in ("DaemonSet", "Deployment", "StatefulSet"):
        pod = spec["template"]["spec"]
        return pod, pod.get("containers", [])
    if doc["kind"] == "Prometheus":
        return spec, [c for c in spec.get("containers", []) if c["name"] == "canopy"]
    if doc["kind"] == "ServingRuntime":
        return spec, spec.get("containers", [])
    if doc["kind"] == "CronJob":
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        return pod, pod.get("containers", [])
    return None, []


def flag(args, name):
    """The value of `--name VALUE` or `--name=VALUE` in a container's args."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None


def trained_paths(docs):
    """The model folders, as paths inside model-storage-pvc, that the CronJobs' `canopy train`
    containers write: OUT/MODEL, with OUT taken relative to where the claim is mounted."""
    paths = {}
    for d in docs:
        if d["kind"] != "CronJob":
            continue
        pod, containers = canopy_containers(d)
        claims = {v["name"] for v in pod.get("volumes", [])
                  if v.get("persistentVolumeClaim", {}).get("claimName") == "model-storage-pvc"}
        for c in containers:
            args = c.get("args", [])
            if not args or args[0] != "train":
                continue
            model, out = flag(args, "--model"), flag(args, "--out")
            for m in c.get("volumeMounts", []):
                root = m["mountPath"].rstrip("/") + "/"
                if m["name"] in claims and not m.get("subPath") and (out + "/").startswith(root):
                    inside = out[len(root):].strip("/")
                    paths[f"{inside}/{model}" if inside else model] = f"{d['metadata']['name']}/{c['name']}"
    return paths


def manifests(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    problems = []
    kinds = []
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        kinds.append(kind)
        where = f"{kind}/{name}"
        if kind != "Namespace" and d["metadata"].get("namespace") != "self-healing-platform":
            problems.append(f"{where}: not in namespace self-healing-platform")
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") != "canopy" and kind not in ("ServingRuntime", "InferenceService", "Prometheus"):
            problems.append(f"{where}: missing label app.kubernetes.io/name: canopy")
        if kind == "PersistentVolumeClaim":
            if name != "model-storage-pvc" or d["spec"]["accessModes"] != ["ReadWriteMany"]:
                problems.append(f"{where}: the model volume must be the ReadWriteMany model-storage-pvc")
        pod, containers = canopy_containers(d)
        for c in containers:
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}/{c['name']}: allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}/{c['name']}: readOnlyRootFilesystem must be true")
            non_root = sc.get("runAsNonRoot") or (pod or {}).get("securityContext", {}).get("runAsNonRoot")
            if not non_root:
                problems.append(f"{where}/{c['name']}: must run as non-root")
            # a [server] file given in the environment must be on a volume mounted read-only
            for env in c.get("env", []):
                if env["name"].startswith("CANOPY_SERVER__") and env["name"].endswith("_FILE"):
                    mounted = [m for m in c.get("volumeMounts", [])
                               if env.get("value", "").startswith(m["mountPath"].rstrip("/") + "/")]
                    if not mounted or not mounted[-1].get("readOnly"):
                        problems.append(f"{where}/{c['name']}: {env['name']} is not on a read-only mounted volume")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                problems.append(f"{where}/{c['name']}: resource requests and limits are required")
            if kind in ("DaemonSet", "Prometheus"):
                for probe, want in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
                    got = c.get(probe, {}).get("httpGet", {}).get("path")
                    if got != want:
                        problems.append(f"{where}/{c['name']}: {probe} must GET {want}, not {got}")
        if kind == "DaemonSet":
            pod = d["spec"]["template"]["spec"]
            if pod.get("terminationGracePeriodSeconds", 30) < 30:
                problems.append(f"{where}: the grace period must leave time for the final checkpoint")
            mounts = [m for c in pod["containers"] for m in c.get("volumeMounts", []) if m["mountPath"] == "/mnt/models"]
            if not mounts or mounts[0].get("subPathExpr") != "$(NODE_NAME)":
                problems.append(f"{where}: /mnt/models must be mounted with subPathExpr $(NODE_NAME)")
            claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
            if claims != ["model-storage-pvc"]:
                problems.append(f"{where}: the model volume must be model-storage-pvc")
        if kind == "ServiceMonitor":
            selector = d["spec"].get("selector", {}).get("matchLabels")
            services = [s for s in docs if s["kind"] == "Service"]
            if not selector:
                problems.append(f"{where}: spec.selector.matchLabels is required")
            elif not any(selector.items() <= s["metadata"].get("labels", {}).items() for s in services):
                problems.append(f"{where}: spec.selector {selector} matches no Service")
        if kind == "InferenceService":
            uri = d["spec"]["predictor"]["model"]["storageUri"]
            if not uri.startswith("pvc://model-storage-pvc/"):
                problems.append(f"{where}: storageUri {uri} is not on model-storage-pvc")
            # what is served is what the retraining job writes, under the served model's name
            path = uri[len("pvc://model-storage-pvc/"):].strip("/")
            written = trained_paths(docs)
            if path not in written:
                problems.append(f"{where}: no CronJob's `canopy train` writes {path} (they write {sorted(written)})")
            elif path.rsplit("/", 1)[-1] != name:
                problems.append(f"{where}: serves {path}, not a model of its own name")
        if kind == "CronJob":
            pod = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            if d["spec"].get("concurrencyPolicy") != "Forbid":
                problems.append(f"{where}: concurrencyPolicy must be Forbid: two runs must not write one file")
            services = [s for s in docs if s["kind"] == "Service"]
            pod_labels = d["spec"]["jobTemplate"]["spec"]["template"].get("metadata", {}).get("labels", {})
            for s_ in services:
                selector = s_["spec"].get("selector", {})
                if selector and selector.items() <= pod_labels.items():
                    problems.append(f"{where}: its pods match Service/{s_['metadata']['name']}'s selector")
    print(" ".join(kinds))
    for p in problems:
        print("PROBLEM", p)
    return 1 if problems else 0


def commands(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]

    def described(c):
        return {
            "name": c["name"],
            "args": c.get("args", []),
            "env": {e["name"]: e["value"] for e in c.get("env", []) if "value" in e},
            "mounts": {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])},
        }

    out = {"cronjobs": [], "runtimes": []}
    for d in docs:
        _, containers = canopy_containers(d)
        if d["kind"] == "CronJob":
            out["cronjobs"].append({
                "name": d["metadata"]["name"],
                "schedule": d["spec"]["schedule"],
                "containers": [described(c) for c in containers],
            })
        elif d["kind"] == "ServingRuntime":
            out["runtimes"].append({
                "name": d["metadata"]["name"],
                "containers": [described(c) for c in containers],
            })
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "rules":
        rules(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "commands":
        commands(sys.argv[2])
    elif sys.argv[1] == "manifests":
        sys.exit(manifests(sys.argv[2]))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
