"""The dataset card: README.md beside the exported data, generated from what was written.

Its YAML header names the splits' files (Hugging Face's `configs`), so `datasets.load_dataset`
on the folder finds them; the body says where the data came from, how it was filtered, counts
per task type, the verified rate, pass@k per task type and model, models and providers, tokens
and cost, how many LLM calls carry token ids, what was left out and why, and the schema of a
row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adp.connectors.export.dataset import Stats
from adp.connectors.export.passk import describe

ROW_SCHEMAS = {
    "chat": """Each line of `train.jsonl` / `validation.jsonl` is one conversation in OpenAI's
fine-tuning format, which TRL's `SFTTrainer` reads as a conversational dataset:

- `messages`: `{"role": "system" | "user" | "assistant" | "tool", "content": str}`; an assistant
  message may carry `tool_calls` (`[{"id", "type": "function", "function": {"name",
  "arguments"}}]`, arguments as {arguments}), a tool message its `tool_call_id`
- `tools` (when the agent offered tools): `[{"type": "function", "function": {"name",
  "description", "parameters"}}]`

`index.jsonl` gives, for every line (`split`, `line`), the trajectory it came from: `key`,
`task_id`, `task_type`, `sample_index`, `segment`, `provider`, `model`, `success`,
`claimed_success`, `verdict`, `verifier`, `score`.""",
    "sharegpt": """Each line of `train.jsonl` / `validation.jsonl` (LLaMA-Factory's ShareGPT
layout: `formatting: sharegpt`, columns `messages: conversations`, `system`, `tools`):

- `conversations`: `[{"from": "human" | "gpt" | "function_call" | "observation", "value": str}]`
- `system`: the system prompt; `tools`: the offered tools as a JSON string
- `key`, `task_id`, `task_type`, `sample_index`, `segment`, `provider`, `model`, `success`,
  `claimed_success`, `verdict`, `verifier`, `score`""",
    "parquet": """`train.parquet` / `validation.parquet`, one row per conversation:

`key`, `task_id`, `task_type`, `sample_index`, `segment`, `split`, `provider`, `model`,
`success`, `claimed_success`, `verdict`, `verifier`, `score`, `num_steps`, `prompt_tokens`,
`completion_tokens`, `cost_usd`, `finished_at` (UTC timestamp), `messages` (list of
`{role, content, tool_calls: [{id, type, function: {name, arguments}}], tool_call_id}`) and
`tools` (JSON text: tool schemas differ from row to row).""",
    "atif": """`train/<key>.json` / `validation/<key>.json`: one ATIF v1.4 document per trajectory
