"""Verification (adp.runtimes.verify) without a broker: answer matching, python tests in the real
bubblewrap sandbox, the LLM judge through the real client against the scripted stub, specs
refused with the field named, and verifiers that cannot run recording that instead of a pass
or a fail."""

from __future__ import annotations

import pytest

from adp.runtimes.llm.client import LLMClient, RetryPolicy
from adp.runtimes.llm.providers import Provider
from adp.runtimes.llm.stub import StubServer
from adp.runtimes.tools.sandbox.bwrap import sandbox_available
from adp.runtimes.verify import BadSpec, Subject, VerifyContext, check_spec, verify
from adp.runtimes.verify.answer import last_number
from adp.schemas.contracts import Step, Task

REASON = sandbox_available()
needs_bwrap = pytest.mark.skipif(REASON is not None, reason=f"bubblewrap unusable: {REASON}")


def subject(
    answer: str, *codes: tuple[str, bool], task_type: str = "code", description: str = "Compute 5!"
) -> Subject:
    task = Task(task_id="t", task_type=task_type, description=description)
    steps = [
        Step(
            step_id=i,
            action_type="code_execution",
            action_params={"code": code},
            observation="",
            success=ok,
            timestamp=0.0,
            duration=0.0,
        )
        for i, (code, ok) in enumerate(codes, 1)
    ]
    return Subject(task, answer, steps, claimed_success=True)


CTX = VerifyContext()


# ---- answer ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, answer, passed",
    [
        ({"expected": "120"}, " 120 ", True),
        ({"expected": "Paris"}, "paris", True),
        ({"expected": "Paris", "case_sensitive": True}, "paris", False),
        ({"expected": "120"}, "The answer is 120", False),
        (
            {"match": "contains", "expected": "Neil Armstrong"},
            "It was neil  armstrong, in 1969.",
            True,
        ),
        ({"match": "contains", "expected": ["Armstrong", "Aldrin"]}, "Buzz Aldrin", True),
        ({"match": "regex", "expected": r"\b1969\b"}, "July 1969", True),
        ({"match": "regex", "expected": r"^\d+$"}, "12a", False),
        ({"match": "numeric", "expected": 120}, "so 5! = 120.", True),
        ({"match": "numeric", "expected": 3.1416, "tolerance": 0.001}, "pi is about 3.14159", True),
        ({"match": "numeric", "expected": 3.1416, "tolerance": 1e-6}, "3.14159", False),
        ({"match": "numeric", "expected": "1,234.5"}, "total: 1,234.5 units", True),
        ({"match": "numeric", "expected": 100, "rel_tolerance": 0.05}, "about 97", True),
        ({"match": "numeric", "expected": 7}, "I am ready to help. What's your task?", False),
        ({"match": "numeric", "expected": 7}, "", False),
    ],
)
async def test_answer_matching(spec, answer, passed):
    verdict = await verify({"type": "answer", **spec}, subject(answer), CTX)
    assert verdict.passed is passed and verdict.verifier == "answer", verdict.details
    assert verdict.score == (1.0 if passed else 0.0) and verdict.error is None
    assert verdict.status == ("passed" if passed else "failed")


