"""The synthesizer's one door to the LLM: every proposal and tool check goes through `ask`.

It uses only the Model protocol's `chat(messages)` (runtimes/llm/client.py builds the provider
chain, with its retries, failover, cache and pricing), checks the budget before each call and
charges the exchange after it. The exchange is kept raw, as a step's is, for the lineage of the
tasks it leads to.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from adp.core.errors import DependencyUnavailable
from adp.runtimes.base import Model
from adp.schemas.contracts import LlmExchange
from adp.streams.synthesis.accounting import Spend

log = logging.getLogger(__name__)


# The calls made on behalf of one parent, when its caller opens a tab (follow.py charges them to
# the partition the parent came from). Tasks the synthesizer spawns for one parent share it.
TAB: ContextVar[list[float] | None] = ContextVar("synthesis_tab", default=None)


class ModelUnavailable(DependencyUnavailable):
    """The LLM could not answer (every provider failed): the parent in hand is left undone."""


@dataclass(frozen=True)
class Answer:
    text: str
    exchange: LlmExchange


class SynthesisModel:
    def __init__(self, model: Model, spend: Spend) -> None:
        self.model, self.spend = model, spend

    async def ask(self, messages: list[dict[str, Any]]) -> Answer:
        """One chat call. Raises BudgetReached before it when the budget is spent,
        ModelUnavailable when the provider chain fails, UnpricedModel when a budget is set and
        the call has no price."""
        self.spend.before_call()
        try:
            reply = await self.model.chat(messages)
        except Exception as exc:
            raise ModelUnavailable(f"the LLM did not answer: {exc}") from exc
        if reply.exchange is None:  # a Model that records nothing cannot be budgeted or traced
            raise ModelUnavailable(f"{type(self.model).__name__} returned no raw exchange")
        cost = self.spend.charge(reply.exchange)
        tab = TAB.get()
        if tab is not None:
            tab.append(cost)
        return Answer(reply.content or "", reply.exchange)
