// Before the tests: make sure the opencode-worker binary under test exists and is current.
// With OPENCODE_WORKER_BIN set, that binary is used as it is. Otherwise the repository's release
// build is brought up to date with `cargo build --release` (a no-op when nothing changed).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const explicit = process.env.OPENCODE_WORKER_BIN;
if (explicit) {
  if (!fs.existsSync(explicit)) {
    console.error(`OPENCODE_WORKER_BIN=${explicit} does not exist`);
    process.exit(1);
  }
  console.error(`plugin tests use OPENCODE_WORKER_BIN=${explicit}`);
  process.exit(0);
}
const bin = path.join(repo, "target", "release", "opencode-worker");
const r = spawnSync("cargo", ["build", "--release", "--bin", "opencode-worker"], { cwd: repo, stdio: ["ignore", "inherit", "inherit"] });
if (r.error || r.status !== 0) {
  if (r.error && fs.existsSync(bin)) {
    console.error(`cargo is not available (${r.error.message}); testing the existing ${bin}`);
    process.exit(0);
  }
  console.error(`could not build opencode-worker (cargo build --release in ${repo}${r.error ? `: ${r.error.message}` : `, exit ${r.status}`})`);
  process.exit(1);
}
if (!fs.existsSync(bin)) {
  console.error(`cargo build succeeded but ${bin} is missing`);
  process.exit(1);
}
