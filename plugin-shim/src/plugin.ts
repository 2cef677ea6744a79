// The OpenCode plugin: spawns one opencode-worker sidecar per OpenCode instance, asks it for its
// tools (`initialize`), and registers each one with its JSON Schema. Nothing about a tool's
// arguments is written here: a new tool or field in Rust shows up in OpenCode as it is.
import { randomBytes } from "node:crypto";
import path from "node:path";
import type { Hooks, Plugin, PluginInput, ToolContext } from "@opencode-ai/plugin";
import { DEFAULT_RESTART, WorkerClient, type InitializeResult, type JobEvent, type ToolInfo } from "./client.js";
import { BinaryNotFoundError, installHint, locateBinary } from "./locate.js";
import { errorText, isTerminal, renderGeneric, renderJob, renderOutput, statusLine } from "./render.js";
import { RpcError, SidecarGoneError } from "./rpc.js";
import { argsFromInputSchema, schemaForModel, type JsonSchema } from "./schema.js";
import { BASH_TOOL, bashSchema, makeBashTool, type BashMode, type BashNetwork } from "./bash.js";

export const PLUGIN_NAME = "opencode-worker-plugin";
export const PLUGIN_VERSION = "0.1.0";
export const UNAVAILABLE_TOOL = "worker_unavailable";

/** Plugin options, from `"plugin": [["<path or package>", { ...options }]]` in opencode.json. */
export interface WorkerPluginOptions {
  /** path to the opencode-worker binary (relative paths: to the project directory) */
  binary?: string;
  /** the sidecar's config file, passed as `--config PATH` */
  config?: string;
  /** more command-line arguments for the sidecar, appended as given */
  args?: string[];
  /** environment variables added to the sidecar's environment (e.g. OPENCODE_WORKER_* settings) */
  env?: Record<string, string>;
  /** append the sidecar's stderr to this file instead of OpenCode's log */
  logFile?: string;
  /** how long `initialize` may take at start (ms, default 15000) */
  initTimeoutMs?: number;
  /** most restarts after crashes within 10 minutes (default 5) */
  maxRestarts?: number;
  /** how often the status, elapsed time and last output line of a waited-on job are refreshed
   * in the UI (ms, default 2000; 0: never). They come from the job's event stream. */
  pollMs?: number;
  /** "sandbox" (default): the plugin's `bash` replaces OpenCode's, every shell command of the
   * agent runs as a worker job on the project; "host": OpenCode's own bash is left alone. */
  bash?: BashMode;
  /** network for sandboxed bash commands (default: the worker's, i.e. none) */
  bashNetwork?: BashNetwork;
}

type Level = "debug" | "info" | "warn" | "error";
type Logger = (level: Level, message: string, extra?: Record<string, unknown>) => void;

function optionError(name: string, want: string): Error {
  return new Error(`opencode-worker plugin: option "${name}" must be ${want}`);
}

export function parseOptions(raw: unknown): WorkerPluginOptions {
  const o: Record<string, unknown> = raw && typeof raw === "object" ? (raw as Record<string, unknown>) : {};
  const out: WorkerPluginOptions = {};
  const s = (k: keyof WorkerPluginOptions) => {
    if (o[k] === undefined) return undefined;
    if (typeof o[k] !== "string" || !o[k]) throw optionError(k, "a non-empty string");
    return o[k] as string;
  };
  const n = (k: keyof WorkerPluginOptions) => {
    if (o[k] === undefined) return undefined;
    if (typeof o[k] !== "number" || !Number.isFinite(o[k]) || (o[k] as number) < 0) throw optionError(k, "a non-negative number");
    return o[k] as number;
  };
  out.binary = s("binary");
  out.config = s("config");
  out.logFile = s("logFile");
  out.initTimeoutMs = n("initTimeoutMs");
  out.maxRestarts = n("maxRestarts");
  out.pollMs = n("pollMs");
  const oneOf = <T extends string>(k: keyof WorkerPluginOptions, allowed: readonly T[]): T | undefined => {
    if (o[k] === undefined) return undefined;
    if (!allowed.includes(o[k] as T)) throw optionError(k, allowed.map((a) => JSON.stringify(a)).join(" or "));
    return o[k] as T;
  };
  out.bash = oneOf("bash", ["sandbox", "host"] as const);
  out.bashNetwork = oneOf("bashNetwork", ["none", "open"] as const);
  if (o.args !== undefined) {
    if (!Array.isArray(o.args) || !o.args.every((a) => typeof a === "string")) throw optionError("args", "an array of strings");
    out.args = o.args as string[];
  }
  if (o.env !== undefined) {
    if (!o.env || typeof o.env !== "object" || Array.isArray(o.env) || !Object.values(o.env).every((v) => typeof v === "string"))
      throw optionError("env", "an object of string values");
    out.env = o.env as Record<string, string>;
  }
  return out;
}

