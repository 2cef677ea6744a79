// End to end in the REAL OpenCode with opencode-worker configured as an MCP server (`mcp` in
// opencode.json, no plugin): the fake model on loopback scripts a dispatch and a collect, the
// real binary runs the job, and nothing is left once OpenCode exits.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import { startFakeModel, toolResults } from "./fake-model.mjs";
import { finalText, makeWorld, opencodeBinary, opencodeLog, processesWithMarker, runOpencode, toolEvents, waitFor } from "./harness.mjs";
import { workerBinary } from "../../plugin-shim/test/helpers.mjs";

const BIN = workerBinary();
opencodeBinary(); // fail early, with the install hint, when OpenCode is missing

/** `initialize`'s tool list from the same binary: what the MCP server must offer. */
function binaryTools() {
  const run = spawnSync(BIN, ["serve"], {
    input: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: {} }) + "\n",
    encoding: "utf8",
    timeout: 30_000,
  });
  return JSON.parse(run.stdout.split("\n")[0]).result.tools;
}

test("OpenCode runs opencode-worker as an MCP server: tools offered, a dispatch and a collect complete, nothing left", async (t) => {
  const tools = binaryTools();
  const token = crypto.randomBytes(6).toString("hex");
  const command = `echo "mcp job"; printf 'token=%s\\n' "$TOKEN" > "$OUTPUT_DIR/result.txt"`;
  // OpenCode names an MCP tool `<server>_<tool>`; the script finds the names it was offered.
  const offeredName = (body, tool) => body.tools.map((x) => x.function?.name).find((n) => n?.endsWith(tool));
  const fake = await startFakeModel((body) => {
    if (!Array.isArray(body.tools) || body.tools.length === 0) return { text: "e2e" };
    const results = toolResults(body);
    if (results.length === 0)
      return {
        toolCalls: [
          { name: offeredName(body, "worker_dispatch_job"), arguments: { job_id: "mcp-e2e-1", command, env: { TOKEN: token }, wait_ms: 60_000 } },
        ],
      };
    if (results.length === 1)
      return { toolCalls: [{ name: offeredName(body, "worker_collect_output"), arguments: { job_id: "mcp-e2e-1", include_artifacts: true } }] };
    const seen = /token=\S+/.exec(results[1]);
    return { text: seen ? `The artifact says: ${seen[0]}` : `no artifact in: ${results[1].slice(0, 300)}` };
  });
  t.after(() => fake.close());
  const world = makeWorld({
    pluginOptions: {},
    baseURL: fake.baseURL,
    configPatch: { plugin: [], mcp: { ocw: { type: "local", command: [BIN, "mcp"], enabled: true } } },
  });
  t.after(() => world.cleanup());
  // The MCP server OpenCode starts carries the world's marker: seen while it runs, so "nothing
  // left" below is about a process that existed.
  const servers = new Set();
  const watch = setInterval(() => {
    for (const p of processesWithMarker(world.marker)) if (p.cmdline.endsWith(`${BIN} mcp`)) servers.add(p.pid);
  }, 50);
  t.after(() => clearInterval(watch));
  const result = await runOpencode(world, "Run the job and tell me what its artifact says.");
  clearInterval(watch);
  const why =
    `\nopencode rc=${result.code} timedOut=${result.timedOut}\nstderr:\n${result.stderr.slice(-3000)}` +
    `\nevents:\n${JSON.stringify(result.events, null, 1).slice(0, 6000)}\nopencode log (tail):\n${opencodeLog(world).slice(-4000)}`;
  assert.equal(result.timedOut, false, why);
  assert.equal(result.code, 0, why);

  // every worker tool was offered, with its description and its parameters
  const first = fake.requests.find((r) => Array.isArray(r.tools) && r.tools.length);
  assert.ok(first, `the model was asked with tools${why}`);
  for (const tool of tools) {
    const name = offeredName(first, tool.name);
    assert.ok(name, `${tool.name} offered to the model: ${first.tools.map((x) => x.function?.name)}`);
    const fn = first.tools.find((x) => x.function?.name === name).function;
    assert.equal(fn.description, tool.description, `${tool.name} description`);
    assert.deepEqual(Object.keys(fn.parameters.properties ?? {}).sort(), Object.keys(tool.input_schema.properties ?? {}).sort(), `${tool.name} parameters`);
  }

  // the calls completed, and the model read the worker's rendering
  const dispatchName = offeredName(first, "worker_dispatch_job");
  const [dispatched] = toolEvents(result.events, dispatchName);
  assert.ok(dispatched, `a ${dispatchName} event${why}`);
  assert.equal(dispatched.part.state.status, "completed", why);
  assert.match(dispatched.part.state.output, /job mcp-e2e-1 \| status: finished \| exit code: 0/, why);
  const [collected] = toolEvents(result.events, offeredName(first, "worker_collect_output"));
  assert.ok(collected, `a collect event${why}`);
  assert.equal(collected.part.state.status, "completed", why);
  assert.ok(collected.part.state.output.includes(`token=${token}`), `the artifact came back${why}`);
  assert.match(finalText(result.events), new RegExp(`The artifact says: token=${token}`), why);

  // OpenCode is gone and so is the MCP server it started, with every job
  // (a job's sandbox forks show the server's command line until they exec, so count >= 1)
  assert.ok(servers.size >= 1, "the MCP server process was seen running");
  await waitFor(() => processesWithMarker(world.marker).length === 0, {
    timeoutMs: 15_000,
    what: `no process left: ${JSON.stringify(processesWithMarker(world.marker))}`,
  });
});
