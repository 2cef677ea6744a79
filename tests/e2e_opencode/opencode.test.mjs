// End to end in the REAL OpenCode: `opencode run --format json` with the plugin loaded, a fake
// OpenAI-compatible model on loopback scripting the conversation, and the real opencode-worker
// binary running the jobs. Assertions come from OpenCode's JSON events and the fake model's
// request log (OpenCode's exit code is 0 even when a tool fails).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import { startFakeModel, toolResults } from "./fake-model.mjs";
import {
  descendantsOf,
  finalText,
  makeWorld,
  opencodeBinary,
  opencodeLog,
  opencodeVersion,
  pidAlive,
  processesWithMarker,
  runOpencode,
  sidecarPidsFromLog,
  startServe,
  toolEvents,
  waitFor,
} from "./harness.mjs";
import { workerBinary } from "../../plugin-shim/test/helpers.mjs";
import { SidecarProcess } from "../../plugin-shim/dist/rpc.js";

const BIN = workerBinary();
opencodeBinary(); // fail early, with the install hint, when OpenCode is missing

function cmdline(pid) {
  return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
}

/** What the binary says about its tools: the reference for what the model must be offered. */
async function binaryTools() {
  const p = new SidecarProcess({ binary: BIN, args: [], env: process.env });
  try {
    return (await p.request("initialize", { client: { name: "e2e", version: "0" } }, { timeoutMs: 30_000 })).tools;
  } finally {
    await p.close();
  }
}

/** After OpenCode exits, nothing carrying the world's marker (the sidecar included) may live on. */
async function assertNothingLeft(world, result) {
  const log = opencodeLog(world);
  const pids = sidecarPidsFromLog(log);
  await waitFor(() => processesWithMarker(world.marker).length === 0, {
    timeoutMs: 15_000,
    what: `no process left: ${JSON.stringify(processesWithMarker(world.marker))}`,
  });
  for (const pid of pids) assert.ok(!pidAlive(pid), `sidecar pid ${pid} is gone`);
  return pids;
}

function explain(result, world, fake) {
  return (
    `\nopencode rc=${result.code} signal=${result.signal} timedOut=${result.timedOut}\nstderr:\n${result.stderr.slice(-3000)}` +
    `\nevents:\n${JSON.stringify(result.events, null, 1).slice(0, 6000)}` +
    `\nmodel requests: ${fake.requests.length}` +
    `\nopencode log (tail):\n${opencodeLog(world).slice(-4000)}`
  );
}