/** The sidecar's command line from the options: `[--config PATH] [args...]`. */
export function sidecarArgs(opts: WorkerPluginOptions, baseDir: string): string[] {
  const args: string[] = [];
  if (opts.config) args.push("--config", path.resolve(baseDir, opts.config));
  if (opts.args) args.push(...opts.args);
  return args;
}

function makeLogger(client: PluginInput["client"] | undefined): Logger {
  let inflight = 0;
  let dropped = 0;
  return (level, message, extra) => {
    const app = (client as any)?.app;
    if (!app?.log) return;
    if (inflight >= 200) {
      dropped++;
      return;
    }
    if (dropped) {
      message = `(${dropped} earlier log lines dropped) ${message}`;
      dropped = 0;
    }
    inflight++;
    Promise.resolve()
      .then(() => app.log({ body: { service: "opencode-worker", level, message, ...(extra ? { extra } : {}) } }))
      .catch(() => undefined)
      .finally(() => inflight--);
  };
}

/** One stderr line of the sidecar (tracing JSON or text) as a log entry. */
function logStderr(log: Logger, line: string): void {
  let level: Level = "info";
  let message = line;
  let extra: Record<string, unknown> | undefined;
  if (line.startsWith("{")) {
    try {
      const obj = JSON.parse(line);
      const l = String(obj.level ?? "").toLowerCase();
      level = l === "error" ? "error" : l === "warn" ? "warn" : l === "debug" || l === "trace" ? "debug" : "info";
      message = String(obj.fields?.message ?? obj.message ?? obj.msg ?? line);
      extra = obj;
    } catch {
      /* plain text */
    }
  } else if (/\b(ERROR|error)\b/.test(line.slice(0, 64))) {
    level = "error";
  } else if (/\bWARN/.test(line.slice(0, 64))) {
    level = "warn";
  }
  log(level, message, extra);
}

export function newJobId(): string {
  return `oc-${Date.now().toString(36)}-${randomBytes(5).toString("hex")}`;
}

function unavailableHooks(input: PluginInput, log: Logger, reason: string, bash: BashMode = "sandbox"): Hooks {
  const message =
    `opencode-worker is not available, so its worker_* tools (worker_dispatch_job, worker_get_status, ` +
    `worker_collect_output, worker_cancel_job, ...) are not loaded in this OpenCode session.\n` +
    `Cause: ${reason}\nFix: ${installHint()}`;
  log("error", message);
  // Best effort: a toast in the TUI. Not awaited: it must never hold up OpenCode's start.
  try {
    Promise.resolve((input.client as any)?.tui?.showToast?.({ body: { title: "opencode-worker", message: `opencode-worker is not available: ${reason}`, variant: "error" } })).catch(() => undefined);
  } catch {
    /* no TUI */
  }
  const sandboxBash: NonNullable<Hooks["tool"]> =
    bash === "sandbox"
      ? { [BASH_TOOL]: makeBashTool({ unavailable: `Cause: ${reason} Fix: ${installHint()}`, projectDir: input?.directory || process.cwd(), log, newJobId }) }
      : {};
  return {
    // fail closed: with bash in the sandbox, a missing worker must not bring back the host's bash
    ...(bash === "sandbox" ? bashDefinitionHook() : {}),
    tool: {
      ...sandboxBash,
      [UNAVAILABLE_TOOL]: {
        description:
          `opencode-worker (sandboxed job runner) is NOT available in this session, so the worker_* tools are missing. ` +
          `Cause: ${reason} Call this tool to get the fix, and tell the user.`,
        args: {},
        async execute() {
          return message;
        },
      },
    },
  };
}

