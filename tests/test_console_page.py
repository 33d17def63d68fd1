"""`adp console` in the real Chromium, against a real broker with a runtime (stub LLM, real
sandbox) and the aggregator running: the counters move and steps appear while tasks flow, the
trajectory list pages and filters, a trajectory reads step by step, hostile observations stay
text, dead letters show their reason, and the page lives through a broker restart.

Every wait is on something the page shows (Playwright's expect), never a sleep. Screenshots of
the overview and a trajectory go to $ADP_SCREENSHOTS (default: a temporary folder; the run
prints where); `ADP_SCREENSHOTS=docs pytest tests/test_console_page.py` renews the ones
docs/watching.md shows.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from adp.connectors.sinks.base import render
from adp.core.process import http_ok
from adp.runtimes.tools.browser import CHROMIUM_ARGS, chromium_path
from adp.schemas import codec
from adp.schemas.contracts import Artifact, Step, StepEvent, Trajectory, TrajectoryMetadata, Verdict
from adp.streams.kafka import clients, topics
from tests.conftest import free_port_block
from tests.helpers import ADP, AdpProcess, wait_for, write_tasks

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "adp" / "console" / "static"
SLOW = 120_000  # ms: the pipeline on a busy 2-core machine
HOSTILE = (
    '<script>window.__pwned = "script"</script>'
    "<img src=x onerror=\"window.__pwned = 'img'; alert(1)\">"
    "\x1b[31mred\x1b[0m\x07 \u202eevil"
)


class Console:
    def __init__(self, url: str, out: Path, env: dict, procs: list[AdpProcess]):
        self.url, self.out, self.env, self.procs = url, out, env, procs

    def produce(self, tmp: Path, tasks: list[dict]) -> None:
        path = write_tasks(tmp / f"tasks-{tasks[0]['task_id']}.jsonl", tasks)
        done = subprocess.run(
            [*ADP, "produce", "--quiet", str(path)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def assert_alive(self) -> None:
        for proc in self.procs:
            proc.assert_alive()


@pytest.fixture(scope="module")
def console(kafka, llm_stub, tmp_path_factory) -> Console:
    tmp = tmp_path_factory.mktemp("console")
    out = tmp / "trajectories"
    out.mkdir()
    port = free_port_block()
    env = {
        "ADP_BOOTSTRAP": kafka.bootstrap,
        "ADP_LLM_BASE_URL": llm_stub,
        "ADP_LLM_MODEL": "stub",
        "ADP_METRICS_PORT": "0",
        "ADP_HOME": str(tmp / "home"),
    }
    procs = [
        AdpProcess(
            ["console", "--port", str(port), "--trajectories", str(out), "--interval", "1"],
            tmp / "console.log",
            env,
        ),
        AdpProcess(["aggregate", "--out", str(out)], tmp / "aggregate.log", env),
        AdpProcess(["runtime", "code"], tmp / "runtime.log", env),
    ]
    for proc in procs:
        proc.start()
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(
            lambda: http_ok(url + "api/overview"),
            60,
            "the console to answer",
            check=procs[0].assert_alive,
        )
        yield Console(url, out, {**procs[0].env}, procs)
        assert procs[0].alive, f"the console died:\n{procs[0].log()}"
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture(scope="module")
async def browser():
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory, request) -> Path:
    folder = Path(os.environ.get("ADP_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"console screenshots: {folder}")
    return folder


class Watched:
    """A page plus everything it said: dialogs, script errors, console messages."""

    def __init__(self, page: Page):
        self.page, self.dialogs, self.errors, self.messages = page, [], [], []
        page.on(
            "dialog", lambda d: (self.dialogs.append(d.message), asyncio.ensure_future(d.dismiss()))
        )
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))


async def open_page(browser, url: str) -> Watched:
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    watched = Watched(await context.new_page())
    await watched.page.goto(url)
    return watched


def cell(page: Page, task_type: str, field: str):
    return page.locator(f'#types tr[data-type="{task_type}"]:not(.lane) td[data-field="{field}"]')


def stored(out: Path, t: Trajectory) -> None:
    (out / f"{t.task_id}.json").write_bytes(render(t))


def trajectory(
    task_id: str,
    task_type: str = "code",
    ok: bool = True,
    text: str = "x",
    observation: str = "7\n",
) -> Trajectory:
    step = Step(
        step_id=1,
        action_type="code_execution",
        action_params={"code": "print(7)"},
        observation=observation,
        thinking=text,
        success=ok,
        timestamp=1.79e9,
        duration=0.2,
    )
    return Trajectory(
        task_id=task_id,
        task_type=task_type,
        description=text,
        success=ok,
        steps=[step],
        final_result=text,
        total_duration=0.3,
        metadata=TrajectoryMetadata(
            runtime_id="r",
            attempt_id="a",
            started_at=1.79e9,
            finished_at=1.79e9 + 1,
            llm_calls=1,
            prompt_tokens=3,
            completion_tokens=2,
            cached_llm_calls=0,
            task={},
        ),
    )


async def send_step(bootstrap: str, task_id: str, observation: str) -> None:
    import time

    event = StepEvent(
        event_type="step",
        task_id=task_id,
        attempt_id="console-test",
        task_type="code",
        runtime_id="code-test",
        timestamp=time.time(),
        step=Step(
            step_id=1,
            action_type="code_execution",
            action_params={"code": "print(1)"},
            observation=observation,
            success=True,
            timestamp=time.time(),
            duration=0.1,
        ),
    )
    producer = await clients.start(clients.producer(bootstrap))
    try:
        await producer.send_and_wait(topics.STEPS, codec.encode(event), key=task_id.encode())
    finally:
        await producer.stop()


def test_console_help_explains_itself():
    shown = subprocess.run([*ADP, "console", "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    for words in (
        "--port",
        "--trajectories",
        "127.0.0.1",
        "without joining any consumer group",
        "Dead letters",
        "s3://",
    ):
        assert words in shown.stdout, words


async def test_counters_move_and_steps_appear_while_tasks_flow(
    console, browser, screenshots, tmp_path
):
    w = await open_page(browser, console.url + "#steps")
    page = w.page
    await expect(page.locator("#broker")).to_have_attribute("data-state", "up", timeout=SLOW)
    console.produce(
        tmp_path,
        [
            {
                "task_id": f"console-flow-{i}",
                "task_type": "code",
                "description": f"Print {i} plus 40.",
                "timeout": 60,
            }
            for i in range(2)
        ],
    )
    # the live list shows the runtime's steps as they happen
    step = page.locator('#step-list li[data-task="console-flow-0"][data-step="1"]')
    await expect(step).to_be_visible(timeout=SLOW)
    await expect(step.locator("pre.observation")).to_contain_text("Print 0 plus 40")

    await page.click('#tabs a[data-tab="overview"]')
    await expect(cell(page, "code", "produced")).to_have_text("2", timeout=SLOW)
    await expect(cell(page, "code", "finished")).to_have_text("2", timeout=SLOW)
    await expect(cell(page, "code", "pending")).to_have_text("0", timeout=SLOW)
    group = page.locator('[data-group="adp-runtime-code"]')
    await expect(group).to_contain_text("1 member")
    await expect(group.locator('[data-field="lag"]')).to_have_text("0")
    await expect(page.locator('[data-group="adp-aggregator"]')).to_contain_text("on adp.steps")
    # the steps of two tasks went by: the rate's peak over the window is above zero
    await expect(page.locator('[data-rate="steps"]')).to_contain_text(
        re.compile(r"peak (?!0\.0/)\d")
    )
    # pass@k waits for judged samples (these tasks name no verifier); the token-exact calls
    # are counted: the stub was not asked for token ids here
    await expect(page.locator("#passk")).to_contain_text("no judged samples yet")
    await expect(page.locator('#passk [data-field="token-calls"]')).to_have_text(
        re.compile(r"LLM calls with token ids: 0 of [1-9]")
    )
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=screenshots / "console-overview.png", full_page=True)
    assert not w.errors, w.errors


async def test_trajectory_list_pages_filters_and_opens_a_trajectory(console, browser, screenshots):
    wait_for(
        lambda: len(list(console.out.glob("console-flow-*.json"))) == 2,
        120,
        "the two trajectories of the flowing tasks",
    )
    for i in range(60):
        stored(
            console.out,
            trajectory(
                f"bulk-{i:02d}",
                ["code", "web", "reasoning"][i % 3],
                ok=i % 5 != 0,
                text=f"bulk task {i}",
            ),
        )
    stored(
        console.out,
        trajectory(
            "bulk-zebra",
            "web",
            text="the zebra crossing answer",
            observation="Page text: zebras\nthree of them",
        ).model_copy(
            update={"verification": Verdict(verifier="contains", passed=True, details="found")}
        ),
    )
    total = len(list(console.out.glob("*.json")))
    w = await open_page(browser, console.url + "#trajectories")
    page = w.page
    rows = page.locator("#traj-table tbody tr[data-task]")
    await expect(page.locator("#traj-range")).to_have_text(f"1–50 of {total}", timeout=SLOW)
    await expect(rows).to_have_count(50)
    await page.click("#traj-next")
    await expect(page.locator("#traj-range")).to_have_text(f"51–{total} of {total}")

    await page.select_option('#traj-filters select[name="type"]', "web")
    await expect(page.locator("#traj-range")).to_have_text("1–21 of 21")
    types = await rows.locator("td:nth-child(2)").all_text_contents()
    assert set(types) == {"web"}
    await page.select_option('#traj-filters select[name="success"]', "false")
    await expect(page.locator("#traj-range")).to_have_text("1–4 of 4")
    await page.select_option('#traj-filters select[name="success"]', "")
    await page.select_option('#traj-filters select[name="verified"]', "passed")
    await expect(page.locator("#traj-range")).to_have_text("1–1 of 1")
    await page.select_option('#traj-filters select[name="verified"]', "")
    await page.fill('#traj-filters input[name="q"]', "ZEBRA")
    await expect(rows).to_have_count(1)
    await rows.first.click()
    await expect(page.locator('#traj-detail [data-part="verdict"]')).to_have_text(
        "verified: passed"
    )
    observation = page.locator('#traj-detail [data-part="observation"]')
    await expect(observation).to_have_text("Page text: zebras\nthree of them")
    await expect(page.locator("#traj-detail")).to_contain_text("the zebra crossing answer")

    # a real one, from the runtime through the aggregator: the sandbox's output, the raw
    # LLM exchange collapsed until asked for
    await page.goto(console.url + "#trajectory/console-flow-1")
    first = page.locator('#traj-detail article[data-step="1"]')
    await expect(first.locator('[data-part="observation"]')).to_have_text("Print 1 plus 40.\n")
    await expect(first.locator('[data-part="code"]')).to_contain_text("print(")
    request = first.locator("details").first
    await expect(request.locator(".raw-body")).to_be_hidden()
    await request.locator("summary").first.click()
    # what the model saw: the messages as written, the exact JSON one more click away
    await expect(request.locator(".message .role").nth(1)).to_have_text("user")
    await expect(request.locator(".message pre").nth(1)).to_have_text("Print 1 plus 40.")
    await request.locator("details summary").click()
    await expect(request.locator("pre.raw-json")).to_contain_text('"messages": [')
    await request.locator("details summary").click()  # closed again for the picture
    # step 2's request is stored as what it added to step 1's: opened, it reads whole
    second = page.locator('#traj-detail article[data-step="2"] details').first
    summary = second.locator("summary").first
    await expect(summary).to_contain_text("2 message(s) of step 1's, then 2 new")
    await summary.click()
    roles = second.locator(".raw-body > .message .role")
    await expect(roles).to_have_text(["system", "user", "assistant", "user", "parameters"])
    await expect(second.locator(".raw-body > .message pre").nth(1)).to_have_text("Print 1 plus 40.")
    await summary.click()
    await page.evaluate("window.scrollTo(0, 0)")  # the sticky header at the top of it
    await page.screenshot(path=screenshots / "console-trajectory.png", full_page=True)
    assert not w.errors, w.errors


async def test_hostile_observations_are_shown_as_text_and_never_run(console, browser, kafka):
    await send_step(kafka.bootstrap, "hostile-1", HOSTILE)
    # opened before the trajectory is stored (a live step's link while the task runs): the
    # page says so and shows it once the sink has written it
    w = await open_page(browser, console.url + "#trajectory/hostile-1")
    page = w.page
    await expect(page.locator("#traj-detail")).to_contain_text("is not stored yet", timeout=SLOW)
    # and the files its step "wrote": a real PNG, an HTML page and an SVG with scripts
    png = (ROOT / "docs" / "console-overview.png").read_bytes()
    files = {
        "plot.png": ("image/png", png),
        "evil.html": ("text/html", HOSTILE.encode()),
        "evil.svg": (
            "image/svg+xml",
            b'<svg xmlns="http://www.w3.org/2000/svg" '
            b"onload=\"window.__pwned = 'svg'\"><script>alert(2)</script></svg>",
        ),
    }
    artifacts = []
    for name, (media_type, data) in files.items():
        path = console.out / "hostile-1" / "step-1" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        artifacts.append(
            Artifact(
                name=name,
                size=len(data),
                media_type=media_type,
                sha256=hashlib.sha256(data).hexdigest(),
                kept=True,
            )
        )
    hostile = trajectory("hostile-1", "web", text=HOSTILE, observation=HOSTILE)
    hostile.steps[0].artifacts = artifacts
    stored(console.out, hostile)
    observation = page.locator('#traj-detail [data-part="observation"]')
    await expect(observation).to_contain_text(
        '<script>window.__pwned = "script"</script>', timeout=SLOW
    )
    shown = await observation.text_content()
    assert "<img src=x onerror=\"window.__pwned = 'img'; alert(1)\">" in shown
    assert "␛[31mred␛[0m␇" in shown and "⟨U+202E⟩evil" in shown  # control chars made visible
    # the plot is shown; the page comes back as plain text, the SVG only as a download, and
    # both carry a sandboxing policy even if opened directly
    plot = page.locator('#traj-detail [data-artifact="plot.png"] img')
    await expect(plot).to_be_visible()
    assert await plot.evaluate("img => img.complete && img.naturalWidth > 0")
    assert await page.locator("#traj-detail img").count() == 1  # the plot, not the <img> text
    assert await page.locator("#traj-detail script").count() == 0
    for name, served in (
        ("evil.html", "text/plain; charset=utf-8"),
        ("evil.svg", "application/octet-stream"),
    ):
        link = page.locator(f'#traj-detail [data-artifact="{name}"] a[download]')
        response = await page.request.get(
            console.url.rstrip("/") + await link.get_attribute("href")
        )
        assert response.status == 200 and await response.body() == files[name][1]
        assert response.headers["content-type"] == served
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in response.headers["content-security-policy"]
        if served == "application/octet-stream":
            assert response.headers["content-disposition"].startswith("attachment")
    shown = page.locator('#traj-detail [data-artifact="evil.html"] details')
    await shown.locator("summary").click()
    await expect(shown.locator("pre")).to_contain_text("<script>window.__pwned")
    await page.goto(console.url + "#steps")
    live = page.locator('#step-list li[data-task="hostile-1"] pre.observation')
    await expect(live).to_contain_text("<img src=x onerror=", timeout=SLOW)
    assert await page.locator("#step-list img, #step-list script").count() == 0
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("script").count() == 1  # the page's own module, nothing else
    assert not w.dialogs and not w.errors, (w.dialogs, w.errors)
    assert not [m for m in w.messages if "Content Security Policy" in m], w.messages


def test_page_code_never_turns_data_into_markup():
    """The rule the escaping rests on, checked where it lives: no HTML-parsing sink anywhere
    in the page's scripts."""
    sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|"
        r"new Function|createContextualFragment|DOMParser"
    )
    for path in sorted(STATIC.rglob("*.js")):
        code = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("//")
        )
        assert not sinks.search(code), f"{path.name}: {sinks.search(code).group(0)}"


