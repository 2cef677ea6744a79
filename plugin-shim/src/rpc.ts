// One opencode-worker child process and the JSON-RPC 2.0 client that talks to it: one JSON message
// per line on its stdin (requests) and stdout (replies), many requests in flight at once, matched
// by id. stdin is the child's lifeline: the sidecar exits when it reaches EOF, so it dies with us
// even when OpenCode itself is killed with SIGKILL.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";

/** A JSON-RPC error object returned by the sidecar. */
export class RpcError extends Error {
  readonly code: number;
  readonly data: unknown;
  readonly method: string;
  constructor(method: string, code: number, message: string, data: unknown) {
    super(`${method}: ${message} (JSON-RPC error ${code})`);
    this.name = "RpcError";
    this.method = method;
    this.code = code;
    this.data = data;
  }
}

/** The sidecar went away (or never came up) while a call needed it. */
export class SidecarGoneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SidecarGoneError";
  }
}

/** A call that did not get a reply in time; the sidecar may still act on it. */
export class RpcTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RpcTimeoutError";
  }
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** spawn failure (ENOENT, EACCES, ...), when the process never ran */
  error?: Error;
  /** true when we asked it to go (close/kill) */
  requested: boolean;
}

export interface SpawnSpec {
  binary: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** append the child's stderr to this file instead of piping it to onStderrLine */
  logFile?: string;
  onStderrLine?: (line: string) => void;
  /** protocol noise: a stdout line that is not a reply we are waiting for */
  onStrayLine?: (line: string) => void;
  /** a JSON-RPC notification from the sidecar (`worker_job_event`) */
  onNotification?: (message: any) => void;
}

interface Pending {
  method: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer?: NodeJS.Timeout;
}

const STDERR_TAIL_LINES = 40;