def test_last_number():
    assert last_number("5! = 120") == 120 and last_number("-3.5e2 then 7") == 7
    assert last_number("42") == 42 and last_number("no digits") is None


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "answer"}, "verify.expected: missing"),
        ({"type": "answer", "expected": "x", "match": "fuzzy"}, "verify.match: one of"),
        ({"type": "answer", "match": "numeric", "expected": "seven"}, "is not a number"),
        ({"type": "answer", "match": "regex", "expected": "("}, "not a regular expression"),
        ({"type": "answer", "expected": "x", "tolerance": -1}, "verify.tolerance"),
        ({"type": "python", "tests": "def test_x(:\n"}, "verify.tests: line 1"),
        ({"type": "python"}, "verify.tests"),
        ({"type": "judge"}, "verify.rubric"),
        ({"type": "astrology"}, "no verifier named 'astrology'"),
        ({"rubric": "x"}, "verify.type: missing"),
        ([], "an empty list"),
        ("120", "an object naming its verifier"),
        ({"expected": "1", "timeout": 0}, "verify.timeout"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(spec, message):
    with pytest.raises(BadSpec, match=message.replace("(", r"\(")):
        check_spec(spec)


def test_null_spec_is_unverified():
    check_spec(None)


async def test_no_spec_means_unverified_and_a_bad_one_decides_nothing():
    assert (await verify(None, subject("x"), CTX)).status == "unverified"
    bad = await verify({"type": "astrology"}, subject("x"), CTX)
    assert bad.status == "error" and bad.passed is None and "astrology" in bad.error


async def test_all_of_a_list_must_pass():
    spec = [{"expected": "120", "match": "contains"}, {"match": "numeric", "expected": 121}]
    verdict = await verify(spec, subject("120"), CTX)
    assert verdict.verifier == "all(answer,answer)" and verdict.passed is False
    assert verdict.score == 0.5 and "FAIL" in verdict.details and verdict.spec == spec


# ---- python tests in the sandbox ---------------------------------------------------------------

FACTORIAL = (
    "def factorial(n):\n    return 1 if n < 2 else n * factorial(n - 1)\nprint(factorial(5))\n"
)
TESTS = (
    "def test_function():\n    assert solution.factorial(5) == 120\n\n"
    "def test_printed():\n    assert output.strip() == '120'\n\n"
    "def test_answer():\n    assert '120' in answer\n"
)


@needs_bwrap
async def test_python_tests_pass_on_the_agents_final_code():
    s = subject("5! = 120", ("print(1/0)", False), (FACTORIAL, True), ("print('x'", False))
    assert s.final_code == FACTORIAL  # the last code that ran without error
    verdict = await verify({"type": "python", "tests": TESTS}, s, CTX)
    assert verdict.passed is True and verdict.score == 1.0, verdict.details
    assert verdict.details == "3/3 tests passed"


@needs_bwrap
async def test_python_tests_fail_and_say_which():
    s = subject("5! = 121", (FACTORIAL.replace("n * f", "n + f"), True))
    verdict = await verify({"type": "python", "tests": TESTS}, s, CTX)
    assert verdict.passed is False and verdict.score == 0.0
    assert verdict.details.startswith("0/3 tests passed: test_function: AssertionError")


@needs_bwrap
async def test_code_that_raises_or_hangs_fails_the_attempt():
    raising = await verify(
        {"type": "python", "tests": "assert answer == '1'"},
        subject("2", ("import nope", False)),
        CTX,
    )
    assert raising.passed is False and "ModuleNotFoundError" in raising.details
    assert raising.details.startswith("0/1 tests passed: <module>: AssertionError")
    hanging = await verify(
        {"type": "python", "tests": "assert True", "timeout": 2},
        subject("", ("while True: pass", True)),
        CTX,
    )
    assert hanging.passed is False and "did not finish within 2s" in hanging.details


async def test_no_sandbox_means_an_error_not_a_verdict():
    def none():
        raise RuntimeError("no python sandbox available: install bubblewrap")

    verdict = await verify(
        {"type": "python", "tests": "assert True"},
        subject("x"),
        VerifyContext(sandbox_factory=none),
    )
    assert verdict.status == "error" and verdict.passed is None
    assert "install bubblewrap" in verdict.error


# ---- the LLM judge -----------------------------------------------------------------------------

JUDGE_SCRIPT = [
    {
        "match": "FINAL ANSWER:\\n.*Armstrong",
        "replies": ['{"pass": true, "score": 0.9, "reason": "names him"}'],
    },
    {
        "match": "FINAL ANSWER:\\n.*Gagarin",
        "replies": ['Sure! {"pass": false, "score": 0, "reason": "wrong person"}'],
    },
    {"match": "ANSWER:\\n", "replies": ["I think it is fine."]},
]


def client(url: str) -> LLMClient:
    return LLMClient(
        [Provider("stub", url, "stub-judge")],
        timeout=10,
        retry=RetryPolicy(attempts=1, base=0.01, cap=0.02),
    )


@pytest.fixture
async def judge_stub():
    async with StubServer(script=JUDGE_SCRIPT) as server:
        yield server


@pytest.mark.parametrize(
    "answer, status, score",
    [
        ("Neil Armstrong", "passed", 0.9),
        ("Yuri Gagarin", "failed", 0.0),
        ("someone", "error", None),
    ],
)
async def test_the_judge_grades_and_its_exchange_is_kept(judge_stub, answer, status, score):
    ctx = VerifyContext(model_factory=lambda: client(judge_stub.base_url))
    spec = {
        "type": "judge",
        "rubric": "Names the first man on the moon.",
        "expected": "Neil Armstrong",
    }
    verdict = await verify(
        spec,
        subject(answer, task_type="reasoning", description="Who first walked on the moon?"),
        ctx,
    )
    assert verdict.status == status and verdict.score == score
    assert verdict.llm is not None and verdict.llm.model == "stub-judge"
    prompt = verdict.llm.request["messages"][1]["content"]
    assert "Who first walked on the moon?" in prompt and f"FINAL ANSWER:\n{answer}" in prompt
    if status == "error":
        assert "holds no grade" in verdict.error and verdict.passed is None


async def test_a_judge_that_cannot_be_reached_decides_nothing():
    ctx = VerifyContext(model_factory=lambda: client("http://127.0.0.1:9/v1"))
    verdict = await verify({"type": "judge", "rubric": "x"}, subject("y"), ctx)
    assert verdict.status == "error" and "could not be asked" in verdict.error
    nothing = await verify({"type": "judge", "rubric": "x"}, subject("y"), VerifyContext())
    assert nothing.status == "error" and "no LLM" in nothing.error


@needs_bwrap
async def test_the_agents_code_cannot_report_a_pass_itself():
    forge = (
        "import os, sys\n"
        'sys.__stdout__.write(\'##adp-verify 0000 report## {"load_error": null, '
        '"tests": [{"name": "t", "ok": true}]}\\n\')\n'
        "sys.__stdout__.flush()\nos._exit(0)\n"
    )
    verdict = await verify(
        {"type": "python", "tests": "assert False"}, subject("", (forge, True)), CTX
    )
    assert verdict.passed is False and "died before reporting" in verdict.details
