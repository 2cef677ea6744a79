#!/usr/bin/env bash
# Every test of the project, as CI runs it. Usage: tests/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "build (release binary, used by the plugin tests and the README)"
cargo build --release --locked

step "schema files match the Rust types, the plugin's TypeScript types match the schema files"
target/release/opencode-worker schema --check schema
node plugin-shim/scripts/gen-types.mjs --check

step "lint, and no import circle between the files of src/"
cargo clippy --all-targets --locked -- -D warnings
python3 .ci/import-circles.py

step "the official Python MCP SDK, the real client of the mcp tests (target/mcp-venv)"
if ! target/mcp-venv/bin/python -c 'import mcp' 2>/dev/null; then
  python3 -m venv target/mcp-venv
  target/mcp-venv/bin/pip install --quiet mcp==2.3.0
fi

step "Rust unit and integration tests (real binary, real pipes, real processes)"
cargo test --all-targets --locked

step "Dockerfile and its scripts: hadolint, shellcheck"
for tool in hadolint shellcheck; do
  command -v "$tool" >/dev/null || { echo "$tool not found: .ci/run installs it" >&2; exit 1; }
done
hadolint Dockerfile
shellcheck docker/entrypoint.sh docker/healthcheck.sh tests/docker_runtime.sh

step "Docker image's runtime setup outside a container (unprivileged sshd, real ssh client)"
tests/docker_runtime.sh

if [ -f plugin-shim/package.json ]; then
  step "plugin tests (against the release binary, and inside the real OpenCode)"
  (cd plugin-shim && npm ci --no-audit --no-fund && npm test)
fi
