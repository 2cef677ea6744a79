// Runs the REAL OpenCode (npm `opencode-ai`, plugin-shim's devDependency) offline, in throwaway
// HOME/XDG dirs, with the plugin loaded from plugin-shim/dist and a fake OpenAI-compatible model
// on loopback. Recipe facts: ../../shared/FIELD-NOTES.md (OpenCode section).
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

export const E2E_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_DIR = path.resolve(E2E_DIR, "..", "..");
export const SHIM_DIR = path.join(REPO_DIR, "plugin-shim");
export const PLUGIN_ENTRY = path.join(SHIM_DIR, "dist", "index.js");

const requireFromShim = createRequire(path.join(SHIM_DIR, "package.json"));

/** The opencode binary of plugin-shim's devDependency `opencode-ai` (so `npm ci` provides it). */
export function opencodeBinary() {
  const pkgDir = path.dirname(requireFromShim.resolve("opencode-ai/package.json"));
  const candidates = [path.join(pkgDir, "bin", "opencode.exe"), path.join(pkgDir, "bin", "opencode")];
  // Without its postinstall, opencode-ai's bin is a stub: use the platform package directly.
  const arch = process.arch === "x64" ? "x64" : process.arch;
  for (const variant of ["", "-baseline", "-musl", "-baseline-musl"]) {
    const name = `opencode-${process.platform}-${arch}${variant}`;
    try {
      const dir = path.dirname(createRequire(path.join(pkgDir, "package.json")).resolve(`${name}/package.json`));
      candidates.push(path.join(dir, "bin", "opencode"));
    } catch {
      /* not installed for this platform */
    }
  }
  for (const c of candidates) {
    try {
      const st = fs.statSync(c);
      if (st.isFile() && st.size > 1024 * 1024) {
        fs.accessSync(c, fs.constants.X_OK);
        return c;
      }
    } catch {
      /* next */
    }
  }
  throw new Error(`opencode binary not found (tried ${candidates.join(", ")}): run \`npm ci --prefix plugin-shim\``);
}

export function opencodeVersion() {
  return requireFromShim("opencode-ai/package.json").version;
}

/** A package's directory as plugin-shim resolves it (its "exports" may hide package.json). */
function packageDir(name) {
  for (const dir of requireFromShim.resolve.paths(name) ?? []) {
    if (fs.existsSync(path.join(dir, name, "package.json"))) return path.join(dir, name);
  }
  throw new Error(`${name} is not installed for plugin-shim: run \`npm ci --prefix plugin-shim\``);
}

/**
 * A throwaway OpenCode world: HOME and XDG dirs, a config dir whose node_modules already holds
 * @opencode-ai/plugin (so OpenCode does not npm-install it on start), and a project dir.
 */
export function makeWorld({ pluginOptions, baseURL, marker = crypto.randomBytes(8).toString("hex"), configPatch = {}, base = os.tmpdir() }) {
  const root = fs.mkdtempSync(path.join(base, "ocw-e2e-"));
  const home = path.join(root, "home");
  const xdg = {
    XDG_CONFIG_HOME: path.join(home, ".config"),
    XDG_DATA_HOME: path.join(home, ".local", "share"),
    XDG_CACHE_HOME: path.join(home, ".cache"),
    XDG_STATE_HOME: path.join(home, ".local", "state"),
  };
  const configDir = path.join(xdg.XDG_CONFIG_HOME, "opencode");
  const pluginPkg = packageDir("@opencode-ai/plugin");
  const pluginVersion = JSON.parse(fs.readFileSync(path.join(pluginPkg, "package.json"), "utf8")).version;
  fs.mkdirSync(path.join(configDir, "node_modules", "@opencode-ai"), { recursive: true });
  fs.symlinkSync(pluginPkg, path.join(configDir, "node_modules", "@opencode-ai", "plugin"));
  fs.writeFileSync(path.join(configDir, "package.json"), JSON.stringify({ dependencies: { "@opencode-ai/plugin": pluginVersion } }));
  fs.writeFileSync(
    path.join(configDir, "package-lock.json"),
    JSON.stringify({
      name: "opencode",
      lockfileVersion: 3,
      requires: true,
      packages: {
        "": { dependencies: { "@opencode-ai/plugin": pluginVersion } },
        "node_modules/@opencode-ai/plugin": { version: pluginVersion },
      },
    }),
  );
  const project = path.join(root, "project");
  fs.mkdirSync(project, { recursive: true });
  fs.mkdirSync(path.join(root, "tmp"));
  const config = {
    $schema: "https://opencode.ai/config.json",
    plugin: [[pathToFileURL(PLUGIN_ENTRY).href, pluginOptions]],
    provider: {
      fake: {
        npm: "@ai-sdk/openai-compatible",
        name: "Fake",
        options: { baseURL, apiKey: "test-key" },
        models: { m: { name: "Fake model", tool_call: true } },
      },
    },
    enabled_providers: ["fake"],
    model: "fake/m",
    small_model: "fake/m",
    permission: { "*": "allow" },
    autoupdate: false,
    share: "disabled",
    ...configPatch,
  };
  fs.writeFileSync(path.join(project, "opencode.json"), JSON.stringify(config, null, 2));
  const env = {
    ...process.env,
    HOME: home,
    ...xdg,
    OPENCODE_DISABLE_AUTOUPDATE: "1",
    OPENCODE_DISABLE_MODELS_FETCH: "1",
    // OpenCode takes its directory from PWD when set: point it at the project
    PWD: project,
    // temp files of OpenCode and of the sidecar (its session base dir) stay inside the world
    TMPDIR: path.join(root, "tmp"),
    OCW_E2E_MARKER: marker,
  };
  // the plugin's own binary settings come from the options only
  delete env.OPENCODE_WORKER_BIN;
  return {
    root,
    home,
    project,
    env,
    marker,
    logDir: path.join(xdg.XDG_DATA_HOME, "opencode", "log"),
    cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

/**
 * `opencode run --format json MESSAGE` in the world. Resolves with the exit code, the parsed
 * events and stderr. Killed (whole process group) if it runs past `timeoutMs`: a guard against
 * hangs, not a performance threshold.
 */
export function runOpencode(world, message, { timeoutMs = 240_000, onSpawn } = {}) {
  return new Promise((resolve) => {
    const child = spawn(opencodeBinary(), ["run", "--format", "json", "--title", "e2e", message], {
      cwd: world.project,
      env: world.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }, timeoutMs);
    onSpawn?.(child);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const events = [];
      for (const line of stdout.split("\n")) {
        if (!line.trim()) continue;
        try {
          events.push(JSON.parse(line));
        } catch {
          events.push({ type: "unparsed", line });
        }
      }
      resolve({ code, signal, timedOut, events, stdout, stderr, pid: child.pid });
    });
  });
}

