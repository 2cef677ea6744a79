// Turns sidecar replies into text a model reads: the status first, then a head and a tail of each
// output stream within OpenCode's usual tool-output budget (2000 lines / 50 KiB), and exact
// instructions for paging the rest with worker_collect_output. Errors become text that says what to
// change.
import { RpcError, RpcTimeoutError, SidecarGoneError } from "./rpc.js";

/** OpenCode truncates tool output beyond 2000 lines / 50 KiB; stay below with room for notes. */
export const BUDGET_BYTES = 48 * 1024;
export const BUDGET_LINES = 1900;
/** what we suggest as max_bytes for a page */
export const PAGE_BYTES = 32 * 1024;

const TERMINAL = new Set(["finished", "failed", "timeout", "cancelled", "killed"]);

export function isTerminal(status: unknown): boolean {
  return typeof status === "string" && TERMINAL.has(status);
}

// ---------------------------------------------------------------------------------------------
// clipping

export interface Clipped {
  text: string;
  /** true when something in the middle was left out */
  clipped: boolean;
  /** byte range [from, to) of the input that was left out, relative to the input's start */
  omittedFrom: number;
  omittedTo: number;
  omittedLines: number;
}

function isContinuation(b: number | undefined): boolean {
  return b !== undefined && (b & 0xc0) === 0x80;
}

function countNewlines(buf: Buffer, from = 0, to = buf.length): number {
  let n = 0;
  for (let i = from; i < to; i++) if (buf[i] === 0x0a) n++;
  return n;
}

/** Where to cut a head of at most maxBytes / maxLines: after a newline when possible. */
function headCut(buf: Buffer, maxBytes: number, maxLines: number): number {
  const limit = Math.min(buf.length, maxBytes);
  let lines = 0;
  let lastNl = -1;
  for (let i = 0; i < limit; i++) {
    if (buf[i] === 0x0a) {
      lines++;
      lastNl = i;
      if (lines >= maxLines) return i + 1;
    }
  }
  if (limit === buf.length) return limit;
  if (lastNl >= limit / 2) return lastNl + 1;
  let cut = limit;
  while (cut > 0 && isContinuation(buf[cut])) cut--;
  return cut;
}

/** Where a tail of at most maxBytes / maxLines starts: at a line start when possible. */
function tailCut(buf: Buffer, maxBytes: number, maxLines: number): number {
  const limit = Math.max(0, buf.length - maxBytes);
  let lines = 0;
  let firstNl = -1;
  // a trailing newline does not open a line of its own
  const end = buf[buf.length - 1] === 0x0a ? buf.length - 1 : buf.length;
  for (let i = end - 1; i >= limit; i--) {
    if (buf[i] === 0x0a) {
      lines++;
      firstNl = i;
      if (lines >= maxLines) return i + 1;
    }
  }
  if (limit === 0) return 0;
  if (firstNl >= 0 && firstNl + 1 <= buf.length - (buf.length - limit) / 2) return firstNl + 1;
  let cut = limit;
  while (cut < buf.length && isContinuation(buf[cut])) cut++;
  return cut;
}

/** Head and tail of `text` within maxBytes / maxLines, the middle replaced by a marker line. */
export function clipHeadTail(text: string, maxBytes: number, maxLines: number, headShare = 0.4): Clipped {
  const buf = Buffer.from(text, "utf8");
  const lines = countNewlines(buf) + (buf.length && buf[buf.length - 1] !== 0x0a ? 1 : 0);
  if (buf.length <= maxBytes && lines <= maxLines) {
    return { text, clipped: false, omittedFrom: buf.length, omittedTo: buf.length, omittedLines: 0 };
  }
  const headBytes = Math.max(1, Math.floor(maxBytes * headShare));
  const headLines = Math.max(1, Math.floor(maxLines * headShare));
  const h = headCut(buf, headBytes, headLines);
  const t = Math.max(h, tailCut(buf, Math.max(1, maxBytes - headBytes), Math.max(1, maxLines - headLines - 1)));
  const omittedLines = countNewlines(buf, h, t);
  return {
    text: buf.subarray(0, h).toString("utf8") + (h > 0 && buf[h - 1] !== 0x0a ? "\n" : "") + "\u0000MARK\u0000" + buf.subarray(t).toString("utf8"),
    clipped: t > h,
    omittedFrom: h,
    omittedTo: t,
    omittedLines,
  };
}

