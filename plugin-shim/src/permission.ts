// The `bash` permission request OpenCode's built-in tool makes, rebuilt without its tree-sitter
// parser: one pattern per simple command (its text as written) and, for "always allow", the
// command's arity prefix followed by ` *` (`git push origin main` → `git push *`). With the same
// names and patterns, a user's `permission.bash` rules (`"git push*": "ask"`, `"rm *": "deny"`)
// match our tool exactly as they match the built-in.
//
// The splitter is deliberately simple (quotes, escapes, `$(...)`, backquotes, subshells, the list
// and pipe operators, reserved words); what it cannot read still ends up in some pattern, and the
// worker's own policy parses the command properly before anything runs.

/** OpenCode's BashArity table (1.18.33): how many words name the command for "always". */
const ARITY: Record<string, number> = {
  cat: 1, cd: 1, chmod: 1, chown: 1, cp: 1, echo: 1, env: 1, export: 1, grep: 1, kill: 1, killall: 1, ln: 1, ls: 1,
  mkdir: 1, mv: 1, ps: 1, pwd: 1, rm: 1, rmdir: 1, sleep: 1, source: 1, tail: 1, touch: 1, unset: 1, which: 1,
  aws: 3, az: 3, bazel: 2, brew: 2, bun: 2, "bun run": 3, "bun x": 3, cargo: 2, "cargo add": 3, "cargo run": 3,
  cdk: 2, cf: 2, cmake: 2, composer: 2, consul: 2, "consul kv": 3, crictl: 2, deno: 2, "deno task": 3, doctl: 3,
  docker: 2, "docker builder": 3, "docker compose": 3, "docker container": 3, "docker image": 3, "docker network": 3,
  "docker volume": 3, eksctl: 2, "eksctl create": 3, firebase: 2, flyctl: 2, gcloud: 3, gh: 3, git: 2,
  "git config": 3, "git remote": 3, "git stash": 3, go: 2, gradle: 2, helm: 2, heroku: 2, hugo: 2, ip: 2,
  "ip addr": 3, "ip link": 3, "ip netns": 3, "ip route": 3, kind: 2, "kind create": 3, kubectl: 2,
  "kubectl kustomize": 3, "kubectl rollout": 3, kustomize: 2, make: 2, mc: 2, "mc admin": 3, minikube: 2,
  mongosh: 2, mysql: 2, mvn: 2, ng: 2, npm: 2, "npm exec": 3, "npm init": 3, "npm run": 3, "npm view": 3, nvm: 2,
  nx: 2, openssl: 2, "openssl req": 3, "openssl x509": 3, pip: 2, pipenv: 2, pnpm: 2, "pnpm dlx": 3,
  "pnpm exec": 3, "pnpm run": 3, poetry: 2, podman: 2, "podman container": 3, "podman image": 3, psql: 2,
  pulumi: 2, "pulumi stack": 3, pyenv: 2, python: 2, rake: 2, rbenv: 2, "redis-cli": 2, rustup: 2,
  serverless: 2, sfdx: 3, skaffold: 2, sls: 2, sst: 2, swift: 2, systemctl: 2, terraform: 2,
  "terraform workspace": 3, tmux: 2, turbo: 2, ufw: 2, vault: 2, "vault auth": 3, "vault kv": 3, vercel: 2,
  volta: 2, wp: 2, yarn: 2, "yarn dlx": 3, "yarn run": 3,
};

/** Commands the built-in leaves out of the `bash` request (they only move the shell). */
const DIRECTORY_ONLY = new Set(["cd", "chdir", "popd", "pushd"]);

