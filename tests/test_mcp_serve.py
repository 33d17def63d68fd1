"""The platform's own tools served over MCP, driven by the official SDK's own client: `adp mcp
serve python` over stdio and streamable HTTP (the bubblewrap sandbox with the scientific
environment, files kept between calls and returned as images or embedded resources), and
`adp mcp serve browser` on the test site; `adp mcp list` on a configured server."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from mcp import Client, MCPError, StdioServerParameters

from adp.runtimes.tools.sandbox.bwrap import sandbox_available
from adp.runtimes.tools.sandbox.env import find_env
from tests.helpers import ADP, KV_SERVER, free_port, mcp_http_process

HAS_SANDBOX = sandbox_available() is None and find_env() is not None
needs_sandbox = pytest.mark.skipif(
    not HAS_SANDBOX, reason="needs bubblewrap and the built sandbox environment"
)


def served(*args: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "adp", "mcp", "serve", *args])


async def drive_python(client: Client) -> None:
    listed = await client.list_tools()
    assert [t.name for t in listed.tools] == ["python"]
    assert listed.tools[0].input_schema["required"] == ["code"]
    first = await client.call_tool(
        "python",
        {
            "code": "import numpy as np, matplotlib.pyplot as plt\n"
            "plt.plot([1, 2, 3]); plt.savefig('line.png')\n"
            "open('note.txt', 'w').write('kept')\n"
            "print(int(np.arange(5).sum()))\n"
        },
    )
    assert not first.is_error
    text, *files = first.content
    assert text.text.startswith("10\n[saved files: ")
    kinds = {type(f).__name__: f for f in files}
    image = kinds["ImageContent"]
    assert image.mime_type == "image/png"
    assert base64.b64decode(image.data).startswith(b"\x89PNG")
    note = kinds["EmbeddedResource"].resource
    assert (note.uri, note.text) == ("file:///work/note.txt", "kept")
    # the working directory stays: a later call reads what an earlier one saved
    second = await client.call_tool("python", {"code": "print(open('note.txt').read())\n1/0"})
    assert second.is_error
    assert second.content[0].text.startswith("kept\n") and "ZeroDivisionError" in (
        second.content[0].text
    )


@needs_sandbox
async def test_adp_mcp_serve_python_over_stdio():
    async with Client(served("python")) as client:
        await drive_python(client)


@needs_sandbox
async def test_adp_mcp_serve_python_over_http(tmp_path):
    port = free_port()
    command = [*ADP, "mcp", "serve", "python", "--transport", "http", "--port", str(port)]
    with mcp_http_process(command, tmp_path / "serve.log", port) as url:
        async with Client(url) as client:
            await drive_python(client)


async def test_adp_mcp_serve_browser_over_stdio(site):
    async with Client(served("browser")) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"goto", "click", "read_page", "extract_links"} <= names
        page = await client.call_tool("goto", {"url": site})
        assert not page.is_error and "Title: ADP Test Shop" in page.content[0].text
        again = await client.call_tool("read_page", {})  # the same page: one context per server
        assert f"URL: {site}" in again.content[0].text
        with pytest.raises(MCPError) as err:
            await client.call_tool("fly", {})
        assert "unknown tool 'fly'" in str(err.value)


def test_adp_mcp_list(tmp_path):
    config = tmp_path / "adp.toml"
    config.write_text(
        "[mcp.servers.kv]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(KV_SERVER)}]\n"
        'tools = ["put", "get"]\n'
        "[mcp.servers.gone]\n"
        'url = "http://127.0.0.1:9/mcp"\n'
    )
    env = {"ADP_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [*ADP, "mcp", "list", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 5, proc.stderr
    assert proc.stderr.strip() == "Error: MCP server(s) not available: gone"
    gone, kv = json.loads(proc.stdout)["servers"]
    assert gone["error"].startswith("MCP server 'gone' (http://127.0.0.1:9/mcp) cannot be reached")
    offered = {t["name"]: t["offered"] for t in kv["tools"]}
    assert offered["kv.put"] and offered["kv.get"] and not offered["kv.crash"]
    put = next(t for t in kv["tools"] if t["name"] == "kv.put")
    assert put["function"] == "kv__put" and put["input_schema"]["required"] == ["key", "value"]
