// One `bash` call through the REAL OpenCode: the plugin's sandboxed bash against OpenCode's own
// (plugin option bash: "host"), same command, N sequential calls in one session each, timed by
// OpenCode itself (the tool part's state.time.start/end). A measurement, not a test.
//   node tests/e2e_opencode/bench-bash.mjs [N] [COMMAND]
import { startFakeModel, toolResults } from "./fake-model.mjs";
import { makeWorld, startServe, waitFor } from "./harness.mjs";
import { workerBinary } from "../../plugin-shim/test/helpers.mjs";

const N = Number(process.argv[2] ?? 30);
const COMMAND = process.argv[3] ?? "true";
const BIN = workerBinary();
const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function measure(mode) {
  const fake = await startFakeModel((body) => {
    if (!Array.isArray(body.tools) || body.tools.length === 0) return { text: "bench" };
    const done = toolResults(body).length;
    return done < N ? { toolCalls: [{ name: "bash", arguments: { command: COMMAND } }] } : { text: "done" };
  });
  const world = makeWorld({ pluginOptions: { binary: BIN, bash: mode }, baseURL: fake.baseURL });
  const server = await startServe(world);
  try {
    const session = await server.api("POST", "/session", {});
    await server.api("POST", `/session/${session.id}/prompt_async`, { parts: [{ type: "text", text: "bench" }] });
    const parts = await waitFor(
      async () => {
        const messages = await server.api("GET", `/session/${session.id}/message`);
        const tools = messages.flatMap((m) => m.parts).filter((p) => p.type === "tool" && p.tool === "bash");
        const ended = tools.filter((p) => p.state?.status === "completed" || p.state?.status === "error");
        return ended.length >= N ? ended : undefined;
      },
      { timeoutMs: 600_000, intervalMs: 500, what: `${N} bash calls (${mode})` },
    );
    const errors = parts.filter((p) => p.state.status !== "completed");
    if (errors.length) throw new Error(`${mode}: ${errors.length} calls failed: ${JSON.stringify(errors[0].state).slice(0, 500)}`);
    const sandboxed = parts.filter((p) => p.state.metadata?.sandbox === "opencode-worker").length;
    return { times: parts.map((p) => p.state.time.end - p.state.time.start), sandboxed };
  } finally {
    await server.stop();
    await fake.close();
    world.cleanup();
  }
}

const host = await measure("host");
const sandbox = await measure("sandbox");
const fmt = (xs) => `p50 ${pct(xs, 50)} ms, p90 ${pct(xs, 90)} ms, max ${Math.max(...xs)} ms`;
console.log(`OpenCode bash \`${COMMAND}\`, ${N} sequential calls per mode, tool time as OpenCode records it:`);
console.log(`  built-in (bash: "host"):           ${fmt(host.times)} (sandboxed: ${host.sandboxed})`);
console.log(`  plugin (bash: "sandbox"):          ${fmt(sandbox.times)} (sandboxed: ${sandbox.sandboxed})`);
console.log(`  p50 ratio ${(pct(sandbox.times, 50) / Math.max(1, pct(host.times, 50))).toFixed(1)}x, difference ${pct(sandbox.times, 50) - pct(host.times, 50)} ms`);
