//! The egress proxy for one job: HTTP `CONNECT` (tunnelled, never intercepted) and plain
//! HTTP forwarding, each request checked against the job's rules on the name the client
//! asked for and again on every address that name resolves to. Runs on the worker's runtime,
//! accepting on a listener that lives in the job's own network namespace, so the job's
//! identity is the listener it reached: no credentials, no shared port.

use super::addr;
use super::pattern::Host;
use super::rules::{Denial, Rules};
use crate::protocol::{DeniedConnection, NetworkMetrics};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A request head larger than this is refused (real clients send a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;
const HEAD_PATIENCE: Duration = Duration::from_secs(30);
const CONNECT_PATIENCE: Duration = Duration::from_secs(15);
const RESOLVE_PATIENCE: Duration = Duration::from_secs(10);
const RELAY_BUFFER: usize = 64 * 1024;

/// One job's rules, name pins and counters.
pub struct JobEgress {
    rules: Arc<Rules>,
    pins: BTreeMap<String, IpAddr>,
    slots: Arc<Semaphore>,
    max_connections: usize,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    connections: AtomicU64,
    denied: Mutex<BTreeMap<(String, u16), u64>>,
}

impl JobEgress {
    pub fn new(rules: Arc<Rules>, config: &super::NetworkConfig) -> JobEgress {
        JobEgress {
            rules,
            pins: config
                .resolve
                .iter()
                .map(|(name, ip)| {
                    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
                    (name, *ip)
                })
                .collect(),
            slots: Arc::new(Semaphore::new(config.max_connections)),
            max_connections: config.max_connections,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            denied: Mutex::new(BTreeMap::new()),
        }
    }

    /// What the job did through the proxy so far.
    pub fn report(&self) -> NetworkMetrics {
        let denied = self
            .denied
            .lock()
            .map(|denied| {
                denied
                    .iter()
                    .map(|((host, port), count)| DeniedConnection {
                        host: host.clone(),
                        port: *port,
                        count: *count,
                    })
                    .collect()
            })
            .unwrap_or_default();
        NetworkMetrics {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            denied,
        }
    }

    fn record_denial(&self, host: &Host, port: u16) {
        if let Ok(mut denied) = self.denied.lock() {
            *denied.entry((host.to_string(), port)).or_default() += 1;
        }
    }
}

/// The running proxy of one job. Dropping it (or `finish`) closes the listener and every
/// connection the job still had open.
pub struct JobProxy {
    egress: Arc<JobEgress>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl JobProxy {
    pub fn start(listener: std::net::TcpListener, egress: Arc<JobEgress>) -> io::Result<JobProxy> {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, egress.clone(), stop.clone()));
        Ok(JobProxy {
            egress,
            stop,
            task: Some(task),
        })
    }

    /// Stops the proxy, waits until every connection is closed, and reports.
    pub async fn finish(mut self) -> NetworkMetrics {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.egress.report()
    }
}

