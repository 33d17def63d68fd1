"""The platform's topics and ACL roles as Strimzi resources (KafkaTopic, KafkaUser).

On Kubernetes a Strimzi-managed cluster creates topics and users from these resources, where a
plain cluster gets `adp topics create` and the ACLs of streams/kafka/authz.py. Both are derived
here from the same tables (topics.platform_topics, authz.ROLES), so the two never drift:
`adp topics strimzi` prints them and tests/test_k8s.py checks that deploy/k8s holds exactly that.
"""

from __future__ import annotations

from adp.core.settings import MiB
from adp.streams.kafka import authz, topics

API_VERSION = "kafka.strimzi.io/v1beta2"
CLUSTER_LABEL = "strimzi.io/cluster"  # which Kafka resource's operators own the resource
USER_PREFIX = "adp-"  # KafkaUser adp-<role>; with SCRAM its principal is User:adp-<role>
AUTHENTICATIONS = ("scram-sha-512", "tls")

# authz.Op -> Strimzi's AclOperation names
_OPERATIONS = {
    authz.Op.ALL: "All",
    authz.Op.READ: "Read",
    authz.Op.WRITE: "Write",
    authz.Op.CREATE: "Create",
    authz.Op.DELETE: "Delete",
    authz.Op.ALTER: "Alter",
    authz.Op.DESCRIBE: "Describe",
    authz.Op.DESCRIBE_CONFIGS: "DescribeConfigs",
}
_PATTERNS = {authz.Pattern.LITERAL: "literal", authz.Pattern.PREFIXED: "prefix"}


def _metadata(name: str, cluster: str, namespace: str | None) -> dict:
    meta = {"name": name, "labels": {CLUSTER_LABEL: cluster, "app.kubernetes.io/part-of": "adp"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def kafka_topics(
    cluster: str,
    partitions: dict[str, int] | None = None,
    replication: int = 3,
    max_message_bytes: int = 32 * MiB,
    namespace: str | None = None,
) -> list[dict]:
    """One KafkaTopic per platform topic: what `adp topics create --replication N` creates
    (min.insync.replicas min(2, N), as ensure_topics sets it)."""
    specs = topics.platform_topics(
        min_insync_replicas=min(2, replication),
        partitions=partitions,
        max_message_bytes=max_message_bytes,
    )
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "KafkaTopic",
            # platform topic names are valid resource names (lower case, dots)
            "metadata": _metadata(spec.name, cluster, namespace),
            "spec": {
                "topicName": spec.name,
                "partitions": spec.partitions,
                "replicas": replication,
                "config": dict(sorted(spec.configs.items())),
            },
        }
        for spec in specs
    ]


def user_name(role: str) -> str:
    return f"{USER_PREFIX}{role}"


def kafka_users(
    cluster: str,
    app_id: str = topics.AGGREGATOR_GROUP,
    authentication: str = "scram-sha-512",
    namespace: str | None = None,
) -> list[dict]:
    """One KafkaUser per ACL role (adp-producer, adp-runtime, ...) with that role's ACLs.
    `app_id` is the aggregator's --app-id (its group and changelog topics' prefix)."""
    if authentication not in AUTHENTICATIONS:
        raise ValueError(f"authentication {authentication!r}: one of {', '.join(AUTHENTICATIONS)}")
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "KafkaUser",
            "metadata": _metadata(user_name(role), cluster, namespace),
            "spec": {
                "authentication": {"type": authentication},
                "authorization": {"type": "simple", "acls": role_acls(role, app_id)},
            },
        }
        for role in authz.ROLES
    ]


def role_acls(role: str, app_id: str = topics.AGGREGATOR_GROUP) -> list[dict]:
    """authz.role_acls as Strimzi ACL rules: one rule per resource, its operations together."""
    rules: dict[tuple, list[str]] = {}
    for acl in authz.role_acls(role, f"User:{user_name(role)}", app_id=app_id):
        key = (acl.resource.name.lower(), acl.name, _PATTERNS[acl.pattern])
        rules.setdefault(key, []).append(_OPERATIONS[acl.operation])
    return [
        {"resource": _resource(kind, name, pattern), "operations": operations, "host": "*"}
        for (kind, name, pattern), operations in rules.items()
    ]


def _resource(kind: str, name: str, pattern: str) -> dict:
    if kind == "cluster":  # Strimzi's cluster resource has no name
        return {"type": "cluster"}
    return {"type": kind, "name": name, "patternType": pattern}