def test_console_answers_loopback_names_only_with_a_strict_policy(console):
    """A web page elsewhere cannot read the console by rebinding its own name to 127.0.0.1,
    and the page runs only the console's own scripts."""
    import urllib.error
    import urllib.request

    def get(host: str):
        request = urllib.request.Request(console.url, headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.headers

    port = console.url.rsplit(":", 1)[1].strip("/")
    assert get(f"attacker.example:{port}")[0] == 403
    status, headers = get(f"localhost:{port}")
    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]


async def test_dead_letters_show_their_reason(console, browser, kafka):
    producer = await clients.start(clients.producer(kafka.bootstrap))
    try:
        await producer.send_and_wait(
            topics.task_topic("code"), b"\x00 not avro", key=b"console-garbage"
        )
    finally:
        await producer.stop()
    w = await open_page(browser, console.url + "#dlq")
    row = w.page.locator('#dlq-table tr[data-key="console-garbage"]')
    await expect(row).to_contain_text("not Avro", timeout=SLOW)
    await expect(row).to_contain_text("adp.tasks.code[")
    await expect(w.page.locator("#dlq-count")).not_to_have_text("")


async def test_page_survives_a_broker_restart(console, browser, kafka, tmp_path):
    w = await open_page(browser, console.url + "#overview")
    page = w.page
    broker = page.locator("#broker")
    await expect(broker).to_have_attribute("data-state", "up", timeout=SLOW)
    node = kafka.nodes[0]
    await asyncio.to_thread(kafka.stop_node, node)
    try:
        await expect(broker).to_have_attribute("data-state", "down", timeout=SLOW)
        await expect(broker).to_contain_text("unreachable")
        await expect(page.locator("#banner")).to_contain_text("does not answer")
        console.procs[0].assert_alive()
    finally:
        await asyncio.to_thread(kafka.start_node, node)
        await kafka.wait_ready()
    await expect(broker).to_have_attribute("data-state", "up", timeout=SLOW)
    await expect(page.locator("#banner")).to_be_hidden()
    # counters and live steps carry on: an urgent web task nobody runs stays pending, in the
    # high priority lane
    console.produce(
        tmp_path,
        [{"task_id": "after-restart", "task_type": "web", "description": "d", "priority": 9}],
    )
    await expect(cell(page, "web", "produced")).to_have_text("1", timeout=SLOW)
    await expect(cell(page, "web", "pending")).to_have_text("1")
    high = page.locator('#types tr.lane[data-type="web"][data-lane="high"]')
    await expect(high.locator('[data-field="pending"]')).to_have_text("1")
    await expect(page.locator('[data-group="adp-runtime-web"]')).to_contain_text(
        "adp.tasks.web.high ["
    )
    await page.click('#tabs a[data-tab="steps"]')
    await send_step(kafka.bootstrap, "after-restart-step", "still following")
    await expect(page.locator('#step-list li[data-task="after-restart-step"]')).to_contain_text(
        "still following", timeout=SLOW
    )
    console.procs[0].assert_alive()
    assert not w.errors, w.errors


