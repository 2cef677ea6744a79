// One `bash` call of `true`: through the plugin's sandboxed tool (a worker job on a project in
// write mode, rendering included) against what OpenCode's built-in does, a host spawn of
// `/bin/sh -c true`. A measurement to read, not a test: nothing here has a threshold.
//   node scripts/bench-bash.mjs [N]      (binary: $OPENCODE_WORKER_BIN or ../target/release)
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { OpencodeWorkerPlugin } from "../dist/index.js";
import { fakeCtx, fakeInput, workerBinary } from "../test/helpers.mjs";

const N = Number(process.argv[2] ?? 200);
const BIN = workerBinary();
const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const fmt = (xs) => `p50 ${pct(xs, 50).toFixed(2)} ms, p90 ${pct(xs, 90).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms`;

async function timeIt(fn) {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

const hostSpawn = () =>
  new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", "true"], { stdio: ["ignore", "pipe", "pipe"], detached: true });
    child.on("error", reject);
    child.on("close", resolve);
  });

const root = fs.mkdtempSync(path.join(os.tmpdir(), "ocw-bench-bash-"));
const project = path.join(root, "project");
fs.mkdirSync(project);
const f = fakeInput(project);
const hooks = await OpencodeWorkerPlugin(f.input, { binary: BIN, env: { TMPDIR: root } });
const ctx = () => {
  const c = fakeCtx().ctx;
  c.directory = project;
  return c;
};
// warm both paths once
await hooks.tool.bash.execute({ command: "true" }, ctx());
await hostSpawn();
const sandboxed = [];
const plainJob = [];
const host = [];
for (let i = 0; i < N; i++) {
  sandboxed.push(await timeIt(() => hooks.tool.bash.execute({ command: "true" }, ctx())));
  plainJob.push(await timeIt(() => hooks.tool.worker_dispatch_job.execute({ command: "true", wait_ms: 60_000 }, ctx())));
  host.push(await timeIt(hostSpawn));
}
await hooks.dispose();
fs.rmSync(root, { recursive: true, force: true });

console.log(`binary: ${BIN}`);
console.log(`bash \`true\`, ${N} sequential, interleaved:`);
console.log(`  sandboxed (plugin bash -> worker job, workspace write): ${fmt(sandboxed)}`);
console.log(`  a worker job without workspace (worker_dispatch_job):  ${fmt(plainJob)}`);
console.log(`  host spawn of /bin/sh -c true (the built-in's way):     ${fmt(host)}`);
console.log(`  p50 ratio: ${(pct(sandboxed, 50) / pct(host, 50)).toFixed(1)}x, p50 difference ${(pct(sandboxed, 50) - pct(host, 50)).toFixed(2)} ms`);
