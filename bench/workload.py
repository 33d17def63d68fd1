"""Synthetic but realistic adp.steps traffic for the aggregator and replay benchmarks.

Each task is one or more attempts of `steps` step events between a started and a finished event,
as a code runtime emits them: every step carries its raw LLM exchange (request messages, raw
response, token counts), so a step event is about 2 KB on the wire, like real traffic. Tasks are
interleaved as a runtime pool at concurrency `in_flight` interleaves them, and some tasks repeat
events (redeliveries) or carry an abandoned attempt before the one that completes, so the
assembler's duplicate and supersede paths are part of the work, not only its happy path.

Text is drawn from a fixed vocabulary with a seeded RNG: it compresses like prose (gzip about
3:1), not like a repeated string, so broker and codec costs stay honest.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from adp.schemas import codec
from adp.schemas.contracts import StepEvent, sample_key

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "if",
    "so",
    "no",
    "will",
    "can",
    "more",
    "out",
    "up",
    "about",
    "what",
    "who",
    "into",
    "them",
    "some",
    "could",
    "him",
    "time",
    "only",
    "its",
    "may",
    "then",
    "do",
    "first",
    "any",
    "my",
    "now",
    "such",
    "like",
    "our",
    "over",
    "man",
    "me",
    "even",
    "most",
    "made",
    "after",
    "also",
    "did",
    "many",
    "before",
    "must",
    "through",
    "back",
    "years",
    "where",
    "much",
    "your",
    "way",
    "well",
    "down",
    "should",
    "because",
    "each",
    "just",
    "those",
    "people",
    "how",
    "too",
    "little",
    "state",
    "good",
    "very",
    "make",
    "world",
    "still",
    "own",
    "see",
    "men",
    "work",
    "long",
    "get",
    "here",
    "between",
    "both",
    "life",
    "being",
    "under",
    "never",
    "day",
    "same",
    "another",
    "know",
    "while",
    "last",
    "might",
    "us",
    "great",
    "old",
    "year",
    "off",
    "come",
    "since",
    "against",
    "go",
    "came",
    "right",
    "used",
    "take",
    "three",
    "states",
    "himself",
    "few",
    "house",
    "use",
    "during",
    "without",
    "again",
    "place",
    "around",
    "however",
    "home",
    "small",
    "found",
    "thought",
    "went",
    "say",
    "part",
    "once",
    "general",
    "high",
    "upon",
    "school",
    "every",
    "does",
    "got",
    "united",
    "left",
    "number",
    "course",
    "war",
    "until",
    "always",
    "away",
    "something",
    "fact",
    "though",
    "water",
    "less",
    "public",
    "put",
    "think",
    "almost",
    "hand",
    "enough",
    "far",
    "took",
    "head",
    "yet",
    "government",
    "system",
    "better",
    "set",
    "told",
    "nothing",
    "night",
    "end",
    "why",
    "called",
    "didn",
    "eyes",
    "find",
    "going",
    "look",
    "asked",
    "later",
    "knew",
    "point",
    "next",
    "program",
    "city",
    "business",
    "give",
    "group",
    "toward",
    "young",
    "days",
    "let",
    "room",
    "president",
    "side",
    "social",
    "given",
    "present",
    "several",
    "order",
    "national",
    "second",
    "possible",
    "rather",
    "per",
    "face",
    "among",
    "form",
    "important",
    "often",
    "things",
    "looked",
    "early",
    "white",
    "case",
    "john",
    "become",
    "large",
    "big",
    "need",
    "four",
    "within",
    "felt",
    "along",
    "children",
    "saw",
    "best",
    "church",
    "ever",
    "least",
    "power",
    "development",
    "light",
    "thing",
    "seemed",
    "family",
    "interest",
    "want",
    "members",
    "mind",
    "country",
    "area",
    "others",
    "although",
    "turned",
    "done",
    "open",
    "god",
    "service",
    "certain",
    "kind",
    "problem",
    "began",
    "different",
    "thus",
    "help",
    "def",
    "return",
    "import",
    "print",
    "range",
    "len",
    "list",
    "dict",
    "value",
    "result",
    "data",
    "array",
    "numpy",
    "sum",
    "mean",
    "error",
    "none",
    "true",
    "false",
    "self",
    "class",
    "async",
    "await",
    "lambda",
    "yield",
    "index",
    "count",
    "total",
]

SYSTEM_PROMPT = (
    "You are a careful engineer. Solve the task with the python tool; every call "
    "runs in a fresh sandbox. Think step by step, call one tool at a time, and end "
    "with FINAL_ANSWER: followed by the answer. "
) * 2


_PHRASES = [" ".join(random.Random(n).choice(WORDS) for _ in range(5)) for n in range(4096)]


def _text(rng: random.Random, words: int) -> str:
    """About `words` words of prose-like text (phrases of five drawn at random)."""
    return " ".join(rng.choice(_PHRASES) for _ in range(max(1, words // 5)))


@dataclass
class Workload:
    tasks: int
    steps: int = 10
    in_flight: int = 64  # tasks interleaved at once, as a runtime pool emits them
    duplicate_every: int = 20  # every n-th task has some events delivered twice
    abandoned_every: int = 25  # every n-th task has a dead attempt before the winning one
    seed: int = 7
    t0: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    prefix: str = "bench"
    samples: int = 1  # k > 1: task i is sample i % k of the task i // k (a group to a trainer)

    def task_id(self, i: int) -> str:
        return f"{self.prefix}-{i // self.samples:07d}"

    def key(self, i: int) -> str:
        return sample_key(self.task_id(i), i % self.samples)

    @property
    def events_per_task(self) -> int:
        return self.steps + 2

    def _attempt(
        self, rng: random.Random, i: int, aid: str, t0: float, steps: int, finish: bool
    ) -> list[dict]:
        tid = self.task_id(i)
        base = {
            "task_id": tid,
            "attempt_id": aid,
            "task_type": "code",
            "runtime_id": f"code-bench-{i % 4}",
            "task": None,
            "step": None,
            "finish": None,
            "sample_index": i % self.samples,
        }
        description = f"Task {i}: " + _text(rng, 30)
        out = [
            {
                **base,
                "event_type": "started",
                "timestamp": t0,
                "task": {
                    "task_id": tid,
                    "task_type": "code",
                    "description": description,
                    "expected_tools": ["python"],
                    "max_steps": self.steps + 2,
                    "timeout": 300.0,
                    "priority": 5,
                    "constraints": {},
                    "metadata": {"bench": True, "n": i},
                    "samples": self.samples,
                    "sample_index": i % self.samples,
                },
            }
        ]
        history: list[dict] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": description},
        ]
        for s in range(1, steps + 1):
            code = (
                f"values = [{', '.join(str(rng.randrange(1000)) for _ in range(8))}]\n"
                f"print(sum(values) / len(values))  # {_text(rng, 6)}"
            )
            thinking = _text(rng, 25)
            response = {
                "id": f"chatcmpl-{i}-{s}",
                "object": "chat.completion",
                "model": "bench-model",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "content": thinking,
                            "tool_calls": [
                                {
                                    "id": f"call_{s}",
                                    "type": "function",
                                    "function": {
                                        "name": "python",
                                        "arguments": json.dumps({"code": code}),
                                    },
                                }
                            ],
                        },
                    }
                ],
                "usage": {"prompt_tokens": 300 + 40 * s, "completion_tokens": 60},
            }
            request = {
                "model": "bench-model",
                "temperature": 0.2,
                "messages": history[:2] + history[-2:],
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "python",
                            "parameters": {
                                "type": "object",
                                "properties": {"code": {"type": "string"}},
                            },
                        },
                    }
                ],
            }
            observation = f"{rng.random() * 1000:.4f}\n"
            out.append(
                {
                    **base,
                    "event_type": "step",
                    "timestamp": t0 + s,
                    "step": {
                        "step_id": s,
                        "action_type": "code_execution" if s < steps else "final_answer",
                        "action_params": {"code": code},
                        "observation": observation,
                        "thinking": thinking,
                        "success": True,
                        "error": None,
                        "timestamp": t0 + s,
                        "duration": 0.8,
                        "llm": {
                            "provider": "stub",
                            "model": "bench-model",
                            "request": request,
                            "response": response,
                            "prompt_tokens": 300 + 40 * s,
                            "completion_tokens": 60,
                            "latency": 0.7,
                            "cached": False,
                        },
                    },
                }
            )
            history += [
                {"role": "assistant", "content": thinking},
                {"role": "tool", "content": observation},
            ]
        if finish:
            out.append(
                {
                    **base,
                    "event_type": "finished",
                    "timestamp": t0 + steps + 1,
                    "finish": {
                        "success": True,
                        "final_result": f"answer {i}",
                        "error": None,
                        "error_type": None,
                        "total_duration": steps + 1.0,
                        "step_count": steps,
                    },
                }
            )
        return out

    def _task(self, rng: random.Random, i: int) -> list[dict]:
        t0 = self.t0 + i * 0.05
        events: list[dict] = []
        if self.abandoned_every and i % self.abandoned_every == 3:
            events += self._attempt(rng, i, f"{self.key(i)}-dead", t0, self.steps, finish=False)[
                : self.steps // 2
            ]
        events += self._attempt(rng, i, f"{self.key(i)}-a", t0 + 1, self.steps, True)
        if self.duplicate_every and i % self.duplicate_every == 5:
            events += events[2:5]  # a redelivered stretch: dropped as duplicates
        return events

    def events(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs in the order a runtime pool would produce them: `in_flight`
        tasks at once, one event from a random one of them at a time."""
        rng = random.Random(self.seed)
        running: list[tuple[bytes, list[dict]]] = []
        nxt = 0
        while running or nxt < self.tasks:
            while len(running) < self.in_flight and nxt < self.tasks:
                running.append((self.key(nxt).encode(), self._task(rng, nxt)))
                nxt += 1
            k = rng.randrange(len(running))
            key, pending = running[k]
            yield key, codec.encode(StepEvent.model_validate(pending.pop(0)))
            if not pending:
                running[k] = running[-1]
                running.pop()

    def count(self) -> int:
        """How many events `events()` yields."""
        n = 0
        for i in range(self.tasks):
            n += self.events_per_task
            if self.abandoned_every and i % self.abandoned_every == 3:
                n += self.steps // 2
            if self.duplicate_every and i % self.duplicate_every == 5:
                n += 3
        return n


