// The plugin against the real opencode-worker binary, without OpenCode: the plugin function is
// called with a stand-in PluginInput and its tools are executed with a stand-in ToolContext.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { OpencodeWorkerPlugin } from "../dist/index.js";
import * as indexModule from "../dist/index.js";
import { SidecarProcess } from "../dist/rpc.js";
import { BUDGET_BYTES } from "../dist/render.js";
import { fakeCtx, fakeInput, pidAlive, sidecarPids, waitFor, workerBinary } from "./helpers.mjs";

const BIN = workerBinary();
const OPENCODE_LIMIT_BYTES = 50 * 1024;
const OPENCODE_LIMIT_LINES = 2000;

/**
 * Starts the plugin; every started instance is disposed after the file's tests. Each sidecar gets
 * its own TMPDIR (through the `env` option), removed afterwards: a sidecar killed with SIGKILL by
 * a test cannot remove its session base dir itself.
 */
const started = [];
const tmpDirs = [];
async function startPlugin(options = {}) {
  const f = fakeInput(os.tmpdir());
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ocw-plugin-test-"));
  tmpDirs.push(tmp);
  const hooks = await OpencodeWorkerPlugin(f.input, { binary: BIN, ...options, env: { TMPDIR: tmp, ...(options.env ?? {}) } });
  started.push(hooks);
  return { hooks, logs: f.logs, toasts: f.toasts, tmp };
}
after(async () => {
  for (const h of started) await h.dispose?.();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

async function run(hooks, name, args, c = fakeCtx()) {
  return hooks.tool[name].execute(args, c.ctx);
}

/** Whether worker_get_status shows `re` (false while the job is not known yet). */
async function statusMatches(hooks, jobId, re) {
  try {
    return re.test((await run(hooks, "worker_get_status", { job_id: jobId })).output);
  } catch {
    return false;
  }
}

/** initialize, straight from the binary, to compare the plugin's registrations with. */
async function initializeDirect() {
  const p = new SidecarProcess({ binary: BIN, args: [], env: process.env });
  try {
    return await p.request("initialize", { client: { name: "test", version: "0" } }, { timeoutMs: 30_000 });
  } finally {
    await p.close();
  }
}

describe("module shape", () => {
  test("exports only plugin functions (OpenCode rejects anything else)", () => {
    const exported = Object.entries(indexModule);
    assert.ok(exported.length >= 1);
    for (const [name, value] of exported) assert.equal(typeof value, "function", `export ${name} is not a function`);
  });
});

describe("registration from the sidecar's schemas", () => {
  let init;
  let plugin;
  before(async () => {
    init = await initializeDirect();
    plugin = await startPlugin();
  });

  test("one OpenCode tool per tool of initialize, with its description", () => {
    assert.ok(init.tools.length >= 6, "the binary lists its tools");
    for (const name of ["worker_dispatch_job", "worker_get_status", "worker_collect_output", "worker_cancel_job", "worker_list_sessions", "worker_get_metrics"]) {
      assert.ok(init.tools.some((t) => t.name === name), `binary offers ${name}`);
    }
    // plus the sandboxed bash (test/bash.test.mjs), which is no tool of the binary's
    assert.deepEqual(Object.keys(plugin.hooks.tool).sort(), [...init.tools.map((t) => t.name), "bash"].sort());
    for (const t of init.tools) {
      assert.equal(plugin.hooks.tool[t.name].description, t.description);
      assert.equal(typeof plugin.hooks.tool[t.name].execute, "function");
    }
  });

  test("args are the input_schema's properties, as plain JSON Schema", () => {
    for (const t of init.tools) {
      assert.deepEqual(plugin.hooks.tool[t.name].args, t.input_schema.properties ?? {}, t.name);
    }
  });

  test("tool.definition hands OpenCode the exact input_schema", async () => {
    for (const t of init.tools) {
      const output = { description: t.description, parameters: {}, jsonSchema: { type: "object", properties: {}, required: ["everything"] } };
      await plugin.hooks["tool.definition"]({ toolID: t.name }, output);
      // exactly the binary's schema; `properties: {}` is made explicit on a property-less object
      // (OpenAI-style APIs reject an object schema without it)
      assert.deepEqual(output.jsonSchema, { ...t.input_schema, properties: t.input_schema.properties ?? {} }, t.name);
    }
    // and leaves other tools alone
    const other = { description: "x", parameters: {}, jsonSchema: { type: "object" } };
    await plugin.hooks["tool.definition"]({ toolID: "read" }, other);
    assert.deepEqual(other.jsonSchema, { type: "object" });
  });

  test("the dispatch schema carries descriptions, constraints and what is required", () => {
    const s = init.tools.find((t) => t.name === "worker_dispatch_job").input_schema;
    assert.equal(s.type, "object");
    assert.ok(s.properties.job_id.description, "job_id has a description");
    assert.equal(s.properties.job_id.maxLength, 128);
    assert.ok(!JSON.stringify(s).includes("$ref"), "subschemas are inlined");
    const collect = init.tools.find((t) => t.name === "worker_collect_output").input_schema;
    assert.deepEqual(collect.required, ["job_id"]);
  });

  test("the sidecar's start and its own stderr are logged into OpenCode's log", async () => {
    assert.equal(sidecarPids(plugin.logs).length, 1);
    assert.ok(plugin.logs.some((l) => l.service === "opencode-worker" && /offers \d+ tools/.test(l.message)));
    // the sidecar's tracing lines (JSON on a pipe) arrive as entries with their level and fields
    await waitFor(() => plugin.logs.some((l) => typeof l.extra?.target === "string" && l.extra.target.startsWith("opencode_worker")), {
      what: "a sidecar stderr line in the log",
    });
  });
});

describe("jobs through the plugin", () => {
  let plugin;
  before(async () => {
    plugin = await startPlugin();
  });

  test("dispatch with wait_ms: the result, exit code and output come back", async () => {
    const c = fakeCtx();
    const res = await run(
      plugin.hooks,
      "worker_dispatch_job",
      { job_id: "rt-1", command: 'echo hello-out; echo hello-err >&2; printf "artifact body" > "$OUTPUT_DIR/result.txt"', wait_ms: 60_000 },
      c,
    );
    assert.match(res.output, /status: finished/);
    assert.match(res.output, /exit code: 0/);
    assert.match(res.output, /hello-out/);
    assert.match(res.output, /hello-err/);
    assert.equal(res.metadata.status, "finished");
    assert.equal(res.metadata.job_id, "rt-1");
    assert.ok(c.metadata.length >= 1, "ctx.metadata showed the phase");
    assert.match(c.metadata[0].title, /rt-1/);

    const out = await run(plugin.hooks, "worker_collect_output", { job_id: "rt-1", include_artifacts: true });
    assert.match(out.output, /hello-out/);
    assert.match(out.output, /result\.txt/);
    assert.match(out.output, /artifact body/);

    const st = await run(plugin.hooks, "worker_get_status", { job_id: "rt-1" });
    assert.match(st.output, /status: finished/);
    const list = await run(plugin.hooks, "worker_list_sessions", {});
    assert.match(list.output, /rt-1/);
    const metrics = await run(plugin.hooks, "worker_get_metrics", {});
    assert.ok(metrics.output.length > 2);
  });

  test("a failing command: status failed with its exit code and reason", async () => {
    const res = await run(plugin.hooks, "worker_dispatch_job", { command: "echo about to fail; exit 3", wait_ms: 60_000 });
    assert.match(res.output, /status: failed/);
    assert.match(res.output, /exit code: 3/);
    assert.match(res.output, /reason: exit_code/);
    assert.match(res.metadata.job_id, /^[A-Za-z0-9._-]{1,128}$/, "a client-side job id was generated for the waited call");
  });

  test("dispatch without wait_ms returns at once and never claims the job finished", async () => {
    const res = await run(plugin.hooks, "worker_dispatch_job", { job_id: "bg-1", command: "sleep 2; echo late" });
    if (res.metadata.status === "queued" || res.metadata.status === "running") {
      assert.match(res.output, /NOT finished/);
      assert.match(res.output, /worker_get_status/);
    }
    await waitFor(() => statusMatches(plugin.hooks, "bg-1", /status: finished/), {
      what: "bg-1 to finish",
    });
  });

  test("concurrent calls are multiplexed over one sidecar", async () => {
    const results = await Promise.all(
      [1, 2, 3, 4, 5].map((n) => run(plugin.hooks, "worker_dispatch_job", { job_id: `par-${n}`, command: `sleep 0.3; echo value-${n}`, wait_ms: 60_000 })),
    );
    results.forEach((r, i) => {
      assert.match(r.output, new RegExp(`job par-${i + 1} `));
      assert.match(r.output, new RegExp(`value-${i + 1}`));
    });
    assert.equal(sidecarPids(plugin.logs).length, 1, "still the one sidecar");
  });

  test("a large output: head and tail within OpenCode's budget, and how to page the rest", async () => {
    const res = await run(plugin.hooks, "worker_dispatch_job", { job_id: "big-1", command: "seq 1 100000", wait_ms: 60_000 });
    assert.ok(Buffer.byteLength(res.output) <= OPENCODE_LIMIT_BYTES, `output is ${Buffer.byteLength(res.output)} bytes`);
    assert.ok(Buffer.byteLength(res.output) <= BUDGET_BYTES);
    assert.ok(res.output.split("\n").length <= OPENCODE_LIMIT_LINES);
    assert.match(res.output, /^1$/m, "the head is there");
    const m = /worker_collect_output (\{[^}]*"stream_offset":(\d+)[^}]*\})/.exec(res.output);
    assert.ok(m, "the paging note names worker_collect_output with a stream_offset");
    const args = JSON.parse(m[1]);
    assert.equal(args.job_id, "big-1");
    // the omitted part starts right after the last line shown in the head
    const headLines = res.output.split("\n--- stdout")[1].split("\n").slice(1);
    const lastHead = Number(headLines.filter((l) => /^\d+$/.test(l)).find((l, i, a) => Number(a[i + 1]) !== Number(l) + 1));
    const page = await run(plugin.hooks, "worker_collect_output", args);
    const firstPaged = page.output.split("\n").find((l) => /^\d+$/.test(l));
    assert.equal(Number(firstPaged), lastHead + 1, "paging continues exactly where the head stopped");
    assert.ok(Buffer.byteLength(page.output) <= OPENCODE_LIMIT_BYTES);
    assert.match(page.output, /Next page: worker_collect_output/);
  });

  test("bad arguments: a tool error that names the field and says what to change", async () => {
    await assert.rejects(run(plugin.hooks, "worker_dispatch_job", { command: "true", wait_ms: "soon" }), (err) => {
      assert.match(err.message, /worker_dispatch_job failed: invalid params \(-32602\)/);
      assert.match(err.message, /wait_ms/);
      assert.match(err.message, /Fix/);
      return true;
    });
    await assert.rejects(run(plugin.hooks, "worker_dispatch_job", { job_id: "bad id with spaces", command: "true" }), /job_id/);
  });

  test("unknown job: the error says how to find jobs", async () => {
    await assert.rejects(run(plugin.hooks, "worker_get_status", { job_id: "no-such-job" }), (err) => {
      assert.match(err.message, /unknown job \(-32001\)/);
      assert.match(err.message, /worker_list_sessions/);
      return true;
    });
  });

  test("duplicate job id: the error says to pick another", async () => {
    await assert.rejects(run(plugin.hooks, "worker_dispatch_job", { job_id: "rt-1", command: "true" }), /-32005[\s\S]*different job_id/);
  });
});

