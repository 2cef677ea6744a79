"""The official Python MCP SDK (PyPI `mcp`) as a real client of `opencode-worker mcp`.

Run by tests/mcp.rs with the binary in OCW_BIN and the schema dir in OCW_SCHEMA_DIR; every
check prints `ok - <name>` and the first failure raises. Stdlib and the SDK only.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp import types

BIN = os.environ["OCW_BIN"]
SCHEMA_DIR = Path(os.environ["OCW_SCHEMA_DIR"])
# Generous: only there so a broken build fails instead of hanging CI.
PATIENCE = 30.0
MARKER = f"mcp{os.getpid()}x{uuid.uuid4().hex[:8]}"


def ok(name):
    print(f"ok - {name}", flush=True)


def marked(spec):
    """Every job carries the marker in its environment, so leftovers can be found in /proc."""
    spec.setdefault("env", {})["OCW_TEST_MARKER"] = MARKER
    return spec


def marked_processes():
    needle = f"OCW_TEST_MARKER={MARKER}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle in environ.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            pass
    return found


async def eventually(what, check):
    deadline = time.monotonic() + PATIENCE
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


def server(base, *settings):
    return StdioServerParameters(
        command=BIN,
        args=["mcp", "--set", f"session.base_dir={base}", *[a for s in settings for a in ("--set", s)]],
        env={"RUST_LOG": os.environ.get("TEST_WORKER_LOG", "warn")},
    )


def text_of(result):
    return "\n".join(block.text for block in result.content if block.type == "text")


def leftovers(base):
    return [str(p) for p in Path(base).rglob("*")]


# ---------------------------------------------------------------------------------------------
# through the SDK


async def tools_match_the_schema_files(session):
    listed = (await session.list_tools()).tools
    names = [tool.name for tool in listed]
    assert "worker_dispatch_job" in names, names
    for tool in listed:
        want_in = json.loads((SCHEMA_DIR / f"{tool.name}.input.json").read_text())
        want_out = json.loads((SCHEMA_DIR / f"{tool.name}.output.json").read_text())
        assert tool.input_schema == want_in, f"{tool.name} inputSchema differs from schema/"
        assert tool.output_schema == want_out, f"{tool.name} outputSchema differs from schema/"
        assert tool.description, tool.name
    ok(f"tools/list: {len(listed)} tools, input and output schemas equal to schema/")
    return listed


def initialize_tools_of_serve():
    """`initialize`'s tool list, from the JSON-RPC surface of the same binary."""
    with tempfile.TemporaryDirectory() as base:
        serve = subprocess.run(
            [BIN, "serve", "--set", f"session.base_dir={base}"],
            input=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}) + "\n",
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )
    return json.loads(serve.stdout.splitlines()[0])["result"]["tools"]


async def mcp_and_initialize_agree(listed):
    theirs = initialize_tools_of_serve()
    ours = [
        {
            "name": t.name,
            "description": t.description,
            "input_schema": t.input_schema,
            "output_schema": t.output_schema,
        }
        for t in listed
    ]
    assert ours == theirs, "the MCP tool list and initialize's tool list differ"
    ok("the MCP tool list equals initialize's tool list (names, order, descriptions, schemas)")


async def round_trip_with_an_artifact(session):
    result = await session.call_tool(
        "worker_dispatch_job",
        marked({"command": "echo hello; printf data > $OUTPUT_DIR/out.txt", "wait_ms": 30000}),
    )
    assert not result.is_error, text_of(result)
    job = result.structured_content
    assert job["status"] == "finished", job
    assert job["exit_code"] == 0 and job["stdout"] == "hello\n", job
    artifact = next(a for a in job["artifacts"] if a["path"] == "out.txt")
    assert artifact["content"] == "data", artifact
    text = text_of(result)
    assert text.startswith(f"job {job['job_id']} | status: finished | exit code: 0"), text
    assert "hello" in text and "- out.txt (4 B" in text, text
    page = await session.call_tool("worker_collect_output", {"job_id": job["job_id"]})
    assert not page.is_error, text_of(page)
    assert page.structured_content["stdout"]["data"] == "hello\n", page.structured_content
    assert "--- stdout: bytes 0-6" in text_of(page), text_of(page)
    ok("a dispatch with wait_ms returns the result with its artifact; collect reads the output")


