"""deploy/k8s, checked without a cluster: every resource against the schemas its API server would
use (Kubernetes' own kinds with kubernetes-validate's strict schemas, KEDA's from its CRDs,
Strimzi's and all of them again with the npm validators of tests/k8s/), and against the code:
the Strimzi topics and users are exactly what `adp topics strimzi` prints, the KEDA triggers
watch the runtime groups' real lane topics, and no runtime asks for privileges it does not
need."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from adp.schemas.contracts import TaskType
from adp.streams.kafka import strimzi, topics
from tests.helpers import ADP

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
CRDS = ROOT / "tests" / "data" / "crds"
VALIDATORS = ROOT / "tests" / "k8s"
# the oldest Kubernetes the manifests need (pod user namespaces, appArmorProfile) and the newest
# kubernetes-validate knows
KUBERNETES_VERSIONS = ("1.33.0", kubernetes_validate.utils.latest_version())
CUSTOM = ("keda.sh/v1alpha1", "kafka.strimzi.io/v1beta2")
SANDBOXED = {"code", "reasoning"}  # runtimes that run LLM-written code in bubblewrap


def _kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _resources() -> list[dict]:
    docs = []
    for name in _kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def resources() -> list[dict]:
    return _resources()


def _named(resources: list[dict], kind: str) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def test_kustomization_lists_every_manifest_once() -> None:
    listed = _kustomization()["resources"]
    present = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present and len(set(listed)) == len(listed)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_kinds_validate_strictly(resources: list[dict], version: str) -> None:
    """Strict: an unknown field (a typo the API server would drop) is an error too."""
    checked = 0
    for resource in resources:
        if resource["apiVersion"] in CUSTOM:
            continue
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{resource['kind']}/{resource['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 7  # config, 3 runtimes, aggregator and its service, console and service
    typo = json.loads(json.dumps(_named(resources, "Deployment")["runtime-code"]))
    typo["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):  # the check can fail
        kubernetes_validate.validate(typo, version, strict=True)


def _crd_schema(path: Path) -> dict:
    [crd] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    [version] = [v for v in crd["spec"]["versions"] if v["served"] and v["storage"]]
    return _closed(version["schema"]["openAPIV3Schema"])


def _closed(schema):
    """The structural schema as the API server applies it: fields it does not list are not
    kept, so here they are errors (additionalProperties false), except where it says to keep
    unknown fields."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _without_object_meta(resource: dict) -> dict:
    # a CRD's schema leaves metadata to the API server (ObjectMeta), checked by the npm validators
    return {k: v for k, v in resource.items() if k != "metadata"}


@pytest.mark.parametrize(
    "kind, crd",
    [("ScaledObject", "scaledobjects"), ("TriggerAuthentication", "triggerauthentications")],
)
def test_keda_resources_validate_against_kedas_crd(resources, kind: str, crd: str) -> None:
    schema = _crd_schema(CRDS / f"keda.sh_{crd}.yaml")
    found = _named(resources, kind)
    assert found, f"no {kind} in deploy/k8s"
    for name, resource in found.items():
        errors = list(
            jsonschema.Draft7Validator(schema).iter_errors(_without_object_meta(resource))
        )
        assert not errors, f"{kind}/{name}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
        )


def test_the_crd_check_rejects_what_the_api_server_would(resources) -> None:
    """The KEDA check can fail: a misspelt field and a wrong type are both caught."""
    schema = _crd_schema(CRDS / "keda.sh_scaledobjects.yaml")
    good = _without_object_meta(_named(resources, "ScaledObject")["runtime-code"])
    typo = json.loads(json.dumps(good))
    typo["spec"]["maxReplicas"] = typo["spec"].pop("maxReplicaCount")
    wrong = json.loads(json.dumps(good))
    wrong["spec"]["maxReplicaCount"] = "six"
    validator = jsonschema.Draft7Validator(schema)
    assert validator.is_valid(good)
    assert not validator.is_valid(typo) and not validator.is_valid(wrong)