describe(`OpenCode ${opencodeVersion()} with the opencode-worker plugin`, () => {
  let tools;
  before(async () => {
    tools = await binaryTools();
  });

  test("the model dispatches a real job, collects its artifact and answers with it", async (t) => {
    const token = crypto.randomBytes(6).toString("hex");
    const command = `echo "ran in $PWD"; printf 'token=%s sum=%s\\n' "$TOKEN" "$((6*7))" > "$OUTPUT_DIR/result.txt"`;
    const fake = await startFakeModel((body) => {
      if (!Array.isArray(body.tools) || body.tools.length === 0) return { text: "e2e" }; // e.g. a title
      const results = toolResults(body);
      if (results.length === 0)
        return { toolCalls: [{ name: "worker_dispatch_job", arguments: { job_id: "e2e-job-1", command, env: { TOKEN: token }, wait_ms: 60_000 } }] };
      if (results.length === 1)
        return { toolCalls: [{ name: "worker_collect_output", arguments: { job_id: "e2e-job-1", include_artifacts: true } }] };
      const seen = /token=\S+ sum=\d+/.exec(results[1]);
      return { text: seen ? `The artifact says: ${seen[0]}` : `I could not find the artifact in: ${results[1].slice(0, 200)}` };
    });
    t.after(() => fake.close());
    const world = makeWorld({ pluginOptions: { binary: BIN }, baseURL: fake.baseURL });
    t.after(() => world.cleanup());
    const result = await runOpencode(world, "Run the job and tell me what its artifact says.");
    const why = explain(result, world, fake);
    assert.equal(result.timedOut, false, why);
    assert.equal(result.code, 0, why);

    // every worker tool was offered with its description and exact schema
    const first = fake.requests.find((r) => Array.isArray(r.tools) && r.tools.length);
    assert.ok(first, `the model was asked with tools${why}`);
    const offered = new Map(first.tools.map((x) => [x.function?.name, x.function]));
    for (const tool of tools) {
      const fn = offered.get(tool.name);
      assert.ok(fn, `${tool.name} offered to the model${why}`);
      assert.equal(fn.description, tool.description, `${tool.name} description`);
      const expected = { ...tool.input_schema, properties: tool.input_schema.properties ?? {} };
      assert.deepEqual(fn.parameters, expected, `${tool.name} parameters are the binary's schema`);
    }
    // spot checks that descriptions, ranges, choices and required made it (not just types)
    const dispatch = offered.get("worker_dispatch_job").parameters;
    assert.ok(dispatch.properties.job_id.description, "job_id has its description");
    assert.equal(dispatch.properties.job_id.maxLength, 128, "job_id keeps its length bound");
    assert.equal(typeof dispatch.properties.wait_ms.maximum, "number", "wait_ms keeps its range");
    assert.equal(dispatch.additionalProperties, false);
    const network = JSON.stringify(dispatch.properties.network);
    assert.ok(network.includes('"none"') && network.includes('"open"'), `network keeps its choices: ${network}`);
    const collect = offered.get("worker_collect_output").parameters;
    assert.deepEqual(collect.required, ["job_id"], "only job_id is required");
    assert.equal(typeof collect.properties.max_bytes.maximum, "number");
    assert.ok(collect.properties.stream_offset.description);

    // the calls completed
    const [dispatchEvent] = toolEvents(result.events, "worker_dispatch_job");
    assert.ok(dispatchEvent, `a worker_dispatch_job event${why}`);
    assert.equal(dispatchEvent.part.state.status, "completed", why);
    assert.match(dispatchEvent.part.state.output, /job e2e-job-1 \| status: finished \| exit code: 0/);
    assert.match(dispatchEvent.part.state.output, /ran in \//);
    assert.equal(dispatchEvent.part.state.title, "job e2e-job-1, status: finished, exit code: 0", "the title OpenCode shows");
    const [collectEvent] = toolEvents(result.events, "worker_collect_output");
    assert.ok(collectEvent, `a worker_collect_output event${why}`);
    assert.equal(collectEvent.part.state.status, "completed", why);
    const expected = `token=${token} sum=42`;
    assert.ok(collectEvent.part.state.output.includes(expected), `the artifact came back${why}`);

    // the model read it (request log) and answered with it (events)
    assert.ok(fake.requests.some((r) => toolResults(r).some((m) => m.includes(expected))), "the model received the artifact");
    assert.match(finalText(result.events), new RegExp(`The artifact says: ${expected}`), why);

    // the sidecar's own stderr (tracing) was drained into OpenCode's log
    assert.match(opencodeLog(world), /level=INFO .*target=opencode_worker::/);

    // OpenCode is gone and so is the sidecar
    const pids = await assertNothingLeft(world, result);
    assert.equal(pids.length, 1, `one sidecar for the run${why}`);
  });

  test("bad arguments: the model gets an error it can read", async (t) => {
    const fake = await startFakeModel((body) => {
      if (!Array.isArray(body.tools) || body.tools.length === 0) return { text: "e2e" };
      const results = toolResults(body);
      if (results.length === 0)
        return { toolCalls: [{ name: "worker_dispatch_job", arguments: { command: "echo hi", limits: { memory: "lots of it" }, wait_ms: 10_000 } }] };
      return { text: `The worker said: ${results[0]}` };
    });
    t.after(() => fake.close());
    const world = makeWorld({ pluginOptions: { binary: BIN }, baseURL: fake.baseURL });
    t.after(() => world.cleanup());
    const result = await runOpencode(world, "Run it with lots of memory.");
    const why = explain(result, world, fake);
    assert.equal(result.code, 0, why);
    const [ev] = toolEvents(result.events, "worker_dispatch_job");
    assert.ok(ev, `a worker_dispatch_job event${why}`);
    assert.equal(ev.part.state.status, "error", why);
    assert.match(ev.part.state.error, /invalid params \(-32602\)/, why);
    assert.match(ev.part.state.error, /memory/);
    assert.match(ev.part.state.error, /Fix/);
    const told = fake.requests.flatMap((r) => toolResults(r)).find((m) => /-32602/.test(m));
    assert.ok(told, `the error text reached the model${why}`);
    assert.match(finalText(result.events), /The worker said: .*invalid params/s);
    await assertNothingLeft(world, result);
  });

  test("a missing binary: OpenCode offers one tool that says how to fix it", async (t) => {
    const fake = await startFakeModel((body) => {
      if (!Array.isArray(body.tools) || body.tools.length === 0) return { text: "e2e" };
      const results = toolResults(body);
      if (results.length === 0) return { toolCalls: [{ name: "worker_unavailable", arguments: {} }] };
      return { text: `Setup needed: ${results[0]}` };
    });
    t.after(() => fake.close());
    const world = makeWorld({ pluginOptions: { binary: "/nonexistent/opencode-worker" }, baseURL: fake.baseURL });
    t.after(() => world.cleanup());
    const result = await runOpencode(world, "Run a job.");
    const why = explain(result, world, fake);
    assert.equal(result.code, 0, why);
    const first = fake.requests.find((r) => Array.isArray(r.tools) && r.tools.length);
    const names = first.tools.map((x) => x.function?.name);
    assert.ok(names.includes("worker_unavailable"), `offered: ${names}${why}`);
    assert.ok(!names.includes("worker_dispatch_job"));
    const desc = first.tools.find((x) => x.function?.name === "worker_unavailable").function.description;
    assert.match(desc, /NOT available/);
    const [ev] = toolEvents(result.events, "worker_unavailable");
    assert.equal(ev?.part.state.status, "completed", why);
    assert.match(ev.part.state.output, /cargo build --release/);
    assert.match(opencodeLog(world), /opencode-worker is not available/, "the cause is in OpenCode's log");
  });

  test("OpenCode killed with SIGKILL mid-job: the sidecar and its job do not outlive it", async (t) => {
    let sawRequest = false;
    const fake = await startFakeModel((body) => {
      if (!Array.isArray(body.tools) || body.tools.length === 0) return { text: "e2e" };
      const results = toolResults(body);
      if (results.length === 0) {
        sawRequest = true;
        return { toolCalls: [{ name: "worker_dispatch_job", arguments: { job_id: "long-1", command: "sleep 300", wait_ms: 600_000 } }] };
      }
      return { text: "done" };
    });
    t.after(() => fake.close());
    const world = makeWorld({ pluginOptions: { binary: BIN }, baseURL: fake.baseURL });
    t.after(() => world.cleanup());
    let child;
    const running = runOpencode(world, "Run a long job.", { onSpawn: (c) => (child = c) });
    t.after(async () => {
      // whatever happens above, leave nothing running: OpenCode's whole process group
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
      await running;
    });
    // wait until the sidecar runs the job: a `sleep 300` below a process carrying the marker
    const sidecar = await waitFor(
      () => {
        if (!sawRequest) return undefined;
        const pids = sidecarPidsFromLog(opencodeLog(world)).filter(pidAlive);
        for (const pid of pids) {
          const sleeping = descendantsOf(pid).filter((d) => {
            try {
              return cmdline(d).startsWith("sleep 300");
            } catch {
              return false;
            }
          });
          if (sleeping.length) return { pid, jobs: sleeping };
        }
        return undefined;
      },
      { timeoutMs: 120_000, what: "the job to run under the sidecar" },
    );
    process.kill(child.pid, "SIGKILL");
    const result = await running;
    assert.equal(result.signal, "SIGKILL");
    await waitFor(() => !pidAlive(sidecar.pid), { timeoutMs: 15_000, what: `sidecar ${sidecar.pid} to exit` });
    await waitFor(() => sidecar.jobs.every((p) => !pidAlive(p)), { timeoutMs: 15_000, what: "the job's processes to die" });
    await waitFor(() => processesWithMarker(world.marker).length === 0, { timeoutMs: 15_000, what: "no marked process left" });
  });
  test("aborting the session in OpenCode cancels the running job (ctx.abort -> worker_cancel_job)", async (t) => {
    let asked = false;
    const fake = await startFakeModel((body) => {
      if (!Array.isArray(body.tools) || body.tools.length === 0) return { text: "e2e" };
      const results = toolResults(body);
      if (results.length === 0) {
        asked = true;
        return { toolCalls: [{ name: "worker_dispatch_job", arguments: { job_id: "abort-1", command: "sleep 300", wait_ms: 600_000 } }] };
      }
      return { text: "done" };
    });
    t.after(() => fake.close());
    const world = makeWorld({ pluginOptions: { binary: BIN, pollMs: 500 }, baseURL: fake.baseURL });
    t.after(() => world.cleanup());
    const server = await startServe(world);
    t.after(() => server.kill());

    const session = await server.api("POST", "/session", {});
    await server.api("POST", `/session/${session.id}/prompt_async`, { parts: [{ type: "text", text: "Run a long job." }] });
    const running = await waitFor(
      () => {
        if (!asked) return undefined;
        for (const pid of sidecarPidsFromLog(opencodeLog(world)).filter(pidAlive)) {
          const jobs = descendantsOf(pid).filter((d) => {
            try {
              return cmdline(d).startsWith("sleep 300");
            } catch {
              return false;
            }
          });
          if (jobs.length) return { sidecar: pid, jobs };
        }
        return undefined;
      },
      { timeoutMs: 120_000, what: "the job to run under the sidecar" },
    );

    // (No check of the live title here: OpenCode 1.18.33 hands plugins a ctx.metadata() that
    // returns an Effect nobody runs, so live titles are dropped: anomalyco/opencode#50313. The
    // plugin's calls are covered by the unit tests; the final title is checked in the first test.)
    await server.api("POST", `/session/${session.id}/abort`);
    // the job is cancelled while OpenCode and the sidecar keep running
    await waitFor(() => running.jobs.every((p) => !pidAlive(p)), { timeoutMs: 30_000, what: "the job's processes to end" });
    assert.ok(pidAlive(running.sidecar), "the sidecar lives on: this was a cancel, not a shutdown");
    await waitFor(() => /job abort-1 after abort: cancelled/.test(opencodeLog(world)), { timeoutMs: 30_000, what: "the cancel in the log" });
    assert.match(opencodeLog(world), /tool call aborted: cancelling job abort-1/);
    // what OpenCode recorded for the tool call never claims the job finished
    const messages = await server.api("GET", `/session/${session.id}/message`);
    const part = messages.flatMap((m) => m.parts).find((p) => p.type === "tool" && p.tool === "worker_dispatch_job");
    assert.ok(part, "the tool call is recorded");
    const recorded = JSON.stringify(part.state);
    assert.doesNotMatch(recorded, /status: finished/);
    if (part.state.status === "completed") assert.match(part.state.output, /status: cancelled/);

    // SIGTERM to OpenCode: it does not kill plugin children itself; stdin EOF ends the sidecar
    await server.stop();
    await waitFor(() => processesWithMarker(world.marker).length === 0, {
      timeoutMs: 15_000,
      what: `no process left: ${JSON.stringify(processesWithMarker(world.marker))}`,
    });
    // The sidecar stops its jobs first and exits after (session dirs removed, replies flushed).
    await waitFor(() => !pidAlive(running.sidecar), { timeoutMs: 15_000, what: "the sidecar to exit" });
    assert.ok(!pidAlive(running.sidecar));
  });
});
