// `bash` in the sandbox: a tool with the built-in's name, arguments and habits whose every command
// is an opencode-worker job on the project in `write` mode. It never falls back to the host: when
// the worker is missing, dead or too old, the call fails with the fix.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ToolContext } from "@opencode-ai/plugin";
import type { JobEvent, WorkerClient } from "./client.js";
import { bashPermission } from "./permission.js";
import { RpcError, SidecarGoneError } from "./rpc.js";
import { errorText, renderDenied } from "./render.js";
import { liveTail, MAX_BYTES, MAX_LINES, modelOutput } from "./tail.js";

export const BASH_TOOL = "bash";
/** OpenCode's defaults: 2 min, and its bash tool's maximum (MAX_TIMEOUT_MS in 1.18.33). */
export const DEFAULT_TIMEOUT_MS = 120_000;
export const MAX_TIMEOUT_MS = 600_000;
/** The built-in tool hands the model stdout and stderr interleaved as they came; so do we. */
const MERGE_STREAMS = "exec 2>&1\n";
/** time past the command's own timeout for the worker to kill, collect and answer */
const REPLY_SLACK_MS = 60_000;

export type BashMode = "sandbox" | "host";
export type BashNetwork = "none" | "open";

export interface BashDeps {
  /** the running worker, or why there is none (the tool then fails closed with `unavailable`) */
  client?: WorkerClient;
  unavailable?: string;
  /** set when the worker runs but cannot run workspace jobs */
  noWorkspace?: string;
  projectDir: string;
  network?: BashNetwork;
  log: (level: "debug" | "info" | "warn" | "error", message: string, extra?: Record<string, unknown>) => void;
  newJobId: () => string;
  /** where full outputs are saved (tests); default OpenCode's tool-output dir */
  save?: (text: string) => string;
  /** most live-output updates per second through ctx.metadata */
  liveIntervalMs?: number;
}

export function bashSchema(): Record<string, unknown> {
  return {
    type: "object",
    properties: {
      command: { type: "string", description: "The command to execute" },
      timeout: {
        type: "number",
        minimum: 0,
        maximum: MAX_TIMEOUT_MS,
        description: `Optional timeout in milliseconds (default ${DEFAULT_TIMEOUT_MS}, at most ${MAX_TIMEOUT_MS})`,
      },
      workdir: {
        type: "string",
        description: "The working directory to run the command in. Defaults to the current directory. Use this instead of 'cd' commands.",
      },
      description: {
        type: "string",
        description: "Clear, concise description of what this command does in 5-10 words",
      },
    },
    required: ["command"],
    additionalProperties: false,
  };
}

export function bashDescription(projectDir: string): string {
  const home = os.homedir();
  return `Executes a given bash command with optional timeout, inside the opencode-worker sandbox.

Sandbox (enforced by the kernel for every command; there is no way around it from here):
- The project directory ${projectDir} is writable, except .git/hooks, .git/config, .opencode/, opencode.json and .envrc, which are read-only.
- Everything else is read-only: your home directory (${home}), /etc, /usr and the rest of the system. Credential stores (~/.ssh, ~/.aws, ~/.gnupg, ~/.netrc, ...) are unreadable. $HOME is a private scratch home; /tmp is private to the command.
- No network unless the user enabled it: no DNS, no downloads, not even the host's 127.0.0.1 services.
- Processes the command leaves running are killed when it ends: do not start background servers expecting them to outlive the call.
- When something is refused by the sandbox, the result says what and what the user can change.

All commands run in the current working directory by default. Use the \`workdir\` parameter (inside the project) if you need to run a command in a different directory. AVOID using \`cd <directory> && <command>\` patterns - use \`workdir\` instead.

IMPORTANT: This tool is for terminal operations like git, npm, cargo, make, tests, etc. DO NOT use it for file operations (reading, writing, editing, searching, finding files) - use the specialized tools for this instead.

Usage notes:
  - The command argument is required.
  - You can specify an optional timeout in milliseconds (up to ${MAX_TIMEOUT_MS}ms). If not specified, commands will time out after ${DEFAULT_TIMEOUT_MS}ms.
  - If the output exceeds ${MAX_LINES} lines or ${MAX_BYTES} bytes, it will be truncated and the full output will be written to a file. You can use Read with offset/limit to read specific sections or Grep to search the full content. Do NOT use \`head\`, \`tail\`, or other truncation commands to limit output; the full output will already be captured to a file for more precise searching.
  - Always quote file paths that contain spaces with double quotes.
  - If the commands depend on each other and must run sequentially, use a single bash call with '&&' to chain them together. If they are independent, make several bash tool calls in a single message.
  - Only commit, push or create PRs when explicitly requested; never skip hooks or change git config unless asked.`;
}

