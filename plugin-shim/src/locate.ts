// Where the opencode-worker binary comes from, in order: the plugin option `binary`, the
// environment variable OPENCODE_WORKER_BIN, the PATH, then the repository's own release build
// (target/release/opencode-worker next to this plugin's package, for a source checkout).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const BINARY_NAME = "opencode-worker";

export interface Located {
  path: string;
  /** how it was found: "option", "env", "PATH" or "repo" */
  source: "option" | "env" | "PATH" | "repo";
}

export class BinaryNotFoundError extends Error {
  readonly tried: string[];
  constructor(message: string, tried: string[]) {
    super(message);
    this.name = "BinaryNotFoundError";
    this.tried = tried;
  }
}

function isExecutableFile(p: string): boolean {
  try {
    const st = fs.statSync(p);
    if (!st.isFile()) return false;
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The repository root as seen from this file (dist/locate.js or src/locate.ts → ../..). */
export function repoRootFromHere(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, "..", "..");
}

export function repoBinaryPath(): string {
  return path.join(repoRootFromHere(), "target", "release", BINARY_NAME);
}

export function locateBinary(opts: { option?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Located {
  const env = opts.env ?? process.env;
  const tried: string[] = [];
  const explicit = (value: string, source: "option" | "env", label: string): Located => {
    const p = path.resolve(opts.cwd ?? process.cwd(), value);
    if (isExecutableFile(p)) return { path: p, source };
    throw new BinaryNotFoundError(
      `${label} points to ${p}, which ${fs.existsSync(p) ? "is not an executable file" : "does not exist"}.`,
      [p],
    );
  };
  // An explicit setting that is wrong is an error, never a silent fallback to another binary.
  if (opts.option) return explicit(opts.option, "option", `The plugin option "binary"`);
  if (env.OPENCODE_WORKER_BIN) return explicit(env.OPENCODE_WORKER_BIN, "env", "OPENCODE_WORKER_BIN");
  for (const dir of (env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, BINARY_NAME);
    if (isExecutableFile(p)) return { path: p, source: "PATH" };
  }
  tried.push(`${BINARY_NAME} on PATH`);
  const repo = repoBinaryPath();
  if (isExecutableFile(repo)) return { path: repo, source: "repo" };
  tried.push(repo);
  throw new BinaryNotFoundError(`The ${BINARY_NAME} binary was not found (looked for ${tried.join(", and ")}).`, tried);
}

/** What a user should do when the binary is missing: the one actionable message. */
export function installHint(): string {
  return [
    `Build it from the opencode-worker repository with \`cargo build --release\` (it lands in ${repoBinaryPath()}),`,
    `or put ${BINARY_NAME} on PATH (e.g. \`cargo install --path <repo>\`),`,
    `or point the plugin at it: the "binary" plugin option in opencode.json or OPENCODE_WORKER_BIN=/path/to/${BINARY_NAME};`,
    `then restart OpenCode.`,
  ].join(" ");
}