export const OpencodeWorkerPlugin: Plugin = async (input, rawOptions) => {
  const log = makeLogger(input?.client);
  const baseDir = input?.directory || process.cwd();
  let opts: WorkerPluginOptions;
  try {
    opts = parseOptions(rawOptions);
  } catch (err) {
    // a bad option must not silently give the agent the host's bash either
    return unavailableHooks(input, log, (err as Error).message, "sandbox");
  }
  const bashMode = opts.bash ?? "sandbox";
  let binary: string;
  try {
    const located = locateBinary({ option: opts.binary, env: process.env, cwd: baseDir });
    binary = located.path;
    log("info", `using opencode-worker at ${located.path} (from ${located.source})`);
  } catch (err) {
    return unavailableHooks(input, log, err instanceof BinaryNotFoundError ? err.message : String(err), bashMode);
  }
  const client = new WorkerClient({
    spawn: {
      binary,
      args: sidecarArgs(opts, baseDir),
      env: { ...process.env, ...(opts.env ?? {}) },
      cwd: baseDir,
      logFile: opts.logFile ? path.resolve(baseDir, opts.logFile) : undefined,
    },
    clientInfo: { name: PLUGIN_NAME, version: PLUGIN_VERSION },
    initTimeoutMs: opts.initTimeoutMs ?? 15_000,
    restart: { ...DEFAULT_RESTART, ...(opts.maxRestarts !== undefined ? { maxRestarts: opts.maxRestarts } : {}) },
    log,
    onStderrLine: (line) => logStderr(log, line),
  });
  let init: InitializeResult;
  try {
    init = await client.start();
  } catch (err) {
    await client.dispose(0).catch(() => undefined);
    return unavailableHooks(input, log, (err as Error).message, bashMode);
  }
  log("info", `opencode-worker ${init.version ?? "?"} (protocol ${init.protocol ?? "?"}) offers ${init.tools.length} tools`, {
    tools: init.tools.map((t) => t.name),
    isolation: init.isolation as any,
  });
  return buildHooks(client, init.tools, {
    pollMs: opts.pollMs ?? 2000,
    log,
    bash: bashMode === "sandbox" ? { projectDir: baseDir, network: opts.bashNetwork, noWorkspace: workspaceMissing(init) } : undefined,
  });
};

/** Why this worker cannot run the sandboxed bash (no `workspace` in its dispatch schema), if so. */
export function workspaceMissing(init: InitializeResult): string | undefined {
  const dispatch = init.tools.find((t) => t?.name === "worker_dispatch_job");
  const props = (dispatch?.input_schema as any)?.properties;
  if (props && typeof props === "object" && "workspace" in props) return undefined;
  return (
    `this opencode-worker (${init.version ?? "unknown version"}) cannot run jobs on the project (its worker_dispatch_job has no \`workspace\`), ` +
    `which the sandboxed bash needs. Update the opencode-worker binary (cargo build --release), or set the plugin option \`bash: "host"\`, then restart OpenCode.`
  );
}

/** OpenCode would mark every property of a plain-JSON-Schema tool required: give it ours. */
function bashDefinitionHook(): Pick<Hooks, "tool.definition"> {
  return {
    "tool.definition": async (input, output) => {
      if (input.toolID === BASH_TOOL) (output as any).jsonSchema = bashSchema();
    },
  };
}

/** The hooks for a started client: one tool per sidecar tool, the schema hook, dispose. */
export function buildHooks(
  client: WorkerClient,
  tools: ToolInfo[],
  opts: { pollMs: number; log: Logger; bash?: { projectDir: string; network?: BashNetwork; noWorkspace?: string } },
): Hooks {
  const schemas = new Map<string, JsonSchema>();
  const tool: NonNullable<Hooks["tool"]> = {};
  for (const t of tools) {
    if (!t || typeof t.name !== "string") continue;
    schemas.set(t.name, schemaForModel(t.input_schema));
    tool[t.name] = {
      description: String(t.description ?? t.name),
      // plain JSON Schema per argument (see schema.ts); the cast is because the type wants zod
      args: argsFromInputSchema(t.input_schema) as any,
      execute: (args: any, ctx: ToolContext) => executeTool(client, t.name, args, ctx, opts),
    };
  }
  if (opts.bash) {
    // Same name as OpenCode's built-in: OpenCode lists plugin tools after its own and keys the
    // model's tool set by name, so this one is what the model is offered and what runs.
    tool[BASH_TOOL] = makeBashTool({ client, projectDir: opts.bash.projectDir, network: opts.bash.network, noWorkspace: opts.bash.noWorkspace, log: opts.log, newJobId });
    schemas.set(BASH_TOOL, bashSchema());
  }
  return {
    tool,
    // OpenCode builds `required: [every arg]` from plain-JSON-Schema args; hand it the sidecar's
    // exact schema instead (OpenCode 1.18.33 reads `jsonSchema` back after this hook).
    "tool.definition": async (input, output) => {
      const schema = schemas.get(input.toolID);
      if (schema) (output as any).jsonSchema = schemaForModel(schema);
    },
    dispose: async () => {
      await client.dispose();
    },
  };
}

function sleepTimer(ms: number, fn: () => void): NodeJS.Timeout {
  const t = setTimeout(fn, ms);
  t.unref?.();
  return t;
}