const RESERVED = new Set(["if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "in", "case", "esac", "function", "!", "{", "}", "time"]);

export function arityPrefix(words: string[]): string[] {
  for (let n = words.length; n > 0; n--) {
    const arity = ARITY[words.slice(0, n).join(" ")];
    if (arity !== undefined) return words.slice(0, arity);
  }
  return words.slice(0, 1);
}

/** Top-level pieces of a shell text, cut at `;` `&` `|` `&&` `||` newlines and parentheses. */
function splitList(text: string, nested: string[]): string[] {
  const out: string[] = [];
  let cur = "";
  let i = 0;
  const flush = () => {
    if (cur.trim()) out.push(cur.trim());
    cur = "";
  };
  // the body of `$(...)` / `(...)` / backquotes, from just after the opener
  const until = (close: string): string => {
    let depth = 1;
    let body = "";
    while (i < text.length) {
      const c = text[i]!;
      if (c === "\\") {
        body += text.slice(i, i + 2);
        i += 2;
        continue;
      }
      if (c === "'" && close !== "`") {
        const end = text.indexOf("'", i + 1);
        const stop = end < 0 ? text.length : end + 1;
        body += text.slice(i, stop);
        i = stop;
        continue;
      }
      if (close === ")" && c === "(") depth++;
      if (c === close && --depth === 0) {
        i++;
        return body;
      }
      body += c;
      i++;
    }
    return body;
  };
  while (i < text.length) {
    const c = text[i]!;
    if (c === "\\") {
      cur += text.slice(i, i + 2);
      i += 2;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      const stop = end < 0 ? text.length : end + 1;
      cur += text.slice(i, stop);
      i = stop;
    } else if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') {
        if (text[j] === "\\") j++;
        else if (text[j] === "$" && text[j + 1] === "(") {
          // a substitution inside double quotes runs a command too
          const save = i;
          i = j + 2;
          nested.push(until(")"));
          j = i - 1;
          i = save;
        }
        j++;
      }
      cur += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === "$" && text[i + 1] === "(" && text[i + 2] !== "(") {
      const start = i;
      i += 2;
      nested.push(until(")"));
      cur += text.slice(start, i);
    } else if (c === "`") {
      const start = i;
      i++;
      nested.push(until("`"));
      cur += text.slice(start, i);
    } else if (c === "(" || c === ")") {
      // a subshell: its commands are top-level commands of their own
      flush();
      i++;
    } else if (c === ";" || c === "&" || c === "|" || c === "\n") {
      // `>&2`, `&>f` and `|&` are redirections, not list operators
      if (c === "&" && (cur.endsWith(">") || cur.endsWith("<") || text[i + 1] === ">")) {
        cur += c;
        i++;
        continue;
      }
      flush();
      i++;
      while (i < text.length && (text[i] === "&" || text[i] === "|" || text[i] === ";")) i++;
    } else if (c === "#" && (cur === "" || /\s$/.test(cur))) {
      while (i < text.length && text[i] !== "\n") i++;
    } else {
      cur += c;
      i++;
    }
  }
  flush();
  return out;
}

/** The words of a simple command with quotes removed; assignments and redirections left out. */
function words(text: string): string[] {
  const out: string[] = [];
  const re = /(?:[^\s"'\\]|\\.|"(?:[^"\\]|\\.)*"|'[^']*')+/g;
  for (const m of text.matchAll(re)) {
    const raw = m[0];
    if (out.length === 0 && /^[A-Za-z_][A-Za-z0-9_]*=/.test(raw)) continue;
    if (/^\d*[<>]/.test(raw) || /^&>/.test(raw)) continue;
    out.push(raw.replace(/\\(.)/g, "$1").replace(/"((?:[^"\\]|\\.)*)"|'([^']*)'/g, (_, a, b) => a ?? b ?? ""));
  }
  return out;
}

/** A simple command's text without a leading reserved word (`then rm x` → `rm x`). */
function stripReserved(text: string): string {
  let t = text.trim();
  for (;;) {
    const m = /^(\S+)\s+/.exec(t);
    if (!m || !RESERVED.has(m[1]!)) return RESERVED.has(t) ? "" : t;
    t = t.slice(m[0].length);
  }
}

export interface BashPermission {
  patterns: string[];
  always: string[];
}

/** The `bash` permission request for a command, as OpenCode's built-in tool builds it. */
export function bashPermission(command: string): BashPermission {
  const patterns = new Set<string>();
  const always = new Set<string>();
  const queue = [command];
  for (let depth = 0; queue.length && depth < 64; depth++) {
    const nested: string[] = [];
    for (const text of queue.splice(0)) {
      for (const piece of splitList(text, nested)) {
        const cmd = stripReserved(piece);
        const w = words(cmd);
        if (!cmd || w.length === 0) continue;
        if (DIRECTORY_ONLY.has(w[0]!)) continue;
        patterns.add(cmd);
        always.add(arityPrefix(w).join(" ") + " *");
      }
    }
    queue.push(...nested);
  }
  return { patterns: [...patterns], always: [...always] };
}
