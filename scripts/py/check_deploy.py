"""Rules the rendered Kubernetes objects and compose.yaml must keep.

Called by scripts/check-deploy after the schemas passed, with the rendered
kustomize outputs, compose.yaml, the workspace's binaries and, per binary,
the environment variables it reads (from `nadir variables`). Prints one line
per failed rule and exits 1 if any failed.

  python check_deploy.py --binaries B... --variables DIR --compose FILE
         --secret-template FILE BASE.yaml RENDERED.yaml...
"""

import argparse
import re
import sys
from pathlib import Path

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
RECOMMENDED = ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/component")
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|DATABASE_URL")

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")


def pod_spec(obj):
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec", {}), spec.get("template", {}).get("metadata", {})


def load_variables(directory):
    reads = {}
    for f in Path(directory).glob("*.txt"):
        lines = [l.split() for l in f.read_text().splitlines() if l.strip()]
        reads[f.stem] = {name: kind == "required" for name, kind in lines}
    return reads


def check_workload(where, obj, config_maps, secrets, binaries, reads, grace):
    pod, template_meta = pod_spec(obj)
    labels = template_meta.get("labels", {})
    for key in RECOMMENDED[:2]:
        if key not in labels:
            fail(where, f"pod template lacks the label {key}")
    pod_sc = pod.get("securityContext", {})
    if pod.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken is not false")
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext", {})
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            fail(cw, "runAsNonRoot is not set")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(cw, "readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(cw, "allowPrivilegeEscalation is not false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            fail(cw, "capabilities do not drop ALL")
        if sc.get("privileged"):
            fail(cw, "privileged")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(part, {}):
                    fail(cw, f"no {part}.{r}")
        for e in c.get("env", []):
            if "value" in e and SECRET_WORDS.search(e["name"]):
                fail(cw, f"{e['name']} is set in plain text; take it from a Secret")
        image = c.get("image", "")
        if not re.match(r"^([^/]+/)*nadir(:|$)", image):
            continue
        # A nadir container: a binary the workspace builds, reading what it is given.
        command = c.get("command") or []
        if not command:
            fail(cw, "a nadir container without a command (the image runs `nadir --help`)")
            continue
        binary = command[0]
        if binary not in binaries:
            fail(cw, f"command {binary!r} is not a binary the workspace builds ({', '.join(sorted(binaries))})")
            continue
        given = set()
        for e in c.get("env", []):
            given.add(e["name"])
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                name = source["configMapRef"]["name"]
                if name not in config_maps:
                    fail(cw, f"envFrom names ConfigMap {name!r}, which is not rendered")
                given |= set(config_maps.get(name, {}))
            if "secretRef" in source:
                name = source["secretRef"]["name"]
                if name not in secrets:
                    fail(cw, f"envFrom names Secret {name!r}, which secret.template.yaml does not describe")
                given |= set(secrets.get(name, {}))
        readable = reads.get(binary, {})
        for var in sorted(given):
            if var.startswith("NADIR_") and var not in readable:
                fail(cw, f"sets {var}, which {binary} does not read")
        for var, required in sorted(readable.items()):
            if required and var not in given:
                fail(cw, f"{binary} requires {var}, which is not set")
        if obj["kind"] == "Deployment":
            probes = {p: c.get(p, {}).get("httpGet", {}).get("path") for p in ("livenessProbe", "readinessProbe")}
            if probes != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
                fail(cw, f"probes are {probes}, not /healthz (liveness) and /readyz (readiness)")
            if binary != "nadir-dashboard":
                period = pod.get("terminationGracePeriodSeconds", 30)
                if period < grace + 10:
                    fail(where, f"terminationGracePeriodSeconds {period} leaves no room after the {grace} s shutdown grace")


def check_rendered(path, binaries, reads, secrets, config_maps):
    objects = [o for o in yaml.safe_load_all(Path(path).read_text()) if o]
    # The overlay's own ConfigMap, else the base's (manifests/jobs uses that one).
    config_maps = {**config_maps, **{o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}}
    grace = int(next(iter(config_maps.values()), {}).get("NADIR_SHUTDOWN_GRACE_SECS", 25))
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    for obj in objects:
        where = f"{Path(path).name}: {obj['kind']}/{obj['metadata']['name']}"
        labels = obj["metadata"].get("labels", {})
        for key in RECOMMENDED[:2]:
            if labels.get(key) != "nadir":
                fail(where, f"label {key} is not nadir")
        if obj["kind"] == "Secret":
            fail(where, "a Secret in the rendered manifests: credentials belong outside them")
        if obj["kind"] in WORKLOADS:
            if "app.kubernetes.io/component" not in labels:
                fail(where, "no app.kubernetes.io/component label")
            check_workload(where, obj, config_maps, secrets, binaries, reads, grace)
        if obj["kind"] == "ScaledObject":
            target = obj["spec"]["scaleTargetRef"]["name"]
            if target not in deployments:
                fail(where, f"scales {target!r}, which is not a rendered Deployment")
            for t in obj["spec"].get("triggers", []):
                if t["type"] != "nats-jetstream" or not t["metadata"].get("consumer"):
                    fail(where, "a trigger that is not a JetStream consumer's lag")
        if obj["kind"] == "PodDisruptionBudget":
            selector = obj["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/instance", "")
            if selector not in deployments:
                fail(where, f"selects {selector!r}, which is no Deployment")
    return len(objects)


def check_compose(path, binaries, reads):
    compose = yaml.safe_load(Path(path).read_text())
    for name, service in compose["services"].items():
        where = f"compose.yaml: service {name}"
        image = service.get("image", "")
        if "healthcheck" not in service and service.get("restart") != "no":
            fail(where, "a long-running service without a health check")
        for key, value in (service.get("environment") or {}).items():
            if SECRET_WORDS.search(key) and "${" not in str(value) and "$$" not in str(value):
                fail(where, f"{key} is written in compose.yaml; take it from .env")
        if "nadir" not in image:
            for key in service.get("environment") or {}:
                if key.startswith("NADIR_"):
                    fail(where, f"sets {key}, but no nadir binary runs in it")
            continue
        if service.get("read_only") is not True or service.get("cap_drop") != ["ALL"]:
            fail(where, "not read_only with every capability dropped")
        command = service.get("command") or []
        if not command or command[0] not in binaries:
            fail(where, f"command {command[:1]} is not a binary the workspace builds")
            continue
        binary = command[0]
        given = set((service.get("environment") or {}).keys())
        for var in sorted(given):
            if var.startswith("NADIR_") and var not in reads.get(binary, {}):
                fail(where, f"sets {var}, which {binary} does not read")
        for var, required in sorted(reads.get(binary, {}).items()):
            if required and var not in given:
                fail(where, f"{binary} requires {var}, which is not set")


BAD_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nadir-bad, labels: {app.kubernetes.io/name: nadir, app.kubernetes.io/part-of: nadir, app.kubernetes.io/component: bad}}
spec:
  template:
    metadata: {labels: {app.kubernetes.io/name: nadir, app.kubernetes.io/part-of: nadir}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: bad
          image: nadir:0.1.0
          command: ["nadir-ingets"]
        - name: worse
          image: nadir:0.1.0
          command: ["nadir-ingest"]
          env: [{name: NADIR_S3_SECRET_KEY, value: hunter2}, {name: NADIR_NATS_ULR, value: x}]
          securityContext: {readOnlyRootFilesystem: false}
"""


def self_test(binaries, reads):
    """The rules must catch what they are for: run them on a bad Deployment."""
    path = Path(".nadir/check-deploy/bad.yaml")
    path.write_text(BAD_DEPLOYMENT)
    check_rendered(path, binaries, reads, {}, {})
    expected = [
        "automountServiceAccountToken",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "capabilities do not drop ALL",
        "no limits.memory",
        "'nadir-ingets' is not a binary",
        "NADIR_S3_SECRET_KEY is set in plain text",
        "sets NADIR_NATS_ULR, which nadir-ingest does not read",
        "nadir-ingest requires NADIR_DATABASE_URL",
        "probes are",
        "terminationGracePeriodSeconds 5",
    ]
    missed = [e for e in expected if not any(e in f for f in failures)]
    if missed:
        print(f"FAIL the rules did not catch: {missed}")
        sys.exit(1)
    failures.clear()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binaries", nargs="+", required=True)
    parser.add_argument("--variables", required=True)
    parser.add_argument("--compose", required=True)
    parser.add_argument("--secret-template", required=True)
    parser.add_argument("rendered", nargs="+")
    args = parser.parse_args()
    binaries = set(args.binaries)
    reads = load_variables(args.variables)
    secrets = {
        o["metadata"]["name"]: o.get("stringData", {})
        for o in yaml.safe_load_all(Path(args.secret_template).read_text())
        if o
    }
    self_test(binaries, reads)
    base = [o for o in yaml.safe_load_all(Path(args.rendered[0]).read_text()) if o]
    base_config = {o["metadata"]["name"]: o.get("data", {}) for o in base if o["kind"] == "ConfigMap"}
    counted = sum(check_rendered(r, binaries, reads, secrets, base_config) for r in args.rendered)
    check_compose(args.compose, binaries, reads)
    for f in failures:
        print(f"FAIL {f}")
    if failures:
        print(f"deployment rules: {len(failures)} failed")
        sys.exit(1)
    print(f"deployment rules: {counted} rendered objects and compose.yaml pass")


if __name__ == "__main__":
    main()
