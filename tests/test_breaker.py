"""The outage breaker's logic (streams/runtime/breaker.py) with stand-in attempts: pause on the
first outage, one log line per change of state, probe with backoff, re-run the tasks that met
the outage under new attempts, give a task up as infrastructure only past the budget.
tests/test_outages.py runs the real thing: a runtime, the broker, the stub LLM stopped and
restarted."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from adp.core.errors import DependencyOutage
from adp.runtimes.base import Outcome
from adp.schemas.contracts import ErrorType
from adp.streams.runtime.breaker import OutageBreaker


class FakeAttempt:
    """Runs `script`'s next entry: an exception to raise, or an Outcome to return."""

    def __init__(self, script: list, made: list) -> None:
        self.script, self.finished_with = script, None
        made.append(self)

    async def run(self, runtime, on_sent=None) -> Outcome:
        await asyncio.sleep(0)
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    async def finish(self, outcome: Outcome, on_sent=None) -> Outcome:
        self.finished_with = outcome
        return outcome


class Dependency:
    """A probe that fails until `up` is set."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.probes = 0

    async def probe(self) -> None:
        self.probes += 1
        if not self.up.is_set():
            raise DependencyOutage("LLM endpoint unavailable: p: still refused", "llm", self.probe)

    def outage(self) -> DependencyOutage:
        return DependencyOutage(
            "LLM endpoint unavailable: p: connection refused", "llm", self.probe
        )


def breaker(budget: float = 60.0) -> OutageBreaker:
    return OutageBreaker("unit", budget, backoff_min=0.01, backoff_max=0.05, runtime_id="rt-1")


def outage_seconds() -> float:
    return (
        REGISTRY.get_sample_value(
            "adp_runtime_outage_seconds_total", {"task_type": "unit", "dependency": "llm"}
        )
        or 0.0
    )


def run_task(b: OutageBreaker, script: list, made: list):
    """One task through the breaker: each new attempt takes the next entry of `script`."""
    return b.run(lambda: FakeAttempt(script, made), None, None)


async def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_tasks_that_meet_an_outage_wait_and_run_again_once_it_answers(caplog):
    caplog.set_level(logging.INFO, logger="adp.streams.runtime.breaker")
    dep, b, made = Dependency(), breaker(), []
    changes = []
    b.on_change.append(lambda: changes.append(b.paused))
    done = Outcome(True, "42")
    before = outage_seconds()
    # three slots meet the same outage; each task's second attempt succeeds
    tasks = [asyncio.create_task(run_task(b, [dep.outage(), done], made)) for _ in range(3)]
    await wait_until(lambda: b.waiting == 3, "three waiting tasks")
    assert b.paused and changes == [True]
    assert b.degraded().startswith("paused since ") and "LLM endpoint unavailable" in b.degraded()
    assert b.degraded().endswith("3 task(s) waiting")
    assert b.note()["by"] == "rt-1" and "LLM endpoint unavailable" in b.note()["why"]
    await wait_until(lambda: dep.probes >= 2, "probes with backoff")
    assert "still refused" in b.reason  # the newest probe's answer
    dep.up.set()
    results = await asyncio.gather(*tasks)
    assert [outcome for _, outcome in results] == [done] * 3
    assert not b.paused and changes == [True, False] and b.degraded() is None and b.note() is None
    # every task ran a second, new attempt; none was finished by the breaker
    assert len(made) == 6 and all(a.finished_with is None for a in made)
    assert outage_seconds() > before
    said = [r.getMessage() for r in caplog.records]
    assert sum("runtime paused" in m for m in said) == 1
    assert sum("runtime resumed" in m for m in said) == 1


async def test_a_task_past_the_budget_ends_as_infrastructure_and_the_breaker_stays_open():
    dep, b, made = Dependency(), breaker(budget=0.2), []
    attempt, outcome = await run_task(b, [dep.outage()] * 100, made)
    assert outcome.success is False and outcome.error_type == ErrorType.infrastructure
    assert "connection refused" in outcome.error and "outage budget of 0.2s" in outcome.error
    assert attempt.finished_with is outcome  # its last attempt carries the verdict
    assert b.paused  # nothing new starts while the dependency is down
    dep.up.set()
    await wait_until(lambda: not b.paused, "the resume")
    b.close()


async def test_a_zero_budget_gives_up_at_the_first_outage():
    dep, b, made = Dependency(), breaker(budget=0), []
    _, outcome = await run_task(b, [dep.outage()], made)
    assert outcome.error_type == ErrorType.infrastructure and len(made) == 1
    b.close()


async def test_without_a_probe_the_next_attempt_is_the_probe():
    b, made = breaker(), []
    script = [DependencyOutage("sandbox down", "sandbox"), Outcome(True, "ok")]
    _, outcome = await run_task(b, script, made)
    assert outcome.final_result == "ok" and len(made) == 2 and not b.paused


def test_backoff_doubles_with_jitter_up_to_its_cap():
    b = OutageBreaker("unit", 60, backoff_min=5, backoff_max=300)
    for level, ceiling in [(0, 5), (1, 10), (3, 40), (6, 300), (500, 300)]:
        delays = [b.delay(level) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (level, min(delays))
        assert max(delays) - min(delays) > 0  # jittered: slots do not probe in step


@pytest.mark.parametrize("budget", [0.0, 5.0])
def test_from_settings_reads_the_runtime_section(monkeypatch, budget):
    monkeypatch.setenv("ADP_MAX_OUTAGE", "123")
    monkeypatch.setenv("ADP_OUTAGE_BACKOFF_MIN", "0.5")
    b = OutageBreaker.from_settings("unit", "rt", budget=budget)
    assert b.budget == budget and b.backoff_min == 0.5
    assert OutageBreaker.from_settings("unit").budget == 123


def test_a_process_that_dies_paused_gives_its_waiting_tasks_no_strikes():
    from adp.streams.runtime.poison import PoisonLedger

    note = {"by": "rt-1", "since": 1.8e9, "why": "LLM endpoint unavailable"}
    paused = PoisonLedger({7: 1}).metadata({7, 8}, committed=7, paused=note)
    assert PoisonLedger.from_metadata(paused, committed=7).strikes == {7: 1}  # kept, not added
    running = PoisonLedger({7: 1}).metadata({7, 8}, committed=7)
    assert PoisonLedger.from_metadata(running, committed=7).strikes == {7: 2, 8: 1}


def test_health_says_degraded_and_why_and_stays_up():
    from adp.core.metrics import Health

    reason = []
    health = Health("runtime rt-1", stale_after=0.0, busy=lambda: True)
    health.degraded.append(lambda: reason[0] if reason else None)
    health.last_progress -= 10
    ok, body = health.report()
    assert not ok and body["status"] == "unhealthy"  # work pending, no progress, no known cause
    reason.append("paused since ...: LLM endpoint unavailable")
    ok, body = health.report()
    assert ok and body["status"] == "degraded" and body["degraded"] == [reason[0]]
    assert body["problems"] == []


def test_adp_status_names_each_paused_runtime_since_when_and_why():
    import time

    from adp.app.commands.status import pauses
    from adp.streams.inspection.status import Pause, TypeStatus

    since = time.mktime((2026, 1, 2, 14, 2, 11, 0, 0, -1))
    row = TypeStatus("code", paused=[Pause("code-host-1", since, "LLM endpoint unavailable")])
    assert pauses([row, TypeStatus("web")], now=since + 185) == [
        "paused: code-host-1 since 14:02:11 (3m 05s): LLM endpoint unavailable"
    ]
