// Rendering for a model, without a sidecar: clipping keeps exact byte offsets, statuses are told
// truthfully, errors say what to change.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { clipHeadTail, clipHead, renderJob, renderOutput, errorText, BUDGET_BYTES, BUDGET_LINES } from "../dist/render.js";
import { RpcError, SidecarGoneError } from "../dist/rpc.js";

describe("clipHeadTail", () => {
  test("short text is untouched", () => {
    const c = clipHeadTail("a\nb\n", 100, 10);
    assert.equal(c.clipped, false);
    assert.equal(c.text, "a\nb\n");
  });

  test("head + tail + the exact omitted byte range, cut at line boundaries", () => {
    const lines = Array.from({ length: 10_000 }, (_, i) => `line ${i + 1}`);
    const text = lines.join("\n") + "\n";
    const c = clipHeadTail(text, 4000, 100);
    assert.ok(c.clipped);
    const buf = Buffer.from(text);
    const [head, tail] = c.text.split("\u0000MARK\u0000");
    assert.equal(head, buf.subarray(0, c.omittedFrom).toString());
    assert.equal(tail, buf.subarray(c.omittedTo).toString());
    assert.ok(head.endsWith("\n"));
    assert.ok(buf[c.omittedTo - 1] === 0x0a, "tail starts at a line start");
    assert.ok(Buffer.byteLength(head) + Buffer.byteLength(tail) <= 4000);
    assert.ok(head.split("\n").length + tail.split("\n").length <= 102);
    assert.equal(c.omittedLines, buf.subarray(c.omittedFrom, c.omittedTo).toString().split("\n").length - 1);
  });

  test("a single huge line is cut at a UTF-8 character boundary", () => {
    const text = "é".repeat(50_000); // 2 bytes each, no newline
    const c = clipHeadTail(text, 1001, 10);
    const [head, tail] = c.text.split("\u0000MARK\u0000");
    assert.ok(!head.includes("\uFFFD") && !tail.includes("\uFFFD"), "no broken characters");
    assert.equal(Buffer.byteLength(head.replace(/\n$/, "")), c.omittedFrom);
  });

  test("clipHead reports the bytes it covers", () => {
    const c = clipHead("abc\ndef\nghi\n", 6, 100);
    assert.equal(c.text, "abc\n");
    assert.equal(c.bytes, 4);
    assert.ok(c.clipped);
  });
});

