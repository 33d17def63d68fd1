"""Kafka ACLs: what each platform role may do, creating those ACLs, and asking the broker which
operations this client may perform on a topic.

aiokafka 0.14's admin client has no create_acls and its Metadata request stops at v5, before
authorized operations (KIP-430, Metadata v8). Both are built here from aiokafka's own protocol
structs and sent through the admin client's connection (its `_client`); this module is the one
place that works around those gaps (upstream: https://github.com/aio-libs/aiokafka/issues/955
asks for create_acls).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Schema, String

from adp.streams.kafka import clients, topics


class Resource(enum.IntEnum):  # Kafka's ResourceType
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class Pattern(enum.IntEnum):  # Kafka's PatternType
    LITERAL = 3
    PREFIXED = 4


class Op(enum.IntEnum):  # Kafka's AclOperation
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    DESCRIBE_CONFIGS = 10


ALLOW = 3  # Kafka's AclPermissionType


@dataclass(frozen=True)
class Acl:
    principal: str  # "User:alice"
    resource: Resource
    name: str
    pattern: Pattern
    operation: Op

    def __str__(self) -> str:
        star = "*" if self.pattern is Pattern.PREFIXED else ""
        return (
            f"{self.principal} may {self.operation.name} "
            f"{self.resource.name.lower()} {self.name}{star}"
        )


# What each component of the platform needs, no more. A name ending in "*" is a prefix.
# aggregator: "{app}" is its --app-id (Faust group, changelog and leader topics start with it).
ROLES: dict[str, list[tuple[Resource, str, tuple[Op, ...]]]] = {
    "producer": [
        (Resource.TOPIC, "adp.tasks.*", (Op.WRITE, Op.DESCRIBE)),
    ],
    "runtime": [
        (Resource.TOPIC, "adp.tasks.*", (Op.READ, Op.DESCRIBE)),
        (Resource.GROUP, "adp-runtime-*", (Op.READ,)),
        (Resource.TOPIC, topics.STEPS, (Op.WRITE, Op.DESCRIBE)),
        (Resource.TOPIC, topics.DLQ, (Op.WRITE, Op.DESCRIBE)),
        (Resource.TOPIC, topics.ARTIFACTS, (Op.WRITE, Op.DESCRIBE)),
    ],
    "aggregator": [
        (Resource.TOPIC, topics.STEPS, (Op.READ, Op.DESCRIBE)),
        (Resource.TOPIC, topics.TRAJECTORIES, (Op.READ, Op.WRITE, Op.DESCRIBE)),
        (Resource.TOPIC, topics.DLQ, (Op.WRITE, Op.DESCRIBE)),
        (Resource.TOPIC, topics.ARTIFACTS, (Op.READ, Op.DESCRIBE)),
        (Resource.TOPIC, "{app}*", (Op.ALL,)),
        (Resource.GROUP, "{app}*", (Op.READ,)),
    ],
    # adp status, tail, replay, dlq, topics describe: reads everything, changes nothing
    "observer": [
        (Resource.TOPIC, "adp*", (Op.READ, Op.DESCRIBE, Op.DESCRIBE_CONFIGS)),
        (Resource.GROUP, "adp*", (Op.DESCRIBE,)),
    ],
}


def role_acls(role: str, principal: str, app_id: str = "adp-aggregator") -> list[Acl]:
    """The ACLs that let `principal` ("User:name") act as `role` (a key of ROLES)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    out = []
    for resource, name, ops in ROLES[role]:
        name = name.format(app=app_id)
        pattern = Pattern.PREFIXED if name.endswith("*") else Pattern.LITERAL
        out += [Acl(principal, resource, name.rstrip("*"), pattern, op) for op in ops]
    return out


class _CreateAcls(Request[CreateAclsRequest_v1]):
    """CreateAcls v1 with many creations in one request (aiokafka's builder takes one)."""

    API_KEY = 30

    def __init__(self, acls: list[Acl]):
        self.acls = acls

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(
            [
                (int(a.resource), a.name, int(a.pattern), a.principal, "*", int(a.operation), ALLOW)
                for a in self.acls
            ]
        )


