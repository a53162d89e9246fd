"""Turns rendered manifests into what `podman kube play` (4.3) runs.

scripts/test-deploy renders manifests/ with kustomize and hands the result
here. Out of it come, in OUT:

  configmaps.yaml        every ConfigMap (given to kube play with --configmap)
  deployment-NAME.yaml   each Deployment as it is, but for what podman does
                         differently from a kubelet: podman 4.3 publishes
                         every containerPort on the host's 0.0.0.0 (so a second
                         replica cannot start, and metrics would be open to
                         the network), so `ports` is dropped and the probes'
                         named ports are replaced by their numbers; and it
                         plays an emptyDir as the named volume of the same
                         name, so each is renamed NAME-VOLUME (one per
                         Deployment; its replicas still share it)
  job-NAME.yaml          each Job's and CronJob's pod template as a Pod (kube
                         play 4.3 plays Pods, Deployments and PVCs only), with
                         the same changes
  plan.json              what the shell needs: each Deployment's replicas,
                         grace period, probes (path, port), security context;
                         each Job's command line; every volume podman will
                         make (to remove afterwards)
  skipped.txt            the objects podman cannot run (Services,
                         NetworkPolicies, ...), one per line, kind and name

Usage: deploy_play.py RENDERED.yaml OUT
"""

import json
import sys
from pathlib import Path

import yaml

PLAYED = {"ConfigMap", "Deployment", "Job", "CronJob"}


def named_ports(container):
    return {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}


def podman_pod_spec(spec, owner):
    """The pod spec with ports dropped, probe ports made numbers, and each
    emptyDir volume named after its owner (podman 4.3 plays an emptyDir as
    the named volume of the same name, which every pod naming its volume
    `tmp` would share)."""
    spec = json.loads(json.dumps(spec))
    renamed = {}
    for v in spec.get("volumes", []):
        if "emptyDir" in v:
            renamed[v["name"]] = f"{owner}-{v['name']}"
            v["name"] = renamed[v["name"]]
    for c in spec.get("containers", []):
        for m in c.get("volumeMounts", []):
            m["name"] = renamed.get(m["name"], m["name"])
    for c in spec.get("containers", []):
        ports = named_ports(c)
        c.pop("ports", None)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            get = c.get(probe, {}).get("httpGet")
            if get and isinstance(get.get("port"), str):
                if get["port"] not in ports:
                    sys.exit(f"{c['name']}: {probe} names port {get['port']!r}, which it does not declare")
                get["port"] = ports[get["port"]]
    return spec


def probes(spec):
    out = {}
    for c in spec.get("containers", []):
        for probe in ("livenessProbe", "readinessProbe"):
            get = c.get(probe, {}).get("httpGet")
            if get:
                out.setdefault(c["name"], {})[probe] = {"path": get["path"], "port": get["port"]}
    return out


def security(spec):
    pod = spec.get("securityContext", {})
    return {
        c["name"]: {
            "runAsUser": c.get("securityContext", {}).get("runAsUser", pod.get("runAsUser")),
            "readOnlyRootFilesystem": c.get("securityContext", {}).get("readOnlyRootFilesystem", False),
            "drop": c.get("securityContext", {}).get("capabilities", {}).get("drop", []),
            "mounts": [m["mountPath"] for m in c.get("volumeMounts", [])],
        }
        for c in spec.get("containers", [])
    }


def main():
    rendered, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    configmaps, plan, skipped = [], {"deployments": {}, "jobs": {}}, []
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind not in PLAYED:
            skipped.append(f"{kind} {name}")
            continue
        if kind == "ConfigMap":
            configmaps.append(d)
            continue
        if kind == "Deployment":
            spec = d["spec"]["template"]["spec"]
            played = json.loads(json.dumps(d))
            played["spec"]["template"]["spec"] = podman_pod_spec(spec, name)
            (out / f"deployment-{name}.yaml").write_text(yaml.safe_dump(played, sort_keys=False))
            plan["deployments"][name] = {
                "replicas": d["spec"].get("replicas", 1),
                "grace": spec.get("terminationGracePeriodSeconds", 30),
                "probes": probes(played["spec"]["template"]["spec"]),
                "security": security(spec),
            }
            continue
        job = d["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else d["spec"]
        template = job["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": template.get("metadata", {}).get("labels", {}),
            },
            "spec": podman_pod_spec(template["spec"], name),
        }
        (out / f"job-{name}.yaml").write_text(yaml.safe_dump(pod, sort_keys=False))
        c = template["spec"]["containers"][0]
        plan["jobs"][name] = {
            "kind": kind,
            "container": c["name"],
            "command": c.get("command", []) + c.get("args", []),
            "grace": template["spec"].get("terminationGracePeriodSeconds", 30),
            "security": security(template["spec"]),
        }
    plan["volumes"] = sorted(
        v["name"]
        for f in out.glob("*.yaml")
        if f.name != "configmaps.yaml"
        for d in [yaml.safe_load(f.read_text())]
        for v in (d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"]).get("volumes", [])
        if "emptyDir" in v
    )
    (out / "configmaps.yaml").write_text(yaml.safe_dump_all(configmaps, sort_keys=False))
    (out / "plan.json").write_text(json.dumps(plan, indent=2))
    (out / "skipped.txt").write_text("".join(f"{s}\n" for s in skipped))


if __name__ == "__main__":
    main()