function fail(message: string): never {
  throw new Error(`bash: ${message}`);
}

interface Args {
  command: string;
  timeout: number;
  cwd?: string;
  description?: string;
}

/** Checks the arguments as the built-in does, and where the command may run. */
export function parseArgs(raw: unknown, projectDir: string, ctxDir?: string): Args {
  const a: Record<string, unknown> = raw && typeof raw === "object" && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
  if (typeof a.command !== "string" || !a.command.trim()) fail("`command` is required: the shell command to run, as a string.");
  let timeout = DEFAULT_TIMEOUT_MS;
  if (a.timeout !== undefined && a.timeout !== null) {
    if (typeof a.timeout !== "number" || !Number.isFinite(a.timeout) || a.timeout < 0)
      fail(`Invalid timeout value: ${JSON.stringify(a.timeout)}. Timeout must be a positive number of milliseconds.`);
    if (a.timeout > MAX_TIMEOUT_MS) fail(`Invalid timeout value: ${a.timeout}. Timeout may not exceed ${MAX_TIMEOUT_MS} ms.`);
    timeout = Math.max(1, Math.round(a.timeout));
  }
  if (a.workdir !== undefined && a.workdir !== null && typeof a.workdir !== "string") fail("`workdir` must be a string (a directory path).");
  const base = ctxDir && isInside(ctxDir, projectDir) ? ctxDir : projectDir;
  const dir = path.resolve(base, (a.workdir as string | undefined) || ".");
  if (!isInside(dir, projectDir)) {
    fail(
      `workdir ${dir} is outside the project ${projectDir}. Commands run in the opencode-worker sandbox, which starts them inside the project only. ` +
        `Use a workdir inside the project; files elsewhere can still be read by absolute path (but not written).`,
    );
  }
  const rel = path.relative(projectDir, dir);
  return {
    command: a.command as string,
    timeout,
    cwd: rel || undefined,
    description: typeof a.description === "string" && a.description.trim() ? a.description.trim() : undefined,
  };
}

