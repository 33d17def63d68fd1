"""What an LLM call costs: a price table per provider/model, in USD per million tokens.

The table is a JSON object whose keys are "<provider>/<model>" patterns (shell-style: "*" and
"?") and whose values give the price of prompt ("input") and completion ("output") tokens:

    {"openai/gpt-4o-mini": {"input": 0.15, "output": 0.60},
     "deepseek/*":         {"input": 0.27, "output": 1.10},
     "vllm/*":             {"input": 0,    "output": 0}}

ADP_PRICES names the file; its entries override the built-in ones. An exact key wins over a
pattern, and a longer pattern over a shorter one. Built in is only "local/*" at 0: the embedded
model runs on this machine. A model no entry matches is not priced: its calls count tokens only
and their cost is null (never a guessed 0). A call served from the response cache cost nothing.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from adp.core.errors import BadInput

log = logging.getLogger(__name__)

BUILT_IN = {"local/*": {"input": 0.0, "output": 0.0}}


class PriceTableError(BadInput):
    """The price table file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Price:
    input: float  # USD per million prompt tokens
    output: float  # USD per million completion tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


def parse_table(obj: object, where: str) -> dict[str, Price]:
    if not isinstance(obj, dict):
        raise PriceTableError(f'{where}: a JSON object of "provider/model": prices')
    table = {}
    for key, value in obj.items():
        if not isinstance(value, dict) or not all(
            isinstance(value.get(k), (int, float))
            and not isinstance(value.get(k), bool)
            and value[k] >= 0
            for k in ("input", "output")
        ):
            raise PriceTableError(
                f'{where}: {key!r}: needs "input" and "output", USD per '
                f"million tokens, numbers >= 0"
            )
        if "/" not in key:
            raise PriceTableError(f'{where}: {key!r}: a key is "<provider>/<model>"')
        table[key] = Price(float(value["input"]), float(value["output"]))
    return table


@lru_cache(maxsize=8)
def load_table(path: Path | None) -> dict[str, Price]:
    table = parse_table(BUILT_IN, "built-in prices")
    if path is None:
        return table
    try:
        obj = json.loads(path.read_text())
    except OSError as exc:
        raise PriceTableError(f"ADP_PRICES={path}: cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise PriceTableError(f"ADP_PRICES={path}: invalid JSON: {exc}") from None
    return {**table, **parse_table(obj, f"ADP_PRICES={path}")}


def price_of(provider: str, model: str, table: dict[str, Price]) -> Price | None:
    name = f"{provider}/{model}"
    if name in table:
        return table[name]
    matches = [k for k in table if fnmatch.fnmatchcase(name, k)]
    return table[max(matches, key=len)] if matches else None


def call_cost(
    provider: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached: bool = False,
    path: Path | None = None,
) -> float | None:
    """USD of one call, or None when the model is not in the table. `path`: the table file
    (default: ADP_PRICES). A broken table is logged once and prices nothing."""
    return Pricer(path)(provider, model, prompt_tokens, completion_tokens, cached)


class Pricer:
    """call_cost with the table read once and each model's price looked up once: a runtime
    prices every LLM call, and reading the settings and the table per call was a sixth of a
    runtime's CPU at concurrency 64. `path`: the table file (default: ADP_PRICES,
    read at the first call)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._table: dict[str, Price] | None = None
        self._prices: dict[tuple[str, str], Price | None] = {}

    def __call__(
        self,
        provider: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached: bool = False,
    ) -> float | None:
        key = (provider, model)
        if key not in self._prices:
            self._prices[key] = price_of(provider, model, self._load())
        price = self._prices[key]
        if price is None:
            return None
        return 0.0 if cached else round(price.cost(prompt_tokens, completion_tokens), 10)

    def _load(self) -> dict[str, Price]:
        if self._table is None:
            path = self.path
            if path is None:
                from adp.core.settings import settings

                path = settings().prices
            try:
                self._table = load_table(path)
            except PriceTableError as exc:
                _warn_once(str(exc))
                self._table = {}
        return self._table


@lru_cache(maxsize=8)
def _warn_once(message: str) -> None:
    log.warning("%s; LLM calls are not priced", message)