/** Only a head (for sequential pages): returns the text and how many bytes of input it covers. */
export function clipHead(text: string, maxBytes: number, maxLines: number): { text: string; bytes: number; clipped: boolean } {
  const buf = Buffer.from(text, "utf8");
  const cut = headCut(buf, maxBytes, maxLines);
  return { text: buf.subarray(0, cut).toString("utf8"), bytes: cut, clipped: cut < buf.length };
}

// ---------------------------------------------------------------------------------------------
// helpers

/** Splits `budget` between items needing `needs`: small ones get what they need, the rest share. */
export function share(needs: number[], budget: number): number[] {
  const out = needs.map(() => 0);
  let left = budget;
  let open = needs.map((_, i) => i);
  while (open.length) {
    const each = Math.floor(left / open.length);
    const small = open.filter((i) => needs[i]! <= each);
    if (!small.length) {
      for (const i of open) out[i] = each;
      break;
    }
    for (const i of small) {
      out[i] = needs[i]!;
      left -= needs[i]!;
    }
    open = open.filter((i) => !small.includes(i));
  }
  return out.map((v) => Math.max(v, 1));
}

function lineCount(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) n++;
  return n + (text.length && !text.endsWith("\n") ? 1 : 0);
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function duration(job: any): string | undefined {
  const s = Date.parse(job?.started_at ?? "");
  const e = Date.parse(job?.ended_at ?? "");
  if (Number.isFinite(s) && Number.isFinite(e)) return `${((e - s) / 1000).toFixed(3)} s`;
  return undefined;
}

/** A value for prose: strings as they are, anything else as JSON. */
function plain(v: unknown): string {
  return typeof v === "string" ? v : json(v);
}

function json(v: unknown): string {
  return JSON.stringify(v);
}

function fenced(text: string): string {
  const body = text.endsWith("\n") ? text.slice(0, -1) : text;
  return body;
}

// ---------------------------------------------------------------------------------------------
// jobs

export function statusLine(job: any): string {
  const parts = [`job ${job?.job_id ?? "?"}`, `status: ${job?.status ?? "unknown"}`];
  if (num(job?.exit_code) !== undefined) parts.push(`exit code: ${job.exit_code}`);
  if (job?.signal !== undefined && job?.signal !== null) parts.push(`signal: ${job.signal}`);
  if (str(job?.reason)) parts.push(`reason: ${job.reason}`);
  return parts.join(" | ");
}

export function renderJob(job: any, opts: { waitedMs?: number } = {}): string {
  const out: string[] = [statusLine(job)];
  const meta: string[] = [];
  if (str(job?.phase)) meta.push(`phase: ${job.phase}`);
  const d = duration(job);
  if (d) meta.push(`ran: ${d}`);
  if (str(job?.worker)) meta.push(`worker: ${job.worker}`);
  if (str(job?.session_id)) meta.push(`session: ${job.session_id}`);
  if (meta.length) out.push(meta.join(" | "));
  if (str(job?.message)) out.push(`message: ${job.message}`);
  const denied = renderDenied(job?.network_denied);
  if (denied) out.push(denied);
  const id = job?.job_id;
  if (!isTerminal(job?.status)) {
    out.push(
      `The job has NOT finished yet (status ${job?.status ?? "unknown"}` +
        (opts.waitedMs !== undefined ? `, after waiting ${(opts.waitedMs / 1000).toFixed(1)} s` : "") +
        `). Poll it with worker_get_status ${json({ job_id: id })}, read its output so far with ` +
        `worker_collect_output ${json({ job_id: id })}, or stop it with worker_cancel_job ${json({ job_id: id })}.`,
    );
  }
  const streams = (["stdout", "stderr"] as const).filter((s) => typeof job?.[s] === "string");
  // split the budget: a small stream keeps all of its text, the other gets the rest
  const bytes = share(
    streams.map((s) => Buffer.byteLength(job[s] as string)),
    BUDGET_BYTES - 2048,
  );
  const lines = share(
    streams.map((s) => lineCount(job[s] as string)),
    BUDGET_LINES - 40,
  );
  streams.forEach((s, i) => {
    out.push(...renderStream(s, job, bytes[i]!, lines[i]!));
  });
  for (const s of ["stdout", "stderr"] as const) {
    if (typeof job?.[s] !== "string" && num(job?.[`${s}_bytes`]) !== undefined) {
      out.push(`${s}: ${fmtBytes(job[`${s}_bytes`])} (read it with worker_collect_output ${json({ job_id: id })})`);
    }
  }
  out.push(...renderArtifacts(job?.artifacts, id, 8 * 1024));
  const m = renderMetrics(job?.metrics);
  if (m) out.push(m);
  return out.join("\n");
}

