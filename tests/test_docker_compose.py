"""compose/docker-compose.yml on a real Docker engine (make test-docker), through
compose/adp-compose, as a user runs it: the topics service, the aggregator and all three runtime
types from the platform image, with `--scale runtime-code=3`.

The only override moves the platform's services onto the host network and points them at a
broker, the stub LLM and the test site on this host: the Kafka, vLLM, Prometheus and Grafana
images cannot be pulled here, and test machines get no Docker network. So the broker is the
project's own (KafkaCluster, started without topics: the topics service creates them) and the
LLM is `adp llm-stub`.

Checked: tasks of each type become trajectory files in the trajectories volume, owned by the
image's user; three code replicas with distinct ids share the partitions; `docker kill` of a
replica mid-run loses and duplicates nothing; every container's health check turns healthy,
answers for its own process, and turns unhealthy while the broker is down.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import yaml

from adp.streams.kafka.admin import admin_client
from adp.streams.kafka.broker.server import KafkaCluster, free_port_block
from adp.streams.kafka.reader import read_topic
from adp.streams.kafka.topics import TRAJECTORIES, platform_topics, runtime_group
from tests import dockerized
from tests.helpers import ADP, llm_stub_process, wait_for, write_tasks

pytestmark = [
    pytest.mark.docker,
    pytest.mark.kafka,
    pytest.mark.timeout(dockerized.BUILD_TIMEOUT + 900),  # the image may be built first
]

WRAPPER = dockerized.ROOT / "compose" / "adp-compose"
PLATFORM_SERVICES = ["aggregator", "runtime-code", "runtime-web", "runtime-reasoning"]
CODE_REPLICAS = 3
CODE_TASKS = 24
LLM_LATENCY = "1.5"  # seconds per reply: a code task takes a few seconds, so a kill lands mid-run


class Deployment:
    """One compose project of the shipped file plus the host-network override."""

    def __init__(self, workdir: Path, image: str, bootstrap: str, llm: str):
        self.project = f"adp-test-{secrets.token_hex(3)}"
        self.override = workdir / "host-network.yml"
        host = {"network_mode": "host"}
        llm_env = {
            "environment": {
                "ADP_LLM_BASE_URL": llm,
                "ADP_LLM_MODEL": "stub",
                # the test site is on this host's loopback, which the browser's egress policy
                # refuses unless allowed (as tests/conftest.py allows it)
                "ADP_BROWSER_EGRESS_ALLOW": "127.0.0.1",
            }
        }
        self.override.write_text(
            yaml.safe_dump(
                {
                    "services": {
                        "topics": host,
                        "aggregator": host,
                        **{s: {**host, **llm_env} for s in PLATFORM_SERVICES[1:]},
                    }
                }
            )
        )
        # what compose substitutes into the file: the image built here, the broker on the host,
        # small concurrencies for 2 cores
        self.env = {
            **os.environ,
            "ADP_IMAGE": image,
            "ADP_BOOTSTRAP": bootstrap,
            "ADP_CODE_CONCURRENCY": "2",
            "ADP_WEB_CONCURRENCY": "1",
            "ADP_REASONING_CONCURRENCY": "2",
        }

    def compose(self, *args: str, timeout: float = 300, check: bool = True):
        done = subprocess.run(
            [str(WRAPPER), "-f", str(self.override), "-p", self.project, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert done.returncode == 0, f"compose {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def containers(self, service: str | None = None, running: bool = True) -> dict[str, str]:
        """container id -> service, of this project."""
        label = f"label=com.docker.compose.project={self.project}"
        args = [
            "ps",
            "--filter",
            label,
            "--format",
            '{{.ID}} {{.Label "com.docker.compose.service"}}',
        ]
        if not running:
            args.insert(1, "-a")
        lines = dockerized.docker(*args).stdout.split("\n")
        found = dict(line.split() for line in lines if line.strip())
        return {c: s for c, s in found.items() if service in (None, s)}

    def health(self, container: str) -> str:
        return dockerized.docker(
            "inspect", "--format", "{{.State.Health.Status}}", container
        ).stdout.strip()

    def health_check(self, container: str) -> subprocess.CompletedProcess:
        """The service's own health check command, run in the container now."""
        test = dockerized.compose_services()["runtime-code"]["healthcheck"]["test"]
        assert test[0] == "CMD"
        return dockerized.docker("exec", container, *test[1:], check=False, timeout=60)

    def volume_files(self, image: str) -> dict[str, dict]:
        """name -> {uid, gid, trajectory} of every file in the trajectories volume."""
        script = textwrap.dedent(
            """
            import json, os
            out = {}
            for name in os.listdir("/t"):
                st = os.stat(f"/t/{name}")
                out[name] = {"uid": st.st_uid, "gid": st.st_gid,
                             "trajectory": json.load(open(f"/t/{name}"))}
            print(json.dumps(out))
            """
        )
        done = dockerized.docker(
            "run", "--rm", "--network=none", "-v", f"{self.project}_trajectories:/t:ro",
            "--entrypoint", "python", image, "-c", script,
        )  # fmt: skip
        return json.loads(done.stdout)

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "40", check=False).stdout


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> KafkaCluster:
    cluster = KafkaCluster(
        home=tmp_path_factory.mktemp("compose-kafka"),
        bootstrap=f"127.0.0.1:{free_port_block()}",
        name="compose",
    )
    try:
        cluster.up(timeout=180, topics=False)  # the compose topics service creates them
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="module")
def stub(tmp_path_factory) -> str:
    with llm_stub_process(tmp_path_factory.mktemp("compose-llm"), "--latency", LLM_LATENCY) as url:
        yield url


