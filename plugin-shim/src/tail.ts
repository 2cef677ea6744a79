// Output of the sandboxed `bash` the way OpenCode's built-in shell tool (1.18.33) gives it to the
// model: the TAIL of the combined output within the line and byte budget (2000 lines / 50 KiB,
// OpenCode's `tool_output` defaults), and when anything was cut the whole output saved to a file
// in OpenCode's own tool-output directory, named in a header, so the model reads the rest with
// Read/Grep as it would after the built-in (OpenCode cleans `tool_*` files there after 7 days).
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const MAX_LINES = 2000;
export const MAX_BYTES = 51200;
/** what the built-in keeps for the live view (`metadata.output`) */
export const LIVE_CHARS = 30_000;

/** OpenCode's data dir (`$XDG_DATA_HOME/opencode`), where its tool-output files live. */
export function toolOutputDir(env: NodeJS.ProcessEnv = process.env): string {
  const data = env.XDG_DATA_HOME || path.join(env.HOME || os.homedir(), ".local", "share");
  return path.join(data, "opencode", "tool-output");
}

/** The last lines of `text` within maxLines / maxBytes; a single oversized line keeps its end. */
export function keepTail(text: string, maxLines: number, maxBytes: number): { text: string; cut: boolean } {
  const lines = text.split("\n");
  if (lines.length <= maxLines && Buffer.byteLength(text, "utf8") <= maxBytes) return { text, cut: false };
  const kept: string[] = [];
  let bytes = 0;
  for (let i = lines.length - 1; i >= 0 && kept.length < maxLines; i--) {
    const size = Buffer.byteLength(lines[i]!, "utf8") + (kept.length > 0 ? 1 : 0);
    if (bytes + size > maxBytes) {
      if (kept.length === 0) {
        const buf = Buffer.from(lines[i]!, "utf8");
        let from = Math.max(0, buf.length - maxBytes);
        while (from < buf.length && (buf[from]! & 0xc0) === 0x80) from++;
        kept.unshift(buf.subarray(from).toString("utf8"));
      }
      break;
    }
    kept.unshift(lines[i]!);
    bytes += size;
  }
  return { text: kept.join("\n"), cut: true };
}

/** The end of the output for the live view, as the built-in clips it. */
export function liveTail(text: string): string {
  return text.length <= LIVE_CHARS ? text : `...\n\n${text.slice(-LIVE_CHARS)}`;
}

/** Writes the whole output where OpenCode keeps truncated tool output; returns the path. */
export function saveFullOutput(text: string, dir = toolOutputDir()): string {
  fs.mkdirSync(dir, { recursive: true });
  // OpenCode names these `tool_<ascending id>` and removes old `tool_*` files itself
  const file = path.join(dir, `tool_${Date.now().toString(16).padStart(12, "0")}${randomBytes(7).toString("hex")}`);
  fs.writeFileSync(file, text, { mode: 0o600 });
  return file;
}

/**
 * The model's text: the tail, a header naming the saved file when something was cut, and the
 * `<shell_metadata>` notes. The whole text stays within maxLines / maxBytes, so OpenCode's own
 * generic truncation of plugin output (which keeps the head) never cuts it again.
 */
export function modelOutput(
  full: string,
  notes: string[],
  opts: { maxLines?: number; maxBytes?: number; save?: (text: string) => string } = {},
): { output: string; truncated: boolean; outputPath?: string } {
  const maxLines = opts.maxLines ?? MAX_LINES;
  const maxBytes = opts.maxBytes ?? MAX_BYTES;
  const trailer = notes.length ? `\n\n<shell_metadata>\n${notes.join("\n")}\n</shell_metadata>` : "";
  // room for the header (with a long path) and the notes
  const header = (p: string) => `...output truncated...\n\nFull output saved to: ${p}\n\n`;
  const reserveBytes = Buffer.byteLength(header("x".repeat(4096)) + trailer, "utf8");
  const reserveLines = header("").split("\n").length + trailer.split("\n").length;
  const tail = keepTail(full, Math.max(1, maxLines - reserveLines), Math.max(1024, maxBytes - reserveBytes));
  if (!tail.cut) return { output: (full || "(no output)") + trailer, truncated: false };
  const outputPath = (opts.save ?? saveFullOutput)(full);
  return { output: header(outputPath) + tail.text + trailer, truncated: true, outputPath };
}
