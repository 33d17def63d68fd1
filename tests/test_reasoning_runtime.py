"""The reasoning runtime end to end at the runtime level: the real python sandbox, real Chromium
on site/, the real LLMClient against the stub LLM process (its default script, and scripted)."""

from __future__ import annotations

import pytest

from adp.runtimes.base import RuntimeContext
from adp.runtimes.llm.client import LlmUnavailable
from adp.runtimes.reasoning import ReasoningRuntime
from adp.runtimes.tools.browser import BrowserPool
from adp.runtimes.tools.sandbox import SandboxLimits, make_sandbox
from tests.helpers import call, client, reply, run_task, scripted_stub


def reasoning_script(site: str) -> list[dict]:
    return [
        {
            "match": "total price of the two kettles",
            "replies": [
                reply(
                    "First I look the kettles up in the shop.",
                    call("goto", url=site + "search.html?q=kettle"),
                ),
                reply("Now I add the two prices.", call("python", code="print(47.00 + kettle)")),
                reply(
                    "Oops, no variable; use the numbers.",
                    call("python", code="print(f'{47.00 + 64.00:.2f}')"),
                ),
                reply("The sum is 111.00 dollars.", call("finish", answer="111.00")),
            ],
        },
        {
            "match": "Which page has the shop code",
            "replies": [
                reply(
                    "The list has three pages; I go to the last one.",
                    call("goto", url=site + "list/page1.html"),
                ),
                reply(None, call("click", target="Next page")),
                reply(
                    None,
                    call("click", target="Next page"),
                    call("python", code="print('ZEBRA-42'.split('-')[1])"),
                ),
                "FINAL ANSWER: page 3, code number 42",
            ],
        },
    ]


@pytest.fixture(scope="module")
def scripted(site, tmp_path_factory) -> str:
    with scripted_stub(reasoning_script(site), tmp_path_factory.mktemp("reasoning-stub")) as url:
        yield url


def runtime_for(url: str, pool: BrowserPool, **options) -> ReasoningRuntime:
    return ReasoningRuntime(
        RuntimeContext("test-reasoning", client(url), {"pool": pool, **options})
    )


async def test_default_stub_runs_python_then_finishes(llm_stub, pool):
    runtime = runtime_for(llm_stub, pool)
    outcome, steps = await run_task(runtime, description="Compute six times seven")
    await runtime.model.aclose()
    assert [s.action_type for s in steps] == ["python", "final_answer"]
    code = steps[0].action_params["code"]
    assert code.startswith("print(")
    expected = (await make_sandbox().run_python(code, SandboxLimits())).observation()
    assert steps[0].observation == expected and steps[0].success  # what the program printed
    assert "Compute six times seven" in steps[0].observation
    assert {t["function"]["name"] for t in steps[0].llm.request["tools"]} >= {
        "python",
        "goto",
        "finish",
    }
    assert outcome.success and outcome.final_result == expected.strip()[:200]
    assert runtime.pool.launches == 1  # no context was opened: python only


async def test_scripted_browser_and_python_keep_the_thinking(scripted, pool):
    runtime = runtime_for(scripted, pool)
    outcome, steps = await run_task(
        runtime, description="What is the total price of the two kettles?"
    )
    await runtime.model.aclose()
    assert [s.action_type for s in steps] == ["goto", "python", "python", "final_answer"]
    assert [s.thinking for s in steps] == [
        "First I look the kettles up in the shop.",
        "Now I add the two prices.",
        "Oops, no variable; use the numbers.",
        "The sum is 111.00 dollars.",
    ]
    assert (
        steps[0].llm is not None
        and "$47.00" in steps[0].observation
        and "$64.00" in steps[0].observation
    )
    assert not steps[1].success and "NameError" in steps[1].observation  # the real traceback
    assert steps[2].success and steps[2].observation.strip() == "111.00"
    assert outcome.success and outcome.final_result == "111.00"


async def test_scripted_mixed_calls_in_one_reply(scripted, pool):
    runtime = runtime_for(scripted, pool)
    outcome, steps = await run_task(runtime, description="Which page has the shop code?")
    await runtime.model.aclose()
    assert [s.action_type for s in steps] == ["goto", "click", "tool_calls", "final_answer"]
    both = steps[2]
    assert [c["name"] for c in both.action_params["calls"]] == ["click", "python"]
    assert "[1] click:" in both.observation and "ZEBRA-42" in both.observation
    assert both.observation.endswith("[2] python:\n42\n")
    assert outcome.success and outcome.final_result == "page 3, code number 42"


async def test_text_protocol_when_configured(llm_stub, pool):
    runtime = runtime_for(llm_stub, pool, tool_protocol="text")
    outcome, steps = await run_task(runtime, description="Say hello from Python")
    await runtime.model.aclose()
    assert [s.action_type for s in steps] == ["python", "final_answer"]
    request = steps[0].llm.request
    assert request["tools"] is None
    system = request["messages"][0]["content"]
    assert "- python(code: string)" in system and "FINAL ANSWER: <the answer>" in system
    assert "Say hello from Python" in steps[0].observation and steps[0].success
    assert outcome.success and outcome.final_result == steps[0].observation.strip()


async def test_an_unreachable_endpoint_is_an_outage_not_an_llm_error(pool):
    """Nothing listens at the endpoint: the runtime does not finish the task as the agent's
    failure, it raises the outage for the worker to pause on (docs/outages.md)."""
    runtime = runtime_for("http://127.0.0.1:9/v1", pool)  # nothing listens there
    with pytest.raises(LlmUnavailable, match="connection refused"):
        await run_task(runtime, description="Anything")
    await runtime.model.aclose()
