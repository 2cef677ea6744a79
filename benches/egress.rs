//! The egress proxy's cost on loopback: throughput of one large download through a `CONNECT`
//! tunnel against the same download direct, and the connection setup the proxy adds (TCP
//! connect + `CONNECT` + its `200`, against a bare TCP connect), p50/p99. The proxy is the
//! worker's own (`opencode_worker::egress`), listening on the host's loopback here: inside a
//! job it listens in the job's network namespace, which changes nothing on the data path.
//!
//! `cargo bench --bench egress` (BENCH_MB=N for the download size, BENCH_CONNECTS=N samples).

use opencode_worker::egress::{JobEgress, JobProxy, NetworkConfig, Rules};
use opencode_worker::protocol::Allowlist;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An origin that sends `bytes` to every connection, then closes.
fn origin(bytes: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let chunk = vec![7u8; 256 * 1024];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    port
}

fn tunnel(proxy: u16, port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    stream.set_nodelay(true).unwrap();
    write!(
        stream,
        "CONNECT origin.test:{port} HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

fn drain(mut stream: TcpStream) -> usize {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

fn main() {
    let megabytes = env_or("BENCH_MB", 512);
    let connects = env_or("BENCH_CONNECTS", 2000);
    let bytes = megabytes << 20;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let big = origin(bytes);
    let empty = origin(0);

    let mut config = NetworkConfig::default();
    config
        .resolve
        .insert("origin.test".into(), "127.0.0.1".parse().unwrap());
    config.max_connections = 1024;
    let rules = Rules::compile(
        &Allowlist {
            allow: vec!["origin.test".into(), "127.0.0.1".into()],
            deny: vec![],
        },
        &config.allowlists,
    )
    .unwrap();
    let egress = Arc::new(JobEgress::new(Arc::new(rules), &config));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let proxy = runtime.block_on(async { JobProxy::start(listener, egress.clone()).unwrap() });

    let time = |through: bool| {
        let start = Instant::now();
        let stream = if through {
            tunnel(proxy_port, big)
        } else {
            TcpStream::connect(("127.0.0.1", big)).unwrap()
        };
        let got = drain(stream);
        assert_eq!(got, bytes);
        bytes as f64 / start.elapsed().as_secs_f64() / (1 << 20) as f64
    };
    // Warm both paths once, then alternate so machine noise hits both alike.
    time(false);
    time(true);
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        direct.push(time(false));
        proxied.push(time(true));
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!("download of {megabytes} MiB on loopback, best of 3:");
    println!("  direct            {:>9.0} MiB/s", best(&direct));
    println!("  through the proxy {:>9.0} MiB/s", best(&proxied));
    println!(
        "  ratio             {:>9.2}",
        best(&proxied) / best(&direct)
    );

    let (mut bare, mut tunnelled) = (Vec::new(), Vec::new());
    for _ in 0..connects {
        let start = Instant::now();
        let stream = TcpStream::connect(("127.0.0.1", empty)).unwrap();
        bare.push(start.elapsed());
        drop(stream);
        let start = Instant::now();
        let stream = tunnel(proxy_port, empty);
        tunnelled.push(start.elapsed());
        drop(stream);
    }
    bare.sort();
    tunnelled.sort();
    println!("connection setup over {connects} connections (ms):");
    println!(
        "  bare TCP connect           p50 {:.3}  p99 {:.3}",
        percentile(&bare, 0.5),
        percentile(&bare, 0.99)
    );
    println!(
        "  connect + CONNECT + 200    p50 {:.3}  p99 {:.3}",
        percentile(&tunnelled, 0.5),
        percentile(&tunnelled, 0.99)
    );
    let report = runtime.block_on(proxy.finish());
    println!(
        "proxy accounting: {} connections, {} bytes in, {} bytes out",
        report.connections, report.bytes_in, report.bytes_out
    );
}
