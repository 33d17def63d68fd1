"""The python sandbox, against real bubblewrap: every containment is shown by experiment."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from adp.core.errors import DependencyUnavailable
from adp.runtimes.tools.sandbox import ExecResult, Sandbox, SandboxLimits, make_sandbox
from adp.runtimes.tools.sandbox.bwrap import BubblewrapSandbox, sandbox_available
from adp.runtimes.tools.sandbox.docker import DockerSandbox

REASON = sandbox_available()
needs_bwrap = pytest.mark.skipif(
    REASON is not None, reason=f"bubblewrap sandbox unusable: {REASON}"
)

# small limits so the whole file stays quick on 2 cores
SMALL = SandboxLimits(
    cpu_seconds=5,
    memory_mb=256,
    max_processes=32,
    file_size_mb=4,
    wall_timeout=30,
    output_limit=2000,
)


@pytest.fixture
def sb() -> BubblewrapSandbox:
    return BubblewrapSandbox()


@pytest.fixture
def run_root():
    """A tmp_root the unprivileged sandbox uid can reach (pytest's tmp_path is 0700 under root)."""
    d = tempfile.mkdtemp(prefix="adp-sbx-test-")
    os.chmod(d, 0o711)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def host_pids_with(marker: str) -> list[int]:
    """Host processes whose command line contains marker (what a leaked sandbox child shows)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


# ---------------------------------------------------------------- the observation, no sandbox


def test_observation_format():
    clean = ExecResult("a\nb\n", "", 0, False, False, 0.1)
    assert clean.ok and clean.observation() == "a\nb\n"
    assert ExecResult("no newline", "", 0, False, False, 0.1).observation() == "no newline"
    failed = ExecResult("out", "Traceback ...\nValueError: x\n", 1, False, False, 0.1)
    assert not failed.ok
    assert failed.observation() == "out\n[stderr]\nTraceback ...\nValueError: x\n[exit code 1]"
    slow = ExecResult(
        "", "", None, True, False, 1.0, notes=("[killed: wall-clock timeout after 1s]",)
    )
    assert not slow.ok and slow.observation() == "[killed: wall-clock timeout after 1s]"
    cpu = ExecResult("", "", -signal.SIGXCPU, False, False, 1.0)
    assert cpu.observation() == "[killed by signal SIGXCPU: CPU time limit exceeded]"


def test_factory_and_availability():
    if os.path.exists("/usr/bin/bwrap"):
        assert isinstance(make_sandbox(), BubblewrapSandbox)
    assert isinstance(BubblewrapSandbox(), Sandbox)
    with pytest.raises(ValueError, match="unknown sandbox backend"):
        make_sandbox("nope")


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root is the run's uid switched")
def test_unreachable_tmp_root_is_refused_clearly(tmp_path):
    private = tmp_path / "runs"  # pytest's base dir is 0700: the sandbox uid cannot get in
    private.mkdir()
    with pytest.raises(ValueError, match="not searchable by other users"):
        BubblewrapSandbox(tmp_root=str(private))


# ---------------------------------------------------------------- what a program sees


@needs_bwrap
async def test_print_output_is_exact(sb):
    code = "print('hello')\nprint('wörld ✓', 42)\nimport sys; sys.stdout.write('no newline')"
    r = await sb.run_python(code, SMALL)
    assert r.stdout == "hello\nwörld ✓ 42\nno newline"
    assert r.stderr == "" and r.exit_code == 0 and r.ok
    assert not r.timed_out and not r.truncated
    assert r.observation() == r.stdout


@needs_bwrap
async def test_exception_gives_traceback_and_exit_code(sb):
    r = await sb.run_python("print('before')\nx = 1\nraise ValueError('boom')\n", SMALL)
    assert r.stdout == "before\n"
    assert r.exit_code == 1 and not r.ok
    assert "Traceback (most recent call last)" in r.stderr
    assert "raise ValueError('boom')" in r.stderr  # the source line is shown
    assert r.stderr.rstrip().endswith("ValueError: boom")
    obs = r.observation()
    assert obs.startswith("before\n[stderr]\nTraceback") and obs.endswith("[exit code 1]")


@needs_bwrap
async def test_environment_of_the_host_is_invisible(sb, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("ADP_SECRET_TOKEN", "tok-test-secret")
    code = (
        "import os, json\n"
        "print(json.dumps(dict(os.environ)))\n"
        "for p in ('/proc/self/environ', '/proc/1/environ'):\n"
        "    print(open(p, 'rb').read())\n"
    )
    r = await sb.run_python(code, SMALL)
    assert r.ok, r.observation()
    env = json.loads(r.stdout.splitlines()[0])
    assert "OPENAI_API_KEY" not in env and "ADP_SECRET_TOKEN" not in env
    assert set(env) <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PYTHONIOENCODING",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONPATH",
        "PWD",
        "LC_CTYPE",
        "MPLBACKEND",
        "MPLCONFIGDIR",
        "XDG_CACHE_HOME",
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
    }
    assert "secret" not in r.stdout  # nor in bwrap's own pid 1 environ


# ---------------------------------------------------------------- isolation


@needs_bwrap
async def test_no_network(sb):
    host = socket.socket()
    host.bind(("127.0.0.1", 0))
    host.listen()
    port = host.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # reachable from host
        code = (
            "import socket, errno\n"
            f"for addr in [('127.0.0.1', {port}), ('1.1.1.1', 53), ('8.8.8.8', 443)]:\n"
            "    try:\n"
            "        socket.create_connection(addr, timeout=5).close()\n"
            "        print('CONNECTED', addr)\n"
            "    except OSError as e:\n"
            "        print('failed', addr, errno.errorcode.get(e.errno, e))\n"
        )
        r = await sb.run_python(code, SMALL)
    finally:
        host.close()
    assert r.ok, r.observation()
    assert "CONNECTED" not in r.stdout
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("failed") for line in lines)
    assert "ECONNREFUSED" in lines[0]  # its 127.0.0.1 is its own empty loopback
    assert "ENETUNREACH" in lines[1] and "ENETUNREACH" in lines[2]  # no route out at all


@needs_bwrap
async def test_host_files_are_invisible(sb):
    token = secrets.token_hex(8)
    planted = []
    for d in ("/root", str(Path(__file__).resolve().parent.parent)):
        p = Path(d) / f".adp-sandbox-secret-{token}"
        try:
            p.write_text(f"TOP-{token[::-1]}")
        except OSError:
            continue
        planted.append(str(p))
    assert planted, "could not plant a secret file on the host"
    paths = [
        *planted,
        "/etc/shadow",
        "/root",
        str(Path(__file__).resolve().parent.parent),
        "/home",
        "/var",
        "/etc/hostname",
        str(Path(__file__).resolve()),
    ]
    code = (
        "import os\n"
        f"for p in {paths!r}:\n"
        "    try:\n"
        "        print('VISIBLE', p, os.listdir(p) if os.path.isdir(p) else open(p).read())\n"
        "    except OSError as e:\n"
        "        print('hidden', p, type(e).__name__)\n"
        "print(sorted(os.listdir('/')))\n"
    )
    try:
        assert all(os.path.exists(p) for p in planted)
        r = await sb.run_python(code, SMALL)
    finally:
        for p in planted:
            os.unlink(p)
    assert r.ok, r.observation()
    assert "VISIBLE" not in r.stdout and f"TOP-{token[::-1]}" not in r.stdout
    assert r.stdout.count("hidden") == len(paths)
    top = set(ast.literal_eval(r.stdout.splitlines()[-1]))
    assert top >= {"usr", "proc", "dev", "tmp", "etc", "work", "code"}
    assert top - {"usr", "proc", "dev", "tmp", "etc", "work", "code", "env"} <= {
        "bin",
        "sbin",
        "lib",
        "lib32",
        "lib64",
        "libx32",
    }  # env: the sandbox's Python environment
    assert not top & {"root", "home", "var", "mnt", "opt", "srv", "run", "boot"}


@needs_bwrap
async def test_writes_outside_the_workdir_fail(sb):
    marker = f"adp-sbx-{secrets.token_hex(6)}"
    code = (
        "import errno\n"
        f"for p in ['/{marker}', '/usr/{marker}', '/usr/lib/{marker}', '/etc/{marker}', "
        f"'/etc/passwd', '/code/main.py', '/bin/{marker}']:\n"
        "    try:\n"
        "        open(p, 'a').write('x')\n"
        "        print('WROTE', p)\n"
        "    except OSError as e:\n"
        "        print('refused', p, errno.errorcode[e.errno])\n"
        f"open('/tmp/{marker}', 'w').write('private tmp')\n"
        f"open('{marker}', 'w').write('in the workdir')\n"
        f"print(open('{marker}').read())\n"
    )
    r = await sb.run_python(code, SMALL)
    assert r.ok, r.observation()
    assert "WROTE" not in r.stdout
    refusals = [line.split() for line in r.stdout.splitlines() if line.startswith("refused")]
    assert len(refusals) == 7 and all(err in ("EROFS", "EACCES") for *_, err in refusals)
    assert r.stdout.endswith("in the workdir\n")
    assert not os.path.exists(f"/tmp/{marker}")  # its /tmp is its own
    assert not os.path.exists(f"/usr/{marker}") and not os.path.exists(f"/{marker}")


@needs_bwrap
async def test_workdir_is_empty_private_and_deleted(run_root):
    sb = BubblewrapSandbox(tmp_root=str(run_root))
    code = (
        "import os\n"
        "print(os.getcwd(), os.listdir('.'))\n"
        "open('left-behind.txt', 'w').write('x' * 100)\n"
        "os.mkdir('sub'); os.chmod('sub', 0)\n"
    )
    first = await sb.run_python(code, SMALL)
    second = await sb.run_python(code, SMALL)
    assert first.stdout == second.stdout == "/work []\n"
    assert first.ok and second.ok
    assert list(run_root.iterdir()) == []  # each run's dir is removed afterwards


# ---------------------------------------------------------------- limits


@needs_bwrap
async def test_infinite_loop_is_killed_at_wall_timeout_with_its_whole_tree(sb):
    marker = f"{secrets.randbelow(10**6) + 10**6}.{secrets.randbelow(10**6)}"
    code = (
        "import subprocess, time\n"
        f"subprocess.Popen(['sleep', '{marker}'])\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"  # tries to escape
        "print('started')\n"
        "while True:\n"
        "    time.sleep(0.1)\n"
    )
    r = await sb.run_python(code, SandboxLimits(wall_timeout=1.5))
    assert r.timed_out is True
    assert r.exit_code is None and not r.ok
    assert r.stdout == "started\n"  # what it printed before the kill is kept
    assert r.observation() == "started\n[killed: wall-clock timeout after 1.5s]"
    assert host_pids_with(marker) == []  # no process of the run survives it


@needs_bwrap
async def test_cpu_spin_is_killed_by_the_cpu_limit(sb):
    r = await sb.run_python(
        "while True:\n    pass\n", SandboxLimits(cpu_seconds=1, wall_timeout=120)
    )
    assert not r.timed_out  # the CPU limit, not the wall clock, ended it
    assert r.exit_code in (-signal.SIGXCPU, -signal.SIGKILL)
    assert "CPU time limit exceeded" in r.observation() or "SIGKILL" in r.observation()


@needs_bwrap
async def test_memory_hog_fails(sb):
    code = (
        "small = bytearray(32 << 20)\n"
        "print('32 MiB ok', flush=True)\n"
        "big = bytearray(512 << 20)\n"
        "print('SHOULD NOT GET HERE')\n"
    )
    r = await sb.run_python(code, SandboxLimits(memory_mb=128, wall_timeout=30))
    assert r.stdout == "32 MiB ok\n"
    assert not r.ok
    assert "MemoryError" in r.stderr or (r.exit_code is not None and r.exit_code < 0)


@needs_bwrap
async def test_file_size_limit(sb):
    r = await sb.run_python(
        "open('big', 'wb').write(b'x' * (8 << 20))\n", SandboxLimits(file_size_mb=1)
    )
    assert r.exit_code == 1 and "File too large" in r.stderr


@needs_bwrap
async def test_process_limit_is_enforced_although_the_runtime_is_root(sb):
    # as root RLIMIT_NPROC would be ignored; here forking stops at max_processes
    code = (
        "import os, errno\n"
        "r, w = os.pipe()\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            os.read(r, 1)\n"  # children wait (blocked, no CPU) until the run ends
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print(n, errno.errorcode[e.errno])\n"
    )
    r = await sb.run_python(code, SandboxLimits(max_processes=16, wall_timeout=30))
    assert r.ok, r.observation()
    n, err = r.stdout.split()
    assert err == "EAGAIN" and 0 < int(n) < 16


@needs_bwrap
async def test_fork_bomb_is_contained_and_the_host_keeps_working(sb):
    marker = f"bomb-{secrets.token_hex(6)}"
    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    code = (
        f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', {bomb!r}, {marker!r}])\n"
    )
    r = await sb.run_python(code, SandboxLimits(max_processes=24, wall_timeout=2))
    assert r.timed_out is True
    assert host_pids_with(marker) == []  # the whole bomb is gone
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork
    after = await sb.run_python("print('still fine')", SMALL)
    assert after.ok and after.stdout == "still fine\n"


@needs_bwrap
async def test_huge_output_is_truncated_with_a_marker(sb):
    code = (
        "import sys\n"
        "for _ in range(30):\n"
        "    sys.stdout.write('x' * 1_000_000)\n"
        "for _ in range(5):\n"
        "    sys.stderr.write('e' * 1_000_000)\n"
    )
    r = await sb.run_python(code, SandboxLimits(output_limit=1000))
    assert r.ok and r.truncated
    assert r.stdout == "x" * 1000 + "\n[output truncated: 29999000 more characters]"
    assert r.stderr == "e" * 1000 + "\n[output truncated: 4999000 more characters]"
    assert "[output truncated: 29999000 more characters]\n[stderr]\n" in r.observation()


@needs_bwrap
async def test_endless_output_is_cut_off_and_the_call_returns(sb):
    code = "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n"
    r = await sb.run_python(code, SandboxLimits(output_limit=100, wall_timeout=60))
    assert not r.timed_out and not r.ok and r.truncated
    assert r.stdout.startswith("y" * 100 + "\n[output truncated: ")
    assert "[killed: output exceeded" in r.observation()


@needs_bwrap
async def test_killing_its_parent_does_not_harm_the_runtime(sb):
    code = (
        "import os, signal\n"
        "for pid in (os.getppid(), 1, -1):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError as e:\n"
        "        print('kill', pid, e)\n"
        "print('alive', os.getppid())\n"
    )
    r = await sb.run_python(code, SMALL)
    # its parent is bwrap's pid 1 of its own pid namespace: SIGKILL from inside is ignored
    # there, and nothing of the host is in reach
    assert r.ok and r.stdout.endswith("alive 1\n"), r.observation()
    again = await sb.run_python("print(6 * 7)", SMALL)
    assert again.ok and again.stdout == "42\n"


@needs_bwrap
async def test_cancelling_a_run_kills_it(run_root):
    sb = BubblewrapSandbox(tmp_root=str(run_root))
    marker = f"{secrets.randbelow(10**6) + 10**6}.{secrets.randbelow(10**6)}"
    code = f"import subprocess, time\nsubprocess.Popen(['sleep', '{marker}'])\ntime.sleep(10**6)\n"
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sb.run_python(code, SandboxLimits(wall_timeout=60)), 1.5)
    assert host_pids_with(marker) == []
    assert list(run_root.iterdir()) == []


@needs_bwrap
async def test_eight_concurrent_runs_get_their_own_outputs(sb):
    def code(i: int) -> str:
        return (
            "import os\n"
            f"open('mine-{i}', 'w').write('{i}')\n"
            f"print({i}, sum(range({i} * 1000)), os.listdir('.'))\n"
        )

    results = await asyncio.gather(*(sb.run_python(code(i), SMALL) for i in range(8)))
    for i, r in enumerate(results):
        assert r.ok, r.observation()
        assert r.stdout == f"{i} {sum(range(i * 1000))} ['mine-{i}']\n"


# ---------------------------------------------------------------- docker backend


async def test_docker_backend_where_an_engine_exists():
    """Where an engine answers: the image builds (ADP_SANDBOX_DOCKER_NETWORK, _BASE) and runs
    code, or the test says why it cannot here. tests/test_docker_engine.py runs the backend on a
    real engine for certain."""
    try:
        sb = DockerSandbox()
    except DependencyUnavailable as e:  # no engine, or its image cannot be built here
        pytest.skip(f"docker backend not testable here: {e}")
    r = await sb.run_python("print('from docker')", SandboxLimits(wall_timeout=120))
    assert r.ok and r.stdout == "from docker\n"
