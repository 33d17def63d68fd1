"""Token rows for RL trainers (`adp export --format tokens`, and a group's samples in token
form): one trajectory's LLM calls as one sequence of the token ids the endpoint reported,
with a loss mask and the sampled tokens' logprobs, never re-tokenized.

Call i has the prompt P_i (the whole context of that call, after the chat template) and the
completion C_i. In an agent loop P_{i+1} normally starts with P_i + C_i: the history the model
saw, its answer, then the tool results and the next turn's header. The row is then P_1 + C_1 +
(the rest of P_2) + C_2 + ...: mask 1 on every C (what the model generated), 0 on the rest
(the prompt, the tool results, the observations, the template's own tokens); logprobs the
endpoint's per token of a C, 0.0 on mask-0 tokens (NaN on a C whose logprobs it did not give).

Where P_{i+1} does not start with P_i + C_i -- a chat template that rewrote history (dropped
earlier thoughts), a context that was truncated -- gluing would train on a sequence the model
never saw. The call is a drift: with "split" the row ends there and a new one (segment + 1)
starts from P_{i+1}; with "drop" the trajectory gives no row. Either way it is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from adp.schemas.contracts import LlmExchange, Trajectory

ON_DRIFT = ("split", "drop")


@dataclass
class TokenRow:
    input_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    calls: int = 0
    segment: int = 0

    def start(self, prompt: list[int]) -> None:
        self._context(prompt)

    def _context(self, ids: list[int]) -> None:
        self.input_ids += ids
        self.loss_mask += [0] * len(ids)
        self.logprobs += [0.0] * len(ids)

    def extend(self, ex: LlmExchange) -> bool:
        """Append a call whose prompt extends this row; False (nothing appended) if it does
        not."""
        prompt, n = ex.prompt_token_ids, len(self.input_ids)
        if len(prompt) < n or prompt[:n] != self.input_ids:
            return False
        self._context(prompt[n:])
        self.generated(ex)
        return True

    def generated(self, ex: LlmExchange) -> None:
        ids, lps = ex.completion_token_ids, ex.completion_logprobs
        self.input_ids += ids
        self.loss_mask += [1] * len(ids)
        self.logprobs += list(lps) if len(lps) == len(ids) else [math.nan] * len(ids)
        self.calls += 1

    @property
    def generated_tokens(self) -> int:
        return sum(self.loss_mask)


@dataclass
class TokenSequences:
    rows: list[TokenRow]
    calls: int  # LLM calls of the agent
    with_ids: int  # of them, carrying prompt and completion ids
    drifts: int  # calls whose prompt did not extend the previous prompt + completion
    missing_logprobs: int  # calls with ids but without aligned logprobs

    @property
    def complete(self) -> bool:
        """Every call carries ids (a row built from part of them would skip turns)."""
        return self.calls > 0 and self.with_ids == self.calls


def calls_of(t: Trajectory) -> list[LlmExchange]:
    """The agent's LLM calls in order (a verifier's own call is not part of the rollout)."""
    return [s.llm for s in t.steps if s.llm is not None]


def has_ids(ex: LlmExchange) -> bool:
    return bool(ex.prompt_token_ids) and bool(ex.completion_token_ids)


def token_sequences(t: Trajectory, on_drift: str = "split") -> TokenSequences:
    """The rows of `t` (none unless every call carries ids; none on a drift under "drop")."""
    if on_drift not in ON_DRIFT:
        raise ValueError(f"on_drift must be one of {', '.join(ON_DRIFT)}, not {on_drift!r}")
    calls = calls_of(t)
    seqs = TokenSequences([], len(calls), sum(has_ids(ex) for ex in calls), 0, 0)
    if not seqs.complete:
        return seqs
    row: TokenRow | None = None
    for ex in calls:
        seqs.missing_logprobs += len(ex.completion_logprobs) != len(ex.completion_token_ids)
        if row is not None and row.extend(ex):
            continue
        if row is not None:
            seqs.drifts += 1
            seqs.rows.append(row)
        row = TokenRow(segment=len(seqs.rows))
        row.start(ex.prompt_token_ids)
        row.generated(ex)
    seqs.rows.append(row)
    if seqs.drifts and on_drift == "drop":
        seqs.rows = []
    return seqs


def row_record(t: Trajectory, row: TokenRow, reward: float | None) -> dict[str, Any]:
    """A row as the tokens export writes it (and a group's sample gives it in token form)."""
    first = next((s.llm for s in t.steps if s.llm is not None), None)
    return {
        "key": t.key,
        "task_id": t.task_id,
        "group": t.task_id,
        "sample_index": t.sample_index,
        "segment": row.segment,
        "task_type": t.task_type,
        "policy_version": t.policy_version,
        "model": first.model if first else None,
        "model_revision": first.model_revision if first else None,
        "reward": reward,
        "verdict": t.verdict_status,
        "success": t.success,
        "num_calls": row.calls,
        "num_tokens": len(row.input_ids),
        "num_generated": row.generated_tokens,
        "input_ids": row.input_ids,
        "loss_mask": row.loss_mask,
        "logprobs": row.logprobs,
    }


def tokens_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("key", pa.string()),
            ("task_id", pa.string()),
            ("group", pa.string()),
            ("sample_index", pa.int32()),
            ("segment", pa.int32()),
            ("task_type", pa.string()),
            ("policy_version", pa.int64()),
            ("model", pa.string()),
            ("model_revision", pa.string()),
            ("reward", pa.float64()),
            ("verdict", pa.string()),
            ("success", pa.bool_()),
            ("num_calls", pa.int32()),
            ("num_tokens", pa.int32()),
            ("num_generated", pa.int32()),
            ("input_ids", pa.list_(pa.int32())),
            ("loss_mask", pa.list_(pa.int8())),
            ("logprobs", pa.list_(pa.float32())),
        ]
    )
