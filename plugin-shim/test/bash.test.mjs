// The sandboxed `bash` against the real opencode-worker binary: the plugin's tool called the way
// OpenCode calls it, on a real project directory, with a stand-in ToolContext.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { OpencodeWorkerPlugin } from "../dist/index.js";
import { bashSchema, endNotes, MAX_TIMEOUT_MS } from "../dist/bash.js";
import { bashPermission } from "../dist/permission.js";
import { workspaceMissing } from "../dist/plugin.js";
import { keepTail, modelOutput } from "../dist/tail.js";
import { fakeCtx, fakeInput, outsideTmp, pidAlive, sidecarPids, waitFor, workerBinary } from "./helpers.mjs";

const BIN = workerBinary();

const LIMIT_BYTES = 51200;
const LIMIT_LINES = 2000;

const cleanups = [];
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});
// full outputs go to OpenCode's tool-output dir under XDG_DATA_HOME: keep them out of the real home
const dataHome = fs.mkdtempSync(path.join(os.tmpdir(), "ocw-bash-data-"));
process.env.XDG_DATA_HOME = dataHome;
cleanups.push(() => fs.rmSync(dataHome, { recursive: true, force: true }));

/**
 * A project (a git repo with a commit) and a HOME with a planted key, outside /tmp as a real
 * home is (a job's /tmp is private: a HOME under it would be invisible and prove nothing).
 */
function makeProject() {
  const root = fs.mkdtempSync(path.join(outsideTmp(), "ocw-bash-test-"));
  cleanups.push(() => fs.rmSync(root, { recursive: true, force: true }));
  const project = path.join(root, "project");
  const home = path.join(root, "home");
  const tmp = path.join(root, "tmp");
  for (const d of [project, path.join(home, ".ssh"), tmp]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(home, ".ssh", "id_ed25519"), "PLANTED-SECRET-KEY\n", { mode: 0o600 });
  fs.writeFileSync(path.join(project, "README"), "hello\n");
  const git = (...a) => execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.invalid", ...a], { cwd: project, stdio: "pipe" });
  git("init", "-q");
  git("add", ".");
  git("commit", "-qm", "init");
  return { root, project, home, tmp };
}

async function startPlugin(world, options = {}) {
  const f = fakeInput(world.project);
  const hooks = await OpencodeWorkerPlugin(f.input, {
    binary: BIN,
    ...options,
    // the sidecar's HOME decides which credential stores it hides: the planted one
    env: { TMPDIR: world.tmp, HOME: world.home, ...(options.env ?? {}) },
  });
  cleanups.push(() => hooks.dispose?.());
  return { hooks, logs: f.logs };
}

function bashCtx(world) {
  const c = fakeCtx();
  c.ctx.directory = world.project;
  c.ctx.worktree = world.project;
  c.asked = [];
  c.ctx.ask = async (req) => {
    c.asked.push(req);
  };
  return c;
}

async function bash(hooks, args, c) {
  return hooks.tool.bash.execute(args, c.ctx);
}

