// The plugin's one sidecar per OpenCode instance: starts it, calls `initialize`, multiplexes every
// tool call over it, and restarts it after a crash, with backoff and a bounded number of times.
// In-flight calls of a sidecar that dies fail with a clear error; a job of a dead sidecar is
// never reported as finished.
import type { JobEvent } from "./protocol.gen.js";
import { SidecarGoneError, SidecarProcess, describeExit, type ExitInfo, type SpawnSpec } from "./rpc.js";

export interface ToolInfo {
  name: string;
  description: string;
  input_schema: Record<string, unknown>;
  output_schema?: Record<string, unknown>;
}

export interface InitializeResult {
  name?: string;
  version?: string;
  protocol?: number;
  worker_id?: string;
  limits?: unknown;
  isolation?: unknown;
  tools: ToolInfo[];
  [key: string]: unknown;
}

export interface RestartPolicy {
  /** most restarts within `windowMs`; beyond that calls fail until OpenCode is restarted */
  maxRestarts: number;
  windowMs: number;
  /** first backoff; doubles per crash in the window, capped at maxBackoffMs */
  backoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_RESTART: RestartPolicy = { maxRestarts: 5, windowMs: 10 * 60_000, backoffMs: 250, maxBackoffMs: 8_000 };

export interface ClientOptions {
  spawn: Omit<SpawnSpec, "onStderrLine" | "onStrayLine" | "onNotification">;
  clientInfo: { name: string; version: string };
  initTimeoutMs: number;
  restart: RestartPolicy;
  log: (level: "debug" | "info" | "warn" | "error", message: string, extra?: Record<string, unknown>) => void;
  onStderrLine?: (line: string) => void;
}

export const PROTOCOL_VERSION = 1;

/** One `worker_job_event` (see docs/protocol.md), typed from schema/: a union on `kind`. */
export type { JobEvent } from "./protocol.gen.js";

export class WorkerClient {
  private current: SidecarProcess | undefined;
  private starting: Promise<SidecarProcess> | undefined;
  private generation = 0;
  private crashes: number[] = [];
  private lastCrash: { at: number; how: string; stderr: string[] } | undefined;
  private disposed = false;
  /** which sidecar generation each job id we saw belongs to */
  private readonly jobGeneration = new Map<string, number>();
  initializeResult: InitializeResult | undefined;
  private readonly opts: ClientOptions;
  /** event handlers by subscription id (JSON text) */
  private readonly subscriptions = new Map<string, (event: JobEvent) => void>();
  /** events that arrived before their subscribe reply was handled (bounded) */
  private readonly early = new Map<string, JobEvent[]>();

  constructor(opts: ClientOptions) {
    this.opts = opts;
  }

  /** the live sidecar's pid, if any (tests and logs) */
  get pid(): number | undefined {
    return this.current?.alive ? this.current.pid : undefined;
  }

  get currentGeneration(): number {
    return this.generation;
  }

  get process(): SidecarProcess | undefined {
    return this.current;
  }

  /** Starts the first sidecar and returns its `initialize` result. */
  async start(): Promise<InitializeResult> {
    await this.ensure();
    return this.initializeResult!;
  }

  /**
   * Calls a method on the sidecar, (re)starting it first when needed. Rejects with RpcError for a
   * JSON-RPC error reply, SidecarGoneError when the sidecar is gone or died during the call.
   */
  async call(method: string, params: unknown, opts: { timeoutMs?: number } = {}): Promise<unknown> {
    const proc = await this.ensure();
    return proc.request(method, params, opts);
  }

