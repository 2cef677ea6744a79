// Shared test helpers: where the real opencode-worker binary is, a stand-in for OpenCode's
// PluginInput / ToolContext that records what the plugin logs and shows, and process checks.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const SHIM_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_DIR = path.resolve(SHIM_DIR, "..");

/** The binary under test: $OPENCODE_WORKER_BIN, else the repo's release build. */
export function workerBinary() {
  const p = process.env.OPENCODE_WORKER_BIN || path.join(REPO_DIR, "target", "release", "opencode-worker");
  if (!fs.existsSync(p)) {
    throw new Error(`opencode-worker binary not found at ${p}: build it with \`cargo build --release\` in ${REPO_DIR} (npm test does it) or set OPENCODE_WORKER_BIN`);
  }
  return p;
}

/** A PluginInput good enough for the plugin: records app.log and tui.showToast calls. */
export function fakeInput(directory = process.cwd()) {
  const logs = [];
  const toasts = [];
  return {
    logs,
    toasts,
    input: {
      client: {
        app: { log: async ({ body }) => (logs.push(body), { data: true }) },
        tui: { showToast: async ({ body }) => (toasts.push(body), { data: true }) },
      },
      project: { id: "test" },
      directory,
      worktree: directory,
      experimental_workspace: { register() {} },
      serverUrl: new URL("http://127.0.0.1:1"),
      $: undefined,
    },
  };
}

/** A ToolContext: an AbortController and the titles set through ctx.metadata. */
export function fakeCtx() {
  const controller = new AbortController();
  const metadata = [];
  return {
    controller,
    metadata,
    ctx: {
      sessionID: "ses_test",
      messageID: "msg_test",
      agent: "build",
      directory: process.cwd(),
      worktree: process.cwd(),
      abort: controller.signal,
      metadata: (m) => metadata.push(m),
      ask: async () => {},
    },
  };
}

export function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    // a zombie is as good as dead
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

export async function waitFor(fn, { timeoutMs = 30_000, intervalMs = 50, what = "condition" } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** pids from the plugin's "started/restarted opencode-worker pid N" log lines, in order. */
export function sidecarPids(logs) {
  return logs
    .map((l) => /(?:started|restarted) opencode-worker pid (\d+)/.exec(l.message))
    .filter(Boolean)
    .map((m) => Number(m[1]));
}

/**
 * A writable directory outside /tmp for test worlds whose HOME must be visible to jobs (a job
 * has a private /tmp): $OCW_TEST_BASE, else /var/tmp.
 */
export function outsideTmp() {
  for (const dir of [process.env.OCW_TEST_BASE, "/var/tmp"]) {
    try {
      if (dir) {
        fs.accessSync(dir, fs.constants.W_OK);
        return dir;
      }
    } catch {
      /* next */
    }
  }
  throw new Error("no writable directory outside /tmp for the test worlds: set OCW_TEST_BASE");
}