describe("renderJob", () => {
  test("a running job is never described as finished", () => {
    const text = renderJob({ job_id: "j1", status: "running", phase: "execute" }, { waitedMs: 5000 });
    assert.match(text, /status: running/);
    assert.match(text, /NOT finished/);
    assert.match(text, /worker_get_status \{"job_id":"j1"\}/);
    assert.doesNotMatch(text, /status: finished/);
  });

  test("an ended job: status, exit code, reason, message, output", () => {
    const text = renderJob({
      job_id: "j2", status: "failed", phase: "done", exit_code: 2, reason: "exit_code", message: "boom",
      started_at: "2025-01-01T00:00:00Z", ended_at: "2025-01-01T00:00:01.5Z",
      stdout: "out\n", stderr: "err\n", stdout_bytes: 4, stderr_bytes: 4,
    });
    assert.match(text, /job j2 \| status: failed \| exit code: 2 \| reason: exit_code/);
    assert.match(text, /ran: 1\.500 s/);
    assert.match(text, /message: boom/);
    assert.match(text, /--- stdout: 4 B ---\nout\n--- end of stdout ---/);
    assert.doesNotMatch(text, /NOT finished/);
  });

  test("refused egress destinations are listed with what would allow them", () => {
    const text = renderJob({ job_id: "j6", status: "failed", phase: "done", exit_code: 7, reason: "exit_code",
      network_denied: [{ host: "denied.test", port: 443, count: 2 }, { host: "[::1]", port: 80, count: 1 }] });
    assert.match(text, /network denied by the job's egress allowlist: denied\.test:443 \(2x\), \[::1\]:80\./);
    assert.match(text, /network\.allow/);
    assert.doesNotMatch(renderJob({ job_id: "j7", status: "finished", phase: "done", network_denied: [] }), /network denied/);
  });

  test("a job lost with its remote worker names the worker and the reason", () => {
    const text = renderJob({ job_id: "j5", worker: "build-1", status: "failed", reason: "worker_lost", phase: "done",
      message: "worker `build-1` was lost while it had this job: ssh exited" });
    assert.match(text, /reason: worker_lost/);
    assert.match(text, /worker: build-1/);
    assert.match(text, /was lost while it had this job/);
  });

  test("a kept-but-truncated stream says so", () => {
    const text = renderJob({ job_id: "j3", status: "killed", reason: "output_limit", phase: "done", stdout: "x".repeat(100), stdout_bytes: 5000, stdout_truncated: true, stderr: "" });
    assert.match(text, /went over the job's output limit/);
    assert.match(text, /4\.9 KiB written, 100 B kept/);
  });

  test("two huge streams stay within budget", () => {
    const big = Array.from({ length: 50_000 }, (_, i) => `row ${i}`).join("\n");
    const text = renderJob({ job_id: "j4", status: "finished", exit_code: 0, phase: "done", stdout: big, stderr: big });
    assert.ok(Buffer.byteLength(text) <= BUDGET_BYTES + 2048);
    assert.ok(text.split("\n").length <= BUDGET_LINES + 20);
    assert.equal((text.match(/stream_offset/g) ?? []).length, 2);
  });
});

describe("renderOutput", () => {
  test("tells the next offset when more is kept", () => {
    const text = renderOutput({
      job_id: "j5", status: "finished", phase: "done",
      stdout: { data: "abc", encoding: "utf8", offset: 0, next_offset: 3, kept_bytes: 10, total_bytes: 10, truncated: false, eof: false },
      stderr: { data: "", encoding: "utf8", offset: 0, next_offset: 0, kept_bytes: 0, total_bytes: 0, truncated: false, eof: true },
      artifacts: [{ path: "r.txt", size: 5, sha256: "ab", content: "hello", encoding: "utf8" }],
    });
    assert.match(text, /Next page: worker_collect_output \{"job_id":"j5","stream_offset":3/);
    assert.match(text, /- r\.txt \(5 B, sha256 ab\)\n  \| hello/);
  });
});

describe("errorText", () => {
  test("invalid params names the field and the fix", () => {
    const t = errorText("worker_dispatch_job", new RpcError("worker_dispatch_job", -32602, "invalid params", { field: "limits.memory", reason: "expected a size like 512MB" }));
    assert.match(t, /invalid params \(-32602\)/);
    assert.match(t, /field `limits\.memory` — expected a size like 512MB/);
    assert.match(t, /Fix `limits\.memory`/);
  });

  test("limit over maximum says the maximum", () => {
    const t = errorText("worker_dispatch_job", new RpcError("worker_dispatch_job", -32004, "limit over maximum", { field: "limits.timeout", limit: "timeout", requested: 9e9, maximum: 3600000 }));
    assert.match(t, /at most 3600000/);
  });

  test("policy denied quotes the refused part", () => {
    const t = errorText("worker_dispatch_job", new RpcError("worker_dispatch_job", -32002, "policy denied", { command: "echo hi; rm -rf ~", program: "rm", rule: "deny rm", reason: "rm is not allowed", span: [9, 17] }));
    assert.match(t, /`rm -rf ~`/);
    assert.match(t, /Do not retry/);
  });

  test("a dead sidecar: the job is not reported finished", () => {
    const t = errorText("worker_dispatch_job", new SidecarGoneError("worker_dispatch_job: opencode-worker died (killed by SIGKILL) before it answered"), { jobId: "j6" });
    assert.match(t, /NOT reported finished/);
    assert.match(t, /restarted automatically/);
  });
});