describe("bash: registration", () => {
  let world;
  before(() => {
    world = makeProject();
  });

  test("sandbox (the default): a tool named bash with our description and exact schema", async () => {
    const { hooks } = await startPlugin(world);
    assert.ok(hooks.tool.bash, "bash registered");
    assert.match(hooks.tool.bash.description, /opencode-worker sandbox/);
    assert.match(hooks.tool.bash.description, new RegExp(world.project.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
    const output = { description: "x", parameters: {}, jsonSchema: { type: "object", properties: {}, required: ["command", "timeout", "workdir", "description"] } };
    await hooks["tool.definition"]({ toolID: "bash" }, output);
    assert.deepEqual(output.jsonSchema, bashSchema());
    assert.deepEqual(output.jsonSchema.required, ["command"]);
    assert.equal(output.jsonSchema.properties.timeout.maximum, MAX_TIMEOUT_MS);
    assert.ok(hooks.tool.worker_dispatch_job, "the worker_* tools are still there");
  });

  test('bash: "host" leaves OpenCode\'s own bash alone', async () => {
    const { hooks } = await startPlugin(world, { bash: "host" });
    assert.equal(hooks.tool.bash, undefined);
    assert.ok(hooks.tool.worker_dispatch_job);
  });

  test("a bad bash option is refused, and the sandboxed bash still fails closed", async () => {
    const { hooks } = await startPlugin(world, { bash: "sometimes" });
    assert.match(hooks.tool.worker_unavailable.description, /"bash" must be "sandbox" or "host"/);
    await assert.rejects(bash(hooks, { command: "touch should-not-exist" }, bashCtx(world)), /NOT run/);
    assert.ok(!fs.existsSync(path.join(world.project, "should-not-exist")));
  });
});

describe("bash: commands run in the sandbox, on the project", () => {
  let world;
  let plugin;
  before(async () => {
    world = makeProject();
    plugin = await startPlugin(world);
  });

  test("runs in the project at its real path; writes land there; stderr is interleaved", async () => {
    const c = bashCtx(world);
    const res = await bash(plugin.hooks, { command: "pwd; echo out-line; echo err-line >&2; echo made > made.txt", description: "Write a file" }, c);
    assert.equal(res.metadata.exit, 0);
    assert.equal(res.metadata.sandbox, "opencode-worker");
    assert.equal(res.title, "Write a file");
    assert.equal(res.output, `${world.project}\nout-line\nerr-line\n`);
    assert.equal(fs.readFileSync(path.join(world.project, "made.txt"), "utf8"), "made\n");
    // the permission request OpenCode's own bash makes, so permission.bash rules apply
    assert.deepEqual(c.asked, [
      {
        permission: "bash",
        patterns: ["pwd", "echo out-line", "echo err-line >&2", "echo made > made.txt"],
        always: ["pwd *", "echo *"],
        metadata: { command: "pwd; echo out-line; echo err-line >&2; echo made > made.txt" },
      },
    ]);
  });

  test("exit code as metadata.exit, no output as the built-in says it", async () => {
    const res = await bash(plugin.hooks, { command: "exit 3" }, bashCtx(world));
    assert.equal(res.metadata.exit, 3);
    assert.equal(res.output, "(no output)");
    assert.equal(res.title, "exit 3");
  });

  test("workdir inside the project; outside is refused before anything runs", async () => {
    fs.mkdirSync(path.join(world.project, "sub"), { recursive: true });
    const res = await bash(plugin.hooks, { command: "pwd", workdir: "sub" }, bashCtx(world));
    assert.equal(res.output.trim(), path.join(world.project, "sub"));
    const abs = await bash(plugin.hooks, { command: "pwd", workdir: path.join(world.project, "sub") }, bashCtx(world));
    assert.equal(abs.output.trim(), path.join(world.project, "sub"));
    await assert.rejects(bash(plugin.hooks, { command: "pwd", workdir: "/etc" }, bashCtx(world)), /outside the project/);
  });

  test("git works in the project: add and commit", async () => {
    const res = await bash(
      plugin.hooks,
      { command: "echo change >> README && git add README && git -c user.name=agent -c user.email=a@example.invalid commit -qm 'from the sandbox' && git log --oneline | head -1" },
      bashCtx(world),
    );
    assert.equal(res.metadata.exit, 0, res.output);
    assert.match(res.output, /from the sandbox/);
    assert.match(execFileSync("git", ["log", "--oneline", "-1"], { cwd: world.project, encoding: "utf8" }), /from the sandbox/);
  });

  test("cannot read the planted key, write ~ or /etc, or write .git/hooks; the model is told why", async () => {
    const key = path.join(world.home, ".ssh", "id_ed25519");
    const read = await bash(plugin.hooks, { command: `cat ${key}` }, bashCtx(world));
    assert.notEqual(read.metadata.exit, 0);
    assert.doesNotMatch(read.output, /PLANTED-SECRET-KEY/);
    assert.match(read.output, /opencode-worker sandbox/);
    // The policy refuses `> /etc/x`, `> .git/hooks/x` and their `cd DIR && ...` forms; a
    // directory held in a variable is one it cannot follow, so these reach the kernel's wall.
    for (const target of [path.join(world.home, "planted"), "/etc/ocw-bash-test", path.join(world.project, ".git", "hooks", "pre-commit")]) {
      const res = await bash(plugin.hooks, { command: `d=${path.dirname(target)}; cd "$d" && echo x > ${path.basename(target)}` }, bashCtx(world));
      assert.notEqual(res.metadata.exit, 0, target);
      assert.ok(!fs.existsSync(target), `${target} was not written`);
      assert.match(res.output, /<shell_metadata>[\s\S]*only the project[\s\S]*isolation\.extra_rw[\s\S]*bash: "host"/, target);
    }
  });

  test("no network: the host's 127.0.0.1 is unreachable, and the model is told why", async (t) => {
    const server = http.createServer((_, res) => res.end("host-service-reply"));
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    t.after(() => server.close());
    const url = `http://127.0.0.1:${server.address().port}/`;
    const res = await bash(plugin.hooks, { command: `curl -sS --max-time 5 ${url}` }, bashCtx(world));
    assert.notEqual(res.metadata.exit, 0);
    assert.doesNotMatch(res.output, /host-service-reply/);
    assert.match(res.output, /without network[\s\S]*bashNetwork/);
  });

  test("a long output keeps its tail within OpenCode's budget; the whole of it is in the named file", async () => {
    const res = await bash(plugin.hooks, { command: "seq 1 100000" }, bashCtx(world));
    assert.equal(res.metadata.exit, 0);
    assert.ok(Buffer.byteLength(res.output) <= LIMIT_BYTES, `${Buffer.byteLength(res.output)} bytes`);
    assert.ok(res.output.split("\n").length <= LIMIT_LINES);
    const m = /^\.\.\.output truncated\.\.\.\n\nFull output saved to: (\S+)\n\n/.exec(res.output);
    assert.ok(m, res.output.slice(0, 300));
    assert.equal(res.metadata.outputPath, m[1]);
    assert.ok(m[1].startsWith(path.join(dataHome, "opencode", "tool-output", "tool_")), m[1]);
    assert.equal(res.metadata.truncated, true);
    assert.ok(res.output.endsWith("\n99999\n100000\n"), "the tail is kept");
    const lines = res.output.slice(m[0].length).split("\n").filter(Boolean);
    assert.equal(Number(lines[0]) + lines.length - 1, 100000, "a contiguous tail");
    let expected = "";
    for (let i = 1; i <= 100000; i++) expected += `${i}\n`;
    assert.equal(fs.readFileSync(m[1], "utf8"), expected, "the file holds the full output");
    fs.rmSync(m[1]);
  });

  test("timeout: killed at the given time, reported as the built-in reports it", async () => {
    const res = await bash(plugin.hooks, { command: "echo before; sleep 30; echo after", timeout: 1000 }, bashCtx(world));
    assert.equal(res.metadata.exit, null);
    assert.equal(res.metadata.status, "timeout");
    assert.match(res.output, /^before\n/);
    assert.doesNotMatch(res.output, /^after$/m);
    assert.match(res.output, /<shell_metadata>\nshell tool terminated command after exceeding timeout 1000 ms\./);
    assert.ok(res.metadata.job_id);
  });

  test("bad arguments: errors the model can act on", async () => {
    await assert.rejects(bash(plugin.hooks, {}, bashCtx(world)), /`command` is required/);
    await assert.rejects(bash(plugin.hooks, { command: "true", timeout: -1 }, bashCtx(world)), /Invalid timeout value: -1/);
    await assert.rejects(bash(plugin.hooks, { command: "true", timeout: MAX_TIMEOUT_MS + 1 }, bashCtx(world)), /may not exceed 600000/);
  });

  test("a policy refusal names the rule and the place in the model's own command", async () => {
    await assert.rejects(bash(plugin.hooks, { command: "echo hi && sudo ls" }, bashCtx(world)), (err) => {
      assert.match(err.message, /policy denied \(-32002\)/);
      assert.match(err.message, /at 11-\d+: `sudo/, "the span points into the command as the model wrote it");
      assert.match(err.message, /policy\.allow/);
      return true;
    });
  });

  test("a permission.bash deny (ctx.ask rejects) stops the command before it runs", async () => {
    const c = bashCtx(world);
    c.ctx.ask = async (req) => {
      c.asked.push(req);
      throw new Error("The user has specified a rule which prevents you from using this specific tool call");
    };
    await assert.rejects(bash(plugin.hooks, { command: "touch denied.txt && git push origin main" }, c), /prevents you/);
    assert.deepEqual(c.asked[0].patterns, ["touch denied.txt", "git push origin main"]);
    assert.deepEqual(c.asked[0].always, ["touch *", "git push *"]);
    assert.ok(!fs.existsSync(path.join(world.project, "denied.txt")), "nothing ran");
  });

  test("abort mid-run cancels the job: its processes end, the result says so", async () => {
    const c = bashCtx(world);
    const marker = `ocw-abort-${process.pid}-${Date.now()}`;
    const pending = bash(plugin.hooks, { command: `echo started; sleep 60 # ${marker}` }, c);
    const [sidecar] = sidecarPids(plugin.logs);
    const sleeping = () =>
      fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p) && (() => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, "utf8").includes(marker);
        } catch {
          return false;
        }
      })());
    await waitFor(() => sleeping().length > 0, { what: "the job to run" });
    const pids = sleeping().map(Number);
    c.controller.abort();
    const res = await pending;
    assert.equal(res.metadata.status, "cancelled");
    assert.match(res.output, /User aborted the command/);
    await waitFor(() => pids.every((p) => !pidAlive(p)), { what: "the job's processes to end" });
    assert.ok(pidAlive(sidecar), "the worker lives on");
  });

  test("live output goes to ctx.metadata while the command runs", async () => {
    const c = bashCtx(world);
    const res = await bash(plugin.hooks, { command: "echo first-part; sleep 1.5; echo second-part" }, c);
    assert.equal(res.metadata.exit, 0);
    const early = c.metadata.find((m) => /first-part/.test(m.metadata?.output ?? "") && !/second-part/.test(m.metadata.output));
    assert.ok(early, JSON.stringify(c.metadata));
    assert.match(c.metadata.at(-1).metadata.output, /second-part/);
  });
});

