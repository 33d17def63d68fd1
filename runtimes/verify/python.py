"""Python tests, run in the sandbox against the agent's final code and answer.

    {"type": "python", "tests": "def test_value():\n    assert '120' in output\n", "timeout": 30}

The tests see: `answer` (the final answer, text), `code` (the agent's final code: the last python it
ran without error), `output` (what that code printed when run again here) and `solution` (the names
that code defined, e.g. `solution.factorial(5)`). Every `test_*` function is one test; without any,
the top-level asserts are the one test (and a top-level failure always counts). The verdict passes
when every test passes; score is the share that passed. It all runs as one program in the same
sandbox the agent used (no network, rlimits, wall-clock timeout).

The report is the program's last line, marked with a nonce made for this run, and counts only
if the program then exits cleanly; the tests share a process with the agent's code, so an
adversarial model that inspects the harness could still forge one: for reward hacking-proof
checks, add a judge or a plugin that runs the code apart.

What the verdict says when things go wrong: the agent's code raising or looping until the
timeout is a failure of the attempt (tests that need it fail); a sandbox that cannot start, or
a harness that never reports, is an error: nothing is decided.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import Any, ClassVar

from adp.runtimes.verify.base import (
    DEFAULT_TIMEOUT,
    BadSpec,
    CannotVerify,
    Judgement,
    Subject,
    VerifyContext,
)

MARK = "##adp-verify {nonce} {what}## "  # a fresh nonce per run: the agent's code never saw it

HARNESS = r"""
import contextlib, io, json, sys, traceback, types
print(__STARTED__, flush=True)
answer, code, tests = __ANSWER__, __CODE__, __TESTS__
report = {"load_error": None, "tests": []}
captured = io.StringIO()
namespace = {"__name__": "solution"}
try:
    with contextlib.redirect_stdout(captured):
        exec(compile(code, "solution.py", "exec"), namespace)
except BaseException as exc:  # the agent's code failing is what the tests will see
    report["load_error"] = traceback.format_exception_only(type(exc), exc)[-1].strip()
env = {"__name__": "adp_tests", "answer": answer, "code": code, "output": captured.getvalue(),
       "solution": types.SimpleNamespace(**{k: v for k, v in namespace.items()
                                            if not k.startswith("__")})}

def run(fn):
    try:
        fn()
        return None
    except BaseException as exc:
        return traceback.format_exception_only(type(exc), exc)[-1].strip()[:500]

# top-level asserts are one test when they fail, or when there are no test_* functions
module_error = run(lambda: exec(compile(tests, "tests.py", "exec"), env))
functions = [(n, f) for n, f in list(env.items()) if n.startswith("test_") and callable(f)]
if module_error or not functions:
    report["tests"].append({"name": "<module>", "ok": not module_error, "error": module_error})
for name, fn in functions:
    error = run(fn)
    report["tests"].append({"name": name, "ok": not error, "error": error})
sys.stdout.flush()
print(__REPORT__ + json.dumps(report), flush=True)
"""


def harness(answer: str, code: str, tests: str, started: str, report: str) -> str:
    return (
        HARNESS.replace("__STARTED__", repr(started))
        .replace("__REPORT__", repr(report))
        .replace("__ANSWER__", repr(answer))
        .replace("__CODE__", repr(code))
        .replace("__TESTS__", repr(tests))
    )


class PythonTestsVerifier:
    name: ClassVar[str] = "python"

    def check(self, spec: dict[str, Any]) -> None:
        tests = spec.get("tests")
        if not isinstance(tests, str) or not tests.strip():
            raise BadSpec("verify.tests: python source with test_* functions or asserts")
        try:
            compile(tests, "tests.py", "exec")
        except SyntaxError as exc:
            raise BadSpec(f"verify.tests: line {exc.lineno}: {exc.msg}") from None

    async def verify(self, spec: dict[str, Any], subject: Subject, ctx: VerifyContext) -> Judgement:
        timeout = float(spec.get("timeout", DEFAULT_TIMEOUT))
        limits = dataclasses.replace(
            ctx.limits,
            wall_timeout=timeout,
            cpu_seconds=max(ctx.limits.cpu_seconds, int(timeout)),
            output_limit=max(ctx.limits.output_limit, 200_000),
        )
        nonce = secrets.token_hex(8)
        started = MARK.format(nonce=nonce, what="started")
        report_mark = MARK.format(nonce=nonce, what="report")
        program = harness(
            subject.final_result or "", subject.final_code, spec["tests"], started, report_mark
        )
        try:
            result = await ctx.sandbox().run_python(program, limits)
        except CannotVerify:
            raise
        except Exception as exc:
            raise CannotVerify(f"sandbox failed: {type(exc).__name__}: {exc}") from exc
        lines = result.stdout.split("\n")
        # the harness reports last, after the agent's code and the tests have run
        reports = [ln[len(report_mark) :] for ln in lines if ln.startswith(report_mark)]
        if reports and result.ok:
            report = json.loads(reports[-1])
            tests = report["tests"]
            passed = [t for t in tests if t["ok"]]
            failed = [t for t in tests if not t["ok"]]
            details = f"{len(passed)}/{len(tests)} tests passed"
            if failed:
                details += ": " + "; ".join(f"{t['name']}: {t['error']}" for t in failed[:5])
            if report["load_error"]:
                details += f" (the agent's code raised {report['load_error']})"
            return Judgement(not failed, len(passed) / len(tests), details)
        if started not in lines:
            raise CannotVerify(
                "the test harness did not start in the sandbox: "
                + (result.observation()[-500:] or "no output")
            )
        if result.timed_out:
            return Judgement(
                False,
                0.0,
                f"the tests did not finish within {timeout:g}s (the agent's code or a test hangs)",
            )
        return Judgement(
            False, 0.0, "the test run died before reporting: " + result.observation()[-500:]
        )
