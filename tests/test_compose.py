"""compose/ and the Dockerfile, checked without a Docker engine: the compose file against the
Compose Specification's JSON schema, and everything it points at (build contexts, mounted files,
`adp` subcommands, Prometheus jobs, the Grafana dashboard's metrics, ports, secrets)."""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from adp.app.cli import COMMANDS
from adp.schemas.contracts import TaskType

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
SPEC = ROOT.parent / "shared" / "data" / "compose-spec.json"
METRICS_PORT = 8001

# The platform's metrics (README "Metrics"); the dashboard may query only these.
DOCUMENTED_METRICS = {
    "adp_tasks_received_total",
    "adp_tasks_finished_total",
    "adp_tasks_in_flight",
    "adp_consumer_lag",
    "adp_step_duration_seconds",
    "adp_llm_latency_seconds",
    "adp_llm_tokens_total",
    "adp_llm_cache_hits_total",
    "adp_llm_cache_misses_total",
    "adp_dlq_messages_total",
    "adp_sink_writes_total",
    "adp_trajectories_total",
    "adp_task_wait_seconds",
    "adp_aggregator_events_total",
    "adp_aggregator_dropped_total",
    "adp_sink_latency_seconds",
}
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)
SECRET_VALUE = re.compile(
    r"(sk-[A-Za-z0-9_-]{16,}|AIza[0-9A-Za-z_-]{20,}|AKIA[0-9A-Z]{16}|"
    r"hf_[A-Za-z0-9]{20,}|ghp_[A-Za-z0-9]{20,})"
)
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def interpolate(value, env: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} substitution, recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else current
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise AssertionError(f"${{{name}}} is required: {arg}")
            return current
        return current or ""

    return INTERPOLATION.sub(one, value)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict) -> dict:
    """The file as `docker compose config` would see it with an empty .env (defaults only)."""
    return interpolate(raw, {})


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def _argv(value) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def _adp_services(services: dict) -> dict[str, dict]:
    """Services running the platform image (built from the repo's Dockerfile)."""
    return {n: s for n, s in services.items() if "build" in s}


def _runs_adp(service: dict) -> bool:
    return "build" in service and "entrypoint" not in service


def _host_port(target: str) -> tuple[str, int]:
    parts = urlsplit(target if "//" in target else f"//{target}")
    return parts.hostname, parts.port


def _published(service: dict) -> list[tuple[str, str]]:
    """(host port, container port) of every published port."""
    out = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            out.append((str(p.get("published", "")), str(p["target"])))
        else:
            bits = str(p).split("/")[0].split(":")
            out.append((bits[-2] if len(bits) > 1 else "", bits[-1]))
    return out