type TitleSetter = ((title: string, extra?: Record<string, unknown>) => void) & { live: () => boolean };

/**
 * Sets the tool call's title in OpenCode's UI. OpenCode 1.18.33 hands plugins a ctx.metadata()
 * that returns an Effect nobody runs, so live titles never show (anomalyco/opencode#50313); a
 * fixed host returns nothing or a promise. `live()` says whether titles can be seen at all.
 */
function titleSetter(ctx: ToolContext | undefined, jobId: string | undefined): TitleSetter {
  let liveTitles = true;
  const set = (title: string, extra: Record<string, unknown> = {}) => {
    try {
      const ret: any = ctx?.metadata?.({ title, metadata: { job_id: jobId, ...extra } });
      if (ret && typeof ret === "object") {
        if (typeof ret.then === "function") ret.then(undefined, () => undefined);
        else liveTitles = false;
      }
    } catch {
      /* UI only */
    }
  };
  return Object.assign(set, { live: () => liveTitles });
}

/**
 * Keeps the title showing what a waited-on job is doing (status, phase, last output line), from
 * its event stream, or by polling its status when the sidecar has no stream. Returns the stop.
 */
function showProgress(
  client: WorkerClient,
  jobId: string,
  setTitle: TitleSetter,
  started: number,
  pollMs: number,
): () => void {
  let poll: NodeJS.Timeout | undefined;
  let stopped = false;
  let unsubscribe: (() => Promise<void>) | undefined;
  const live = { status: "queued", phase: "init", line: "", partial: "" };
  const show = () => {
    if (stopped || !setTitle.live()) return;
    const secs = Math.round((Date.now() - started) / 1000);
    const last = live.line ? ` — ${live.line}` : "";
    setTitle(`job ${jobId}: ${live.status} (${live.phase}), ${secs} s${last}`, { status: live.status, phase: live.phase, last_line: live.line || undefined });
  };
  const onEvent = (event: JobEvent) => {
    if (event.kind === "state") {
      live.status = event.status ?? live.status;
      live.phase = event.phase ?? live.phase;
    } else if ((event.kind === "stdout" || event.kind === "stderr") && event.encoding === "utf8" && event.data) {
      const text = (live.partial + event.data).slice(-4096);
      const lines = text.split("\n");
      live.partial = lines.pop() ?? "";
      const done = lines.filter((l) => l.trim()).at(-1);
      if (done !== undefined) live.line = done.trim().slice(0, 120);
    }
  };
  const follow = async () => {
    unsubscribe = await client.follow(jobId, onEvent, { stopped: () => stopped });
  };
  const tick = async () => {
    if (stopped || !setTitle.live()) return; // nobody would see the title
    if (unsubscribe) {
      show();
    } else {
      // no stream (an older sidecar): ask for the status instead
      try {
        const st: any = await client.call("worker_get_status", { job_id: jobId }, { timeoutMs: 30_000 });
        live.status = st?.status ?? "?";
        live.phase = st?.phase ?? "?";
        show();
      } catch {
        /* not registered yet, or the sidecar is gone: the call itself reports that */
      }
    }
    if (!stopped) poll = sleepTimer(pollMs, tick);
  };
  follow().catch(() => false);
  poll = sleepTimer(pollMs, tick);
  return () => {
    stopped = true;
    if (poll) clearTimeout(poll);
    if (unsubscribe) unsubscribe().catch(() => undefined);
  };
}

/**
 * A promise that rejects when the tool call is aborted; an aborted dispatch cancels its job
 * first. Returns it with the listener's removal.
 */
function abortion(
  client: WorkerClient,
  name: string,
  jobId: string | undefined,
  ctx: ToolContext | undefined,
  setTitle: TitleSetter,
  log: Logger,
): { aborted: Promise<never>; detach: () => void } {
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => {
      if (name === "worker_dispatch_job" && jobId) {
        setTitle(`cancelling job ${jobId}`);
        log("info", `tool call aborted: cancelling job ${jobId}`);
        client
          .call("worker_cancel_job", { job_id: jobId, reason: "the OpenCode tool call was aborted" }, { timeoutMs: 30_000 })
          .then(
            (job: any) => log("info", `job ${jobId} after abort: ${job?.status}`),
            (err) => log("warn", `cancelling job ${jobId} after abort failed: ${(err as Error).message}`),
          );
        // the dispatch reply (now with status cancelled) normally follows at once
        sleepTimer(10_000, () =>
          reject(new Error(`${name}: aborted; cancellation of job ${JSON.stringify(jobId)} was requested but its final state is unknown — check it with worker_get_status`)),
        );
      } else {
        reject(new Error(`${name}: aborted`));
      }
    };
    ctx?.abort?.addEventListener?.("abort", onAbort, { once: true });
  });
  aborted.catch(() => undefined);
  return {
    aborted,
    detach: () => {
      if (onAbort) ctx?.abort?.removeEventListener?.("abort", onAbort);
    },
  };
}

