"""The web runtime end to end at the runtime level: real Chromium on site/ (served on 127.0.0.1),
the real LLMClient over HTTP to the project's stub LLM process (unscripted, or scripted)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adp.runtimes.base import RuntimeContext
from adp.runtimes.web import WebRuntime
from adp.schemas.contracts import ErrorType
from tests.helpers import call, client, reply, run_task, scripted_stub


def web_script(site: str) -> list[dict[str, Any]]:
    return [
        {
            "match": "Send the shop a message",
            "replies": [
                reply("I will open the contact page.", call("click", target="Contact us")),
                reply(
                    "Filling in the form.",
                    call("fill", target="Name", text="Ada"),
                    call("fill", target="Email", text="ada@example.org"),
                    call("fill", target="Message", text="Do you sell telescopes?"),
                ),
                reply(None, call("click", target="Submit the form")),
                reply("That button is called Send message.", call("click", target="Send message")),
                reply(None, call("finish", answer="The shop confirmed: Thank you, Ada!")),
            ],
        },
        {
            "match": "An old endpoint",
            "replies": [
                [
                    {"status": 400, "times": 1},
                    "I'll open the full list.\n```json\n"
                    '{"tool": "click", "arguments": {"target": "Browse all items"}}\n```',
                ],
                "Next page please.\n```json\n"
                '{"tool": "click", "arguments": {"target": "Next page"}}\n```',
                "FINAL ANSWER: Page 2 starts with the Copper Kettle.",
            ],
        },
        {"match": "Scroll forever", "replies": [reply(None, call("scroll", direction="down"))]},
        {
            "match": "A confused model",
            "replies": [
                reply(None, call("teleport", to="mars")),
                reply(None, call("goto")),
                reply(None, call("goto", url=site + "nowhere.html")),
                "The shop has fifteen items.",
            ],
        },
    ]


@pytest.fixture(scope="module")
def scripted(site, tmp_path_factory) -> str:
    with scripted_stub(web_script(site), tmp_path_factory.mktemp("web-stub")) as url:
        yield url


@pytest.fixture(scope="module")
async def web(scripted, pool):
    model = client(scripted)
    async with WebRuntime(RuntimeContext("test-web", model, {"pool": pool})) as runtime:
        yield runtime
    await model.aclose()


async def test_start_url_is_the_first_step_then_the_stub_reads_and_finishes(llm_stub, site, pool):
    model = client(llm_stub)
    runtime = WebRuntime(RuntimeContext("test-web", model, {"pool": pool}))
    outcome, steps = await run_task(
        runtime, description="What does the shop home page say?", constraints={"start_url": site}
    )
    await model.aclose()
    assert [s.action_type for s in steps] == ["goto", "read_page", "final_answer"]
    first = steps[0]
    assert first.llm is None and first.success and first.action_params == {"url": site}
    assert "ADP Test Shop" in first.observation and "Browse all items" in first.observation
    request = steps[1].llm.request
    assert first.observation in request["messages"][1]["content"]  # in the first user message
    assert request["messages"][1]["content"].startswith("What does the shop home page say?")
    assert {t["function"]["name"] for t in request["tools"]} == {
        "goto",
        "click",
        "fill",
        "press",
        "scroll",
        "read_page",
        "extract_links",
        "back",
        "finish",
    }
    assert steps[1].observation.startswith(f"URL: {site}\nTitle: ADP Test Shop")
    assert outcome.success and outcome.final_result == steps[1].observation.strip()[:200]
    assert steps[2].action_params == {"answer": outcome.final_result}


async def test_a_scripted_conversation_fills_the_form(web, site):
    outcome, steps = await run_task(
        web,
        description="Send the shop a message as Ada.",
        constraints={"start_url": site},
        max_steps=8,
    )
    assert outcome.success and outcome.final_result == "The shop confirmed: Thank you, Ada!"
    assert [s.action_type for s in steps] == [
        "goto",
        "click",
        "tool_calls",
        "click",
        "click",
        "final_answer",
    ]
    assert (
        steps[1].thinking == "I will open the contact page."
        and "Contact us" in steps[1].observation
    )
    fills = steps[2]
    assert [c["name"] for c in fills.action_params["calls"]] == ["fill", "fill", "fill"]
    assert "'Do you sell telescopes?'" in fills.observation and fills.success
    assert not steps[3].success and steps[3].error == "element not found"
    assert "No element matching 'Submit the form'" in steps[3].observation
    sent = steps[4]
    assert (
        sent.success
        and (
            "Thank you, Ada! We received your message \u201cDo you sell "
            "telescopes?\u201d and will reply to ada@example.org."
        )
        in sent.observation
    )
    # every tool result went back as a role "tool" message with its call's id
    last = steps[5].llm.request["messages"]
    tool_msgs = [m for m in last if m["role"] == "tool"]
    ids = [c["id"] for m in last if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    assert [m["tool_call_id"] for m in tool_msgs] == ids and len(ids) == 6
    assert tool_msgs[-1]["content"] == sent.observation


async def test_text_protocol_fallback_when_the_endpoint_rejects_tools(web, site):
    outcome, steps = await run_task(
        web, description="An old endpoint: what is on page 2?", constraints={"start_url": site}
    )
    assert outcome.success and outcome.final_result == "Page 2 starts with the Copper Kettle."
    assert [s.action_type for s in steps] == ["goto", "click", "click", "final_answer"]
    assert steps[1].action_params == {"target": "Browse all items"}
    assert steps[1].thinking == "I'll open the full list."
    assert "Page 1 of 3" in steps[1].observation and "Page 2 of 3" in steps[2].observation
    for step in steps[1:]:
        request = step.llm.request
        assert request["tools"] is None  # text protocol from the rejection on
        assert '{"tool": "<tool name>", "arguments": {...}}' in request["messages"][0]["content"]
        assert "- fill(target: string, text: string)" in request["messages"][0]["content"]
    assert (
        steps[3]
        .llm.request["messages"][-1]["content"]
        .startswith("Observation:\nClicked 'Next page'.")
    )


async def test_max_steps_ends_the_task(web, site):
    outcome, steps = await run_task(
        web, description="Scroll forever please.", constraints={"start_url": site}, max_steps=3
    )
    assert not outcome.success and outcome.error_type == ErrorType.max_steps
    assert [s.action_type for s in steps] == ["goto", "scroll", "scroll", "scroll"]


async def test_bad_tool_calls_become_observations(web, site):
    outcome, steps = await run_task(
        web, description="A confused model browses.", constraints={"start_url": site}
    )
    assert outcome.success and outcome.final_result == "The shop has fifteen items."
    unknown, no_url, not_found, final = steps[1:]
    assert not unknown.success and unknown.error == "unknown tool"
    assert "Unknown tool 'teleport'" in unknown.observation
    assert not no_url.success and "missing argument 'url'" in no_url.observation
    assert not not_found.success and not_found.error == "HTTP 404"
    assert final.action_type == "final_answer"


async def test_concurrent_tasks_on_the_runtime_own_pool(llm_stub, site):
    model = client(llm_stub)
    async with WebRuntime(RuntimeContext("test-web", model, {"browsers": 2})) as runtime:
        assert runtime.pool.launches == 2
        pages = ["list/page1.html", "list/page2.html", "list/page3.html", "contact.html"]
        results = await asyncio.gather(
            *(
                run_task(
                    runtime,
                    task_id=f"c{i}",
                    description=f"Read page {i}.",
                    constraints={"start_url": site + p},
                )
                for i, p in enumerate(pages)
            )
        )
        assert runtime.pool.launches == 2
    assert runtime.pool._pw is None  # closed with the runtime
    await model.aclose()
    for (outcome, steps), page in zip(results, pages):
        assert outcome.success and steps[0].observation.startswith(
            f"Opened {site}{page} (HTTP 200)"
        )
        assert steps[1].observation.startswith(f"URL: {site}{page}")