def _npm_validate(resources: list[dict]) -> list[str | None]:
    node = shutil.which("node")
    if node is None or not (VALIDATORS / "node_modules").is_dir():
        pytest.skip("the npm validators are not installed: make k8s-validators (needs node, npm)")
    done = subprocess.run(
        [node, str(VALIDATORS / "validate.mjs")],
        input=json.dumps(resources),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=VALIDATORS,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_resource_passes_the_npm_validators(resources) -> None:
    """kubernetes-models for Kubernetes' kinds, @kubernetes-models/keda and
    @kubernetes-models/strimzi-kafka-operator for the custom ones (Strimzi 0.49's CRDs)."""
    results = _npm_validate(resources)
    problems = [
        f"{r['kind']}/{r['metadata']['name']}: {why}"
        for r, why in zip(resources, results, strict=True)
        if why is not None
    ]
    assert not problems, "\n".join(problems)
    broken = json.loads(json.dumps(_named(resources, "KafkaUser")["adp-runtime"]))
    broken["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    assert _npm_validate([broken]) != [None]  # the check can fail


def test_strimzi_resources_are_what_adp_prints(resources) -> None:
    """deploy/k8s/strimzi.yaml is `adp topics strimzi --cluster adp` (regenerate, never edit):
    the topics of `adp topics create` and the ACLs of the roles, from the same tables."""
    printed = subprocess.run(
        [*ADP, "topics", "strimzi", "--cluster", "adp"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    from_cli = [d for d in yaml.safe_load_all(printed.stdout) if d]
    shipped = [d for d in yaml.safe_load_all((K8S / "strimzi.yaml").read_text()) if d]
    assert shipped == from_cli, "deploy/k8s/strimzi.yaml is stale: adp topics strimzi --cluster adp"
    assert from_cli == strimzi.kafka_topics("adp") + strimzi.kafka_users("adp")
    names = {d["spec"]["topicName"] for d in from_cli if d["kind"] == "KafkaTopic"}
    assert names == {s.name for s in topics.platform_topics()}


def test_strimzi_users_carry_every_acl_of_their_role() -> None:
    from adp.streams.kafka import authz

    for user in strimzi.kafka_users("adp"):
        role = user["metadata"]["name"].removeprefix(strimzi.USER_PREFIX)
        expected = {
            (a.resource.name.lower(), a.name, a.pattern.name, a.operation.name)
            for a in authz.role_acls(role, f"User:{user['metadata']['name']}")
        }
        got = {
            (
                rule["resource"]["type"],
                rule["resource"]["name"],
                {"prefix": "PREFIXED", "literal": "LITERAL"}[rule["resource"]["patternType"]],
                op.upper().replace("DESCRIBECONFIGS", "DESCRIBE_CONFIGS"),
            )
            for rule in user["spec"]["authorization"]["acls"]
            for op in rule["operations"]
        }
        assert got == expected, role


def test_a_scaled_object_per_runtime_type_on_its_groups_lag(resources) -> None:
    scaled = _named(resources, "ScaledObject")
    deployments = _named(resources, "Deployment")
    assert set(scaled) == {f"runtime-{t.value}" for t in TaskType}
    for task_type in TaskType:
        name = f"runtime-{task_type.value}"
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name and name in deployments
        assert "replicas" not in deployments[name]["spec"]  # KEDA owns it, kubectl apply must not
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"kafka"}
        assert {t["metadata"]["consumerGroup"] for t in triggers} == {
            topics.runtime_group(task_type.value)
        }
        assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(
            topics.lane_topics(task_type)
        )
        # past a lane topic's partitions a replica gets none of the busiest lane's work
        assert 1 <= spec["maxReplicaCount"] <= topics.DEFAULT_PARTITIONS["tasks"]
        args = deployments[name]["spec"]["template"]["spec"]["containers"][0]["args"]
        concurrency = int(args[args.index("--concurrency") + 1])
        assert all(int(t["metadata"]["lagThreshold"]) >= concurrency for t in triggers)


def _pod(resource: dict) -> dict:
    return resource["spec"]["template"]["spec"]


def test_only_the_sandboxed_runtimes_get_the_sandboxs_privileges(resources) -> None:
    """What bubblewrap needs (docs/deployment.md) and nowhere else: every pod non-root, no
    capability, no privilege escalation; only code and reasoning unconfined and unmasked, and
    those in a user namespace of their own."""
    workloads = {**_named(resources, "Deployment"), **_named(resources, "StatefulSet")}
    assert {"aggregator", "console", *(f"runtime-{t.value}" for t in TaskType)} <= set(workloads)
    for name, resource in workloads.items():
        pod = _pod(resource)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == [
                "ALL"
            ]
            assert "add" not in ctx["capabilities"] and not ctx.get("privileged")
            sandboxed = name.removeprefix("runtime-") in SANDBOXED
            assert (ctx["seccompProfile"]["type"] == "Unconfined") is sandboxed, name
            assert (ctx.get("procMount") == "Unmasked") is sandboxed, name
            assert (ctx.get("appArmorProfile", {}).get("type") == "Unconfined") is sandboxed
        assert (pod.get("hostUsers") is False) is (name.removeprefix("runtime-") in SANDBOXED)


def test_aggregator_keeps_state_and_components_use_their_roles(resources) -> None:
    aggregator = _named(resources, "StatefulSet")["aggregator"]
    claims = {c["metadata"]["name"] for c in aggregator["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in _pod(aggregator)["containers"][0]["volumeMounts"]}
    config = _named(resources, "ConfigMap")["adp-config"]["data"]
    assert mounts["state"] == config["ADP_HOME"] and "state" in claims
    users = {u["metadata"]["name"] for u in strimzi.kafka_users("adp")}
    for resource in [*_named(resources, "Deployment").values(), aggregator]:
        env = {e["name"]: e for e in _pod(resource)["containers"][0]["env"]}
        user = env["ADP_SASL_USERNAME"]["value"]
        assert user in users
        # the password is the Secret Strimzi writes for that very KafkaUser
        assert env["ADP_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": user,
            "key": "password",
        }
