"""The platform image on a real Docker engine (make test-docker): it builds from the Dockerfile,
runs every `adp` command as its non-root user, the python sandbox works inside it with exactly
the options compose/docker-compose.yml gives the sandboxed runtimes (and not with one less), the
web runtime's Chromium works with the web runtime's options, and the Docker sandbox backend
builds its own image on a chosen network and base and runs code with no network."""

from __future__ import annotations

import json
import textwrap

import pytest

from adp import __version__
from adp.app.cli import COMMANDS
from adp.core.errors import DependencyUnavailable
from tests import dockerized

# the first test builds the image (session fixture): a cold build takes minutes on 2 cores
pytestmark = [pytest.mark.docker, pytest.mark.timeout(dockerized.BUILD_TIMEOUT + 600)]

IMAGE_USER = "10001:10001"

EVERY_COMMAND = textwrap.dedent(
    """
    import json, os, subprocess, sys
    out = {"id": f"{os.getuid()}:{os.getgid()}"}
    out["version"] = subprocess.run(["adp", "--version"], capture_output=True, text=True).stdout
    for name in sys.argv[1:]:
        done = subprocess.run(["adp", name, "--help"], capture_output=True, text=True)
        out[name] = [done.returncode, (done.stdout + done.stderr).strip().splitlines()[:1]]
    print(json.dumps(out))
    """
)


def test_the_image_runs_every_command_as_its_own_user(adp_image: str) -> None:
    names = COMMANDS.names()
    done = dockerized.docker(
        "run", "--rm", "--network=none", "--entrypoint", "python", adp_image,
        "-c", EVERY_COMMAND, *names,
        timeout=300,
    )  # fmt: skip
    out = json.loads(done.stdout)
    assert out.pop("id") == IMAGE_USER
    assert out.pop("version").strip() == f"adp {__version__}"
    failed = {n: r for n, r in out.items() if r[0] != 0 or not r[1][0].startswith("Usage: adp")}
    assert not failed, failed
    assert sorted(out) == sorted(names)
    # the entry point is adp itself (tini in front): `docker run IMAGE status --help` works
    shown = dockerized.docker("run", "--rm", "--network=none", adp_image, "health", "--help")
    assert shown.stdout.startswith("Usage: adp health")


SANDBOX = textwrap.dedent(
    """
    import asyncio, json
    from adp.runtimes.tools.sandbox.bwrap import BubblewrapSandbox

    CODE = '''
    import os, socket, numpy
    try:
        socket.create_connection(("127.0.0.1", 9), timeout=2)
        net = "reachable"
    except OSError as e:
        net = type(e).__name__
    pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    print(os.getuid(), numpy.arange(4).sum(), net, len(pids) <= 3)
    '''

    async def main():
        try:
            result = await BubblewrapSandbox().run_python(CODE)
        except Exception as e:
            return {"error": f"{type(e).__name__}: {e}"}
        return {"ok": result.ok, "stdout": result.stdout, "stderr": result.stderr[-400:]}

    print(json.dumps(asyncio.run(main())))
    """
)


def _sandbox_in(image: str, options: list[str]) -> dict:
    done = dockerized.run_python(image, SANDBOX, options)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("service", ["runtime-code", "runtime-reasoning"])
def test_the_sandbox_works_with_the_options_compose_gives(adp_image: str, service: str) -> None:
    """As the image's user, with no capability: the code runs as the sandbox's own uid, imports
    the sandbox environment's numpy, reaches no network and sees only its own processes."""
    options = dockerized.container_options(service)
    assert "--cap-drop=ALL" in options and "--security-opt=no-new-privileges:true" in options
    result = _sandbox_in(adp_image, options)
    assert result.get("ok"), result
    uid, total, net, own_proc = result["stdout"].split()
    assert uid != "0" and total == "6" and own_proc == "True"
    assert net in ("OSError", "ConnectionRefusedError") and net != "reachable"


def _apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


@pytest.mark.parametrize(
    "dropped, says",
    [
        ("seccomp=unconfined", "No permissions to create new namespace"),
        ("systempaths=unconfined", "Can't mount proc"),
        ("apparmor=unconfined", ""),
    ],
)
def test_each_relaxed_option_is_needed(adp_image: str, dropped: str, says: str) -> None:
    """The least that works: without any one of the options the sandbox cannot start."""
    if dropped.startswith("apparmor") and not _apparmor_enabled():
        pytest.skip("AppArmor is off on this host's kernel: apparmor=unconfined changes nothing")
    options = [o for o in dockerized.container_options("runtime-code") if dropped not in o]
    result = _sandbox_in(adp_image, options)
    assert not result.get("ok"), f"the sandbox worked without {dropped}: {result}"
    assert says in json.dumps(result)