describe("bash: fails closed", () => {
  test("a missing binary: bash fails with the fix and runs nothing", async () => {
    const world = makeProject();
    const f = fakeInput(world.project);
    const hooks = await OpencodeWorkerPlugin(f.input, { binary: path.join(world.root, "no-such-opencode-worker") });
    assert.ok(hooks.tool.bash);
    assert.match(hooks.tool.bash.description, /opencode-worker sandbox/);
    const c = bashCtx(world);
    await assert.rejects(bash(hooks, { command: "touch ran.txt" }, c), (err) => {
      assert.match(err.message, /NOT run/);
      assert.match(err.message, /cargo build --release/);
      assert.match(err.message, /bash: "host"/);
      return true;
    });
    assert.ok(!fs.existsSync(path.join(world.project, "ran.txt")));
    assert.equal(c.asked.length, 0, "the user is not asked about a command that cannot run");
  });
});

describe("bash: pieces", () => {
  test("a worker without workspace support is detected from its dispatch schema (bash then fails closed)", async () => {
    const { SidecarProcess } = await import("../dist/rpc.js");
    const p = new SidecarProcess({ binary: BIN, args: [], env: process.env });
    let init;
    try {
      init = await p.request("initialize", { client: { name: "test", version: "0" } }, { timeoutMs: 30_000 });
    } finally {
      await p.close();
    }
    assert.equal(workspaceMissing(init), undefined, "this binary runs workspace jobs");
    const old = structuredClone(init);
    delete old.tools.find((t) => t.name === "worker_dispatch_job").input_schema.properties.workspace;
    assert.match(workspaceMissing(old), /cannot run jobs on the project[\s\S]*bash: "host"/);
  });

  test("permission patterns follow OpenCode's arity table", () => {
    assert.deepEqual(bashPermission("cd src && npm run build | tee log.txt"), { patterns: ["npm run build", "tee log.txt"], always: ["npm run build *", "tee *"] });
    assert.deepEqual(bashPermission("FOO=1 git push origin main; echo $(git rev-parse HEAD)").always, ["git push *", "echo *", "git rev-parse *"]);
    assert.deepEqual(bashPermission("echo 'a && b' && ls -la").patterns, ["echo 'a && b'", "ls -la"]);
    assert.deepEqual(bashPermission("cd /tmp").patterns, []);
  });

  test("tail keeping: lines and bytes, a single huge line keeps its end", () => {
    assert.deepEqual(keepTail("a\nb\nc", 2, 100), { text: "b\nc", cut: true });
    assert.deepEqual(keepTail("abc", 5, 100), { text: "abc", cut: false });
    assert.equal(keepTail("x".repeat(10) + "é", 5, 4).text, "xxé");
    const saved = [];
    const r = modelOutput("1\n2\n3\n4\n5\n", ["note"], { maxLines: 12, maxBytes: 6000, save: (t) => (saved.push(t), "/saved") });
    assert.equal(saved.length, 1);
    assert.ok(r.output.startsWith("...output truncated...\n\nFull output saved to: /saved\n\n"));
    assert.ok(r.output.endsWith("5\n\n\n<shell_metadata>\nnote\n</shell_metadata>"));
    assert.ok(r.output.split("\n").length <= 12);
  });
});

describe("bash end notes under an egress allowlist", () => {
  const base = { timeout: 120000, aborted: false, projectDir: "/p" };
  const failedCurl = { status: "failed", reason: "exit_code", exit_code: 56 };

  test("refused destinations are named with what would allow them", () => {
    const job = { ...failedCurl, metrics: { network: { denied: 1 } }, network_denied: [{ host: "denied.test", port: 443, count: 2 }] };
    const notes = endNotes(job, { ...base, output: "curl: (56) CONNECT tunnel failed, response 403" });
    assert.equal(notes.length, 1, notes.join("\n"));
    assert.match(notes[0], /denied\.test:443 \(2x\)/);
    assert.match(notes[0], /network\.allowlists/);
  });

  test("a job with network through the proxy is not told it has none", () => {
    const job = { ...failedCurl, metrics: { network: { denied: 0 } } };
    const notes = endNotes(job, { ...base, output: "curl: (7) Failed to connect to up.test port 80" });
    assert.deepEqual(notes, []);
  });

  test("a job without network still gets the no-network note", () => {
    const notes = endNotes(failedCurl, { ...base, output: "curl: (6) Could not resolve host: x.test" });
    assert.equal(notes.length, 1);
    assert.match(notes[0], /without network/);
  });
});
