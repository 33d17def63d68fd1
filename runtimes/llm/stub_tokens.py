"""The stub's toy tokenizer and chat template: token ids and logprobs that are stable across
processes and runs, so a test can compare what an export holds with what the stub sent, call by
call (runtimes/llm/stub.py answers vLLM's `return_token_ids` and OpenAI's `logprobs` with them).

Tokens: every run of non-space characters and every run of spaces is one token; its id is a
hash of its text (blake2b) in [100, 50100), so the same text is the same id everywhere. Ids
1..6 are the template's markers.

The chat template, "plain": each message is <|role|> + its content's tokens (+ per tool call
<|call|> + the name's and the arguments' tokens) + <|end|>; the prompt is the messages and a
final <|assistant|>. A completion is the reply's content and calls + <|end|>, so the next
call's prompt -- the same messages, the reply, the tool results -- starts with this call's
prompt and completion, token for token.

"rewrite-history" is a template that changes history the way some real ones do (a reasoning
model's template dropping earlier thoughts): an assistant message before the last user or tool
message loses its lines that start with "Thought:". The next prompt then no longer extends the
previous prompt + completion, which an export must notice.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from adp.runtimes.llm.stub_replies import message_text

MARKERS = {"system": 1, "user": 2, "assistant": 3, "tool": 4}
END, CALL = 5, 6
MARKER_TEXT = {
    **{v: f"<|{k}|>" for k, v in MARKERS.items()},
    END: "<|end|>",
    CALL: "<|call|>",
}
TEMPLATES = ("plain", "rewrite-history")
_PIECES = re.compile(r"\S+|\s+")
_THOUGHT = re.compile(r"^Thought:.*(\n|$)", re.MULTILINE)


def token_id(piece: str) -> int:
    digest = hashlib.blake2b(piece.encode("utf-8"), digest_size=4).digest()
    return 100 + int.from_bytes(digest, "big") % 50000


def pieces(text: str) -> list[str]:
    return _PIECES.findall(text)


def encode(text: str) -> list[int]:
    return [token_id(p) for p in pieces(text)]


def logprob(token: int, position: int) -> float:
    """The stub's 'sampled' logprob of `token` at `position` of the completion: in (-1, 0)."""
    return -(((token * 31 + position * 7) % 997) + 1) / 1000.0


def _body(message: dict[str, Any], content: str) -> list[int]:
    ids = encode(content)
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        arguments = fn.get("arguments")
        ids += [CALL, *encode(fn.get("name") or ""), *encode(arguments if arguments else "")]
    return ids


def prompt_ids(messages: list[dict[str, Any]], template: str = "plain") -> list[int]:
    last_turn = max(
        (i for i, m in enumerate(messages) if m.get("role") in ("user", "tool")), default=-1
    )
    ids: list[int] = []
    for i, m in enumerate(messages):
        role = m.get("role") or "user"
        content = message_text(m.get("content"))
        if template == "rewrite-history" and role == "assistant" and i < last_turn:
            content = _THOUGHT.sub("", content)
        ids += [MARKERS.get(role, MARKERS["user"]), *_body(m, content), END]
    return [*ids, MARKERS["assistant"]]


def completion_ids(message: dict[str, Any]) -> list[int]:
    return [*_body(message, message_text(message.get("content"))), END]


def completion_logprobs(ids: list[int]) -> dict[str, Any]:
    """OpenAI's `logprobs` object of a choice for these sampled ids."""
    return {
        "content": [
            {
                "token": MARKER_TEXT.get(t, f"t{t}"),
                "logprob": logprob(t, i),
                "bytes": None,
                "top_logprobs": [],
            }
            for i, t in enumerate(ids)
        ]
    }