async def refusal_is_a_tool_error(session):
    result = await session.call_tool("worker_dispatch_job", marked({"command": "sudo ls", "wait_ms": 1000}))
    text = text_of(result)
    assert result.is_error, text
    assert "policy denied (-32002)" in text and "rule: privilege-escalation" in text, text
    assert "Do not retry the same command" in text, text
    ok("a policy refusal is a tool error naming the rule and the fix")


async def invalid_arguments_are_a_tool_error(session):
    result = await session.call_tool("worker_dispatch_job", {"command": "true", "limits": {"memory": "12XB"}})
    text = text_of(result)
    assert result.is_error, text
    assert "field `limits.memory`" in text and "Fix `limits.memory`" in text, text
    result = await session.call_tool("worker_get_status", {})
    assert result.is_error and "`job_id`" in text_of(result), text_of(result)
    ok("invalid arguments are a tool error naming the field and the fix")


async def progress_while_waiting(session):
    seen = []

    async def on_progress(progress, total, message):
        seen.append((progress, message))

    result = await session.call_tool(
        "worker_dispatch_job",
        marked({"command": "for i in 1 2 3 4; do echo step$i; sleep 0.5; done", "wait_ms": 30000}),
        progress_callback=on_progress,
    )
    assert not result.is_error and result.structured_content["status"] == "finished", text_of(result)
    assert len(seen) >= 2, seen
    progress = [p for p, _ in seen]
    assert progress == sorted(progress) and len(set(progress)) == len(progress), progress
    messages = [m for _, m in seen]
    assert any(m.startswith("running, ") for m in messages), messages
    assert any(": step" in m for m in messages), messages
    ok(f"{len(seen)} progress notifications while the dispatch waited, e.g. {messages[-1]!r}")


async def cancelling_the_call_cancels_the_job(session):
    job_id = f"cancel-{uuid.uuid4().hex[:8]}"
    call = asyncio.create_task(
        session.call_tool(
            "worker_dispatch_job",
            marked({"job_id": job_id, "command": "sleep 30", "wait_ms": 60000}),
        )
    )
    await eventually("the job's process is up", lambda: marked_processes())
    call.cancel()
    try:
        await call
    except asyncio.CancelledError:
        pass

    async def cancelled():
        status = await session.call_tool("worker_get_status", {"job_id": job_id})
        return status.structured_content["status"] == "cancelled"

    await eventually("the job is cancelled", cancelled)
    await eventually("no job process left", lambda: not marked_processes())
    ok("cancelling the call (notifications/cancelled) cancelled the job")


async def through_the_sdk():
    with tempfile.TemporaryDirectory() as base:
        async with stdio_client(server(base)) as (read, write):
            async with ClientSession(read, write) as session:
                info = await session.initialize()
                assert info.server_info.name == "opencode-worker", info
                assert info.capabilities.tools is not None, info
                ok("initialize")
                listed = await tools_match_the_schema_files(session)
                await mcp_and_initialize_agree(listed)
                await round_trip_with_an_artifact(session)
                await refusal_is_a_tool_error(session)
                await invalid_arguments_are_a_tool_error(session)
                await progress_while_waiting(session)
                await cancelling_the_call_cancels_the_job(session)
        await eventually("the session dirs are gone after the client closed", lambda: not leftovers(base))
    ok("the client closed the server: nothing left")


async def client_roots_become_workspace_roots():
    with tempfile.TemporaryDirectory() as base, tempfile.TemporaryDirectory() as project:
        project = os.path.realpath(project)
        Path(project, "hello.txt").write_text("from the project\n")

        async def roots(context):
            return types.ListRootsResult(roots=[types.Root(uri=f"file://{project}", name="project")])

        # The server runs in this process's directory, outside the root: the root becomes the
        # project a workspace starts at, and the only place a workspace may be.
        async with stdio_client(server(base)) as (read, write):
            async with ClientSession(read, write, list_roots_callback=roots) as session:
                await session.initialize()
                inside = await session.call_tool(
                    "worker_dispatch_job",
                    marked({"command": "pwd; cat hello.txt", "workspace": {"mode": "read"}, "wait_ms": 30000}),
                )
                assert not inside.is_error, text_of(inside)
                assert inside.structured_content["stdout"] == f"{project}\nfrom the project\n", inside.structured_content
                outside = await session.call_tool(
                    "worker_dispatch_job",
                    marked({"command": "true", "workspace": {"mode": "read", "path": base}, "wait_ms": 30000}),
                )
                assert outside.is_error and "workspace.path" in text_of(outside), text_of(outside)
                assert "outside the workspace roots" in text_of(outside), text_of(outside)
    ok("the client's roots are the workspace roots: a job works in one, a path outside is refused")


