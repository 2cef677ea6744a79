// Where the binary comes from: option, then OPENCODE_WORKER_BIN, then PATH, then the repo build.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { locateBinary, repoBinaryPath, BinaryNotFoundError } from "../dist/locate.js";
import { REPO_DIR } from "./helpers.mjs";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ocw-locate-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
function fakeBin(sub) {
  const d = path.join(dir, sub);
  fs.mkdirSync(d, { recursive: true });
  const p = path.join(d, "opencode-worker");
  fs.writeFileSync(p, "#!/bin/sh\n", { mode: 0o755 });
  return p;
}

describe("locateBinary", () => {
  const a = fakeBin("a");
  const b = fakeBin("b");
  const c = fakeBin("c");

  test("the plugin option comes first", () => {
    assert.deepEqual(locateBinary({ option: a, env: { OPENCODE_WORKER_BIN: b, PATH: path.dirname(c) } }), { path: a, source: "option" });
  });
  test("then OPENCODE_WORKER_BIN", () => {
    assert.deepEqual(locateBinary({ env: { OPENCODE_WORKER_BIN: b, PATH: path.dirname(c) } }), { path: b, source: "env" });
  });
  test("then PATH", () => {
    assert.deepEqual(locateBinary({ env: { PATH: `/nonexistent${path.delimiter}${path.dirname(c)}` } }), { path: c, source: "PATH" });
  });
  test("then the repo's target/release build", () => {
    assert.equal(repoBinaryPath(), path.join(REPO_DIR, "target", "release", "opencode-worker"));
    if (fs.existsSync(repoBinaryPath())) {
      assert.deepEqual(locateBinary({ env: { PATH: "/nonexistent" } }), { path: repoBinaryPath(), source: "repo" });
    } else {
      assert.throws(() => locateBinary({ env: { PATH: "/nonexistent" } }), BinaryNotFoundError);
    }
  });
  test("an explicit path that is wrong is an error, not a fallback", () => {
    assert.throws(() => locateBinary({ option: path.join(dir, "missing"), env: { PATH: path.dirname(c) } }), /does not exist/);
    const notExec = path.join(dir, "plain");
    fs.writeFileSync(notExec, "x", { mode: 0o644 });
    assert.throws(() => locateBinary({ env: { OPENCODE_WORKER_BIN: notExec, PATH: path.dirname(c) } }), /OPENCODE_WORKER_BIN[\s\S]*not an executable/);
  });
  test("relative option paths resolve against the project directory", () => {
    assert.deepEqual(locateBinary({ option: "a/opencode-worker", cwd: dir, env: {} }), { path: a, source: "option" });
  });
});
