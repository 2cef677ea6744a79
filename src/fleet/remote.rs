//! One remote worker: an `ssh` child running `opencode-worker serve` on the host, kept alive and
//! restarted with backoff when it drops. OpenSSH is the transport and the authentication; the
//! remote end is the same binary speaking the same protocol.

use super::client::{CallError, Connection};
use crate::config::workers::SshEntry;
use crate::protocol::table;
use crate::protocol::{
    ClientInfo, InitializeParams, InitializeResult, JobStatus, ListParams, MetricsParams,
    MetricsResult, PROTOCOL_VERSION,
};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lived this long resets the backoff: the host was healthy.
const HEALTHY_FOR: Duration = Duration::from_secs(10);
/// Last lines of the ssh client's stderr kept to explain a failure.
const STDERR_LINES: usize = 4;

/// A live connection to the remote worker.
pub struct Live {
    pub connection: Arc<Connection>,
    /// Counts connections; a job placed on one generation is lost when that one ends.
    pub generation: u64,
    pub worker_id: String,
    /// Jobs this host takes at once: the configured cap, lowered to the remote pool's own.
    pub capacity: usize,
}

#[derive(Clone)]
pub enum Link {
    Connecting,
    Up(Arc<Live>),
    Down { why: String },
}

/// What the fleet hears from its remotes.
#[derive(Debug)]
pub enum Signal {
    Up { member: usize },
    Down { member: usize },
}

#[derive(Debug, Clone, Default)]
pub struct LinkStats {
    pub connects: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub up_since: Option<SystemTime>,
    /// From starting `ssh` to the `initialize` answer on the last connect, in milliseconds.
    pub handshake_ms: Option<f64>,
}

pub struct Remote {
    pub entry: SshEntry,
    link: watch::Sender<Link>,
    stats: Mutex<LinkStats>,
    stop: CancellationToken,
}

impl Remote {
    pub fn new(entry: SshEntry) -> Arc<Remote> {
        Arc::new(Remote {
            entry,
            link: watch::channel(Link::Connecting).0,
            stats: Mutex::new(LinkStats::default()),
            stop: CancellationToken::new(),
        })
    }

    pub fn link(&self) -> Link {
        self.link.borrow().clone()
    }

    pub fn live(&self) -> Option<Arc<Live>> {
        match &*self.link.borrow() {
            Link::Up(live) if !live.connection.is_closed() => Some(live.clone()),
            _ => None,
        }
    }

    pub fn stats(&self) -> LinkStats {
        crate::sync::lock(&self.stats).clone()
    }

    fn record(&self, change: impl FnOnce(&mut LinkStats)) {
        change(&mut crate::sync::lock(&self.stats));
    }