def cached_events(workload: Workload) -> list[tuple[bytes, bytes]]:
    """workload.events(), kept on disk ($ADP_CACHE_DIR/bench) after the first run: encoding
    100k realistic events takes a while, and they are the same every run (seeded)."""
    import hashlib
    import struct
    from dataclasses import asdict

    from adp.core.settings import settings

    key = hashlib.sha256(
        (
            json.dumps(asdict(workload), sort_keys=True)
            + codec.schema_fingerprint("adp.StepEvent").hex()
            + Path(__file__).read_text()
        ).encode()
    ).hexdigest()[:16]
    path = settings().cache_dir / "bench" / f"steps-{workload.tasks}-{key}.bin"
    if path.exists():
        data, out, pos = path.read_bytes(), [], 0
        while pos < len(data):
            klen, vlen = struct.unpack_from(">II", data, pos)
            pos += 8
            out.append((data[pos : pos + klen], data[pos + klen : pos + klen + vlen]))
            pos += klen + vlen
        return out
    events = list(workload.events())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for k, v in events:
            f.write(struct.pack(">II", len(k), len(v)) + k + v)
    tmp.replace(path)
    return events


async def produce(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> float:
    """Produce (key, value) pairs as a runtime does (acks=all, idempotent, gzip); seconds."""
    import asyncio
    import time

    from adp.streams.kafka import clients

    producer = await clients.start(
        clients.producer(bootstrap, client_id="adp-bench", linger_ms=20, max_batch_size=512 * 1024)
    )
    began = time.perf_counter()
    try:
        pending = [await producer.send(topic, v, key=k) for k, v in events]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - began