CHROMIUM = textwrap.dedent(
    """
    import asyncio, json
    from adp.app.site_server import SiteServer
    from adp.runtimes.tools.browser import BrowserPool

    async def main():
        with SiteServer() as site:
            async with BrowserPool(size=1) as pool:
                async with pool.session() as browser:
                    page = await browser.goto(site + "list/page3.html")
                    back = await browser.click("Previous page")
        return {"page3": page.observation, "page2": back.observation}

    print(json.dumps(asyncio.run(main())))
    """
)


@pytest.mark.parametrize("service", ["runtime-web", "runtime-reasoning"])
def test_chromium_works_with_the_options_compose_gives(adp_image: str, service: str) -> None:
    """The shipped site served inside the container, read and clicked by Debian's Chromium
    through Playwright, as the image's user with the service's options and no network."""
    # the site is on the container's own loopback, which the browser's egress policy refuses
    # unless allowed (runtimes/tools/egress.py), as the test suite allows it (tests/conftest.py)
    allow = ["-e", "ADP_BROWSER_EGRESS_ALLOW=127.0.0.1"]
    done = dockerized.run_python(adp_image, CHROMIUM, dockerized.container_options(service) + allow)
    assert done.returncode == 0, done.stderr[-3000:]
    pages = json.loads(done.stdout.strip().splitlines()[-1])
    assert "ZEBRA-42" in pages["page3"] and "Page 2 of 3" in pages["page2"]


# ---- the docker sandbox backend --------------------------------------------------------------


@pytest.fixture
def small_requirements(tmp_path, monkeypatch):
    """One small wheel instead of the scientific stack: what is tested is that the build gets
    the package index over the network it is given, not how long numpy takes to download."""
    path = tmp_path / "requirements.txt"
    path.write_text("# announce: six\nsix==1.17.0\n")
    monkeypatch.setenv("ADP_SANDBOX_REQUIREMENTS", str(path))
    return path


async def test_docker_backend_builds_on_the_host_network_and_runs_code_offline(
    small_requirements,
) -> None:
    dockerized.require_engine()
    from adp.runtimes.tools.sandbox import SandboxLimits
    from adp.runtimes.tools.sandbox.docker import DockerSandbox

    sandbox = DockerSandbox(base="python:3.11-slim", build_network="host")
    assert sandbox.image.startswith("adp-sandbox:") and sandbox.env.libraries() == ["six"]
    code = textwrap.dedent(
        """
        import os, six, socket
        try:
            socket.create_connection(("127.0.0.1", 9), timeout=2)
            net = "reachable"
        except OSError as e:
            net = type(e).__name__
        open("out.txt", "w").write("kept")
        print(six.__version__, os.getuid(), net)
        """
    )
    result = await sandbox.run_python(code, SandboxLimits(wall_timeout=120))
    assert result.ok, result.observation()
    version, uid, net = result.stdout.split()
    assert version == "1.17.0" and uid == "65534" and net != "reachable"
    assert [(f.name, f.data) for f in result.files] == [("out.txt", b"kept")]


def test_docker_backend_says_why_its_image_cannot_be_built(small_requirements) -> None:
    """A base the engine does not have (and no registry to pull it from): one clear error that
    names the base and the settings, no traceback from the SDK."""
    dockerized.require_engine()
    from adp.runtimes.tools.sandbox.docker import DockerSandbox

    containers = set(dockerized.docker("ps", "-aq").stdout.split())
    with pytest.raises(DependencyUnavailable) as caught:
        DockerSandbox(base="adp-test-no-such-base:1", build_network="none")
    message = str(caught.value)
    assert "adp-test-no-such-base:1" in message and "ADP_SANDBOX_DOCKER_BASE" in message
    assert "\n" not in message
    assert set(dockerized.docker("ps", "-aq").stdout.split()) <= containers  # none left behind


def test_image_user_owns_its_data_folders(adp_image: str) -> None:
    done = dockerized.docker(
        "run", "--rm", "--network=none", "--entrypoint", "stat", adp_image,
        "-c", "%u:%g %n", "/data/adp", "/data/trajectories",
    )  # fmt: skip
    assert done.stdout.split("\n")[:2] == [
        f"{IMAGE_USER} /data/adp",
        f"{IMAGE_USER} /data/trajectories",
    ]