@pytest.fixture(scope="module")
def deployment(adp_image, broker, stub, tmp_path_factory) -> Deployment:
    d = Deployment(tmp_path_factory.mktemp("compose"), adp_image, broker.bootstrap, stub)
    try:
        yield d
    finally:
        print(d.logs())
        d.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)


def _topics(bootstrap: str) -> set[str]:
    async def names():
        async with admin_client(bootstrap) as admin:
            return set(await admin.list_topics())

    return asyncio.run(names())


def test_the_topics_service_creates_the_platform_topics(deployment, broker) -> None:
    wanted = {s.name for s in platform_topics()}
    assert not wanted & _topics(broker.bootstrap)
    first = deployment.compose("run", "--rm", "--no-deps", "topics")
    assert "created:" in first.stdout and wanted <= _topics(broker.bootstrap)
    again = deployment.compose("run", "--rm", "--no-deps", "topics")
    assert "nothing, all exist" in again.stdout


def test_every_service_turns_healthy(deployment) -> None:
    deployment.compose(
        "up", "-d", "--no-deps", "--no-build", "--scale", f"runtime-code={CODE_REPLICAS}",
        *PLATFORM_SERVICES,
        timeout=600,
    )  # fmt: skip
    containers = deployment.containers()
    assert Counter(containers.values()) == {
        "aggregator": 1, "runtime-code": CODE_REPLICAS, "runtime-web": 1, "runtime-reasoning": 1,
    }  # fmt: skip

    def states() -> dict[str, str]:
        return {c: deployment.health(c) for c in containers}

    def all_healthy() -> bool:
        now = states()
        assert "unhealthy" not in now.values(), f"{now}\n{deployment.logs()}"
        return set(now.values()) == {"healthy"}

    wait_for(all_healthy, 300, "every container healthy", interval=3)


def test_each_health_check_answers_for_its_own_process(deployment) -> None:
    """On one host network the replicas took 8001, 8002, ...: each container's check names
    its own component and port."""
    seen = {}
    for container in deployment.containers():
        done = dockerized.docker("exec", container, "adp", "health")
        [line] = done.stdout.strip().splitlines()
        seen[container] = line
    assert len(set(seen.values())) == len(seen), seen
    assert all(line.endswith(": healthy") for line in seen.values())


async def _group(bootstrap: str, group: str) -> list[dict]:
    async with admin_client(bootstrap) as admin:
        [response] = await admin.describe_consumer_groups([group])
    return response.to_object()["groups"][0]["members"]


def _members(bootstrap: str) -> dict[str, set]:
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment as Assignment

    return {
        member["client_id"]: set(Assignment.decode(member["member_assignment"]).partitions())
        for member in asyncio.run(_group(bootstrap, runtime_group("code")))
    }


def test_code_replicas_have_distinct_ids_and_share_the_partitions(deployment, broker) -> None:
    members = wait_for(
        lambda: (m := _members(broker.bootstrap)) and len(m) == CODE_REPLICAS and m,
        120,
        f"{CODE_REPLICAS} members in {runtime_group('code')}",
    )
    assert all(rid.startswith("code-") for rid in members)
    owned = list(members.values())
    assert all(owned), members  # every replica has partitions
    every = set().union(*owned)
    assert sum(map(len, owned)) == len(every) == 18  # 3 lanes x 6, each owned once