  /**
   * Follows a job's event stream (`worker_subscribe_job`): `onEvent` gets every
   * `worker_job_event` of it in order, ending with `end`. Resolves to a function that
   * unsubscribes.
   */
  async subscribe(jobId: string, onEvent: (event: JobEvent) => void, opts: { afterSeq?: number } = {}): Promise<() => Promise<void>> {
    const proc = await this.ensure();
    const params: Record<string, unknown> = { job_id: jobId };
    if (opts.afterSeq !== undefined) params.after_seq = opts.afterSeq;
    const id = await proc.request("worker_subscribe_job", params, { timeoutMs: 30_000 });
    const key = JSON.stringify(id);
    const handler = (event: JobEvent) => {
      if (event?.kind === "end") this.subscriptions.delete(key);
      try {
        onEvent(event);
      } catch {
        /* a display callback must not break the stream */
      }
    };
    this.subscriptions.set(key, handler);
    const early = this.early.get(key) ?? [];
    this.early.delete(key);
    for (const event of early) handler(event);
    return async () => {
      if (!this.subscriptions.delete(key) || !proc.alive) return;
      await proc.request("worker_unsubscribe_job", [id], { timeoutMs: 30_000 }).catch(() => undefined);
    };
  }

  /**
   * `subscribe`, retried briefly: the sidecar answers requests concurrently, so the job of a
   * dispatch just sent may not be admitted yet. Resolves to the unsubscribe function, or
   * undefined when it never worked or `stopped()` became true (then nothing stays subscribed).
   */
  async follow(
    jobId: string,
    onEvent: (event: JobEvent) => void,
    opts: { stopped: () => boolean; attempts?: number; delayMs?: number },
  ): Promise<(() => Promise<void>) | undefined> {
    for (let i = 0; i < (opts.attempts ?? 20) && !opts.stopped(); i++) {
      try {
        const unsubscribe = await this.subscribe(jobId, onEvent);
        if (!opts.stopped()) return unsubscribe;
        await unsubscribe();
        return undefined;
      } catch {
        await new Promise((r) => setTimeout(r, opts.delayMs ?? 50).unref?.());
      }
    }
    return undefined;
  }

  private onNotification(message: any): void {
    if (message?.method !== "worker_job_event") return;
    const key = JSON.stringify(message.params?.subscription);
    const event = message.params?.result as JobEvent;
    const handler = this.subscriptions.get(key);
    if (handler) return handler(event);
    // the subscribe reply is still on its way to its caller: keep a few events for it
    if (!this.early.has(key) && this.early.size >= 64) {
      const oldest = this.early.keys().next().value;
      if (oldest !== undefined) this.early.delete(oldest);
    }
    const list = this.early.get(key) ?? [];
    if (list.length < 1024) list.push(event);
    this.early.set(key, list);
  }

  /** Remembers that `jobId` lives in the current sidecar (for clearer errors after a restart). */
  noteJob(jobId: string, generation = this.generation): void {
    if (this.jobGeneration.size > 10_000) {
      const first = this.jobGeneration.keys().next().value;
      if (first !== undefined) this.jobGeneration.delete(first);
    }
    this.jobGeneration.set(jobId, generation);
  }

  /** The generation a job was seen in, when it differs from the live one (its sidecar died). */
  jobLostWith(jobId: string): number | undefined {
    const g = this.jobGeneration.get(jobId);
    return g !== undefined && g !== this.generation ? g : undefined;
  }

  get lastCrashInfo(): { at: number; how: string; stderr: string[] } | undefined {
    return this.lastCrash;
  }

  /** Kills the sidecar (stdin EOF first so it cleans up its jobs, SIGKILL after `graceMs`). */
  async dispose(graceMs = 3000): Promise<void> {
    this.disposed = true;
    const starting = this.starting;
    if (starting) await starting.catch(() => undefined);
    const proc = this.current;
    if (proc?.alive) {
      this.opts.log("info", `stopping opencode-worker pid ${proc.pid}`);
      await proc.close(graceMs);
    }
  }

  private async ensure(): Promise<SidecarProcess> {
    if (this.disposed) throw new SidecarGoneError("opencode-worker: the plugin was disposed (OpenCode is shutting down)");
    if (this.current?.alive) return this.current;
    if (!this.starting) {
      this.starting = this.startProcess().finally(() => {
        this.starting = undefined;
      });
    }
    return this.starting;
  }