/** Destinations the job's egress allowlist refused: the model can tell the user what to allow. */
export function renderDenied(denied: unknown): string | undefined {
  if (!Array.isArray(denied) || denied.length === 0) return undefined;
  const items = denied
    .filter((d) => str(d?.host) && num(d?.port) !== undefined)
    .map((d) => `${d.host}:${d.port}` + (num(d.count) && d.count > 1 ? ` (${d.count}x)` : ""));
  if (items.length === 0) return undefined;
  return (
    `network denied by the job's egress allowlist: ${items.join(", ")}. ` +
    `If the job needs them, ask the user to allow them (the job's network.allow, or a set in the worker's network.allowlists).`
  );
}

/** One line: where the time went and what the job used. */
export function renderMetrics(m: any): string | undefined {
  if (!m || typeof m !== "object") return undefined;
  const ms = (v: unknown) => (num(v) !== undefined ? `${(v as number).toFixed(1)} ms` : undefined);
  const bits: string[] = [];
  if (ms(m.total_ms)) bits.push(`total ${ms(m.total_ms)}`);
  for (const k of ["queue", "prepare", "spawn", "execute", "collect", "destroy"]) {
    if (ms(m[`${k}_ms`])) bits.push(`${k} ${ms(m[`${k}_ms`])}`);
  }
  if (ms(m.cpu_user_ms)) bits.push(`cpu user ${ms(m.cpu_user_ms)}`);
  if (ms(m.cpu_system_ms)) bits.push(`cpu sys ${ms(m.cpu_system_ms)}`);
  if (num(m.max_rss_bytes) !== undefined) bits.push(`max rss ${fmtBytes(m.max_rss_bytes)}`);
  if (m.limits && typeof m.limits === "object") bits.push(`limits ${json(m.limits)}`);
  return bits.length ? `metrics: ${bits.join(", ")}` : undefined;
}

function renderStream(name: "stdout" | "stderr", job: any, maxBytes: number, maxLines: number): string[] {
  const data = job[name] as string;
  const encoding = str(job[`${name}_encoding`]);
  const stored = Buffer.byteLength(data);
  const total = num(job[`${name}_bytes`]);
  const truncated = job[`${name}_truncated`] === true;
  const id = job.job_id;
  const lines: string[] = [];
  const sizeNote = total !== undefined && total !== stored ? `${fmtBytes(total)} written, ${fmtBytes(stored)} kept` : fmtBytes(stored);
  if (stored === 0) {
    lines.push(`--- ${name}: (empty) ---`);
  } else if (encoding === "base64") {
    lines.push(`--- ${name}: ${sizeNote}, binary (base64) ---`);
    const c = clipHead(data, Math.min(maxBytes, 4096), 10);
    lines.push(c.text + (c.clipped ? `\n… (binary output; page it with worker_collect_output ${json({ job_id: id })})` : ""));
  } else {
    const c = clipHeadTail(data, maxBytes, maxLines);
    lines.push(`--- ${name}: ${sizeNote} ---`);
    if (c.clipped) {
      const marker =
        `… [${fmtBytes(c.omittedTo - c.omittedFrom)}, ${c.omittedLines} lines omitted: ${name} bytes ${c.omittedFrom}-${c.omittedTo}. ` +
        `Read them with worker_collect_output ${json({ job_id: id, stream_offset: c.omittedFrom, max_bytes: PAGE_BYTES })} ` +
        `and continue from the returned next_offset] …`;
      lines.push(fenced(c.text).replace("\u0000MARK\u0000", marker + "\n"));
    } else {
      lines.push(fenced(c.text));
    }
    lines.push(`--- end of ${name} ---`);
  }
  if (truncated) {
    lines.push(
      `note: ${name} went over the job's output limit; only the first ${fmtBytes(stored)} were kept` +
        (total !== undefined ? ` of ${fmtBytes(total)}` : "") +
        `. Re-run with a larger limits.output (bytes per stream) or write large results to $OUTPUT_DIR as artifacts.`,
    );
  }
  return lines;
}

