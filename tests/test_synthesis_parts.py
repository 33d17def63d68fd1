"""The synthesizer's pure parts, without a broker or a model: grounding answers in what tools
returned, verify specs built from observed values, reading proposals, duplicates, deterministic
ids, lineage, candidates and the budget."""

from __future__ import annotations

import re

import pytest

from adp.connectors.export.passk import parse_pass_rate
from adp.schemas import lineage as schema
from adp.schemas.contracts import LlmExchange, Task
from adp.streams.synthesis import candidates as cand
from adp.streams.synthesis.accounting import (
    BudgetReached,
    Spend,
    UnpricedModel,
    read_spend_metadata,
    spend_metadata,
)
from adp.streams.synthesis.candidates import Candidate, CandidateBuilder, Turned
from adp.streams.synthesis.dedup import DedupIndex, normalise
from adp.streams.synthesis.engine import TaskAllowance
from adp.streams.synthesis.grounding import (
    find_evidence,
    gives_away,
    observations,
    observed_values,
    verify_spec,
)
from adp.streams.synthesis.lineage import task_id_for
from adp.streams.synthesis.proposals import (
    NO_JSON,
    final_answer,
    parse_proposal,
    proposal_messages,
)
from tests.synthesis_data import proposal, trajectory

FIB = trajectory(
    "fib",
    "Print the first 10 Fibonacci numbers.",
    ["[0, 1, 1, 2, 3, 5, 8, 13, 21, 34]", "sum: 88\nshop code ZEBRA-42 at 'Quantum Kettle'"],
)


def test_only_tool_output_counts_as_observed():
    seen = observations(FIB)
    assert [o.step_id for o in seen] == [1, 2]  # the final answer step is not a tool's
    values = observed_values(seen)
    assert {"34", "88", "ZEBRA-42", "Quantum Kettle"} <= set(values)
    assert find_evidence("34", seen).step_id == 1
    assert find_evidence("88.0", seen).step_id == 2  # numerically
    assert find_evidence("zebra-42", seen).step_id == 2  # case does not matter
    assert find_evidence("quantum  kettle", seen).excerpt  # nor spacing
    assert find_evidence("35", seen) is None
    assert find_evidence("Kett", seen) is None  # whole words only
    assert find_evidence("done", seen) is None  # the agent's final answer is not evidence


def test_verify_spec_follows_the_value_and_passes_its_own_answer():
    assert verify_spec("3,628,800") == {
        "type": "answer",
        "match": "numeric",
        "expected": 3628800,
        "rel_tolerance": 1e-6,
    }
    assert verify_spec("98.6")["expected"] == 98.6
    assert verify_spec("ZEBRA-42") == {
        "type": "answer",
        "match": "contains",
        "expected": "ZEBRA-42",
    }
    # one of a width task's values: a whole number anywhere in the answer, not its last number
    part = re.compile(verify_spec("13", alone=False)["expected"])
    assert [bool(part.search(t)) for t in ("13 and 88", "88, 13.0", "113", "1.13")] == [
        True,
        True,
        False,
        False,
    ]
    assert gives_away("What is the code after ZEBRA-42?", "zebra-42")
    assert not gives_away("What is the shop code?", "ZEBRA-42")


def test_a_proposal_is_read_from_prose_and_fences_and_bad_items_are_counted():
    text = proposal(
        [("What is the 10th Fibonacci number?", "34"), ("no answer", None)],
        [(0, "Add one to the 10th Fibonacci number?", 88)],
        [(0, 1, "both")],
    )
    got = parse_proposal(text)
    assert [a.answer for a in got.atomic] == ["34"]
    assert got.depth[0].answer == "88" and got.depth[0].uses == 0
    assert got.width[0].fuses == (0, 1)
    assert got.problems == ["atomic[1]: needs a question and an answer"]
    assert parse_proposal("I would rather not.").problems == [NO_JSON]
    assert parse_proposal('{"atomic": "x"}').problems == ["atomic: not a list"]
    assert final_answer("thinking...\nFINAL ANSWER: 34 ") == "34"
    assert final_answer("just 34") == "just 34"


def test_the_prompt_names_the_parent_and_shows_what_the_tools_returned():
    messages = proposal_messages(FIB, observations(FIB), ["34"], 2)
    user = messages[1]["content"]
    assert user.startswith("SYNTHESIZE TASKS\nparent task: fib\ntask type: code")
    assert "[step 1] [0, 1, 1, 2" in user and '"34"' in user and "2 of each" in user


def test_duplicates_exact_and_near_but_not_merely_alike():
    index = DedupIndex(0.8)
    index.add("a", "Compute the 10th Fibonacci number with Python and print it.")
    exact = index.check("compute the 10th fibonacci number, with python and PRINT it")
    assert exact.kind == "exact" and exact.of == "a"
    near = index.check("Compute the 10th Fibonacci number with Python and print it out.")
    assert near.kind == "near" and near.similarity >= 0.8
    assert index.check("What is the capital of France?") is None
    assert index.check("Compute the 11th Fibonacci number in Rust.") is None
    index.remove("a")
    assert index.check("Compute the 10th Fibonacci number with Python and print it.") is None
    assert normalise("Ｆｉｂ, 34!") == "fib 34"