function isInside(p: string, dir: string): boolean {
  const rel = path.relative(dir, p);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/** Git's global config of the user, readable in the sandbox (their HOME is not the job's). */
export function gitEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const home = env.HOME || os.homedir();
  const candidates = [path.join(home, ".gitconfig"), path.join(env.XDG_CONFIG_HOME || path.join(home, ".config"), "git", "config")];
  const found = candidates.find((p) => {
    try {
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  });
  return found ? { GIT_CONFIG_GLOBAL: found } : {};
}

const WRITE_DENIED = /Read-only file system|Permission denied|Operation not permitted/;
const NET_DENIED =
  /Could not resolve host|Temporary failure in name resolution|Name or service not known|Network is unreachable|getaddrinfo|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|Connection refused|Failed to connect|Could not connect|No route to host/i;

/** What the model should know about how the job ended, beyond its output. */
export function endNotes(job: any, opts: { timeout: number; aborted: boolean; output: string; projectDir: string; network?: BashNetwork }): string[] {
  const notes: string[] = [];
  const reason = job?.reason;
  const status = job?.status;
  if (status === "timeout" || reason === "timeout") {
    notes.push(
      `shell tool terminated command after exceeding timeout ${opts.timeout} ms. If this command is expected to take longer and is not waiting for interactive input, retry with a larger timeout value in milliseconds.`,
    );
  } else if (opts.aborted || status === "cancelled") {
    notes.push("User aborted the command");
  }
  const limit: Record<string, string> = {
    memory_limit: "it used more memory than the sandbox allows (worker config `governance.defaults.memory`)",
    pids_limit: "it started more processes than the sandbox allows (worker config `governance.defaults.pids`)",
    output_limit:
      "it wrote more output than the sandbox keeps (worker config `governance.defaults.output`, bytes per stream). Redirect large output to a file in the project (`cmd > out.log 2>&1`) and read or grep that",
    cpu_time_limit: "it used more CPU time than the sandbox allows",
    disk_limit: "it wrote more to disk than the sandbox allows",
  };
  if (reason && limit[reason]) {
    notes.push(
      `The opencode-worker sandbox stopped the command: ${limit[reason]}. The user can raise the limit in the worker's config (the plugin's \`config\` option), or run bash on the host with the plugin option \`bash: "host"\`.`,
    );
  } else if (reason === "worker_shutdown" || reason === "worker_lost") {
    notes.push(`The command was stopped because the opencode-worker process shut down (${reason}); it may not have finished.`);
  } else if (reason === "prepare_error" || reason === "spawn_error") {
    notes.push(`The opencode-worker sandbox could not start the command (${reason}): ${job?.message ?? "no details"}.`);
  }
  const failed = typeof job?.exit_code === "number" && job.exit_code !== 0;
  if (failed && WRITE_DENIED.test(opts.output)) {
    notes.push(
      `This command ran in the opencode-worker sandbox: only the project (${opts.projectDir}) and a private /tmp are writable; .git/hooks, .git/config, .opencode/, opencode.json and .envrc in the project, your home directory, /etc and the rest of the system are read-only, and credential stores such as ~/.ssh are unreadable. ` +
        `A "Permission denied", "Read-only file system" or "Operation not permitted" above most likely comes from that: write inside the project instead. ` +
        `If the user needs more, they can add directories to the worker config's \`isolation.extra_rw\`, change \`workspace.protected\`, or set the plugin option \`bash: "host"\`.`,
    );
  }
  // A job under the worker's egress allowlist (its `network.default`) has network metrics and
  // names what the proxy refused; only a job without any network gets the "no network" note.
  const denied = renderDenied(job?.network_denied);
  if (denied) {
    notes.push(`The opencode-worker sandbox's ${denied}`);
  } else if (failed && !job?.metrics?.network && (opts.network ?? "none") === "none" && NET_DENIED.test(opts.output)) {
    notes.push(
      `This command ran in the opencode-worker sandbox without network (no DNS, no internet, not even the host's 127.0.0.1): a name-resolution or connection error above comes from that. ` +
        `The user can allow network with the plugin option \`bashNetwork: "open"\` (the worker config's \`governance.allow_network\` must stay true), or set \`bash: "host"\`.`,
    );
  }
  return notes;
}

/** The job's combined output as text (stderr, if anything came there, after stdout). */
function jobOutput(job: any): string {
  const text = (s: "stdout" | "stderr") => {
    const v = job?.[s];
    if (typeof v !== "string") return "";
    return job?.[`${s}_encoding`] === "base64" ? Buffer.from(v, "base64").toString("utf8") : v;
  };
  const out = text("stdout");
  const err = text("stderr");
  return err ? (out && !out.endsWith("\n") ? `${out}\n${err}` : out + err) : out;
}

/** A worker error as the model should read it (policy spans point into the model's command). */
function dispatchError(err: unknown, jobId: string, generation?: number): string {
  if (err instanceof RpcError && err.code === -32002 && err.data && typeof err.data === "object") {
    const d: any = { ...(err.data as object) };
    if (typeof d.command === "string" && d.command.startsWith(MERGE_STREAMS)) {
      d.command = d.command.slice(MERGE_STREAMS.length);
      if (Array.isArray(d.span)) d.span = d.span.map((n: number) => Math.max(0, n - MERGE_STREAMS.length));
    }
    const adjusted = new RpcError(err.method, err.code, err.message.replace(/^[^:]*: /, "").replace(/ \(JSON-RPC error -?\d+\)$/, ""), d);
    return (
      errorText("bash", adjusted) +
      `\nThe command did not run: the opencode-worker sandbox's command policy refused it. The user can allow a program with the worker config's \`policy.allow\` (see its docs/policy.md), or set the plugin option \`bash: "host"\`.`
    );
  }
  if (err instanceof SidecarGoneError) {
    return (
      `bash failed: ${err.message}. The command was NOT run on the host` +
      (generation !== undefined ? "" : ` (whether it started in the sandbox before the worker went away is unknown)`) +
      `. Retry: the worker is restarted on the next call.`
    );
  }
  return errorText("bash", err, { jobId });
}

export function makeBashTool(deps: BashDeps) {
  return {
    description: bashDescription(deps.projectDir),
    args: bashSchema().properties as any,
    execute: (args: unknown, ctx: ToolContext) => runBash(deps, args, ctx),
  };
}

export async function runBash(
  deps: BashDeps,
  rawArgs: unknown,
  ctx: ToolContext | undefined,
): Promise<{ title: string; output: string; metadata: Record<string, unknown> }> {
  const args = parseArgs(rawArgs, deps.projectDir, ctx?.directory);
  // fail closed, before asking the user about a command that cannot run anyway
  if (!deps.client) {
    fail(
      `the opencode-worker sandbox is not available, so the command was NOT run (it never runs on the host in sandbox mode). ${deps.unavailable ?? ""}`.trim() +
        ` To run bash on the host without the sandbox instead, the user can set the plugin option \`bash: "host"\` and restart OpenCode.`,
    );
  }
  if (deps.noWorkspace) fail(`${deps.noWorkspace} The command was NOT run.`);
  const perm = bashPermission(args.command);
  if (perm.patterns.length && ctx?.ask) {
    await ctx.ask({ permission: "bash", patterns: perm.patterns, always: perm.always, metadata: { command: args.command } } as any);
  }
  if (ctx?.abort?.aborted) fail("the tool call was aborted before the command started");
  const client = deps.client;
  const jobId = deps.newJobId();
  const params: Record<string, unknown> = {
    job_id: jobId,
    command: MERGE_STREAMS + args.command,
    workspace: { path: deps.projectDir, mode: "write" },
    limits: { timeout: args.timeout },
    env: gitEnv(),
    wait_ms: args.timeout + REPLY_SLACK_MS,
  };
  if (args.cwd) params.cwd = args.cwd;
  if (deps.network) params.network = deps.network;

  // Live output: OpenCode shows metadata.output while the command runs. A host whose
  // ctx.metadata returns something that is not a promise (1.18.33's unrun Effect) shows nothing,
  // so there the job is not followed at all.
  let live = true;
  const show = (output: string) => {
    try {
      const ret: any = ctx?.metadata?.({ title: args.description ?? args.command, metadata: { output, description: args.description, job_id: jobId } });
      if (ret && typeof ret === "object") {
        if (typeof ret.then === "function") ret.then(undefined, () => undefined);
        else live = false;
      }
    } catch {
      live = false;
    }
  };
  show("");
  const call = client.call("worker_dispatch_job", params, { timeoutMs: args.timeout + 2 * REPLY_SLACK_MS });
  call.catch(() => undefined);

  let stopped = false;
  let unsubscribe: (() => Promise<void>) | undefined;
  let timer: NodeJS.Timeout | undefined;
  if (live && ctx?.metadata) {
    let text = "";
    let dirty = false;
    const interval = deps.liveIntervalMs ?? 250;
    const onEvent = (e: JobEvent) => {
      if ((e.kind === "stdout" || e.kind === "stderr") && e.data) {
        text = (text + (e.encoding === "base64" ? Buffer.from(e.data, "base64").toString("utf8") : e.data)).slice(-2 * 30_000);
        dirty = true;
      }
    };
    const tick = () => {
      if (stopped) return;
      if (dirty) {
        dirty = false;
        show(liveTail(text));
      }
      timer = setTimeout(tick, interval);
      timer.unref?.();
    };
    client
      .follow(jobId, onEvent, { stopped: () => stopped, attempts: 40, delayMs: 25 })
      .then((u) => (unsubscribe = u), () => undefined);
    tick();
  }

  let aborted = false;
  const onAbort = () => {
    aborted = true;
    deps.log("info", `bash aborted: cancelling job ${jobId}`);
    client.call("worker_cancel_job", { job_id: jobId, reason: "the OpenCode tool call was aborted" }, { timeoutMs: 30_000 }).then(
      (job: any) => deps.log("info", `bash job ${jobId} after abort: ${job?.status}`),
      (err) => deps.log("warn", `cancelling bash job ${jobId} failed: ${(err as Error).message}`),
    );
  };
  ctx?.abort?.addEventListener?.("abort", onAbort, { once: true });

  // after an abort the cancelled job's reply normally follows at once; never hang on it
  const abortGiveUp = new Promise<never>((_, reject) => {
    const arm = () => {
      const t = setTimeout(() => reject(new SidecarGoneError(`the command was aborted and its cancellation requested, but the worker did not confirm it within 15 s`)), 15_000);
      t.unref?.();
    };
    if (ctx?.abort?.aborted) arm();
    else ctx?.abort?.addEventListener?.("abort", arm, { once: true });
  });
  abortGiveUp.catch(() => undefined);

  let job: any;
  try {
    job = await Promise.race([call, abortGiveUp]);
  } catch (err) {
    const generation = err instanceof SidecarGoneError ? client.jobLostWith(jobId) : undefined;
    throw new Error(dispatchError(err, jobId, generation));
  } finally {
    stopped = true;
    if (timer) clearTimeout(timer);
    if (unsubscribe) unsubscribe().catch(() => undefined);
    ctx?.abort?.removeEventListener?.("abort", onAbort);
  }
  client.noteJob(jobId);

  const full = jobOutput(job);
  const notes = endNotes(job, { timeout: args.timeout, aborted, output: full, projectDir: deps.projectDir, network: deps.network });
  const { output, truncated, outputPath } = modelOutput(full, notes, { save: deps.save });
  const exit = typeof job?.exit_code === "number" ? job.exit_code : null;
  const metadata: Record<string, unknown> = {
    output: liveTail(full || "(no output)"),
    exit,
    description: args.description,
    truncated,
    ...(outputPath ? { outputPath } : {}),
    sandbox: "opencode-worker",
    job_id: jobId,
    status: job?.status,
    ...(job?.reason ? { reason: job.reason } : {}),
  };
  if (live) show(metadata.output as string);
  return { title: args.description ?? args.command, output, metadata };
}