/** What the model reads and the title it sees for one method's result. */
function present(name: string, result: any, rid: string | undefined, waitedMs: number | undefined): { output: string; title: string } {
  // The binary's own rendering (asked for with `render: true`) wins; render.ts is the fallback.
  const rendered: string | undefined = typeof result?.rendered === "string" ? result.rendered : undefined;
  switch (name) {
    case "worker_dispatch_job":
    case "worker_get_status":
    case "worker_cancel_job": {
      let title = statusLine(result).replace(/ \| /g, ", ");
      if (name === "worker_dispatch_job" && !isTerminal(result?.status)) title += " (not finished)";
      return { output: rendered ?? renderJob(result, { waitedMs }), title };
    }
    case "worker_collect_output":
      return { output: rendered ?? renderOutput(result), title: `output of job ${rid ?? "?"} (${result?.status ?? "?"})` };
    default:
      return { output: rendered ?? renderGeneric(name, result), title: name };
  }
}

export async function executeTool(
  client: WorkerClient,
  name: string,
  args: unknown,
  ctx: ToolContext | undefined,
  opts: { pollMs: number; log: Logger },
): Promise<{ title: string; output: string; metadata: Record<string, unknown> }> {
  const params: Record<string, unknown> = args && typeof args === "object" && !Array.isArray(args) ? { ...(args as object) } : {};
  const isDispatch = name === "worker_dispatch_job";
  const waitMs = isDispatch && typeof params.wait_ms === "number" ? params.wait_ms : undefined;
  // A waited-on job must be cancellable on abort, so we must know its id before the reply.
  if (isDispatch && params.wait_ms !== undefined && params.job_id === undefined) params.job_id = newJobId();
  const jobId = typeof params.job_id === "string" ? params.job_id : undefined;
  const setTitle = titleSetter(ctx, jobId);
  if (ctx?.abort?.aborted) throw new Error(`${name}: the tool call was aborted before it was sent`);

  const started = Date.now();
  setTitle(isDispatch ? `dispatching job ${jobId ?? ""}`.trim() : `${name}${jobId ? ` ${jobId}` : ""}`);
  // generous: only there so that a wedged sidecar cannot hang a tool call forever
  const timeoutMs = waitMs !== undefined ? waitMs + 120_000 : 300_000;
  // `render: true`: the binary adds the model's text (result.rendered / error.data.rendered), the same
  // rendering its MCP server gives, so the two surfaces cannot drift. render.ts is the fallback.
  const call = client.call(name, { ...params, render: true }, { timeoutMs });
  call.catch(() => undefined);

  const stopProgress =
    isDispatch && jobId && waitMs !== undefined && opts.pollMs > 0 && waitMs > opts.pollMs && setTitle.live()
      ? showProgress(client, jobId, setTitle, started, opts.pollMs)
      : undefined;
  const { aborted, detach } = abortion(client, name, jobId, ctx, setTitle, opts.log);

  let result: any;
  try {
    result = await Promise.race([call, aborted]);
  } catch (err) {
    // a dispatch whose sidecar died under it: later questions about the job must say it is lost
    if (err instanceof SidecarGoneError && isDispatch && jobId) client.noteJob(jobId);
    const lostGeneration = jobId ? client.jobLostWith(jobId) : undefined;
    const rendered = err instanceof RpcError && lostGeneration === undefined ? (err.data as any)?.rendered : undefined;
    const text =
      typeof rendered === "string"
        ? rendered
        : errorText(name, err, { jobId: isDispatch || err instanceof SidecarGoneError ? jobId : undefined, lostGeneration });
    setTitle(`${name} failed`);
    throw new Error(text);
  } finally {
    stopProgress?.();
    detach();
  }

  const rid = typeof result?.job_id === "string" ? result.job_id : jobId;
  if (rid) client.noteJob(rid);
  const { output, title } = present(name, result, rid, waitMs !== undefined ? Date.now() - started : undefined);
  setTitle(title, { status: result?.status });
  return {
    title,
    output,
    metadata: {
      job_id: rid,
      status: result?.status,
      exit_code: result?.exit_code,
      reason: result?.reason,
    },
  };
}
