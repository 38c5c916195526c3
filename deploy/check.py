#!/usr/bin/env python3
"""The object-level checks of deploy/check.sh (run it, not this file).

Input: the kustomize renderings (`--rendered NAME=FILE`, rendered by check.sh with `kubectl
kustomize`) and the repository's source files. For every rendering:

- built-in kinds: kubernetes-validate's strict JSON schemas (unknown fields fail), for each
  Kubernetes version of `--kube-version`; a kind/apiVersion it has no schema for fails, unless
  it is one of the custom resources in CRDS (kubernetes-validate only warns about those);
- custom resources (CRDS): no schema is available offline, so only their shape (apiVersion,
  kind, metadata.name, a `spec` mapping) and the cross-references below are checked;
- cross-references: the Deployment's image is pinned; `--config` resolves through its volume
  mount to the ConfigMap key; that config passes `remarket check-config` with the container's
  REMARKET__* env overrides; [http] listen, the token mount, drain_grace, the Dockerfile's
  USER agree with the Deployment; the ServiceMonitor selects the Service and names its port;
  NetworkPolicies allow the admin port in and DNS, the brokers' ports and TikTok out; a
  ScaledObject targets the Deployment (which then has no spec.replicas), and its kafka
  triggers name the config's brokers, detect group and topics.

Once: alerts.yaml's spec equals alerts.rules.yml; the dashboard is valid JSON.
Exit status 1 on any failure.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

# The custom resources deploy/ uses. kubernetes-validate has no schema for them.
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}

failures = []


def fail(where, msg):
    failures.append(f"{where}: {msg}")
    print(f"FAIL {where}: {msg}")


def note(where, msg):
    print(f"note {where}: {msg}")


def ident(doc):
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name')}"


def subset(small, big):
    return bool(small) and all((big or {}).get(k) == v for k, v in small.items())


_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def seconds(text):
    """A humantime duration ("20s", "1m 30s", "500ms") in seconds; None if not understood."""
    parts = re.findall(r"(\d+)\s*([a-z]+)", str(text))
    if not parts or re.sub(r"[\d\sa-z]", "", str(text)):
        return None
    if any(u not in _UNITS for _, u in parts):
        return None
    return sum(int(n) * _UNITS[u] for n, u in parts)


def override_value(raw):
    """REMARKET__* values are read as a TOML value, else as a string (README.md)."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except Exception:
        return raw


def ports_allowed(rule, port, proto, names=()):
    """Whether a NetworkPolicy rule's `ports` let `port`/`proto` through."""
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != proto:
            continue
        q = p.get("port")
        if q is None or q == port or q in names:
            return True
        if isinstance(q, int) and p.get("endPort") and q <= port <= p["endPort"]:
            return True
    return False


def check_schema(where, doc, versions, kv):
    if (doc.get("apiVersion"), doc.get("kind")) in CRDS:
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            fail(where, "custom resource without metadata.name")
        if not isinstance(doc.get("spec"), dict):
            fail(where, "custom resource without a spec mapping")
        extra = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
        if extra:
            fail(where, f"unexpected top-level fields {sorted(extra)}")
        return
    if kv is None:
        return
    for v in versions:
        try:
            kv.validate(doc, v, strict=True)
        except kv.SchemaNotFoundError:
            fail(where, f"no Kubernetes {v} schema for apiVersion {doc.get('apiVersion')} kind "
                        f"{doc.get('kind')}: a typo, or a custom resource missing from CRDS in "
                        "deploy/check.py")
            return
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            fail(where, f"Kubernetes {v} schema (strict): {path}: {e.message}")
            return


def parse_dockerfile(path):
    """(USER of the final stage, EXPOSEd ports of the final stage)."""
    text = open(path).read()
    text = re.sub(r"\\\n", " ", text)
    user, exposed = None, set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            user, exposed = None, set()
        elif word == "USER":
            user = rest.strip()
        elif word == "EXPOSE":
            exposed |= {int(p.split("/")[0]) for p in rest.split()}
    return user, exposed


