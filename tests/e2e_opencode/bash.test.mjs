// OpenCode's own `bash`, replaced by the plugin's sandboxed one, end to end in the REAL OpenCode
// with a scripted model on loopback: what the model is offered, what a command can and cannot do,
// truncation, timeout, abort, a permission.bash deny rule and a missing worker binary.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
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
import { outsideTmp, workerBinary } from "../../plugin-shim/test/helpers.mjs";

const BIN = workerBinary();
opencodeBinary();


/**
 * A world whose project is a git repo, with a ~/.gitconfig and a planted ~/.ssh key. It lives
 * outside /tmp, as a real home does: a job gets a private /tmp, so a HOME under /tmp would simply
 * be invisible to it and prove nothing about the credential stores.
 */
function bashWorld(fake, extra = {}) {
  const world = makeWorld({
    pluginOptions: { binary: BIN, ...(extra.pluginOptions ?? {}) },
    baseURL: fake.baseURL,
    configPatch: extra.configPatch,
    base: outsideTmp(),
  });
  fs.mkdirSync(path.join(world.home, ".ssh"), { recursive: true });
  fs.writeFileSync(path.join(world.home, ".ssh", "id_ed25519"), "PLANTED-SECRET-KEY\n", { mode: 0o600 });
  fs.writeFileSync(path.join(world.home, ".gitconfig"), "[user]\n\tname = E2E Agent\n\temail = agent@example.invalid\n");
  const git = (...a) => execFileSync("git", a, { cwd: world.project, env: world.env, stdio: "pipe" });
  git("init", "-q");
  git("add", "opencode.json");
  git("commit", "-qm", "init");
  return world;
}

function explain(result, world, fake) {
  return (
    `\nopencode rc=${result.code} signal=${result.signal} timedOut=${result.timedOut}\nstderr:\n${result.stderr.slice(-3000)}` +
    `\nevents:\n${JSON.stringify(result.events, null, 1).slice(0, 8000)}` +
    `\nmodel requests: ${fake.requests.length}` +
    `\nopencode log (tail):\n${opencodeLog(world).slice(-4000)}`
  );
}

function bashEvent(events, command) {
  return toolEvents(events, "bash").find((e) => e.part?.state?.input?.command === command);
}

const asked = (body) => Array.isArray(body.tools) && body.tools.length > 0;