async def test_a_synthesized_task_shows_its_parents_and_children(console, browser):
    """Lineage (adp synthesize) both ways: a task's page links the task it was synthesized
    from, and the parent's page lists the tasks synthesized from it."""
    parent = trajectory("lineage-seed", text="Print the first 10 Fibonacci numbers.")
    lineage = {
        "method": "atomic",
        "generation": 1,
        "parents": [{"task_id": "lineage-seed", "key": "lineage-seed", "generation": 0}],
    }
    child = trajectory("lineage-child", text="Compute the 8th Fibonacci number.")
    child.metadata.task = {"metadata": {"lineage": lineage}}
    stored(console.out, parent)
    stored(console.out, child.model_copy())
    w = await open_page(browser, console.url + "#trajectory/lineage-child")
    card = w.page.locator('[data-part="lineage"]')
    await expect(card).to_contain_text("Lineage: atomic, generation 1", timeout=SLOW)
    await expect(card.locator('[data-part="parents"] a')).to_have_text("lineage-seed")
    await card.locator('[data-part="parents"] a').click()
    await expect(w.page.locator("h2 .task")).to_have_text("lineage-seed", timeout=SLOW)
    children = w.page.locator('[data-part="lineage"] [data-part="children"] li')
    await expect(children).to_have_count(1, timeout=SLOW)
    await expect(children).to_contain_text("lineage-child")
    await expect(children).to_contain_text("atomic · generation 1")
    assert not w.errors, w.errors