def check_config(where, toml_text, overrides, remarket_bin, tmp):
    """`remarket check-config` on the rendered config with the env overrides."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(overrides)
    text = toml_text
    # [kafka.client] values read at start from mounted Secret files or env vars are not there
    # offline: point them at a placeholder so the rest of the config is still checked.
    refs = []
    if tomllib is not None:
        try:
            client = tomllib.loads(text).get("kafka", {}).get("client", {})
            refs = [v for v in client.values() if isinstance(v, dict)]
        except Exception:
            pass  # check-config reports it
    for path in sorted({r["file"] for r in refs if isinstance(r.get("file"), str)}):
        if not os.path.exists(path):
            ph = os.path.join(tmp, "placeholder-" + re.sub(r"[^A-Za-z0-9.]", "_", path))
            with open(ph, "w") as f:
                f.write("placeholder")
            text = re.sub(r'(file\s*=\s*)"' + re.escape(path) + '"',
                          lambda m: f'{m.group(1)}"{ph}"', text)
            note(where, f"{path} (read at start) replaced by a placeholder file")
    for name in sorted({r["env"] for r in refs if isinstance(r.get("env"), str)}):
        if name not in env:
            env[name] = "placeholder"
            note(where, f"${name} (read at start) set to a placeholder")
    cfg_file = os.path.join(tmp, re.sub(r"[^A-Za-z0-9.-]", "_", where) + ".toml")
    with open(cfg_file, "w") as f:
        f.write(text)
    r = subprocess.run([remarket_bin, "check-config", "--config", cfg_file], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        shown = " ".join(f"{k}={v}" for k, v in overrides.items())
        fail(where, f"remarket check-config failed (overrides: {shown or 'none'}):\n"
                    f"{r.stdout}{r.stderr}")
        return False
    return True


def check_rendering(name, docs, args, kv, rules, docker_user, docker_ports, tmp):
    before = len(failures)
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            fail(name, f"not a Kubernetes object: {str(doc)[:80]}")
            continue
        check_schema(f"{name}: {ident(doc)}", doc, args.kube_version, kv)

    by_kind = {}
    for doc in docs:
        if isinstance(doc, dict):
            by_kind.setdefault(doc.get("kind"), []).append(doc)
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        fail(name, f"expected one Deployment, found {len(deployments)}")
        return
    dep = deployments[0]
    where = f"{name}: {ident(dep)}"
    pod = dep["spec"]["template"]
    pod_labels = pod.get("metadata", {}).get("labels", {})
    spec = pod["spec"]
    containers = {c["name"]: c for c in spec.get("containers", [])}
    c = containers.get("remarket")
    if c is None:
        fail(where, "no container named remarket")
        return

    # Image: pinned, and in the base Cargo.toml's version.
    image = c.get("image", "")
    ref, _, digest = image.partition("@")
    repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    if not digest and not tag:
        fail(where, f"image {image!r} has neither tag nor digest")
    elif tag == "latest":
        fail(where, f"image {image!r}: pin a version, not latest")
    if name == "base" and tag != args.version:
        fail(where, f"image tag {tag!r} differs from Cargo.toml's version {args.version!r} "
                    "(deploy/base/kustomization.yaml images: newTag)")

    # User: the Dockerfile's numeric USER is what runAsUser/runAsGroup say.
    sc = dict(spec.get("securityContext") or {})
    sc.update({k: v for k, v in (c.get("securityContext") or {}).items()
               if k in ("runAsUser", "runAsGroup")})
    if docker_user is not None:
        uid, _, gid = docker_user.partition(":")
        if str(sc.get("runAsUser")) != uid or (gid and str(sc.get("runAsGroup")) != gid):
            fail(where, f"runAsUser/runAsGroup {sc.get('runAsUser')}/{sc.get('runAsGroup')} "
                        f"differ from the Dockerfile's USER {docker_user}")

    # --config PATH -> volume mount -> ConfigMap key.
    cargs = list(c.get("command") or []) + list(c.get("args") or [])
    if "--config" not in cargs or cargs.index("--config") + 1 >= len(cargs):
        fail(where, f"container args {cargs} have no --config FILE")
        return
    cfg_path = cargs[cargs.index("--config") + 1]
    cfg_dir, cfg_base = os.path.split(cfg_path)
    mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mount = mounts.get(cfg_dir)
    vol = volumes.get(mount["name"]) if mount else None
    if not vol or "configMap" not in vol:
        fail(where, f"--config {cfg_path}: no ConfigMap volume mounted at {cfg_dir}")
        return
    cm_name = vol["configMap"]["name"]
    key = cfg_base
    for item in vol["configMap"].get("items") or []:
        if item["path"] == cfg_base:
            key = item["key"]
    cms = [d for d in by_kind.get("ConfigMap", []) if d["metadata"]["name"] == cm_name]
    if not cms or key not in (cms[0].get("data") or {}):
        fail(where, f"--config {cfg_path}: ConfigMap {cm_name} with key {key} is not in the "
                    "rendering")
        return
    toml_text = cms[0]["data"][key]

    overrides = {}
    for e in c.get("env") or []:
        if e["name"].startswith("REMARKET__"):
            if "value" in e:
                overrides[e["name"]] = e["value"]
            else:
                note(where, f"{e['name']} comes from valueFrom: not applied offline")
    checked = []
    if kv is not None:
        checked.append("strict schemas " + ", ".join(args.kube_version))
    if args.remarket_bin and check_config(name, toml_text, overrides, args.remarket_bin, tmp):
        checked.append("check-config" + (f" with {', '.join(overrides)}" if overrides else ""))

    if tomllib is None:
        note(name, "no tomllib/tomli: config cross-checks skipped")
        return
    try:
        cfg = tomllib.loads(toml_text)
    except Exception as e:
        fail(where, f"ConfigMap {cm_name} key {key} is not TOML: {e}")
        return
    for var, raw in overrides.items():
        parts = var[len("REMARKET__"):].lower().split("__")
        if len(parts) == 2:
            cfg.setdefault(parts[0], {})[parts[1]] = override_value(raw)
    kafka = cfg.get("kafka")
    if not isinstance(kafka, dict):
        fail(where, "the config has no [kafka] section: `run` needs one")
        return
    brokers = [b.strip() for b in str(kafka.get("brokers", "")).split(",") if b.strip()]
    broker_ports = {int(b.rsplit(":", 1)[1]) if re.search(r":\d+$", b) else 9092
                    for b in brokers}
    prefix = kafka.get("group_prefix", "remarket")
    events = kafka.get("events_topic", "events")
    profiles = kafka.get("profiles_topic", "profiles")
    topic_prefix = kafka.get("topic_prefix", "remarket")
    tiktok = cfg.get("tiktok", {})
    listen = str(cfg.get("http", {}).get("listen", "0.0.0.0:9898"))
    http_port = int(listen.rsplit(":", 1)[1])

    # [http] listen is the container's `http` port, which the probes and the Service use.
    cports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if cports.get("http") != http_port:
        fail(where, f"container port `http` is {cports.get('http')}, [http] listen is {listen}")
    if docker_ports and http_port not in docker_ports:
        fail(where, f"the Dockerfile EXPOSEs {sorted(docker_ports)}, not {http_port}")

    # The tokens (TikTok's, the admin API's): a file in a mounted Secret, or an env var the
    # container sets.
    http = cfg.get("http", {})
    for section, table, key in (("tiktok", tiktok, "access_token"),
                                ("http", http, "admin_token")):
        if table.get(f"{key}_file"):
            path = table[f"{key}_file"]
            tdir = os.path.dirname(path)
            m = mounts.get(tdir)
            if not m or "secret" not in volumes.get(m["name"], {}):
                fail(where, f"{section}.{key}_file {path}: no Secret volume mounted at {tdir}")
        elif table.get(f"{key}_env"):
            if table[f"{key}_env"] not in {e["name"] for e in c.get("env") or []}:
                fail(where, f"{section}.{key}_env {table[f'{key}_env']} is not set in "
                            "the container's env")

    # SIGTERM: the sink's drain must end before the kubelet's SIGKILL.
    grace = spec.get("terminationGracePeriodSeconds", 30)
    drain = seconds(tiktok.get("drain_grace", "20s"))
    if drain is None:
        note(where, f"tiktok.drain_grace {tiktok.get('drain_grace')!r} not understood here")
    elif drain >= grace:
        fail(where, f"tiktok.drain_grace ({drain:g} s) must be below "
                    f"terminationGracePeriodSeconds ({grace} s)")

    # Services and the ServiceMonitor.
    services = [s for s in by_kind.get("Service", [])
                if subset(s["spec"].get("selector"), pod_labels)]
    if not services:
        fail(where, "no Service selects the pods")
    for sm in by_kind.get("ServiceMonitor", []):
        w = f"{name}: {ident(sm)}"
        sel = (sm["spec"].get("selector") or {}).get("matchLabels")
        hits = [s for s in services if subset(sel, s["metadata"].get("labels"))]
        if not hits:
            fail(w, f"selector {sel} matches no Service of the pods")
            continue
        names = {p.get("name") for s in hits for p in s["spec"].get("ports", [])}
        for ep in sm["spec"].get("endpoints") or []:
            if ep.get("port") not in names:
                fail(w, f"endpoint port {ep.get('port')!r} is not a port of {sorted(names)}")

    # The PrometheusRule: the rules file's groups (in the base verbatim; overlays may tune).
    for pr in by_kind.get("PrometheusRule", []):
        w = f"{name}: {ident(pr)}"
        groups = pr["spec"].get("groups")
        if not isinstance(groups, list) or not groups:
            fail(w, "spec.groups is empty")
        elif name == "base" and pr["spec"] != rules:
            fail(w, "spec differs from alerts.rules.yml")
        else:
            for g in groups:
                for r in g.get("rules") or []:
                    if not r.get("expr") or not (r.get("alert") or r.get("record")):
                        fail(w, f"rule without alert/record or expr in group {g.get('name')}")

    # NetworkPolicies that select the pods.
    base_url = str(tiktok.get("base_url", "https://business-api.tiktok.com"))
    m = re.match(r"(https?)://[^/:]+(?::(\d+))?", base_url)
    tiktok_port = int(m.group(2)) if m and m.group(2) else (443 if m and m.group(1) == "https"
                                                           else 80)
    for np in by_kind.get("NetworkPolicy", []):
        w = f"{name}: {ident(np)}"
        if not subset(np["spec"].get("podSelector", {}).get("matchLabels"), pod_labels):
            note(w, "does not select the remarket pods")
            continue
        types = np["spec"].get("policyTypes") or ["Ingress"]
        if "Ingress" in types and not any(
                ports_allowed(r, http_port, "TCP", ("http",))
                for r in np["spec"].get("ingress") or []):
            fail(w, f"no ingress rule lets Prometheus reach port {http_port}")
        if "Egress" in types:
            egress = np["spec"].get("egress") or []
            need = [(53, "UDP", "DNS")] + [(p, "TCP", f"Kafka brokers ({','.join(brokers)})")
                                           for p in sorted(broker_ports)]
            need.append((tiktok_port, "TCP", f"TikTok ({base_url})"))
            for port, proto, what in need:
                if not any(ports_allowed(r, port, proto) for r in egress):
                    fail(w, f"no egress rule allows {proto} {port}: {what}")

    # ScaledObjects (KEDA) and HPAs.
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    for so in by_kind.get("ScaledObject", []):
        w = f"{name}: {ident(so)}"
        s = so["spec"]
        ref = s.get("scaleTargetRef") or {}
        if ref.get("kind", "Deployment") != "Deployment" or ref.get("name") != \
                dep["metadata"]["name"]:
            fail(w, f"scaleTargetRef {ref} is not Deployment {dep['metadata']['name']}")
        if "replicas" in dep["spec"]:
            fail(w, f"the Deployment still sets spec.replicas ({dep['spec']['replicas']}): "
                    "every apply would fight the HPA (components/keda removes it; do not set "
                    "`replicas:` in the overlay)")
        if hpas:
            fail(w, "a HorizontalPodAutoscaler exists too: KEDA creates its own")
        lo, hi = s.get("minReplicaCount", 0), s.get("maxReplicaCount", 100)
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            fail(w, f"need 1 <= minReplicaCount ({lo}) <= maxReplicaCount ({hi})")
        triggers = s.get("triggers") or []
        if not triggers:
            fail(w, "no triggers")
        for i, t in enumerate(triggers):
            md = t.get("metadata") or {}
            bad = [k for k, v in md.items() if not isinstance(v, str)]
            if bad:
                fail(w, f"triggers[{i}].metadata {bad}: KEDA takes strings only (quote them)")
            if t.get("type") != "kafka":
                continue
            missing = [k for k in ("bootstrapServers", "consumerGroup", "topic", "lagThreshold")
                       if k not in md]
            if missing:
                fail(w, f"triggers[{i}] (kafka) lacks {missing}")
                continue
            got = sorted(b.strip() for b in md["bootstrapServers"].split(","))
            if got != sorted(brokers):
                fail(w, f"triggers[{i}].bootstrapServers {md['bootstrapServers']} is not "
                        f"kafka.brokers {','.join(brokers)}")
            topics = {f"{prefix}-detect": {events, profiles},
                      f"{prefix}-activate": {f"{topic_prefix}.qualified"}}
            if md["consumerGroup"] not in topics:
                fail(w, f"triggers[{i}].consumerGroup {md['consumerGroup']} is not one of "
                        f"remarket's groups {sorted(topics)}")
            elif md["topic"] not in topics[md["consumerGroup"]]:
                fail(w, f"triggers[{i}].topic {md['topic']}: group {md['consumerGroup']} "
                        f"consumes {sorted(topics[md['consumerGroup']])}")

    counts = {}
    for doc in docs:
        counts[doc.get("kind")] = counts.get(doc.get("kind"), 0) + 1
    verdict = "ok  " if len(failures) == before else "FAILED"
    print(f"{verdict} {name}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
          + (f" ({'; '.join(checked)})" if checked else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rendered", action="append", default=[], metavar="NAME=FILE")
    ap.add_argument("--kube-version", action="append", default=[])
    ap.add_argument("--no-schema", action="store_true")
    ap.add_argument("--remarket-bin")
    ap.add_argument("--version", required=True, help="Cargo.toml's package version")
    ap.add_argument("--dockerfile", required=True)
    ap.add_argument("--base", required=True, help="deploy/base")
    args = ap.parse_args()

    kv = None
    if not args.no_schema:
        import kubernetes_validate as kv

    # The PrometheusRule copy and the rules file (deploy/README.md, "sync").
    rules = yaml.safe_load(open(os.path.join(args.base, "alerts.rules.yml")))
    crd = yaml.safe_load(open(os.path.join(args.base, "alerts.yaml")))
    if crd.get("spec") != rules:
        fail("sync", "deploy/base/alerts.yaml's spec differs from alerts.rules.yml: regenerate "
                     "it (deploy/README.md, \"Why two rule files\")")
    else:
        print("ok   sync: alerts.yaml spec == alerts.rules.yml")
    dash = os.path.join(args.base, "dashboards", "remarket.json")
    try:
        json.load(open(dash))
        print("ok   dashboard: valid JSON")
    except ValueError as e:
        fail("dashboard", f"{dash}: {e}")

    docker_user, docker_ports = parse_dockerfile(args.dockerfile)
    if docker_user is None or not re.fullmatch(r"\d+(:\d+)?", docker_user):
        fail("Dockerfile", f"the final stage's USER {docker_user!r} is not numeric UID[:GID] "
                           "(runAsNonRoot needs a number)")
        docker_user = None

    with tempfile.TemporaryDirectory() as tmp:
        for item in args.rendered:
            name, _, path = item.partition("=")
            docs = [d for d in yaml.safe_load_all(open(path)) if d]
            check_rendering(name, docs, args, kv, rules, docker_user, docker_ports, tmp)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