export class SidecarProcess {
  readonly child: ChildProcess;
  readonly pid: number | undefined;
  readonly startedAt = Date.now();
  /** resolves once, when the process is gone (or failed to start) */
  readonly exited: Promise<ExitInfo>;
  /** the last lines the child wrote on stderr (kept even when they are also logged) */
  readonly stderrTail: string[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private exitInfo: ExitInfo | undefined;
  private closing = false;
  private stdoutBuf = "";
  private stderrBuf = "";
  private readonly spec: SpawnSpec;

  constructor(spec: SpawnSpec) {
    this.spec = spec;
    let logFd: number | undefined;
    if (spec.logFile) {
      logFd = fs.openSync(spec.logFile, "a");
    }
    let resolveExit!: (info: ExitInfo) => void;
    this.exited = new Promise((r) => (resolveExit = r));
    // Never "inherit": an orphan holding the caller's stdout would hang pipelines.
    this.child = spawn(spec.binary, spec.args, {
      stdio: ["pipe", "pipe", logFd ?? "pipe"],
      env: spec.env,
      cwd: spec.cwd,
      windowsHide: true,
    });
    if (logFd !== undefined) {
      fs.closeSync(logFd); // the child holds its own copy
    }
    this.pid = this.child.pid;

    const finish = (info: Omit<ExitInfo, "requested">) => {
      if (this.exitInfo) return;
      this.flushStderr();
      this.exitInfo = { ...info, requested: this.closing };
      this.failAll(info);
      resolveExit(this.exitInfo);
    };
    this.child.once("error", (error) => {
      // spawn failure: no "exit" will follow when the process never started
      if (this.child.pid === undefined) finish({ code: null, signal: null, error });
    });
    this.child.once("exit", (code, signal) => {
      // stdout may still hold the last replies: read it to the end before failing what is left
      // (bounded: a stray grandchild holding the pipe must not keep us waiting)
      if (this.child.stdout && !this.child.stdout.readableEnded) {
        const done = () => finish({ code, signal });
        this.child.stdout.once("end", done);
        this.child.stdout.once("error", done);
        this.child.stdout.once("close", done);
        setTimeout(done, 1000).unref?.();
      } else {
        finish({ code, signal });
      }
    });
    // A write to a dead child raises EPIPE on stdin: it must never become an uncaught exception
    // inside OpenCode. The exit handler above reports the death.
    this.child.stdin?.on("error", () => {});
    this.child.stdout?.on("error", () => {});
    this.child.stderr?.on("error", () => {});
    this.child.stdout?.setEncoding("utf8");
    this.child.stdout?.on("data", (chunk: string) => this.onStdout(chunk));
    this.child.stderr?.setEncoding("utf8");
    this.child.stderr?.on("data", (chunk: string) => this.onStderr(chunk));
  }

  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  get exit(): ExitInfo | undefined {
    return this.exitInfo;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Sends one request and resolves with its `result`, or rejects with RpcError (a JSON-RPC error
   * reply), SidecarGoneError (the process died first) or RpcTimeoutError.
   */
  request(method: string, params: unknown, opts: { timeoutMs?: number } = {}): Promise<unknown> {
    if (!this.alive || this.closing) {
      return Promise.reject(new SidecarGoneError(`opencode-worker is not running (${describeExit(this.exitInfo)})`));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const entry: Pending = { method, resolve, reject };
      if (opts.timeoutMs !== undefined && opts.timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          if (this.pending.delete(id)) {
            reject(new RpcTimeoutError(`${method}: no reply from opencode-worker within ${Math.round(opts.timeoutMs! / 1000)} s`));
          }
        }, opts.timeoutMs);
        entry.timer.unref?.();
      }
      this.pending.set(id, entry);
      const line = JSON.stringify({ jsonrpc: "2.0", id, method, params: params ?? {} }) + "\n";
      this.child.stdin?.write(line);
    });
  }

  /**
   * Ends the child: closes its stdin (it then cancels its jobs, removes its session dirs and
   * exits), and SIGKILLs it if it is still there after `graceMs`.
   */
  async close(graceMs = 3000): Promise<ExitInfo> {
    if (!this.alive) return this.exitInfo!;
    this.closing = true;
    this.child.stdin?.end();
    const timer = setTimeout(() => this.kill("SIGKILL"), graceMs);
    timer.unref?.();
    const info = await this.exited;
    clearTimeout(timer);
    return info;
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (!this.alive) return;
    this.closing = true;
    try {
      this.child.kill(signal);
    } catch {
      /* already gone */
    }
  }

  private onStdout(chunk: string): void {
    this.stdoutBuf += chunk;
    let nl: number;
    while ((nl = this.stdoutBuf.indexOf("\n")) >= 0) {
      const line = this.stdoutBuf.slice(0, nl).trim();
      this.stdoutBuf = this.stdoutBuf.slice(nl + 1);
      if (line) this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let msg: any;
    try {
      msg = JSON.parse(line);
    } catch {
      this.spec.onStrayLine?.(line);
      return;
    }
    const messages = Array.isArray(msg) ? msg : [msg];
    for (const m of messages) {
      const id = m?.id;
      const entry = typeof id === "number" ? this.pending.get(id) : undefined;
      if (!entry) {
        if (id === undefined && typeof m?.method === "string" && this.spec.onNotification) {
          this.spec.onNotification(m);
          continue;
        }
        // a notification, or a reply to a call that already timed out
        this.spec.onStrayLine?.(JSON.stringify(m));
        continue;
      }
      this.pending.delete(id);
      if (entry.timer) clearTimeout(entry.timer);
      if (m.error && typeof m.error === "object") {
        entry.reject(new RpcError(entry.method, Number(m.error.code), String(m.error.message ?? "error"), m.error.data));
      } else {
        entry.resolve(m.result);
      }
    }
  }

  private onStderr(chunk: string): void {
    this.stderrBuf += chunk;
    let nl: number;
    while ((nl = this.stderrBuf.indexOf("\n")) >= 0) {
      const line = this.stderrBuf.slice(0, nl).replace(/\r$/, "");
      this.stderrBuf = this.stderrBuf.slice(nl + 1);
      this.pushStderr(line);
    }
    if (this.stderrBuf.length > 64 * 1024) {
      this.pushStderr(this.stderrBuf);
      this.stderrBuf = "";
    }
  }

  private flushStderr(): void {
    if (this.stderrBuf) {
      this.pushStderr(this.stderrBuf);
      this.stderrBuf = "";
    }
  }

  private pushStderr(line: string): void {
    if (!line.trim()) return;
    this.stderrTail.push(line.length > 2000 ? line.slice(0, 2000) + "…" : line);
    if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
    this.spec.onStderrLine?.(line);
  }

  private failAll(info: Omit<ExitInfo, "requested">): void {
    if (this.pending.size === 0) return;
    const how = describeExit({ ...info, requested: this.closing });
    for (const [id, entry] of this.pending) {
      this.pending.delete(id);
      if (entry.timer) clearTimeout(entry.timer);
      entry.reject(
        new SidecarGoneError(
          this.closing
            ? `${entry.method}: opencode-worker was shut down (${how}) before it answered`
            : `${entry.method}: opencode-worker died (${how}) before it answered`,
        ),
      );
    }
  }
}

export function describeExit(info: ExitInfo | undefined): string {
  if (!info) return "still running";
  if (info.error) {
    const code = (info.error as NodeJS.ErrnoException).code;
    return `could not be started: ${code ? code + " " : ""}${info.error.message}`;
  }
  if (info.signal) return `killed by ${info.signal}`;
  return `exited with code ${info.code}`;
}
