"""An MCP tool's result as the platform keeps it: the observation the model is shown, and the
files (images, audio, embedded resources) kept as the step's artifacts, as a sandbox run's files
are, within the same limits (SandboxLimits: files per call, bytes per file, bytes per call). A
file over a limit is still listed, with a note saying why, and the observation names it.

The observation is only what the server returned: its text blocks in order, a line naming each
file, a text resource's text, a resource link's uri, and the structured content when there is no
text. An error result (`isError`) is an error observation with the server's own words.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import mimetypes
import posixpath
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import mcp_types as types

from adp.runtimes.tools.base import ToolResult
from adp.runtimes.tools.sandbox import CollectedFile, SandboxLimits

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "text/plain": ".txt"}


def _extension(mime: str | None) -> str:
    if not mime:
        return ".bin"
    return _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime, strict=False) or ".bin"


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


@dataclass
class _Files:
    """The files of one result, kept within the limits, in the order the server sent them."""

    tool: str
    limits: SandboxLimits
    files: list[CollectedFile] = field(default_factory=list)
    kept_bytes: int = 0

    def add(self, data: bytes, mime: str | None, uri: str | None = None) -> str:
        """Keep (or list) one file; -> the observation line that names it."""
        name = self._name(mime, uri)
        size, digest = len(data), hashlib.sha256(data).hexdigest()
        kept = sum(1 for f in self.files if f.kept)
        note = None
        if size > self.limits.artifact_max_bytes:
            note = f"larger than the {_size(self.limits.artifact_max_bytes)} per-file limit"
        elif kept >= self.limits.max_artifacts:
            note = f"over the limit of {self.limits.max_artifacts} files per call"
        elif self.kept_bytes + size > self.limits.artifacts_max_bytes:
            note = (
                f"over the {_size(self.limits.artifacts_max_bytes)} limit for all files of a call"
            )
        kind = mime or "application/octet-stream"
        if note is None:
            self.kept_bytes += size
            self.files.append(CollectedFile(name, size, kind, digest, data=data))
            return f"[{kind} {name} ({_size(size)}): kept with this step]"
        self.files.append(CollectedFile(name, size, kind, digest, note=note))
        return f"[not kept: {name} ({_size(size)}): {note}]"

    def _name(self, mime: str | None, uri: str | None) -> str:
        base = posixpath.basename(urlparse(uri).path) if uri else ""
        taken = {f.name for f in self.files}
        name = base or f"{self.tool}-{len(self.files) + 1}{_extension(mime)}"
        stem, ext = posixpath.splitext(name)
        n = 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}{ext}"
        return name


def _decoded(blob: str) -> bytes | None:
    try:
        return base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None


def _block(block: Any, files: _Files) -> str:
    """One content block -> its part of the observation (keeping any file it carries)."""
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        data = _decoded(block.data)
        if data is None:
            return f"[{block.mime_type} content that is not valid base64: not kept]"
        return files.add(data, block.mime_type)
    if isinstance(block, types.EmbeddedResource):
        res = block.resource
        if isinstance(res, types.TextResourceContents):
            line = files.add(res.text.encode(), res.mime_type or "text/plain", res.uri)
            return f"{line}\n{res.text}"
        data = _decoded(res.blob)
        if data is None:
            return f"[resource {res.uri} that is not valid base64: not kept]"
        return files.add(data, res.mime_type, res.uri)
    if isinstance(block, types.ResourceLink):
        return f"[resource link: {block.uri}" + (
            f" ({block.mime_type})]" if block.mime_type else "]"
        )
    return f"[{getattr(block, 'type', type(block).__name__)} content]"


def tool_result(result: types.CallToolResult, tool: str, limits: SandboxLimits) -> ToolResult:
    """What the server returned, as the agent's ToolResult."""
    files = _Files(tool, limits)
    parts = [_block(block, files) for block in result.content]
    if not any(isinstance(b, types.TextContent) for b in result.content) and (
        result.structured_content is not None
    ):
        parts.insert(0, json.dumps(result.structured_content, ensure_ascii=False, default=str))
    observation = "\n".join(p for p in parts if p)
    if not result.is_error:
        return ToolResult(observation, True, None, tuple(files.files))
    first = next((ln for ln in observation.splitlines() if ln.strip()), "")
    error = f"{tool} returned an error" + (f": {first[:300]}" if first else "")
    return ToolResult(observation or error, False, error, tuple(files.files))
