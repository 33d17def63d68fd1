"""core/pricing.py: the price table (exact keys over patterns, longer patterns over shorter,
unknown models unpriced, cached calls free) and the LLM client stamping each call's cost."""

from __future__ import annotations

import json

import pytest

from adp.core.pricing import PriceTableError, call_cost, load_table, parse_table, price_of
from adp.runtimes.llm.stub import StubServer
from tests.test_llm_client import client_for


def write_table(tmp_path, table) -> object:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(table))
    return path


def test_lookup_order_and_unknown_models(tmp_path):
    path = write_table(
        tmp_path,
        {
            "openai/*": {"input": 1, "output": 2},
            "openai/gpt-4o*": {"input": 3, "output": 4},
            "openai/gpt-4o-mini": {"input": 0.15, "output": 0.6},
            "local/*": {"input": 5, "output": 5},
        },
    )
    table = load_table(path)
    assert price_of("openai", "gpt-4o-mini", table).input == 0.15  # exact
    assert price_of("openai", "gpt-4o-2024", table).input == 3  # longer pattern
    assert price_of("openai", "o3", table).input == 1
    assert price_of("local", "smollm2", table).input == 5  # the file overrides
    assert price_of("deepseek", "chat", table) is None
    assert call_cost("openai", "gpt-4o-mini", 1_000_000, 500_000, path=path) == pytest.approx(0.45)
    assert call_cost("openai", "gpt-4o-mini", 10, 10, cached=True, path=path) == 0.0
    assert call_cost("deepseek", "chat", 10, 10, path=path) is None  # tokens only
    assert price_of("local", "x", load_table(None)).output == 0.0  # built in


@pytest.mark.parametrize(
    "table, message",
    [
        ([], "a JSON object"),
        ({"gpt": {"input": 1, "output": 1}}, "a key is"),
        ({"a/b": {"input": -1, "output": 1}}, "numbers >= 0"),
        ({"a/b": {"input": 1}}, 'needs "input" and "output"'),
    ],
)
def test_bad_tables_name_the_entry(table, message):
    with pytest.raises(PriceTableError, match=message):
        parse_table(table, "prices.json")


def test_an_unreadable_table_prices_nothing(tmp_path, caplog):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    assert call_cost("local", "m", 1, 1, path=path) is None
    assert "invalid JSON" in caplog.text


async def test_the_client_stamps_each_calls_cost(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "ADP_PRICES", str(write_table(tmp_path, {"p0/stub-model": {"input": 2, "output": 10}}))
    )
    async with StubServer() as stub:
        client = client_for(stub)
        reply = await client.chat([{"role": "user", "content": "price me please"}])
        ex = reply.exchange
        assert ex.prompt_tokens > 0 and ex.completion_tokens > 0
        assert ex.cost_usd == pytest.approx(
            (ex.prompt_tokens * 2 + ex.completion_tokens * 10) / 1e6
        )
        await client.aclose()
    monkeypatch.delenv("ADP_PRICES")
    async with StubServer() as stub:
        client = client_for(stub)
        assert (await client.chat([{"role": "user", "content": "x"}])).exchange.cost_usd is None
        await client.aclose()
