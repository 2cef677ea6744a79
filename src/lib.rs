//! opencode-worker: disposable, sandboxed job sessions served as JSON-RPC 2.0 over stdio.
