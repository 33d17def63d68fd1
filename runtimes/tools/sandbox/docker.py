"""Docker backend of the python sandbox, through the `docker` SDK, for hosts with an engine.

Same contract as BubblewrapSandbox: no network, read-only root filesystem, private tmpfs workdir
(/work, deleted with the container), empty environment, memory / pids / CPU-time / file-size
limits, wall-clock timeout (the container is killed), output cut at output_limit characters.
"""

from __future__ import annotations

import asyncio
import threading
import time

from adp.runtimes.tools.sandbox.base import ENV, MAX_DRAIN_BYTES, Capture, ExecResult, SandboxLimits


class DockerSandbox:
    def __init__(self, image: str = "python:3.11-slim", client=None):
        try:
            import docker

            self.client = client or docker.from_env(timeout=30)
            self.client.ping()
        except Exception as e:  # DockerException, connection errors, missing socket
            raise RuntimeError(f"no Docker engine reachable: {e}") from None
        self.image = image

    async def run_python(self, code: str, limits: SandboxLimits | None = None) -> ExecResult:
        return await asyncio.to_thread(self._run, code, limits or SandboxLimits())

    def _create(self, code: str, limits: SandboxLimits):
        from docker.types import Ulimit

        mem = f"{limits.memory_mb}m"
        fsize = limits.file_size_mb << 20
        # the read-only rootfs refuses put_archive, so the code travels as an argument
        # (Linux caps one argument at 128 KiB) and a bootstrap writes it to /code/main.py
        return self.client.containers.create(
            self.image, ["python3", "-I", "-S", "-c", _BOOT, code], user="65534:65534",
            working_dir="/work", environment=dict(ENV), network_mode="none", read_only=True,
            mem_limit=mem, memswap_limit=mem, pids_limit=limits.max_processes,
            cap_drop=["ALL"], security_opt=["no-new-privileges"], detach=True,
            tmpfs={"/work": "rw,size=256m,mode=1777", "/tmp": "rw,size=64m,mode=1777",
                   "/code": "rw,size=16m,mode=1777"},
            ulimits=[Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds + 1),
                     Ulimit(name="fsize", soft=fsize, hard=fsize)])

    def _run(self, code: str, limits: SandboxLimits) -> ExecResult:
        import docker.errors

        try:
            c = self._create(code, limits)
        except docker.errors.ImageNotFound:
            self.client.images.pull(self.image)
            c = self._create(code, limits)
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
            return ExecResult(stdout=out.text(), stderr=err.text(), exit_code=exit_code,
                              timed_out=timed_out.is_set(),
                              truncated=bool(out.dropped or err.dropped),
                              duration=time.monotonic() - t0, notes=tuple(notes))
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