(Harbor's Agent Trajectory Interchange Format, RFC 0001): `schema_version`, `session_id`
(`<key>@<attempt_id>`), `agent`, `steps` (system prompt, the task, then one agent step per LLM
call with its tool calls, observations and metrics), `final_metrics`, and `extra` with the
verdict, the agent's claim and the task. A step whose LLM call carries token ids has them in
`metrics.prompt_token_ids`, `metrics.completion_token_ids` and `metrics.logprobs`.""",
    "tokens": """`train.parquet` / `validation.parquet`, one row per trajectory (a sample of a
task), or per segment of it where a chat template rewrote history and `--on-drift split` cut
it there:

- `input_ids` (list of int32): the token ids the endpoint reported, call after call: the first
  prompt, each completion, and what each next prompt adds (tool results, observations, the
  template's turn headers); never re-tokenized
- `loss_mask` (list of int8): 1 on the tokens the model generated, 0 on everything else
- `logprobs` (list of float32): the sampled tokens' logprobs where `loss_mask` is 1 (NaN where
  the endpoint gave none), 0.0 elsewhere
- `reward`: the verdict's score (1.0 passed / 0.0 failed without one; null: not judged);
  `group`: the task_id, shared by the k samples of a task; `sample_index`, `segment`,
  `policy_version`, `model`, `model_revision`, `verdict`, `success`, `num_calls`,
  `num_tokens`, `num_generated`, `key`, `task_id`, `task_type`""",
}


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.0f}% ({n}/{d})" if d else "-"


def render_card(
    fmt: str,
    stats: Stats,
    files: dict[str, str],
    source: str,
    filters: list[str],
    validation: float,
    dedup: bool,
    arguments: str = "string",
) -> str:
    lines: list[str] = ["---"]
    if fmt != "atif" and files:
        lines += ["configs:", "- config_name: default", "  data_files:"]
        for split, path in files.items():
            lines += [f"  - split: {split}", f"    path: {path}"]
    lines += [
        "tags:",
        "- agent-trajectories",
        "- adp",
        "---",
        "",
        "# Agent trajectories",
        "",
        f"Exported by the Agent Data Platform (`adp export --format {fmt}`) from "
        f"`{source}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Every "
        "conversation is rebuilt from the raw LLM requests and responses the agents "
        "really exchanged and the tools' real outputs; nothing was generated for the "
        "export.",
        "",
        f"- filters: {'; '.join(filters)}",
        f"- split: by a hash of task_id ({validation:g} of tasks to validation), so the "
        "samples of one task never straddle train and validation",
        f"- identical conversations: {'kept once' if dedup else 'all kept'}"
        + (f" ({stats.duplicates} duplicates dropped)" if dedup else ""),
        "",
    ]
    lines += [
        "## Counts",
        "",
        "| task type | trajectories | rows | success | verified rate | passed | failed "
        "| could not verify | unverified |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total: dict[str, int] = {}
    for task_type, s in sorted(stats.by_type.items()):
        v = s.verdicts
        judged = v["passed"] + v["failed"] + v["error"]
        lines.append(
            f"| {task_type} | {s.trajectories} | {s.rows} | "
            f"{_pct(s.success, s.trajectories)} | {_pct(v['passed'], judged)} | "
            f"{v['passed']} | {v['failed']} | {v['error']} | {v['unverified']} |"
        )
        for k in ("passed", "failed", "error", "unverified"):
            total[k] = total.get(k, 0) + v[k]
    judged = total.get("passed", 0) + total.get("failed", 0) + total.get("error", 0)
    lines += [
        "",
        f"Verified rate overall: {_pct(total.get('passed', 0), judged)} of the "
        "trajectories whose task names a verifier (a verifier that could not run counts "
        "as not verified).",
        "",
        "| split | trajectories | rows | file |",
        "|---|---:|---:|---|",
    ]
    for split, path in files.items():
        lines.append(f"| {split} | {stats.trajectories[split]} | {stats.rows[split]} | `{path}` |")
    lines += _lineage_lines(stats)
    lines += _pass_at_k(stats)
    lines += ["", "## Models and providers", ""]
    lines += [f"- model `{m}`: {n} trajectories" for m, n in stats.models.most_common()] or [
        "- none (no LLM call)"
    ]
    lines += [f"- provider `{p}`: {n} trajectories" for p, n in stats.providers.most_common()]
    cost = (
        (
            f"${stats.cost_usd:,.4f} for the {stats.priced} trajectories whose models are "
            "priced (ADP_PRICES)"
        )
        if stats.priced
        else "not priced (no model in the price table)"
    )
    lines += [
        "",
        "## Tokens and cost",
        "",
        f"- prompt tokens: {stats.prompt_tokens:,}",
        f"- completion tokens: {stats.completion_tokens:,}",
        f"- cost: {cost}",
        f"- LLM calls with token ids: {_pct(stats.token_calls, stats.llm_calls)}"
        + (
            f"; {stats.drifts} calls whose prompt did not extend the previous prompt and "
            "completion (a chat template that rewrote history)"
            if stats.drifts
            else ""
        ),
        "",
    ]
    if stats.filtered or stats.left_out:
        lines += ["## Left out", ""]
        lines += [f"- {n} trajectories: {why}" for why, n in stats.filtered.most_common()]
        lines += [f"- {n} conversations: {why}" for why, n in stats.left_out.most_common()]
        lines.append("")
    lines += [
        "## Schema of a row",
        "",
        ROW_SCHEMAS[fmt].replace(
            "{arguments}", "JSON text" if arguments == "string" else "objects"
        ),
        "",
    ]
    return "\n".join(lines)


def _lineage_lines(stats: Stats) -> list[str]:
    """Synthesized tasks (`adp synthesize`): counts per generation and method, and the pass
    rate per generation (how hard each generation is for the agents that ran it)."""
    if not stats.synthesized:
        return []
    lines = [
        "",
        "## Synthesized tasks",
        "",
        "Tasks made by `adp synthesize` from earlier trajectories, by generation (hand-written "
        "tasks are generation 0) and method; each one's lineage is in its task's "
        "`metadata.lineage`.",
        "",
        "| generation | method | trajectories |",
        "|---:|---|---:|",
    ]
    for (generation, method), n in sorted(stats.lineage.items()):
        lines.append(f"| {generation} | {method} | {n} |")
    lines += ["", "| generation | trajectories | pass rate |", "|---:|---:|---:|"]
    for generation in sorted({g for g, _ in stats.lineage}):
        total = sum(n for (g, _), n in stats.lineage.items() if g == generation)
        lines.append(
            f"| {generation} | {total} | {_pct(stats.generation_success[generation], total)} |"
        )
    return lines


def _pass_at_k(stats: Stats) -> list[str]:
    """pass@k (unbiased estimator, connectors/export/passk.py) per task type and per model,
    for the k the judged samples per task allow."""
    by_type, by_model = stats.passk.report("type"), stats.passk.report("model")
    if not any(by_type.values()):
        return []
    lines = [
        "",
        "## pass@k",
        "",
        "The unbiased estimator 1 - C(n-c, k) / C(n, k) per task (n judged samples, c "
        "passed), averaged over the tasks with at least k judged samples.",
        "",
    ]
    lines += [f"- {name}: {describe(r)}" for name, r in by_type.items() if r]
    lines += [f"- model `{name}`: {describe(r)}" for name, r in by_model.items() if r]
    return lines


def card_facts(stats: Stats) -> dict[str, Any]:
    """The card's numbers as JSON (adp export --json)."""
    return {
        "rows": dict(stats.rows),
        "trajectories": dict(stats.trajectories),
        "duplicates": stats.duplicates,
        "left_out": dict(stats.left_out),
        "filtered": dict(stats.filtered),
        "verdicts": {t: dict(s.verdicts) for t, s in stats.by_type.items()},
        "models": dict(stats.models),
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "cost_usd": stats.cost_usd if stats.priced else None,
        "generations": {
            str(g): {
                "methods": {m: n for (gg, m), n in stats.lineage.items() if gg == g},
                "success": stats.generation_success[g],
            }
            for g in sorted({g for g, _ in stats.lineage})
        },
        "llm_calls": stats.llm_calls,
        "token_calls": stats.token_calls,
        "drifts": stats.drifts,
        "pass_at_k": {
            "types": stats.passk.report("type"),
            "models": stats.passk.report("model"),
        },
    }