impl Drop for JobProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Accepts until `stop`; then every connection task is aborted, which closes both ends.
pub async fn serve(listener: TcpListener, egress: Arc<JobEgress>, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let egress = egress.clone();
                    connections.spawn(async move { handle(stream, &egress).await });
                }
                Err(error) => {
                    // Out of descriptors, most likely: back off instead of spinning.
                    tracing::warn!(%error, "egress proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// A parsed request: where to, and what to send upstream first.
#[derive(Debug)]
struct Request {
    host: Host,
    port: u16,
    /// `None` for `CONNECT`; the rewritten head for plain HTTP.
    forward_head: Option<Vec<u8>>,
}

async fn handle(mut client: TcpStream, egress: &JobEgress) {
    let _ = client.set_nodelay(true);
    let Ok(_permit) = egress.slots.clone().try_acquire_owned() else {
        let body = format!(
            "opencode-worker egress: this job already holds {} connections through the proxy (network.max_connections)\n",
            egress.max_connections
        );
        respond(&mut client, 503, "Service Unavailable", "", &body).await;
        return;
    };
    let (buffer, head_len) = match tokio::time::timeout(HEAD_PATIENCE, read_head(&mut client)).await
    {
        Ok(Ok(read)) => read,
        Ok(Err(error)) if error.kind() == io::ErrorKind::InvalidData => {
            respond(
                &mut client,
                431,
                "Request Header Fields Too Large",
                "",
                "request head too large\n",
            )
            .await;
            return;
        }
        _ => return,
    };
    let request = match parse_request(&buffer[..head_len]) {
        Ok(request) => request,
        Err(reason) => {
            let body = format!("opencode-worker egress: bad proxy request: {reason}\n");
            respond(&mut client, 400, "Bad Request", "", &body).await;
            return;
        }
    };
    let (host, port) = (&request.host, request.port);
    if let Err(denial) = egress.rules.check_name(host, port) {
        deny(&mut client, egress, host, port, &denial).await;
        return;
    }
    let addresses = match resolve(host, port, &egress.pins).await {
        Ok(addresses) if !addresses.is_empty() => addresses,
        Ok(_) | Err(_) => {
            let body = format!("opencode-worker egress: {host} does not resolve\n");
            respond(&mut client, 502, "Bad Gateway", "", &body).await;
            return;
        }
    };
    let own = addr::host_addresses();
    let mut refusal = None;
    let mut failure = None;
    let mut upstream = None;
    for ip in addresses {
        if let Err(denial) = egress.rules.check_addr(host, ip, port, &own) {
            refusal.get_or_insert(denial);
            continue;
        }
        match tokio::time::timeout(
            CONNECT_PATIENCE,
            TcpStream::connect(SocketAddr::new(ip, port)),
        )
        .await
        {
            Ok(Ok(stream)) => {
                upstream = Some(stream);
                break;
            }
            Ok(Err(error)) => failure = Some(error.to_string()),
            Err(_) => failure = Some("timed out".into()),
        }
    }
    let Some(mut upstream) = upstream else {
        match (failure, refusal) {
            (Some(error), _) => {
                let body = format!(
                    "opencode-worker egress: connecting to {host}:{port} failed: {error}\n"
                );
                respond(&mut client, 502, "Bad Gateway", "", &body).await;
            }
            (None, Some(denial)) => deny(&mut client, egress, host, port, &denial).await,
            (None, None) => {}
        }
        return;
    };
    let _ = upstream.set_nodelay(true);
    egress.connections.fetch_add(1, Ordering::Relaxed);
    let early = &buffer[head_len..];
    let sent = match &request.forward_head {
        None => {
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .is_ok()
                && upstream.write_all(early).await.is_ok()
        }
        Some(head) => {
            upstream.write_all(head).await.is_ok() && upstream.write_all(early).await.is_ok()
        }
    };
    if sent {
        egress.bytes_out.fetch_add(
            (early.len() + request.forward_head.as_ref().map_or(0, Vec::len)) as u64,
            Ordering::Relaxed,
        );
        relay(client, upstream, egress).await;
    }
}

async fn deny(client: &mut TcpStream, egress: &JobEgress, host: &Host, port: u16, denial: &Denial) {
    egress.record_denial(host, port);
    tracing::info!(%host, port, rule = %denial.rule, "egress denied");
    let body = format!(
        "opencode-worker egress: connection to {host}:{port} refused\nrule: {}\nto allow it: {}\n",
        denial.rule, denial.fix
    );
    // Header values must be one line of visible ASCII; host names and rules are.
    let header = format!(
        "X-Egress-Denied: {}\r\n",
        denial.rule.replace(['\r', '\n'], " ")
    );
    respond(client, 403, "Forbidden", &header, &body).await;
}

async fn respond(client: &mut TcpStream, status: u16, reason: &str, headers: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Reads until the end of the request head; returns the buffer and the head's length
/// (bytes after it already belong to the body or the tunnel).
async fn read_head(stream: &mut TcpStream) -> io::Result<(Vec<u8>, usize)> {
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let searched_from = buffer.len().saturating_sub(3);
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer[searched_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            return Ok((buffer, searched_from + at + 4));
        }
        if buffer.len() > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}

/// Headers that speak to the proxy or about this hop, never forwarded.
const HOP_HEADERS: &[&str] = &[
    "host",
    "connection",
    "proxy-connection",
    "proxy-authorization",
    "keep-alive",
];

fn parse_request(head: &[u8]) -> Result<Request, String> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete request head".into()),
        Err(error) => return Err(format!("malformed request head ({error})")),
    }
    let method = request.method.unwrap_or_default();
    let target = request.path.unwrap_or_default();
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_authority(target, None)?;
        return Ok(Request {
            host,
            port,
            forward_head: None,
        });
    }
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err("send https:// requests as CONNECT (set HTTPS_PROXY)".into());
    }
    if !lower.starts_with("http://") {
        return Err(format!(
            "`{target}` is not an absolute http:// URL: this is an egress proxy, reach it through HTTP_PROXY"
        ));
    }
    let rest = &target[7..];
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err("credentials in the URL are not forwarded".into());
    }
    let (host, port) = split_authority(authority, Some(80))?;
    let path = match path.split('#').next().unwrap_or("") {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    let version = if request.version == Some(0) {
        "1.0"
    } else {
        "1.1"
    };
    let mut out = format!("{method} {path} HTTP/{version}\r\nHost: {authority}\r\n").into_bytes();
    for header in request.headers.iter() {
        if HOP_HEADERS
            .iter()
            .any(|hop| header.name.eq_ignore_ascii_case(hop))
        {
            continue;
        }
        out.extend_from_slice(header.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value);
        out.extend_from_slice(b"\r\n");
    }
    // One request per upstream connection: the next request may name another host.
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(Request {
        host,
        port,
        forward_head: Some(out),
    })
}