  private async startProcess(): Promise<SidecarProcess> {
    const restarting = this.current !== undefined;
    if (restarting) {
      const now = Date.now();
      this.crashes = this.crashes.filter((t) => now - t < this.opts.restart.windowMs);
      if (this.crashes.length > this.opts.restart.maxRestarts) {
        throw new SidecarGoneError(
          `opencode-worker crashed ${this.crashes.length} times in the last ${Math.round(this.opts.restart.windowMs / 60_000)} min; ` +
            `not restarting it again (last: ${this.lastCrash?.how ?? "unknown"}). ` +
            `See the opencode-worker lines in OpenCode's log, fix the cause, then restart OpenCode.`,
        );
      }
      const n = Math.max(1, this.crashes.length);
      const delay = Math.min(this.opts.restart.backoffMs * 2 ** (n - 1), this.opts.restart.maxBackoffMs);
      const wait = Math.max(0, (this.crashes.at(-1) ?? now) + delay - now);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (this.disposed) throw new SidecarGoneError("opencode-worker: the plugin was disposed (OpenCode is shutting down)");
    }
    const generation = this.generation + 1;
    const proc = new SidecarProcess({
      ...this.opts.spawn,
      onStderrLine: this.opts.onStderrLine,
      onStrayLine: (line) => this.opts.log("debug", `opencode-worker stdout (not a pending reply): ${line.slice(0, 500)}`),
      onNotification: (message) => this.onNotification(message),
    });
    this.current = proc;
    this.generation = generation;
    proc.exited.then((info) => this.onExit(proc, generation, info));
    this.opts.log("info", `${restarting ? "restarted" : "started"} opencode-worker pid ${proc.pid ?? "?"} (${this.opts.spawn.binary})`, {
      generation,
      args: this.opts.spawn.args,
    });
    let result: InitializeResult;
    try {
      result = (await proc.request("initialize", { client: this.opts.clientInfo }, { timeoutMs: this.opts.initTimeoutMs })) as InitializeResult;
    } catch (err) {
      if (proc.alive) proc.kill("SIGKILL");
      const info = await proc.exited;
      // a sidecar that will not initialize counts against the restart budget like a crash
      if (info.requested) this.crashes.push(Date.now());
      const tail = proc.stderrTail.slice(-10);
      throw new SidecarGoneError(
        `opencode-worker (${this.opts.spawn.binary}) did not initialize: ${(err as Error).message}` +
          (info.requested ? "" : ` [${describeExit(info)}]`) +
          (tail.length ? `\nIts last stderr lines:\n${tail.join("\n")}` : ""),
      );
    }
    if (!result || !Array.isArray(result.tools)) {
      proc.kill("SIGKILL");
      throw new SidecarGoneError(`opencode-worker's initialize reply has no tools list: ${JSON.stringify(result).slice(0, 300)}`);
    }
    if (result.protocol !== undefined && result.protocol !== PROTOCOL_VERSION) {
      this.opts.log("warn", `opencode-worker speaks protocol ${result.protocol}; this plugin was written for ${PROTOCOL_VERSION}`);
    }
    this.initializeResult ??= result;
    return proc;
  }

  private onExit(proc: SidecarProcess, generation: number, info: ExitInfo): void {
    if (info.requested || this.disposed) {
      this.opts.log("info", `opencode-worker pid ${proc.pid ?? "?"} stopped (${describeExit(info)})`);
      return;
    }
    const how = describeExit(info);
    this.crashes.push(Date.now());
    this.lastCrash = { at: Date.now(), how, stderr: proc.stderrTail.slice(-10) };
    this.opts.log("error", `opencode-worker pid ${proc.pid ?? "?"} (generation ${generation}) ${how}; it will be restarted on the next call`, {
      stderr: proc.stderrTail.slice(-10),
    });
  }
}