async def calls_past_max_in_flight_wait():
    with tempfile.TemporaryDirectory() as base:
        async with stdio_client(server(base, "worker.max_in_flight=1", "worker.max_batch=1")) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                jobs = {}

                async def run(name, command):
                    result = await session.call_tool(
                        "worker_dispatch_job", marked({"command": command, "wait_ms": 30000})
                    )
                    assert not result.is_error, text_of(result)
                    jobs[name] = result.structured_content

                first = asyncio.create_task(run("first", "sleep 1"))
                await eventually("the first job runs", lambda: marked_processes())
                second = asyncio.create_task(run("second", "true"))
                await asyncio.gather(first, second)
                # With a place free the quick job would have run while the first slept. The
                # jobs' own times say it, not the order the answers were read in (under load
                # the first answer can be written after the second job already ran).
                assert jobs["second"]["created_at"] >= jobs["first"]["ended_at"], jobs
    ok("with worker.max_in_flight=1 a second call waits for the first")


# ---------------------------------------------------------------------------------------------
# raw lines, for what the SDK never sends


class Raw:
    def __init__(self, base):
        self.proc = subprocess.Popen(
            [BIN, "mcp", "--set", f"session.base_dir={base}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "RUST_LOG": os.environ.get("TEST_WORKER_LOG", "warn")},
        )

    def send(self, line):
        self.proc.stdin.write(line if isinstance(line, str) else json.dumps(line))
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def reply(self, id):
        """The next response with this id (None: an error response without an id)."""
        while True:
            line = self.proc.stdout.readline()
            assert line, "the server closed stdout"
            message = json.loads(line)
            if "method" not in message and message.get("id") == id:
                return message

    def handshake(self):
        self.send({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
        })
        assert "result" in self.reply(0)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})


def malformed_messages():
    with tempfile.TemporaryDirectory() as base:
        raw = Raw(base)
        raw.handshake()
        raw.send("this is {not json")
        raw.send({"jsonrpc": "2.0", "id": 7, "method": 5})
        # rmcp answers a well-formed JSON message of the wrong shape without its id.
        invalid = raw.reply(None)
        assert invalid["error"]["code"] == -32600, invalid
        raw.send({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "no_such_tool", "arguments": {}}})
        unknown = raw.reply(8)
        assert unknown["error"]["code"] == -32602 and "no_such_tool" in unknown["error"]["message"], unknown
        raw.send({"jsonrpc": "2.0", "id": 9, "method": "tools/list"})
        assert raw.reply(9)["result"]["tools"], "still serving"
        raw.proc.stdin.close()
        assert raw.proc.wait(PATIENCE) == 0
    ok("unparsable JSON is ignored, a bad envelope gets -32600, an unknown tool -32602; the server keeps serving")


def stopped_with_a_job_running(how):
    with tempfile.TemporaryDirectory() as base:
        raw = Raw(base)
        raw.handshake()
        raw.send({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "worker_dispatch_job", "arguments": marked({"command": "sleep 30 & sleep 30"})},
        })
        assert not raw.reply(1)["result"].get("isError"), "dispatched"
        deadline = time.monotonic() + PATIENCE
        while len(marked_processes()) < 2:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.02)
        began = time.monotonic()
        if how == "stdin EOF":
            raw.proc.stdin.close()
        else:
            raw.proc.send_signal(how)
        code = raw.proc.wait(PATIENCE)
        took = time.monotonic() - began
        assert code == 0, code
        assert not marked_processes(), marked_processes()
        assert not leftovers(base), leftovers(base)
    name = how if isinstance(how, str) else how.name
    ok(f"{name} with a job running: exit 0 in {took:.2f} s, no process, nothing under the base dir")


async def main():
    await through_the_sdk()
    await client_roots_become_workspace_roots()
    await calls_past_max_in_flight_wait()
    malformed_messages()
    stopped_with_a_job_running("stdin EOF")
    stopped_with_a_job_running(signal.SIGTERM)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