/** Every live process whose environment carries the world's marker (OpenCode, the sidecar...). */
export function processesWithMarker(marker) {
  const found = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = fs.readFileSync(`/proc/${entry}/environ`, "utf8");
      if (!environ.split("\0").includes(`OCW_E2E_MARKER=${marker}`)) continue;
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      if (/\) Z /.test(stat)) continue; // zombies hold nothing
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ").trim();
      found.push({ pid: Number(entry), cmdline });
    } catch {
      /* gone, or not ours to read */
    }
  }
  return found;
}

/** Direct children of a process. */
export function childrenOf(pid) {
  const out = [];
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const text = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    /* gone */
  }
  return out;
}

/** All descendants of a process, depth first. */
export function descendantsOf(pid) {
  const all = [];
  for (const c of childrenOf(pid)) all.push(c, ...descendantsOf(c));
  return all;
}

export function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** OpenCode's own log of this world (plugin log lines land there through client.app.log). */
export function opencodeLog(world) {
  try {
    return fs
      .readdirSync(world.logDir)
      .map((f) => fs.readFileSync(path.join(world.logDir, f), "utf8"))
      .join("\n");
  } catch {
    return "";
  }
}

/** Sidecar pids the plugin logged ("started opencode-worker pid N"). */
export function sidecarPidsFromLog(text) {
  return [...text.matchAll(/(?:started|restarted) opencode-worker pid (\d+)/g)].map((m) => Number(m[1]));
}

export async function waitFor(fn, { timeoutMs = 30_000, intervalMs = 100, what = "condition" } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** tool_use events of a run, by tool name. */
export function toolEvents(events, name) {
  return events.filter((e) => e.type === "tool_use" && e.part?.tool === name);
}

export function finalText(events) {
  return events
    .filter((e) => e.type === "text")
    .map((e) => e.part?.text ?? "")
    .join("\n");
}

/** A free loopback port (bound and released; the tiny race is acceptable in tests). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * `opencode serve` in the world, on loopback. Resolves once it says it is listening, with a tiny
 * JSON client for its HTTP API and stop() (SIGTERM, then SIGKILL of the group if it lingers).
 */
export async function startServe(world, { timeoutMs = 120_000 } = {}) {
  const port = await freePort();
  const child = spawn(opencodeBinary(), ["serve", "--port", String(port), "--hostname", "127.0.0.1"], {
    cwd: world.project,
    env: world.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (output += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (output += d));
  const closed = new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
  const killGroup = () => {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      /* gone */
    }
  };
  try {
    await waitFor(() => /listening/i.test(output) || child.exitCode !== null, { timeoutMs, what: "opencode serve to listen" });
  } catch (err) {
    killGroup();
    throw err;
  }
  if (child.exitCode !== null) throw new Error(`opencode serve exited: ${output}`);
  const base = `http://127.0.0.1:${port}`;
  const dirQuery = `directory=${encodeURIComponent(world.project)}`;
  async function api(method, route, body) {
    const url = `${base}${route}${route.includes("?") ? "&" : "?"}${dirQuery}`;
    const res = await fetch(url, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    if (!res.ok) throw new Error(`${method} ${route}: HTTP ${res.status} ${text.slice(0, 500)}`);
    return json;
  }
  return {
    child,
    port,
    api,
    output: () => output,
    /** SIGTERM, as a user or a service manager would; SIGKILL of the group after `graceMs`. */
    async stop(graceMs = 15_000) {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid, "SIGTERM");
        } catch {
          /* gone */
        }
      }
      const timer = setTimeout(killGroup, graceMs);
      const res = await closed;
      clearTimeout(timer);
      return res;
    },
    kill: killGroup,
  };
}