function renderArtifacts(artifacts: unknown, jobId: unknown, maxContentBytes: number): string[] {
  if (!Array.isArray(artifacts) || artifacts.length === 0) return [];
  const out = [`artifacts (${artifacts.length}):`];
  let budget = maxContentBytes;
  for (const a of artifacts.slice(0, 200)) {
    const head = `- ${a?.path ?? "?"} (${num(a?.size) !== undefined ? fmtBytes(a.size) : "? B"}${str(a?.sha256) ? `, sha256 ${a.sha256}` : ""})`;
    out.push(head);
    if (typeof a?.content === "string") {
      if (a.encoding === "base64") {
        out.push(`  (binary content, ${a.content.length} base64 characters, not shown)`);
      } else if (budget > 0) {
        const c = clipHead(a.content, budget, 400);
        budget -= c.bytes;
        out.push(c.text.replace(/\n$/, "").split("\n").map((l) => "  | " + l).join("\n"));
        if (c.clipped) out.push(`  … (content clipped; read it whole with worker_collect_output ${json({ job_id: jobId, include_artifacts: true })})`);
      } else {
        out.push(`  (content not shown: output budget used up)`);
      }
    }
  }
  if (artifacts.length > 200) out.push(`… and ${artifacts.length - 200} more`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// collect_output pages

export function renderOutput(o: any): string {
  const id = o?.job_id;
  const out: string[] = [`job ${id ?? "?"} | status: ${o?.status ?? "unknown"}${str(o?.phase) ? ` | phase: ${o.phase}` : ""}`];
  if (!isTerminal(o?.status)) out.push(`The job has NOT finished yet: this is its output so far.`);
  const streams = (["stdout", "stderr"] as const).filter((s) => o?.[s] && typeof o[s] === "object");
  const artifactBudget = Array.isArray(o?.artifacts) && o.artifacts.length ? 16 * 1024 : 0;
  const per = Math.floor((BUDGET_BYTES - 2048 - artifactBudget) / Math.max(1, streams.length));
  const lineBudget = Math.floor((BUDGET_LINES - 60) / Math.max(1, streams.length));
  const nextPages: Array<{ stream: string; offset: number }> = [];
  for (const s of streams) {
    const page = o[s];
    const data = typeof page.data === "string" ? page.data : "";
    const offset = num(page.offset) ?? 0;
    const total = num(page.total_bytes);
    let next = num(page.next_offset) ?? offset + Buffer.byteLength(data);
    const keptBytes = num(page.kept_bytes);
    const head =
      `--- ${s}: bytes ${offset}-${next}` +
      (keptBytes !== undefined ? ` of ${keptBytes} kept` : "") +
      (total !== undefined && total !== keptBytes ? ` (${total} written)` : "") +
      (page.eof ? ", end" : "") +
      (page.truncated ? "; the output limit was hit: bytes past the kept ones are lost" : "") +
      ` ---`;
    if (page.encoding === "base64") {
      out.push(head + " binary (base64):");
      const c = clipHead(data, Math.min(per, 8192), 50);
      out.push(c.text);
    } else if (data.length === 0) {
      out.push(head, "(no data in this range)");
    } else {
      const c = clipHead(data, per, lineBudget);
      if (c.clipped) {
        next = offset + c.bytes;
        out.push(`--- ${s}: bytes ${offset}-${next} (this page was clipped to fit; ${keptBytes ?? total ?? "?"} bytes kept in all) ---`);
      } else {
        out.push(head);
      }
      out.push(fenced(c.text));
      out.push(`--- end of ${s} page ---`);
    }
    const kept = num(page.kept_bytes) ?? total;
    const more = kept !== undefined ? next < kept : page.eof === false;
    if (more) nextPages.push({ stream: s, offset: next });
  }
  if (nextPages.length) {
    const o2 = Math.min(...nextPages.map((p) => p.offset));
    out.push(
      `More output: ${nextPages.map((p) => `${p.stream} from byte ${p.offset}`).join(", ")}. ` +
        `Next page: worker_collect_output ${json({ job_id: id, stream_offset: o2, max_bytes: PAGE_BYTES })}` +
        (nextPages.length > 1 && nextPages[0]!.offset !== nextPages[1]!.offset ? " (stream_offset applies to both streams)" : "") +
        ".",
    );
  }
  out.push(...renderArtifacts(o?.artifacts, id, artifactBudget || 8 * 1024));
  const m = renderMetrics(o?.metrics);
  if (m) out.push(m);
  return out.join("\n");
}

/** Anything else (sessions list, metrics): pretty JSON, clipped to the budget. */
export function renderGeneric(method: string, result: unknown): string {
  const text = JSON.stringify(result, null, 2) ?? "null";
  const c = clipHeadTail(text, BUDGET_BYTES - 512, BUDGET_LINES - 10, 0.7);
  if (!c.clipped) return text;
  return c.text.replace("\u0000MARK\u0000", `… [${c.omittedLines} lines of the ${method} result omitted] …\n`);
}

// ---------------------------------------------------------------------------------------------
// errors

const CODE_NAMES: Record<number, string> = {
  [-32700]: "parse error",
  [-32600]: "invalid request",
  [-32601]: "method not found",
  [-32602]: "invalid params",
  [-32603]: "internal error",
  [-32001]: "unknown job",
  [-32002]: "policy denied",
  [-32003]: "busy",
  [-32004]: "limit over maximum",
  [-32005]: "duplicate job id",
  [-32006]: "invalid files",
};

/** What the model should change, per error code, from the error's `data`. */
export function errorAdvice(err: RpcError, ctx: { lostGeneration?: number } = {}): string {
  const d: any = err.data && typeof err.data === "object" ? err.data : {};
  switch (err.code) {
    case -32602:
      return (
        `Invalid arguments${d.field ? `: field \`${d.field}\`` : ""}${d.reason ? ` — ${d.reason}` : ""}. ` +
        `Fix ${d.field ? `\`${d.field}\`` : "the arguments"} to match the tool's parameter schema and call again.`
      );
    case -32001:
      return ctx.lostGeneration !== undefined
        ? `Unknown job ${json(d.job_id ?? "")}: it belonged to an opencode-worker process that died; its state and output are lost (it was NOT reported finished). Dispatch it again if it is still needed.`
        : `Unknown job ${json(d.job_id ?? "")}: no such job (never dispatched, or it expired from retention). List known jobs with worker_list_sessions.`;
    case -32002: {
      const bits = [d.reason && `reason: ${d.reason}`, d.rule && `rule: ${d.rule}`, d.program && `program: ${d.program}`];
      let where = "";
      if (Array.isArray(d.span) && typeof d.command === "string") {
        const [a, b] = d.span as [number, number];
        where = ` (at ${a}-${b}: \`${d.command.slice(a, b)}\`)`;
      }
      return `The command was refused by the worker's policy${where}; ${bits.filter(Boolean).join(", ")}. Do not retry the same command: use an allowed program or ask the user.`;
    }
    case -32003:
      return `The worker is at capacity (active ${d.active ?? "?"}, queued ${d.queued ?? "?"}, limit ${d.limit ?? "?"}). Wait for running jobs to end (worker_get_status) or cancel some (worker_cancel_job), then retry.`;
    case -32004:
      return `\`${d.field ?? d.limit ?? "a limit"}\` asks for ${plain(d.requested)} but this worker's maximum is ${plain(d.maximum)}. Ask for at most ${plain(d.maximum)} (or leave it out to get the default).`;
    case -32005:
      return `A job with id ${json(d.job_id ?? "")} already exists. Choose a different job_id, or leave job_id out to get a generated one.`;
    case -32006:
      return `Invalid files${d.path ? ` entry ${json(d.path)}` : ""}${d.reason ? ` — ${d.reason}` : ""}. Use relative paths inside the work dir (no absolute paths, no "..") within the size cap.`;
    case -32601:
      return `This opencode-worker does not know the method${d.method ? ` ${json(d.method)}` : ""}: the plugin and the binary are different versions. Update one of them.`;
    case -32603:
      return `opencode-worker hit an internal error${d.reason ? ` (${d.reason})` : ""}. This is a bug in opencode-worker, not in your arguments; retrying may work.`;
    default:
      return d.reason ? String(d.reason) : "";
  }
}

export function errorText(tool: string, err: unknown, ctx: { lostGeneration?: number; jobId?: string } = {}): string {
  if (err instanceof RpcError) {
    const name = CODE_NAMES[err.code] ?? "error";
    const msg = err.message.replace(/^[^:]*: /, "").replace(/ \(JSON-RPC error -?\d+\)$/, "");
    const data = err.data === undefined ? "" : `\ndetails: ${json(err.data)}`;
    return `${tool} failed: ${name} (${err.code}): ${msg}\n${errorAdvice(err, ctx)}${data}`;
  }
  if (err instanceof SidecarGoneError) {
    return (
      `${tool} failed: ${err.message}.` +
      (ctx.jobId
        ? ` The state of job ${json(ctx.jobId)} is unknown: it was NOT reported finished, and its output is lost with that worker process. Dispatch it again if it is still needed.`
        : "") +
      (/not restarting/.test(err.message) ? "" : ` The worker is restarted automatically on the next call.`)
    );
  }
  if (err instanceof RpcTimeoutError) {
    return `${tool} failed: ${err.message}.` + (ctx.jobId ? ` Check job ${json(ctx.jobId)} with worker_get_status before assuming anything about it.` : "");
  }
  return `${tool} failed: ${(err as Error)?.message ?? String(err)}`;
}