def _trajectory_keys(bootstrap: str) -> Counter:
    return Counter(r.key.decode() for r in asyncio.run(read_topic(bootstrap, TRAJECTORIES)))


def _in_flight(container: str) -> float:
    """adp_tasks_in_flight of the runtime in `container`, from its own /metrics."""
    script = (
        "import urllib.request; from adp.core import served; [s] = served.live(); "
        "print(urllib.request.urlopen(f'http://127.0.0.1:{s.port}/metrics').read().decode())"
    )
    done = dockerized.docker("exec", container, "python", "-c", script, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("adp_tasks_in_flight{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_tasks_of_every_type_become_trajectories_and_a_killed_replica_loses_nothing(
    deployment, broker, adp_image, site, tmp_path
) -> None:
    code = [f"compose-code-{i:02d}" for i in range(CODE_TASKS)]
    tasks = [
        {"task_id": t, "task_type": "code", "description": f"Print {i} squared.", "timeout": 120}
        for i, t in enumerate(code)
    ]
    tasks += [
        {
            "task_id": "compose-web-0",
            "task_type": "web",
            "description": "Open the last list page.",
            "constraints": {"start_url": site + "list/page3.html"},
            "timeout": 180,
        },
        {
            "task_id": "compose-reasoning-0",
            "task_type": "reasoning",
            "description": "Compute 6 times 7 with Python.",
            "timeout": 180,
        },
    ]
    ids = sorted(t["task_id"] for t in tasks)
    produced = subprocess.run(
        [*ADP, "produce", "--quiet", str(write_tasks(tmp_path / "tasks.jsonl", tasks))],
        env={**os.environ, "ADP_BOOTSTRAP": broker.bootstrap},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert produced.returncode == 0, produced.stderr

    # kill -9 a code replica while it runs tasks (they are redone elsewhere)
    replicas = list(deployment.containers("runtime-code"))
    victim = wait_for(
        lambda: next((c for c in replicas if _in_flight(c) > 0), None),
        120,
        "a code replica with tasks in flight",
        interval=0.5,
    )
    dockerized.docker("kill", victim)

    wait_for(
        lambda: set(_trajectory_keys(broker.bootstrap)) >= set(ids),
        600,
        f"{len(ids)} trajectories",
        interval=3,
    )
    published = _trajectory_keys(broker.bootstrap)
    assert {k: n for k, n in published.items() if n != 1} == {}  # duplicates nothing
    files = wait_for(
        lambda: (f := deployment.volume_files(adp_image)) and len(f) >= len(ids) and f,
        120,
        "every trajectory file in the volume",
        interval=2,
    )
    assert sorted(name.removesuffix(".json") for name in files) == ids  # loses nothing
    assert {(f["uid"], f["gid"]) for f in files.values()} == {(10001, 10001)}
    trajectories = {name.removesuffix(".json"): f["trajectory"] for name, f in files.items()}
    assert all(t["success"] for t in trajectories.values()), [
        k for k, t in trajectories.items() if not t["success"]
    ]
    ran_code = Counter(trajectories[t]["metadata"]["runtime_id"] for t in code)
    assert len(ran_code) >= 2 and all(rid.startswith("code-") for rid in ran_code)
    assert "ZEBRA-42" in trajectories["compose-web-0"]["steps"][0]["observation"]
    python = trajectories["compose-reasoning-0"]["steps"][0]
    assert python["action_type"] == "python" and python["observation"].strip()


def test_health_checks_follow_the_broker(deployment, broker) -> None:
    """The runtimes' checks fail while the broker is down and pass again when it is back."""
    runtimes = [c for c, s in deployment.containers().items() if s.startswith("runtime-")]
    node = broker.nodes[0]
    broker.stop_node(node, sig=9)
    try:
        wait_for(
            lambda: all(deployment.health_check(c).returncode != 0 for c in runtimes),
            90,
            "every runtime's health check to fail with the broker down",
            interval=2,
        )
        failed = deployment.health_check(runtimes[0])
        assert "broker not answering" in failed.stderr
    finally:
        broker.start_node(node)
    wait_for(
        lambda: all(deployment.health_check(c).returncode == 0 for c in runtimes),
        180,
        "every runtime's health check to pass with the broker back",
        interval=3,
    )
