"""Docker backend of the python sandbox, through the `docker` SDK, for hosts with an engine.

Same contract as BubblewrapSandbox: no network, read-only root filesystem, a private workdir
(/work: a host temp dir bind-mounted, one per Workspace, so an attempt's runs share it and its
files are collected as artifacts after each run), empty environment, memory / pids / CPU-time /
file-size limits, wall-clock timeout (the container is killed), output cut at output_limit
characters.

The image holds the same environment as the bubblewrap sandbox: built once from the same
requirements file (env.py) on top of a base image (ADP_SANDBOX_DOCKER_BASE, default
python:3.11-slim) and tagged adp-sandbox:<key of base and requirements>, so changing either
builds a new image. The build installs the requirements with pip, so it needs the package index:
ADP_SANDBOX_DOCKER_NETWORK names the network the build runs on (e.g. "host" on engines without a
default bridge). `image=` names a ready image instead. The code itself always runs with no
network.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from adp.core.errors import DependencyUnavailable
from adp.core.settings import settings
from adp.runtimes.tools.sandbox.artifacts import collect, snapshot
from adp.runtimes.tools.sandbox.base import (
    ENV,
    MAX_DRAIN_BYTES,
    Capture,
    ExecResult,
    SandboxLimits,
    Workspace,
)
from adp.runtimes.tools.sandbox.env import announced, requirement_lines, requirements_path


class DockerSandbox:
    def __init__(
        self,
        image: str | None = None,
        client=None,
        base: str | None = None,
        build_network: str | None = None,
    ):
        try:
            import docker

            self.client = client or docker.from_env(timeout=30)
            self.client.ping()
        except Exception as e:  # DockerException, connection errors, missing socket
            raise DependencyUnavailable(f"no Docker engine reachable: {e}") from None
        conf = settings().sandbox
        self.base = base or conf.docker_base
        self.build_network = build_network or conf.docker_network
        self.requirements = requirements_path().read_text()
        self.image = image or self._sandbox_image()
        self.env = _ImageEnv(announced(self.requirements))

    def _sandbox_image(self) -> str:
        """adp-sandbox:<key>, built from the requirements file when the engine lacks it."""
        import docker.errors

        key = hashlib.sha256(
            "\n".join([self.base, *requirement_lines(self.requirements)]).encode()
        ).hexdigest()[:16]
        tag = f"adp-sandbox:{key}"
        try:
            self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            self._build(tag)
        return tag

    def _build(self, tag: str) -> None:
        import docker.errors

        dockerfile = (
            f"FROM {self.base}\nCOPY requirements.txt /tmp/requirements.txt\n"
            "RUN pip install --no-cache-dir --only-binary=:all: -r /tmp/requirements.txt"
            " && rm /tmp/requirements.txt\n"
        )
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            for name, text in (("Dockerfile", dockerfile), ("requirements.txt", self.requirements)):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        context.seek(0)
        try:
            self.client.images.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                rm=True,
                forcerm=True,  # no half-built containers left behind by a failed step
                network_mode=self.build_network,
            )
        except (docker.errors.BuildError, docker.errors.APIError) as e:
            raise DependencyUnavailable(
                f"cannot build the docker sandbox image {tag} from {self.base} "
                f"(network {self.build_network or 'the engine default'}): "
                f"{_last_line(e)}; set ADP_SANDBOX_DOCKER_NETWORK (e.g. host) where builds "
                "need another network to reach the package index, ADP_SANDBOX_DOCKER_BASE "
                "to a base image the engine has, or use the bwrap backend"
            ) from None

    @asynccontextmanager
    async def workspace(self) -> AsyncIterator[Workspace]:
        root = tempfile.mkdtemp(prefix="adp-sbx-docker-")
        work = os.path.join(root, "work")
        os.mkdir(work)
        os.chmod(work, 0o777)  # the container runs as nobody (65534)
        try:
            yield Workspace(root, work, None)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    async def run_python(
        self, code: str, limits: SandboxLimits | None = None, workspace: Workspace | None = None
    ) -> ExecResult:
        limits = limits or SandboxLimits()
        if workspace is None:
            async with self.workspace() as ws:
                return await asyncio.to_thread(self._run, code, limits, ws)
        return await asyncio.to_thread(self._run, code, limits, workspace)

    def _create(self, code: str, limits: SandboxLimits, ws: Workspace):
        from docker.types import Ulimit

        mem = f"{limits.memory_mb}m"
        fsize = limits.file_size_mb << 20
        # the read-only rootfs refuses put_archive, so the code travels as an argument
        # (Linux caps one argument at 128 KiB) and a bootstrap writes it to /code/main.py
        return self.client.containers.create(
            self.image,
            ["python3", "-I", "-S", "-c", _BOOT, code],
            user="65534:65534",
            working_dir="/work",
            environment=dict(ENV),
            network_mode="none",
            read_only=True,
            mem_limit=mem,
            memswap_limit=mem,
            pids_limit=limits.max_processes,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            detach=True,
            volumes={ws.work: {"bind": "/work", "mode": "rw"}},
            tmpfs={"/tmp": "rw,size=64m,mode=1777", "/code": "rw,size=16m,mode=1777"},
            ulimits=[
                Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds + 1),
                Ulimit(name="fsize", soft=fsize, hard=fsize),
            ],
        )

    def _run(self, code: str, limits: SandboxLimits, ws: Workspace) -> ExecResult:
        import docker.errors

        before = snapshot(ws.work)
        try:
            c = self._create(code, limits, ws)
        except docker.errors.ImageNotFound:
            self.client.images.pull(self.image)
            c = self._create(code, limits, ws)
        out, err = Capture(limits.output_limit), Capture(limits.output_limit)
        notes: list[str] = []
        timed_out = threading.Event()
        try:
            stream = c.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
            t0 = time.monotonic()
            c.start()

            def kill(why: threading.Event | None = None) -> None:
                if why is not None:
                    why.set()
                try:
                    c.kill()
                except Exception:
                    pass

            timer = threading.Timer(limits.wall_timeout, kill, (timed_out,))
            timer.start()
            try:
                for o, e in stream:
                    out.feed(o or b"")
                    err.feed(e or b"")
                    if max(out.nbytes, err.nbytes) > MAX_DRAIN_BYTES and not notes:
                        notes.append(f"[killed: output exceeded {MAX_DRAIN_BYTES >> 20} MiB]")
                        kill()
                rc = c.wait(timeout=limits.wall_timeout + 30).get("StatusCode")
            finally:
                timer.cancel()
            if timed_out.is_set():
                notes.append(f"[killed: wall-clock timeout after {limits.wall_timeout:g}s]")
                exit_code = None
            else:
                exit_code = -(rc - 128) if rc and 128 < rc < 193 else rc
            duration = time.monotonic() - t0
            files = collect(ws.work, before, limits)
            return ExecResult(
                stdout=out.text(),
                stderr=err.text(),
                exit_code=exit_code,
                timed_out=timed_out.is_set(),
                truncated=bool(out.dropped or err.dropped),
                duration=duration,
                notes=tuple(notes),
                files=tuple(files),
            )
        finally:
            try:
                c.remove(force=True)
            except Exception:
                pass


_BOOT = """\
import os, sys
with open("/code/main.py", "w", encoding="utf-8") as f:
    f.write(sys.argv[1])
os.chmod("/code/main.py", 0o444)
os.execvp("python3", ["python3", "/code/main.py"])
"""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BUILDER_NOISE = ("Removing intermediate container", "--->", "Step ")


def _last_line(error: Exception) -> str:
    """The build's own last words (pip's error, the missing base), not the SDK's wrapper."""
    lines = [
        _ANSI.sub("", chunk["stream"]).strip()
        for chunk in getattr(error, "build_log", None) or ()
        if isinstance(chunk, dict) and chunk.get("stream", "").strip()
    ]
    lines = [line for line in lines if line and not line.startswith(_BUILDER_NOISE)]
    message = _ANSI.sub("", str(getattr(error, "msg", None) or error)).strip()
    return " ".join(" | ".join([*lines[-2:], message]).split())  # one line


class _ImageEnv:
    """What the code runtime asks a sandbox's environment: which libraries to name."""

    def __init__(self, libraries: list[str]):
        self._libraries = libraries

    def libraries(self) -> list[str]:
        return list(self._libraries)