describe(`OpenCode ${opencodeVersion()}: bash runs in the opencode-worker sandbox`, () => {
  test("the model is offered one bash, ours; its commands work on the project and nowhere else", async (t) => {
    const service = http.createServer((_, res) => res.end("host-service-reply"));
    await new Promise((r) => service.listen(0, "127.0.0.1", r));
    t.after(() => service.close());
    let world;
    const commands = () => ({
      commit: "echo created-in-sandbox > created.txt && git add created.txt && git commit -qm 'sandbox commit' && git log --oneline -1 && pwd",
      key: `cat ${path.join(world.home, ".ssh", "id_ed25519")}`,
      // The worker's policy refuses `> /etc/x`, `> .git/hooks/x` and their `cd DIR && ...`
      // forms; a directory held in a variable is one it cannot follow, so these reach the
      // kernel's wall.
      home: `d=${world.home}; cd "$d" && echo x > planted.txt`,
      etc: `d=/etc; cd "$d" && echo x > ocw-e2e-${world.marker}`,
      hooks: 'd=.git/hooks; cd "$d" && echo x > pre-commit',
      policy: `echo x > /etc/ocw-e2e-${world.marker}`,
      net: `curl -sS --max-time 5 http://127.0.0.1:${service.address().port}/`,
    });
    const fake = await startFakeModel((body) => {
      if (!asked(body)) return { text: "e2e" };
      const results = toolResults(body);
      if (results.length === 0) return { toolCalls: Object.values(commands()).map((command) => ({ name: "bash", arguments: { command, description: "e2e check" } })) };
      return { text: "checked" };
    });
    t.after(() => fake.close());
    world = bashWorld(fake);
    t.after(() => world.cleanup());
    const result = await runOpencode(world, "Run the checks.");
    const why = explain(result, world, fake);
    assert.equal(result.code, 0, why);

    // exactly one bash, and it is ours
    const first = fake.requests.find(asked);
    const bashes = first.tools.filter((x) => x.function?.name === "bash");
    assert.equal(bashes.length, 1, `one bash offered${why}`);
    assert.match(bashes[0].function.description, /inside the opencode-worker sandbox/);
    assert.deepEqual(bashes[0].function.parameters.required, ["command"]);
    assert.deepEqual(Object.keys(bashes[0].function.parameters.properties).sort(), ["command", "description", "timeout", "workdir"]);

    const c = commands();
    const commit = bashEvent(result.events, c.commit);
    assert.equal(commit?.part.state.status, "completed", why);
    assert.match(commit.part.state.output, /sandbox commit/);
    assert.ok(commit.part.state.output.includes(world.project), "ran at the project's real path");
    assert.equal(commit.part.state.metadata.exit, 0);
    assert.equal(commit.part.state.metadata.sandbox, "opencode-worker");
    assert.equal(fs.readFileSync(path.join(world.project, "created.txt"), "utf8"), "created-in-sandbox\n");
    assert.match(execFileSync("git", ["log", "--format=%an %s", "-1"], { cwd: world.project, encoding: "utf8" }), /E2E Agent sandbox commit/, "committed with the user's ~/.gitconfig");

    const key = bashEvent(result.events, c.key);
    assert.equal(key?.part.state.status, "completed", why);
    assert.notEqual(key.part.state.metadata.exit, 0);
    assert.doesNotMatch(key.part.state.output, /PLANTED-SECRET-KEY/);
    assert.ok(!fake.requests.some((r) => JSON.stringify(r).includes("PLANTED-SECRET-KEY")), "the key never reached the model");

    for (const [name, target] of [
      ["home", path.join(world.home, "planted.txt")],
      ["etc", `/etc/ocw-e2e-${world.marker}`],
      ["hooks", path.join(world.project, ".git", "hooks", "pre-commit")],
    ]) {
      const ev = bashEvent(result.events, c[name]);
      assert.equal(ev?.part.state.status, "completed", `${name}${why}`);
      assert.notEqual(ev.part.state.metadata.exit, 0, name);
      assert.ok(!fs.existsSync(target), `${target} not written`);
      assert.match(ev.part.state.output, /<shell_metadata>[\s\S]*opencode-worker sandbox/, `${name}: the model is told why`);
    }

    const policy = bashEvent(result.events, c.policy);
    assert.equal(policy?.part.state.status, "error", why);
    assert.match(policy.part.state.error, /policy denied \(-32002\)[\s\S]*write-etc[\s\S]*policy\.allow/);

    const net = bashEvent(result.events, c.net);
    assert.equal(net?.part.state.status, "completed", why);
    assert.notEqual(net.part.state.metadata.exit, 0);
    assert.doesNotMatch(net.part.state.output, /host-service-reply/);
    assert.match(net.part.state.output, /without network/);
    assert.match(finalText(result.events), /checked/);

    await waitFor(() => processesWithMarker(world.marker).length === 0, { timeoutMs: 15_000, what: "no process left" });
  });

  test("a long output is cut like OpenCode's and the rest is readable at the named path; timeout kills at the given time", async (t) => {
    let savedPath;
    const fake = await startFakeModel((body) => {
      if (!asked(body)) return { text: "e2e" };
      const results = toolResults(body);
      if (results.length === 0) return { toolCalls: [{ name: "bash", arguments: { command: "seq 1 100000" } }] };
      if (results.length === 1) {
        savedPath = /Full output saved to: (\S+)/.exec(results[0])?.[1];
        return { toolCalls: [{ name: "read", arguments: { filePath: savedPath ?? "/missing", offset: 1, limit: 3 } }] };
      }
      if (results.length === 2) return { toolCalls: [{ name: "bash", arguments: { command: "echo before; sleep 30; echo after", timeout: 1500 } }] };
      return { text: "done" };
    });
    t.after(() => fake.close());
    const world = bashWorld(fake);
    t.after(() => world.cleanup());
    const result = await runOpencode(world, "Print many numbers.");
    const why = explain(result, world, fake);

    const [seq] = toolEvents(result.events, "bash");
    assert.equal(seq?.part.state.status, "completed", why);
    const out = seq.part.state.output;
    assert.ok(Buffer.byteLength(out) <= 51200 && out.split("\n").length <= 2000, "within OpenCode's budget");
    assert.match(out, /^\.\.\.output truncated\.\.\.\n\nFull output saved to: /);
    assert.ok(out.endsWith("99999\n100000\n"), "the tail is what is kept");
    assert.ok(savedPath && savedPath.startsWith(path.join(world.home, ".local", "share", "opencode", "tool-output")), `saved in OpenCode's tool-output dir: ${savedPath}`);
    const [read] = toolEvents(result.events, "read");
    assert.equal(read?.part.state.status, "completed", why);
    assert.match(read.part.state.output, /1: 1\n2: 2\n3: 3/, "the model reads the head back with OpenCode's Read");

    const timed = toolEvents(result.events, "bash")[1];
    assert.equal(timed?.part.state.status, "completed", why);
    assert.match(timed.part.state.output, /^before\n/);
    assert.doesNotMatch(timed.part.state.output, /^after$/m);
    assert.match(timed.part.state.output, /shell tool terminated command after exceeding timeout 1500 ms/);
    assert.equal(timed.part.state.metadata.exit, null);
    await waitFor(() => processesWithMarker(world.marker).length === 0, { timeoutMs: 15_000, what: "no process left" });
  });

  test("a permission.bash deny rule stops a matching command before it runs", async (t) => {
    const fake = await startFakeModel((body) => {
      if (!asked(body)) return { text: "e2e" };
      const results = toolResults(body);
      if (results.length === 0) return { toolCalls: [{ name: "bash", arguments: { command: "touch denied.txt" } }] };
      return { text: `told: ${results[0]}` };
    });
    t.after(() => fake.close());
    const world = bashWorld(fake, { configPatch: { permission: { "*": "allow", bash: { "*": "allow", "touch *": "deny" } } } });
    t.after(() => world.cleanup());
    const result = await runOpencode(world, "Touch it.");
    const why = explain(result, world, fake);
    const [ev] = toolEvents(result.events, "bash");
    assert.equal(ev?.part.state.status, "error", why);
    assert.match(ev.part.state.error, /specified a rule which prevents you/, "OpenCode's own deny, through ctx.ask");
    assert.ok(!fs.existsSync(path.join(world.project, "denied.txt")), "the command did not run");
    assert.equal(sidecarPidsFromLog(opencodeLog(world)).length, 1);
  });

  test("with the worker binary missing, bash fails with the fix and runs nothing", async (t) => {
    const fake = await startFakeModel((body) => {
      if (!asked(body)) return { text: "e2e" };
      const results = toolResults(body);
      if (results.length === 0) return { toolCalls: [{ name: "bash", arguments: { command: "touch ran.txt" } }] };
      return { text: "ok" };
    });
    t.after(() => fake.close());
    const world = bashWorld(fake, { pluginOptions: { binary: "/nonexistent/opencode-worker" } });
    t.after(() => world.cleanup());
    const result = await runOpencode(world, "Touch it.");
    const why = explain(result, world, fake);
    const first = fake.requests.find(asked);
    assert.equal(first.tools.filter((x) => x.function?.name === "bash").length, 1, why);
    const [ev] = toolEvents(result.events, "bash");
    assert.equal(ev?.part.state.status, "error", why);
    assert.match(ev.part.state.error, /NOT run/);
    assert.match(ev.part.state.error, /cargo build --release/);
    assert.ok(!fs.existsSync(path.join(world.project, "ran.txt")), "nothing ran on the host");
  });

  test("aborting the session mid-command cancels the job and leaves no process", async (t) => {
    let sent = false;
    const fake = await startFakeModel((body) => {
      if (!asked(body)) return { text: "e2e" };
      if (toolResults(body).length === 0) {
        sent = true;
        return { toolCalls: [{ name: "bash", arguments: { command: "sleep 300" } }] };
      }
      return { text: "done" };
    });
    t.after(() => fake.close());
    const world = bashWorld(fake);
    t.after(() => world.cleanup());
    const server = await startServe(world);
    t.after(() => server.kill());
    const session = await server.api("POST", "/session", {});
    await server.api("POST", `/session/${session.id}/prompt_async`, { parts: [{ type: "text", text: "Sleep." }] });
    const running = await waitFor(
      () => {
        if (!sent) return undefined;
        for (const pid of sidecarPidsFromLog(opencodeLog(world)).filter(pidAlive)) {
          const jobs = descendantsOf(pid).filter((d) => {
            try {
              return fs.readFileSync(`/proc/${d}/cmdline`, "utf8").startsWith("sleep\u0000300");
            } catch {
              return false;
            }
          });
          if (jobs.length) return { sidecar: pid, jobs };
        }
        return undefined;
      },
      { timeoutMs: 120_000, what: "the command to run under the sidecar" },
    );
    await server.api("POST", `/session/${session.id}/abort`);
    await waitFor(() => running.jobs.every((p) => !pidAlive(p)), { timeoutMs: 30_000, what: "the command's processes to end" });
    assert.ok(pidAlive(running.sidecar), "a cancel, not a shutdown");
    await waitFor(() => /bash job \S+ after abort: cancelled/.test(opencodeLog(world)), { timeoutMs: 30_000, what: "the cancel in the log" });
    await server.stop();
    await waitFor(() => processesWithMarker(world.marker).length === 0, { timeoutMs: 15_000, what: "no process left" });
  });
});