    /// Waits until the host is connected, up to `patience`.
    pub async fn wait_up(&self, patience: Duration) -> Option<Arc<Live>> {
        let mut link = self.link.subscribe();
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(live) = self.live() {
                return Some(live);
            }
            if tokio::time::timeout_at(deadline, link.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Closes the connection (the remote worker sees stdin end, stops its jobs and exits) and
    /// stops reconnecting.
    pub fn stop(&self) {
        self.stop.cancel();
        if let Link::Up(live) = &*self.link.borrow() {
            live.connection.close("the worker is shutting down");
        }
    }

    /// The `ssh` command line. BatchMode never prompts; forwarding of every kind is off since
    /// the channel carries only the protocol.
    pub fn command(&self) -> tokio::process::Command {
        let entry = &self.entry;
        let mut command = tokio::process::Command::new(&entry.program);
        let checking = if entry.strict_host_key_checking {
            "yes"
        } else {
            "accept-new"
        };
        command.arg("-T").args([
            "-o",
            "BatchMode=yes",
            "-o",
            &format!("StrictHostKeyChecking={checking}"),
            "-o",
            &format!("ServerAliveInterval={}", entry.alive_interval_secs),
            "-o",
            &format!("ServerAliveCountMax={}", entry.alive_count_max),
            "-o",
            &format!("ConnectTimeout={}", entry.connect_timeout_secs),
            "-o",
            "ClearAllForwardings=yes",
            "-o",
            "ForwardAgent=no",
            "-o",
            "ForwardX11=no",
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "LogLevel=ERROR",
        ]);
        if let Some(known_hosts) = &entry.known_hosts {
            command
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known_hosts.display()));
        }
        if let Some(identity) = &entry.identity_file {
            command
                .arg("-o")
                .arg("IdentitiesOnly=yes")
                .arg("-i")
                .arg(identity);
        }
        if let Some(user) = &entry.user {
            command.arg("-l").arg(user);
        }
        command
            .arg("-p")
            .arg(entry.port.to_string())
            .arg("--")
            .arg(&entry.host)
            .arg(&entry.command);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Connects, serves until the link drops, and reconnects with backoff, until `stop`.
    pub async fn supervise(self: Arc<Self>, member: usize, signals: mpsc::UnboundedSender<Signal>) {
        let mut backoff = BACKOFF_FIRST;
        let mut generation = 0;
        while !self.stop.is_cancelled() {
            generation += 1;
            self.link.send_replace(Link::Connecting);
            let started = Instant::now();
            let why = self.session(member, generation, &signals).await;
            if self.stop.is_cancelled() {
                break;
            }
            tracing::warn!(worker = %self.entry.name, host = %self.entry.host, reason = %why, "remote worker link down");
            self.record(|stats| {
                stats.failures += 1;
                stats.last_error = Some(why.clone());
                stats.up_since = None;
            });
            self.link.send_replace(Link::Down { why });
            let _ = signals.send(Signal::Down { member });
            if started.elapsed() >= HEALTHY_FOR {
                backoff = BACKOFF_FIRST;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.cancelled() => break,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        self.link.send_replace(Link::Down {
            why: "stopped".into(),
        });
    }

    /// One ssh child from spawn to exit; returns why it ended.
    async fn session(
        &self,
        member: usize,
        generation: u64,
        signals: &mpsc::UnboundedSender<Signal>,
    ) -> String {
        let mut child = match self.command().spawn() {
            Ok(child) => child,
            Err(error) => {
                return format!(
                    "could not start `{}`: {error}",
                    self.entry.program.display()
                );
            }
        };
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return "the ssh child has no pipes".into();
        };
        let last_stderr = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        tokio::spawn(log_stderr(
            self.entry.name.clone(),
            stderr,
            last_stderr.clone(),
        ));
        let connection = Connection::start(stdout, stdin);
        let explain = |why: String| {
            let lines = crate::sync::lock(&last_stderr);
            if lines.is_empty() {
                why
            } else {
                format!(
                    "{why}; ssh said: {}",
                    lines.iter().cloned().collect::<Vec<_>>().join(" | ")
                )
            }
        };
        let handshake = Duration::from_secs(self.entry.connect_timeout_secs + 10);
        let live = tokio::select! {
            live = tokio::time::timeout(handshake, self.handshake(&connection, generation)) => live,
            _ = self.stop.cancelled() => return "stopped".into(),
        };
        let live = match live {
            Ok(Ok(live)) => Arc::new(live),
            Ok(Err(why)) => {
                connection.close(why.clone());
                let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                return explain(why);
            }
            Err(_) => {
                connection.close("handshake timed out");
                return explain(format!(
                    "no answer to `initialize` within {}s",
                    handshake.as_secs()
                ));
            }
        };
        tracing::info!(worker = %self.entry.name, host = %self.entry.host, remote_worker_id = %live.worker_id, capacity = live.capacity, generation, "remote worker connected");
        self.link.send_replace(Link::Up(live.clone()));
        let _ = signals.send(Signal::Up { member });
        let why = tokio::select! {
            _ = connection.closed().cancelled() => connection.why(),
            status = child.wait() => {
                // Let the reader drain what ssh wrote before it exited.
                let _ = tokio::time::timeout(Duration::from_millis(200), connection.closed().cancelled()).await;
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                connection.close(format!("ssh exited ({status})"));
                connection.why()
            }
            _ = self.stop.cancelled() => {
                connection.close("the worker is shutting down");
                "stopped".into()
            }
            why = self.heartbeat(&connection) => {
                connection.close(why);
                connection.why()
            }
        };
        // The remote sees its stdin end and stops; give ssh a moment to carry that, then kill.
        if tokio::time::timeout(Duration::from_secs(2), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        explain(why)
    }

    /// ssh's keepalives catch a dead host or network; this catches a remote worker that stopped
    /// answering behind a live ssh, within the same bound. Returns only when it has to give up.
    async fn heartbeat(&self, connection: &Connection) -> String {
        let period = Duration::from_secs(self.entry.alive_interval_secs);
        let patience = period * self.entry.alive_count_max as u32;
        loop {
            tokio::time::sleep(period).await;
            // Cheap to answer: the fleet never leaves jobs queued on a remote.
            let probe = connection.request::<table::ListSessions>(&ListParams {
                status: Some(JobStatus::Queued),
            });
            match tokio::time::timeout(patience, probe).await {
                Ok(Ok(_) | Err(CallError::Rpc { .. })) => {}
                Ok(Err(CallError::Lost(why))) => return why,
                Err(_) => {
                    return format!(
                        "the remote worker did not answer a heartbeat within {}s",
                        patience.as_secs()
                    );
                }
            }
        }
    }

    async fn handshake(
        &self,
        connection: &Arc<Connection>,
        generation: u64,
    ) -> Result<Live, String> {
        let started = Instant::now();
        let describe = |error: CallError| match error {
            CallError::Rpc { message, .. } => format!("the remote worker refused: {message}"),
            CallError::Lost(why) => why,
        };
        let hello: InitializeResult = connection
            .request::<table::Initialize>(&InitializeParams {
                client: Some(ClientInfo {
                    name: "opencode-worker fleet".into(),
                    version: Some(env!("CARGO_PKG_VERSION").into()),
                }),
            })
            .await
            .map_err(describe)?;
        let handshake_ms = started.elapsed().as_secs_f64() * 1e3;
        if hello.protocol != PROTOCOL_VERSION {
            return Err(format!(
                "the remote worker speaks protocol {}, this one {PROTOCOL_VERSION}; run the same release on both",
                hello.protocol
            ));
        }
        let metrics: MetricsResult = connection
            .request::<table::GetMetrics>(&MetricsParams::default())
            .await
            .map_err(describe)?;
        let capacity = self
            .entry
            .max_concurrent
            .min(metrics.max_concurrent_sessions.max(1) as usize);
        self.record(|stats| {
            stats.connects += 1;
            stats.up_since = Some(SystemTime::now());
            stats.handshake_ms = Some(handshake_ms);
        });
        Ok(Live {
            connection: connection.clone(),
            generation,
            worker_id: hello.worker_id,
            capacity,
        })
    }
}

async fn log_stderr(
    name: String,
    stderr: tokio::process::ChildStderr,
    last: Arc<Mutex<std::collections::VecDeque<String>>>,
) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim().to_owned();
        if line.is_empty() {
            continue;
        }
        // The remote worker's own logs (JSON lines) ride the same channel as ssh's messages;
        // only ssh's explain a failed link.
        if line.starts_with('{') {
            tracing::debug!(worker = %name, remote_log = %line);
            continue;
        }
        tracing::warn!(worker = %name, "ssh: {line}");
        let mut last = crate::sync::lock(&last);
        if last.len() == STDERR_LINES {
            last.pop_front();
        }
        last.push_back(line);
    }
}
