# syntax=docker/dockerfile:1
#
# A remote worker host: sshd, running as the unprivileged user `worker` on port 2222, whose one
# command is `opencode-worker serve`. The local sidecar connects with
#   ssh -T -p 2222 worker@HOST opencode-worker serve
# Build, run, add a key, connect: docs/docker.md. Needs BuildKit (the default builder since
# Docker 23). No Docker engine runs in this project's CI: tests/run-all.sh lints this file with
# hadolint, and tests/docker_runtime.sh runs the same docker/ files outside a container.

# ---- build ------------------------------------------------------------------------------------
# The toolchain CI uses, on the runtime's Debian release (same glibc).
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# benches/ only because Cargo.toml names its targets; release builds do not compile them.
COPY benches ./benches
COPY src ./src
# Cache mounts keep the crate registry and the target dir from one build to the next, so a
# source change recompiles this crate only. The binary is copied out: a cache mount is not part
# of the image.
RUN --mount=type=cache,id=opencode-worker-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=opencode-worker-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=opencode-worker-target,target=/src/target,sharing=locked \
    cargo build --release --locked \
    && install -D -m 0755 target/release/opencode-worker /out/opencode-worker

# ---- runtime ----------------------------------------------------------------------------------
# The latest bookworm point release at the time of writing; pin its digest too when you publish
# (`docker buildx imagetools inspect debian:12.15-slim`).
FROM debian:12.15-slim

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="opencode-worker" \
      org.opencontainers.image.description="Remote opencode-worker host: sandboxed job runner speaking JSON-RPC 2.0 over ssh (port 2222), as an unprivileged sshd whose only command is opencode-worker serve" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/debian:12.15-slim" \
      org.opencontainers.image.documentation="docs/docker.md"

# What jobs get: the base system's /bin/sh (dash), coreutils, grep, sed, tar, gzip. Anything a
# coding agent's jobs need beyond that (git, python3, make, a C compiler, node, a Rust toolchain)
# goes into EXTRA_PACKAGES, e.g.
#   docker build --build-arg EXTRA_PACKAGES="git python3 build-essential" .
# or into an image built FROM this one (USER root, apt-get install ..., then USER 10001:10001).
# A language toolchain installed under a user's home must be readable by uid 10001: jobs run
# as that user, see the whole file system read-only and write only their session dir.
ARG EXTRA_PACKAGES=""
ARG WORKER_UID=10001
ARG WORKER_GID=10001

# hadolint ignore=DL3008
RUN apt-get update \
    # Versions unpinned on purpose: Debian replaces a package version in the archive with each
    # security update, so exact pins break rebuilds; the base tag pins the release.
    # EXTRA_PACKAGES is a list of package names: it must be split into words.
    && apt-get install -y --no-install-recommends openssh-server tini ca-certificates ${EXTRA_PACKAGES} \
    && rm -rf /var/lib/apt/lists/* \
    # The package's host keys would be the same in every container made from this image; the
    # entrypoint makes one per volume instead.
    && rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub \
    # The login shell must run commands (sshd runs the forced command with `$SHELL -c`); the
    # password `*` is "none, but not locked" (sshd without PAM refuses a locked account).
    && groupadd --gid "${WORKER_GID}" worker \
    && useradd --no-log-init --uid "${WORKER_UID}" --gid worker --home-dir /var/lib/opencode-worker \
        --no-create-home --shell /bin/sh --password '*' worker \
    && install -d -m 0700 -o worker -g worker /var/lib/opencode-worker \
        /var/lib/opencode-worker/.ssh /var/lib/opencode-worker/sessions

# Root-owned and read-only to the worker: a job (same uid) can change neither.
COPY --from=builder /out/opencode-worker /usr/local/bin/opencode-worker
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/opencode-worker-entrypoint
COPY --chmod=0755 docker/healthcheck.sh /usr/local/bin/opencode-worker-healthcheck
COPY --chmod=0644 docker/sshd_config docker/worker.json /etc/opencode-worker/

# Read by the worker itself (`docker exec ... opencode-worker run`) and by the entrypoint; sshd
# sessions get a clean environment, so the forced command names the config file itself.
ENV OPENCODE_WORKER_CONFIG=/etc/opencode-worker/worker.json

# Host key, authorized_keys and sessions: the worker user's home. A named volume takes the
# ownership above on first use; a bind mount must be owned by uid 10001.
VOLUME ["/var/lib/opencode-worker"]
WORKDIR /var/lib/opencode-worker
EXPOSE 2222
USER ${WORKER_UID}:${WORKER_GID}

# A real job through the worker (a session, the sandbox, /bin/sh) and sshd listening.
HEALTHCHECK --interval=60s --timeout=30s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/opencode-worker-healthcheck"]

# tini as PID 1 reaps the orphans of ended sessions and forwards SIGTERM to sshd.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/opencode-worker-entrypoint"]