async def create_acls(admin: AIOKafkaAdminClient, acls: list[Acl]) -> None:
    """Create the ACLs (idempotent: Kafka keeps one copy of an identical ACL)."""
    node = admin._client.get_random_node()
    response = await admin._client.send(node, _CreateAcls(acls))
    for acl, (code, message) in zip(acls, response.creation_responses):
        if code:
            raise for_code(code)(f"creating ACL '{acl}': {message}")


# ---- authorized operations (Metadata v8, KIP-430) -------------------------------------------


class _MetadataResponse_v8(Response):
    API_KEY = 3
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            Array(
                ("node_id", Int32),
                ("host", String("utf-8")),
                ("port", Int32),
                ("rack", String("utf-8")),
            ),
        ),
        ("cluster_id", String("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            Array(
                ("error_code", Int16),
                ("topic", String("utf-8")),
                ("is_internal", Boolean),
                (
                    "partitions",
                    Array(
                        ("error_code", Int16),
                        ("partition", Int32),
                        ("leader", Int32),
                        ("leader_epoch", Int32),
                        ("replicas", Array(Int32)),
                        ("isr", Array(Int32)),
                        ("offline_replicas", Array(Int32)),
                    ),
                ),
                ("topic_authorized_operations", Int32),
            ),
        ),
        ("cluster_authorized_operations", Int32),
    )


class _MetadataRequest_v8(RequestStruct):
    API_KEY = 3
    API_VERSION = 8
    RESPONSE_TYPE = _MetadataResponse_v8
    SCHEMA = Schema(
        ("topics", Array(String("utf-8"))),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


_Struct: TypeAlias = _MetadataRequest_v8


class _AuthorizedOperations(Request[_Struct]):
    API_KEY = 3

    def __init__(self, names: list[str]):
        self.names = names

    def build(self, request_struct_class: type[_Struct]) -> _Struct:
        return request_struct_class(self.names, False, False, True)


NOT_PROVIDED = -2147483648  # the broker did not compute them (no authorizer)
TOPIC_AUTHORIZATION_FAILED = 29
UNKNOWN_TOPIC = 3


async def authorized_operations(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, set[Op] | None]:
    """Topic -> the operations this client may perform on it (None: the cluster has no
    authorizer, everything is allowed). A topic this client may not even DESCRIBE is absent
    or has an empty set."""
    node = admin._client.get_random_node()
    response = await admin._client.send(node, _AuthorizedOperations(names))
    out: dict[str, set[Op] | None] = {}
    for error_code, name, _internal, _parts, bits in response.topics:
        if error_code == TOPIC_AUTHORIZATION_FAILED:  # not even DESCRIBE
            out[name] = set()
        elif (
            error_code == UNKNOWN_TOPIC or bits == NOT_PROVIDED
        ):  # not created yet: nothing to say about it
            out[name] = None
        else:
            out[name] = {op for op in Op if bits & (1 << int(op))}
    return out


async def require(conf: clients.Conn, read: list[str] = (), write: list[str] = ()) -> None:
    """Fail fast with one line when this client lacks READ on `read` or WRITE on `write`
    topics: a runtime that may not write adp.steps must not take tasks it cannot report."""
    from adp.streams.kafka.admin import admin_client

    conf = clients.connection(conf)
    wanted = [(t, Op.READ) for t in read] + [(t, Op.WRITE) for t in write]
    async with admin_client(conf, client_id="adp-authz") as admin:
        allowed = await authorized_operations(admin, sorted({t for t, _ in wanted}))
    missing = [
        f"{op.name} on {topic}"
        for topic, op in wanted
        if allowed.get(topic) is not None and not ({op, Op.ALL} & allowed[topic])
    ]
    if missing:
        who = f"User:{conf.sasl_username}" if conf.uses_sasl else "this client"
        raise clients.KafkaClientError(
            f"Kafka at {conf.describe()} does not allow {who} "
            + ", ".join(missing)
            + " (the ACLs must grant it; see docs/security.md, 'Kafka ACLs')"
        )