/// `host:port`, `[v6]:port`; `default_port` when the port is optional.
fn split_authority(authority: &str, default_port: Option<u16>) -> Result<(Host, u16), String> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port))
            if !port.contains(']') && (!host.contains(':') || host.ends_with(']')) =>
        {
            let port: u16 = port
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{port}` is not a port"))?;
            (host, port)
        }
        _ => (
            authority,
            default_port.ok_or_else(|| format!("`{authority}` has no port"))?,
        ),
    };
    let host = Host::parse(host).map_err(|reason| format!("host `{host}` {reason}"))?;
    Ok((host, port))
}

async fn resolve(
    host: &Host,
    port: u16,
    pins: &BTreeMap<String, IpAddr>,
) -> io::Result<Vec<IpAddr>> {
    match host {
        Host::Ip(ip) => Ok(vec![*ip]),
        Host::Name(name) => {
            if let Some(ip) = pins.get(name) {
                return Ok(vec![*ip]);
            }
            let found = tokio::time::timeout(
                RESOLVE_PATIENCE,
                tokio::net::lookup_host((name.as_str(), port)),
            )
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            Ok(found.map(|a| a.ip()).collect())
        }
    }
}

/// Copies both ways until both sides are done, counting bytes as they pass so a job killed
/// mid-transfer still reports what it moved.
async fn relay(mut client: TcpStream, mut upstream: TcpStream, egress: &JobEgress) {
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    tokio::join!(
        pump(client_read, upstream_write, &egress.bytes_out),
        pump(upstream_read, client_write, &egress.bytes_in),
    );
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    counter: &AtomicU64,
) {
    let mut buffer = vec![0u8; RELAY_BUFFER];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

/// Variables that point the job's clients at its proxy: the conventional ones in both cases
/// (curl reads only the lower-case `http_proxy`), and the tool-specific ones of npm, pip,
/// cargo and Node that do not read the conventional ones.
pub fn proxy_env(port: u16) -> Vec<(String, String)> {
    let url = format!("http://127.0.0.1:{port}");
    let local = "localhost,127.0.0.1,::1".to_string();
    let mut env = Vec::new();
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        env.push((name.to_string(), url.clone()));
        env.push((name.to_ascii_lowercase(), url.clone()));
    }
    env.push(("NO_PROXY".into(), local.clone()));
    env.push(("no_proxy".into(), local.clone()));
    env.push(("npm_config_proxy".into(), url.clone()));
    env.push(("npm_config_https_proxy".into(), url.clone()));
    env.push(("npm_config_noproxy".into(), local));
    env.push(("PIP_PROXY".into(), url.clone()));
    env.push(("CARGO_HTTP_PROXY".into(), url));
    env.push(("NODE_USE_ENV_PROXY".into(), "1".into()));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_targets_need_a_port_and_keep_ipv6_brackets_apart() {
        let parsed =
            parse_request(b"CONNECT Allowed.Test:443 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(parsed.host, Host::Name("allowed.test".into()));
        assert_eq!(parsed.port, 443);
        assert!(parsed.forward_head.is_none());
        let parsed = parse_request(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(parsed.host, Host::Ip("::1".parse().unwrap()));
        assert!(parse_request(b"CONNECT allowed.test HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn plain_http_is_rewritten_to_origin_form_without_proxy_headers() {
        let parsed = parse_request(
            b"GET http://allowed.test:8080/a/b?c=1 HTTP/1.1\r\nHost: evil.test\r\nProxy-Authorization: x\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(parsed.port, 8080);
        let head = String::from_utf8(parsed.forward_head.unwrap()).unwrap();
        assert_eq!(
            head,
            "GET /a/b?c=1 HTTP/1.1\r\nHost: allowed.test:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let parsed = parse_request(b"GET http://allowed.test?q HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(parsed.port, 80);
        assert!(
            String::from_utf8(parsed.forward_head.unwrap())
                .unwrap()
                .starts_with("GET /?q HTTP/1.0\r\n")
        );
    }

    #[test]
    fn requests_a_proxy_cannot_serve_are_refused_with_a_reason() {
        for head in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET https://allowed.test/ HTTP/1.1\r\n\r\n",
            b"GET http://user:pw@allowed.test/ HTTP/1.1\r\n\r\n",
            b"GET http://bad host/ HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\r\n\r\n",
            b"CONNECT allowed.test:0 HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                parse_request(head).is_err(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