def _mounts(service: dict) -> list[tuple[str | None, str, str]]:
    """(type, source, target) of every volume entry."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out.append((v.get("type"), v.get("source"), v["target"]))
        else:
            src, dst = v.split(":")[:2]
            out.append(("bind" if src.startswith((".", "/", "~")) else "volume", src, dst))
    return out


# ---- the schema -------------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec(raw: dict, compose: dict) -> None:
    if not SPEC.exists():
        pytest.skip(
            f"Compose Specification schema not found at {SPEC} (it lives in ../shared/data "
            "beside the project, not in a user's clone)"
        )
    import jsonschema

    schema = json.loads(SPEC.read_text())
    validator = jsonschema.Draft7Validator(schema)
    for label, doc in (("as written", raw), ("with defaults interpolated", compose)):
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"compose file {label}:\n" + "\n".join(
            f"  {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]
        )


def test_every_interpolated_variable_is_documented_in_env_example(raw: dict) -> None:
    used = set(INTERPOLATION.findall(COMPOSE_FILE.read_text()))
    example = (COMPOSE_DIR / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.M))
    missing = sorted({name for name, _, _ in used} - documented)
    assert not missing, f"variables used in docker-compose.yml but not in .env.example: {missing}"


# ---- what it points at ------------------------------------------------------------------------


def test_build_contexts_and_dockerfiles_exist(services: dict) -> None:
    assert _adp_services(services), "no service builds the platform image"
    for name, svc in services.items():
        build = svc.get("build")
        if build is None:
            assert "image" in svc, f"{name}: neither image nor build"
            assert ":" in svc["image"] and not svc["image"].endswith(":latest"), (
                f"{name}: pin the image tag ({svc['image']})"
            )
            continue
        build = {"context": build} if isinstance(build, str) else build
        context = (COMPOSE_DIR / build.get("context", ".")).resolve()
        assert context.is_dir(), f"{name}: build context {context} missing"
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), (
            f"{name}: Dockerfile missing in {context}"
        )


def test_bind_mounts_and_env_files_exist_in_the_repo(compose: dict, services: dict) -> None:
    for name, svc in services.items():
        for kind, src, _dst in _mounts(svc):
            if kind != "bind":
                assert src in (compose.get("volumes") or {}), (
                    f"{name}: named volume {src!r} not declared at the top level"
                )
                continue
            path = (COMPOSE_DIR / src).resolve()
            assert path.exists(), f"{name}: bind mount source {src} does not exist"
            assert path.is_relative_to(ROOT), f"{name}: mounts {path}, outside the repo"
        env_files = svc.get("env_file") or []
        for entry in [env_files] if isinstance(env_files, str) else env_files:
            entry = {"path": entry} if isinstance(entry, str) else entry
            path = COMPOSE_DIR / entry["path"]
            if entry.get("required", True):
                assert path.exists(), f"{name}: required env_file {entry['path']} missing"
            else:  # the user's own .env, made from the committed example
                assert (COMPOSE_DIR / (entry["path"] + ".example")).exists(), (
                    f"{name}: optional env_file {entry['path']} has no {entry['path']}.example"
                )
    for section in ("configs", "secrets"):
        for key, item in (compose.get(section) or {}).items():
            if "file" in item:
                assert (COMPOSE_DIR / item["file"]).exists(), f"{section}.{key}: {item['file']}"


def test_service_commands_are_real_adp_commands(services: dict) -> None:
    runners = {n: s for n, s in services.items() if _runs_adp(s)}
    assert runners, "no service runs `adp`"
    for name, svc in runners.items():
        argv = _argv(svc.get("command"))
        assert argv, f"{name}: no command (the image's default is only --help)"
        assert argv[0] in COMMANDS, f"{name}: `adp {argv[0]}` is not in app/cli.py COMMANDS"
        module, attr = COMMANDS.entries()[argv[0]].split(":")
        try:
            command = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue  # the command is not written yet; its name at least is the contract's
        # Parse (never run) the arguments: unknown options or bad values fail here.
        command.make_context(argv[0], list(argv[1:]), resilient_parsing=False)


def test_topic_creation_service_calls_real_code(services: dict) -> None:
    topics = services["topics"]
    assert topics.get("restart") == "no"
    code = " ".join(_argv(topics.get("entrypoint")) + _argv(topics.get("command")))
    imports = re.findall(r"from ([\w.]+) import ([\w, ]+)", code)
    assert imports, f"topics service imports nothing: {code}"
    for module, names in imports:
        mod = importlib.import_module(module)
        for attr in (n.strip() for n in names.split(",")):
            assert hasattr(mod, attr), f"topics service uses {module}.{attr}, which does not exist"
    assert "ensure_topics" in code
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_runtimes_scale_and_cover_every_task_type(services: dict) -> None:
    for task_type in TaskType:
        name = f"runtime-{task_type.value}"
        assert name in services, f"no {name} service"
        svc = services[name]
        argv = _argv(svc["command"])
        assert argv[:2] == ["runtime", task_type.value] and "--concurrency" in argv, argv
        assert "container_name" not in svc, f"{name}: container_name breaks --scale"
        assert not svc.get("ports"), f"{name}: a fixed host port breaks --scale"
        assert "hostname" not in svc, f"{name}: a fixed hostname gives replicas one runtime_id"
    assert "container_name" not in services["aggregator"]
    agg = _argv(services["aggregator"]["command"])
    out = agg[agg.index("--out") + 1]
    assert any(dst == out for _k, _s, dst in _mounts(services["aggregator"])), (
        "the aggregator's --out folder is not on a volume"
    )


def test_vllm_has_a_gpu_and_the_runtimes_point_at_it(services: dict) -> None:
    vllm = services["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d.get("capabilities", []) for d in devices)
    argv = _argv(vllm["command"])
    port = int(argv[argv.index("--port") + 1])
    assert (
        "${VLLM_MODEL" in yaml.safe_load(COMPOSE_FILE.read_text())["services"]["vllm"]["command"][1]
    )
    for name in (f"runtime-{t.value}" for t in TaskType):
        host, p = _host_port(_env(services[name])["ADP_VLLM_URL"])
        assert (host, p) == ("vllm", port), f"{name}: ADP_VLLM_URL does not reach the vllm service"


def test_kafka_is_kraft_and_reachable_from_other_hosts(raw: dict, services: dict) -> None:
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.1\.\d+", kafka["image"]), kafka["image"]
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = dict(
        re.match(r"(\w+)://[^:]*:(\d+)", listener).groups()
        for listener in env["KAFKA_LISTENERS"].split(",")
    )
    advertised = dict(
        (n, _host_port(a))
        for n, a in (line.split("://") for line in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    )
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    raw_adv = _env(raw["services"]["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    assert "${KAFKA_ADVERTISED_HOST" in raw_adv, "other hosts need an advertised address they reach"
    # The external listener is published on the host port it advertises.
    ext_host_port = advertised["EXTERNAL"][1]
    assert (str(ext_host_port), listeners["EXTERNAL"]) in _published(kafka)
    # In-compose clients use the internal listener.
    for name, svc in _adp_services(services).items():
        host, port = _host_port(_env(svc)["ADP_BOOTSTRAP"])
        assert (host, port) == advertised["INTERNAL"], f"{name}: ADP_BOOTSTRAP {host}:{port}"
        assert str(port) == listeners["INTERNAL"]
        deps = svc.get("depends_on") or {}
        assert "kafka" in deps or "topics" in deps, f"{name} does not wait for Kafka"
    assert "healthcheck" in kafka


# ---- health and metrics -----------------------------------------------------------------------


def test_components_have_health_checks_on_the_metrics_port(services: dict) -> None:
    for name, svc in services.items():
        if name == "topics":
            continue
        hc = svc.get("healthcheck")
        assert hc and not hc.get("disable"), f"{name}: no healthcheck"
        if _runs_adp(svc):
            # `adp health` asks the component on the port it got (ADP_METRICS_PORT or the next
            # free one); tests/test_docker_compose.py runs it against real containers
            assert _argv(hc["test"])[:3] == ["CMD", "adp", "health"], f"{name}: {hc['test']}"
            assert _env(svc)["ADP_METRICS_PORT"] == str(METRICS_PORT)
            assert str(METRICS_PORT) in [str(p) for p in svc.get("expose", [])]


def test_prometheus_scrapes_every_component(services: dict) -> None:
    prom = services["prometheus"]
    mounts = {dst: src for _k, src, dst in _mounts(prom)}
    config_arg = next(a for a in _argv(prom["command"]) if a.startswith("--config.file="))
    config_path = config_arg.split("=", 1)[1]
    assert (
        Path(COMPOSE_DIR / mounts[config_path]).resolve()
        == (COMPOSE_DIR / "prometheus.yml").resolve()
    )

    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    scraped: dict[str, set[int]] = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            assert sd.get("type", "SRV") == "A" and "port" in sd, job["job_name"]
            for host in sd["names"]:
                scraped.setdefault(host, set()).add(int(sd["port"]))
        for sc in job.get("static_configs", []):
            for target in sc["targets"]:
                host, port = _host_port(target)
                scraped.setdefault(host, set()).add(port)
    for host in scraped:
        assert host in services or host == "localhost", f"scrape target {host} is no service"
    for name, svc in services.items():
        if _runs_adp(svc):
            assert METRICS_PORT in scraped.get(name, set()), (
                f"{name} is not scraped on {METRICS_PORT}"
            )
    # Scaled services are found through DNS, so every replica is scraped.
    dns_names = {
        n
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for n in sd["names"]
    }
    assert {f"runtime-{t.value}" for t in TaskType} <= dns_names


def _registered_metrics() -> set[str]:
    """Names the code really registers (imports the modules that define the metrics)."""
    from prometheus_client import REGISTRY

    for module in ("adp.core.metrics", "adp.runtimes.llm.client", "adp.runtimes.llm.cache"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    return set(REGISTRY._names_to_collectors)


def test_grafana_is_provisioned_with_the_dashboard(services: dict) -> None:
    grafana = services["grafana"]
    mounts = {
        dst: (COMPOSE_DIR / src).resolve() for kind, src, dst in _mounts(grafana) if kind == "bind"
    }
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = [
        yaml.safe_load(p.read_text()) for p in sorted((provisioning / "datasources").glob("*.y*ml"))
    ]
    ds = [d for doc in datasources for d in doc["datasources"] if d["type"] == "prometheus"]
    assert len(ds) == 1
    host, port = _host_port(ds[0]["url"])
    assert host == "prometheus" and str(port) in [c for _h, c in _published(services["prometheus"])]

    providers = [
        p
        for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert providers
    dashboards_dir = mounts[providers[0]["options"]["path"]]
    files = sorted(dashboards_dir.glob("*.json"))
    assert files, f"no dashboard JSON in {dashboards_dir}"
    for f in files:
        dash = json.loads(f.read_text())
        for panel in dash["panels"]:
            uid = (panel.get("datasource") or {}).get("uid")
            assert uid in (None, ds[0]["uid"]), f"{panel['title']}: unknown datasource {uid}"


def test_dashboard_queries_only_documented_metrics(services: dict) -> None:
    dash = json.loads((COMPOSE_DIR / "grafana" / "dashboards" / "adp.json").read_text())
    text = json.dumps(dash)
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\badp_[a-z_]+", text)}
    assert used, "the dashboard queries no platform metric"
    assert used <= DOCUMENTED_METRICS, f"undocumented metrics: {sorted(used - DOCUMENTED_METRICS)}"
    registered = _registered_metrics()
    unregistered = sorted(m for m in used if m not in registered)
    assert not unregistered, f"queried but registered by no module: {unregistered}"
    exprs = " | ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for needle in (
        "adp_tasks_finished_total",
        "adp_consumer_lag",
        "adp_tasks_in_flight",
        "error_type",
        "histogram_quantile(0.5, sum by (le) (rate(adp_llm_latency_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(adp_llm_latency_seconds_bucket",
        "adp_llm_cache_hits_total",
        "adp_llm_cache_misses_total",
        "sum by (task_type, lane) (adp_consumer_lag",
        "sum by (le, lane) (rate(adp_task_wait_seconds_bucket",
    ):
        assert needle in exprs, f"no panel queries {needle}"
    for word in (
        "throughput",
        "lag",
        "in-flight",
        "error",
        "latency",
        "cache hit",
        "priority lane",
    ):
        assert word in titles, f"no panel about {word}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_ports_are_consistent(services: dict) -> None:
    published = [h for svc in services.values() for h, _c in _published(svc) if h]
    assert len(published) == len(set(published)), f"host port used twice: {published}"
    assert _published(services["grafana"]) == [("3000", "3000")]
    vllm_argv = _argv(services["vllm"]["command"])
    assert ("8000", vllm_argv[vllm_argv.index("--port") + 1]) in _published(services["vllm"])
    assert "127.0.0.1:8000/health" in " ".join(_argv(services["vllm"]["healthcheck"]["test"]))
    assert "127.0.0.1:9090/" in " ".join(_argv(services["prometheus"]["healthcheck"]["test"]))


# ---- secrets ----------------------------------------------------------------------------------


def test_no_literal_secrets(raw: dict) -> None:
    text = COMPOSE_FILE.read_text()
    assert not SECRET_VALUE.search(text), "something that looks like a real key is in the file"
    for name, svc in raw["services"].items():
        for key, value in _env(svc).items():
            if SECRET_NAME.search(key) and value is not None:
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?-)?\}", value), (
                    f"{name}: {key} must come from the environment (${{{key}}}), not {value!r}"
                )
    example = (COMPOSE_DIR / ".env.example").read_text()
    assert not SECRET_VALUE.search(example)
    for line in example.splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m and SECRET_NAME.search(m.group(1)):
            assert m.group(2).strip() == "", f".env.example must leave {m.group(1)} empty"
    for var in ("GEMINI_API_KEY", "DEEPSEEK_API_KEY", "OPENAI_API_KEY"):
        assert re.search(rf"^{var}=$", example, re.M), f".env.example lacks {var}="
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored or "**/.env" in ignored, ".env must stay out of the image"


# ---- the image --------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_builds_the_platform_image() -> None:
    steps = _dockerfile()
    froms = [a for i, a in steps if i == "FROM"]
    assert froms and froms[0].startswith("python:3.11-slim-bookworm")
    entry = [a for i, a in steps if i == "ENTRYPOINT"]
    assert len(entry) == 1
    argv = json.loads(entry[0])
    assert argv[-1] == "adp", f"ENTRYPOINT must run adp: {argv}"
    runs = " ".join(a for i, a in steps if i == "RUN")
    for package in ("bubblewrap", "chromium", "python3"):
        assert re.search(rf"\b{package}\b", runs), f"apt-get install {package} missing"
    envs = " ".join(a for i, a in steps if i == "ENV")
    assert "ADP_CHROMIUM=/usr/bin/chromium" in envs
    # the code sandbox's scientific environment is built into the image and used from there
    assert "adp sandbox build --into /opt/adp-sandbox" in runs
    assert "ADP_SANDBOX_ENV=/opt/adp-sandbox" in envs
    # the image installs the wheel built from the repo (not an editable checkout)
    assert "python -m build --wheel" in runs
    copies = [a for i, a in steps if i == "COPY"]
    assert any(a.startswith("--from=wheel ") for a in copies), "the wheel must reach the image"
    assert re.search(r"pip install [^&]*\.whl", runs) and "-e /app" not in runs
    assert any("constraints.txt" in a for a in copies), "installs use the pinned constraints"
    users = [a for i, a in steps if i == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image should not run as root"
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for path in (".venv", ".adp", "output", ".git"):
        assert path in ignored, f".dockerignore should exclude {path}"
    assert "schemas" not in ignored and "*.avsc" not in ignored


# ---- least privilege ----------------------------------------------------------------------------

SANDBOX_OPTIONS = {"seccomp=unconfined", "systempaths=unconfined", "apparmor=unconfined"}


def test_only_the_sandboxed_runtimes_relax_the_containers_profile(services: dict) -> None:
    """The code and reasoning runtimes run the python sandbox (bubblewrap), which needs exactly
    SANDBOX_OPTIONS (tests/test_docker_image.py shows each is needed); nothing else relaxes
    anything, no service of the image keeps a capability or may gain privileges, none is
    privileged or runs as root."""
    for name, svc in _adp_services(services).items():
        opts = set(svc.get("security_opt", []))
        sandboxed = name in ("runtime-code", "runtime-reasoning")
        assert (opts & SANDBOX_OPTIONS) == (SANDBOX_OPTIONS if sandboxed else set()), name
        assert "no-new-privileges:true" in opts, name
        assert svc.get("cap_drop") == ["ALL"] and not svc.get("cap_add"), name
        assert not svc.get("privileged") and not svc.get("user"), name  # the image's adp user
    assert services["runtime-web"]["shm_size"] == services["runtime-reasoning"]["shm_size"]