def test_task_ids_are_derived_from_parents_method_and_index():
    one = task_id_for(["p"], "atomic", 0, 1)
    assert one == task_id_for(["p"], "atomic", 0, 1)  # the same in every process
    assert one.startswith("syn1-atomic-") and len(one) == len("syn1-atomic-") + 16
    assert len({one, task_id_for(["p"], "atomic", 1, 1), task_id_for(["q"], "atomic", 0, 1)}) == 3
    assert task_id_for(["b", "a"], "width", 0, 2) == task_id_for(["a", "b"], "width", 0, 2)
    with pytest.raises(ValueError):
        task_id_for(["p"], "sideways", 0, 1)


def test_candidates_are_valid_tasks_grounded_in_the_parent_with_lineage():
    web = trajectory(
        "shop",
        "Find the shop code.",
        ["Shop code: ZEBRA-42. Items: 17"],
        task_type="web",
        task={"max_steps": 8, "timeout": 180, "constraints": {"start_url": "http://h/"}},
    )
    builder = CandidateBuilder(web, observations(web), "adp-synthesizer")
    items = parse_proposal(
        proposal(
            [("What is the shop code?", "ZEBRA-42"), ("How many items?", "17"), ("Price?", "99")],
            [(0, "How many items does the shop with that code list?", "17")],
            [(0, 1, "Give the shop code and the number of items.")],
        )
    )
    atomic = [builder.atomic(a) for a in items.atomic]
    assert isinstance(atomic[2], Turned) and atomic[2].reason == cand.NOT_GROUNDED
    code, count = atomic[0], atomic[1]
    assert isinstance(code, Candidate) and code.task.task_type == "web"
    assert code.task.constraints == {"start_url": "http://h/"} and code.task.max_steps == 8
    assert code.task.verify == {"type": "answer", "match": "contains", "expected": "ZEBRA-42"}
    lineage = schema.lineage_of(code.task)
    assert lineage["method"] == "atomic" and lineage["generation"] == 1
    assert lineage["parents"][0]["task_id"] == "shop" and lineage["evidence"][0]["step_id"] == 1
    assert schema.parent_ids(code.task) == ["shop"] and schema.method_of(code.task) == "atomic"
    bases = {0: code, 1: count}
    depth = builder.depth(items.depth[0], bases)
    assert depth.task.max_steps == 16 and schema.lineage_of(depth.task)["components"] == [
        code.task_id
    ]
    width = builder.width(items.width[0], bases)
    assert isinstance(width.task.verify, list) and len(width.task.verify) == 2
    assert builder.depth(items.depth[0], {}).reason == cand.NO_BASE


def test_a_generation_grows_from_its_parents_generation():
    child = CandidateBuilder(FIB, observations(FIB)).atomic(
        parse_proposal(proposal([("What is the last number printed first?", "34")])).atomic[0]
    )
    assert child.generation == 1
    grandparent_doc = child.task.model_dump(mode="json")
    again = trajectory("c", "x", ["34 and 88"], task=grandparent_doc)
    assert schema.generation_of(again) == 1
    grandchild = CandidateBuilder(again, observations(again)).atomic(
        parse_proposal(proposal([("Which number follows?", "88")])).atomic[0]
    )
    assert grandchild.generation == 2 and grandchild.task_id.startswith("syn2-atomic-")
    assert schema.generation_of(Task(task_id="t", task_type="code", description="d")) == 0


def test_the_budget_stops_calls_and_needs_priced_models():
    def exchange(cost):
        return LlmExchange(
            provider="custom",
            model="stub",
            request={},
            response={},
            prompt_tokens=10,
            completion_tokens=5,
            cost_usd=cost,
        )

    spend = Spend(budget_usd=0.01, before_usd=0.004)
    spend.before_call()
    spend.charge(exchange(0.006))
    with pytest.raises(BudgetReached):
        spend.before_call()
    with pytest.raises(UnpricedModel):
        Spend(budget_usd=1.0).charge(exchange(None))
    assert Spend().charge(exchange(None)) == 0.0  # no budget: tokens only
    assert read_spend_metadata(spend_metadata(0.25)) == 0.25
    assert read_spend_metadata("not json") == 0.0


def test_the_task_allowance_counts_each_id_once():
    allowance = TaskAllowance(3)
    allowance.note("earlier")
    assert allowance.take(["a", "b", "c"]) == ["a", "b"]
    assert allowance.take(["a", "d"]) == ["a"]  # already counted: granted again
    assert allowance.reached


def test_pass_rate_ranges():
    assert parse_pass_rate("0.25:0.75") == (0.25, 0.75)
    for bad in ("0.5", "0.9:0.1", "a:b", "0:2"):
        with pytest.raises(ValueError):
            parse_pass_rate(bad)