describe("abort", () => {
  test("aborting a waited dispatch cancels the job (worker_cancel_job)", async () => {
    const plugin = await startPlugin({ pollMs: 200 });
    const c = fakeCtx();
    // no job_id given: the plugin must make one up to be able to cancel
    const pending = run(plugin.hooks, "worker_dispatch_job", { command: "echo started; sleep 60", wait_ms: 120_000 }, c);
    pending.catch(() => undefined);
    const jobId = await waitFor(() => c.metadata.find((m) => m.metadata?.job_id)?.metadata.job_id, { what: "a job id in ctx.metadata" });
    await waitFor(() => statusMatches(plugin.hooks, jobId, /status: running/), {
      what: "the job to run",
    });
    c.controller.abort();
    let settled;
    try {
      settled = await pending;
    } catch (err) {
      settled = err;
    }
    const text = settled instanceof Error ? settled.message : settled.output;
    assert.doesNotMatch(text, /status: finished/);
    const st = await run(plugin.hooks, "worker_get_status", { job_id: jobId });
    assert.match(st.output, /status: cancelled/);
    assert.ok(c.metadata.some((m) => /cancelling job/.test(m.title)), "the UI showed the cancel");
  });

  test("the phase is shown while waiting; not polled when the host ignores ctx.metadata", async () => {
    const plugin = await startPlugin({ pollMs: 100 });
    const c = fakeCtx();
    await run(plugin.hooks, "worker_dispatch_job", { job_id: "phase-1", command: "sleep 1", wait_ms: 60_000 }, c);
    assert.ok(c.metadata.some((m) => /^job phase-1: running \(execute\), \d+ s$/.test(m.title)), JSON.stringify(c.metadata));
    assert.equal(c.metadata.at(-1).title, "job phase-1, status: finished, exit code: 0");
    // OpenCode 1.18.33: ctx.metadata returns an Effect that is never run
    const d = fakeCtx();
    const titles = [];
    d.ctx.metadata = (m) => (titles.push(m.title), { _tag: "an Effect nobody runs" });
    await run(plugin.hooks, "worker_dispatch_job", { job_id: "phase-2", command: "sleep 1", wait_ms: 60_000 }, d);
    assert.ok(!titles.some((t) => /running \(/.test(t)), JSON.stringify(titles));
  });

  test("the last output line is shown while waiting, from the job's event stream", async () => {
    const plugin = await startPlugin({ pollMs: 100 });
    const c = fakeCtx();
    const res = await run(plugin.hooks, "worker_dispatch_job", { job_id: "live-1", command: "echo first; echo 'second line'; sleep 1", wait_ms: 60_000 }, c);
    assert.equal(res.metadata.status, "finished");
    const live = c.metadata.filter((m) => /^job live-1: running \(execute\), \d+ s — second line$/.test(m.title));
    assert.ok(live.length >= 1, JSON.stringify(c.metadata));
    assert.equal(live[0].metadata.last_line, "second line");
    assert.equal(c.metadata.at(-1).title, "job live-1, status: finished, exit code: 0");
  });

  test("a call aborted before it starts is not sent", async () => {
    const plugin = await startPlugin();
    const c = fakeCtx();
    c.controller.abort();
    await assert.rejects(run(plugin.hooks, "worker_dispatch_job", { job_id: "never-sent", command: "true", wait_ms: 1000 }, c), /aborted/);
    await assert.rejects(run(plugin.hooks, "worker_get_status", { job_id: "never-sent" }), /-32001/);
  });
});

describe("sidecar crash and restart", () => {
  test("kill -9: in-flight calls fail clearly, the next call restarts it, old jobs are not reported finished", async () => {
    const plugin = await startPlugin();
    const [pid1] = sidecarPids(plugin.logs);
    assert.ok(pidAlive(pid1));
    const pending = run(plugin.hooks, "worker_dispatch_job", { job_id: "doomed", command: "sleep 60", wait_ms: 120_000 });
    pending.catch(() => undefined);
    await waitFor(() => statusMatches(plugin.hooks, "doomed", /status: running/), {
      what: "the job to run",
    });
    process.kill(pid1, "SIGKILL");
    await assert.rejects(pending, (err) => {
      assert.match(err.message, /opencode-worker died \(killed by SIGKILL\)/);
      assert.match(err.message, /NOT reported finished/);
      return true;
    });
    await waitFor(() => plugin.logs.some((l) => l.level === "error" && /killed by SIGKILL/.test(l.message)), { what: "the crash in the log" });

    const res = await run(plugin.hooks, "worker_dispatch_job", { job_id: "after-restart", command: "echo back", wait_ms: 60_000 });
    assert.match(res.output, /status: finished/);
    const pids = sidecarPids(plugin.logs);
    assert.equal(pids.length, 2);
    assert.notEqual(pids[1], pid1);
    assert.ok(plugin.logs.some((l) => /restarted opencode-worker pid/.test(l.message)));
    await assert.rejects(run(plugin.hooks, "worker_get_status", { job_id: "doomed" }), /belonged to an opencode-worker process that died/);
  });

  test("a waited dispatch whose sidecar dies before any other call about it is reported lost too", async () => {
    const plugin = await startPlugin({ pollMs: 0 });
    const [pid] = sidecarPids(plugin.logs);
    const c = fakeCtx();
    const pending = run(plugin.hooks, "worker_dispatch_job", { command: "sleep 60", wait_ms: 120_000 }, c);
    pending.catch(() => undefined);
    const jobId = await waitFor(() => c.metadata.find((m) => m.metadata?.job_id)?.metadata.job_id, { what: "the generated job id" });
    await new Promise((r) => setTimeout(r, 300)); // let the request reach the sidecar
    process.kill(pid, "SIGKILL");
    await assert.rejects(pending, new RegExp(`job "${jobId}" is unknown: it was NOT reported finished`));
    await assert.rejects(run(plugin.hooks, "worker_get_status", { job_id: jobId }), /belonged to an opencode-worker process that died/);
  });

  test("restarts are bounded", async () => {
    const plugin = await startPlugin({ maxRestarts: 1 });
    for (let i = 0; i < 2; i++) {
      const pids = sidecarPids(plugin.logs);
      process.kill(pids.at(-1), "SIGKILL");
      await waitFor(() => !pidAlive(pids.at(-1)), { what: "the sidecar to die" });
      await waitFor(() => plugin.logs.filter((l) => l.level === "error").length > i, { what: "the crash to be seen" });
      if (i === 0) {
        const res = await run(plugin.hooks, "worker_list_sessions", {});
        assert.ok(res.output);
      }
    }
    await assert.rejects(run(plugin.hooks, "worker_list_sessions", {}), /crashed 2 times[\s\S]*not restarting/);
  });
});

describe("dispose and configuration", () => {
  test("dispose() ends the sidecar gracefully: its jobs and session dirs go with it", async () => {
    const f = fakeInput(os.tmpdir());
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ocw-plugin-test-"));
    tmpDirs.push(tmp);
    const hooks = await OpencodeWorkerPlugin(f.input, { binary: BIN, env: { TMPDIR: tmp } });
    const [pid] = sidecarPids(f.logs);
    assert.ok(pidAlive(pid));
    await run(hooks, "worker_dispatch_job", { job_id: "left-running", command: "sleep 60" });
    assert.ok(fs.readdirSync(tmp).length > 0, "the sidecar made its session base dir in TMPDIR");
    await hooks.dispose();
    assert.ok(!pidAlive(pid), "dispose() returns once the sidecar is gone");
    assert.deepEqual(fs.readdirSync(tmp), [], "stdin EOF let the sidecar remove everything it made");
    await assert.rejects(run(hooks, "worker_list_sessions", {}), /disposed/);
  });

  test("the config option reaches the sidecar as --config", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ocw-plugin-cfg-"));
    const cfg = path.join(dir, "worker.json");
    fs.writeFileSync(cfg, JSON.stringify({ governance: { defaults: { timeout: 123456 } } }));
    try {
      const plugin = await startPlugin({ config: cfg });
      const res = await run(plugin.hooks, "worker_dispatch_job", { command: "true", wait_ms: 60_000 });
      assert.match(res.output, /"timeout":123456/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a sidecar that fails to start: one actionable message with its stderr", async () => {
    const f = fakeInput(os.tmpdir());
    const hooks = await OpencodeWorkerPlugin(f.input, { binary: BIN, config: "/nonexistent/worker-config.json" });
    started.push(hooks);
    assert.deepEqual(Object.keys(hooks.tool).sort(), ["bash", "worker_unavailable"], "the sandboxed bash stays, failing closed");
    assert.match(hooks.tool.worker_unavailable.description, /NOT available/);
    const text = await hooks.tool.worker_unavailable.execute({}, fakeCtx().ctx);
    assert.match(text, /did not initialize/);
    assert.match(text, /worker-config\.json/, "the binary's own complaint is quoted");
  });
});

describe("missing binary", () => {
  test("a registered tool and a log line say how to build or install it", async () => {
    const f = fakeInput(os.tmpdir());
    const hooks = await OpencodeWorkerPlugin(f.input, { binary: "/nonexistent/dir/opencode-worker" });
    assert.deepEqual(Object.keys(hooks.tool).sort(), ["bash", "worker_unavailable"], "the sandboxed bash stays, failing closed");
    const desc = hooks.tool.worker_unavailable.description;
    assert.match(desc, /NOT available/);
    assert.match(desc, /\/nonexistent\/dir\/opencode-worker/);
    const text = await hooks.tool.worker_unavailable.execute({}, fakeCtx().ctx);
    assert.match(text, /cargo build --release/);
    assert.match(text, /OPENCODE_WORKER_BIN/);
    assert.match(text, /restart OpenCode/);
    assert.ok(f.logs.some((l) => l.level === "error" && /cargo build --release/.test(l.message)));
    assert.equal(f.toasts.length, 1);
  });

  test("a bad plugin option is reported the same way", async () => {
    const f = fakeInput(os.tmpdir());
    const hooks = await OpencodeWorkerPlugin(f.input, { binary: BIN, args: "--oops" });
    assert.deepEqual(Object.keys(hooks.tool).sort(), ["bash", "worker_unavailable"], "the sandboxed bash stays, failing closed");
    assert.match(hooks.tool.worker_unavailable.description, /"args" must be an array of strings/);
  });
});
