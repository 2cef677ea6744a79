//! Network egress by allowlist, through the real binary: jobs in their own network namespace
//! reach loopback HTTP servers this test starts only through the worker's egress proxy, under
//! made-up names pinned with `network.resolve`. Nothing leaves this machine.

use crate::common;
use opencode_worker::protocol::table::{self, Method};

use common::{PATIENCE, Worker, eventually};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// A loopback HTTP server: `/slow` streams until the client goes away (then sets
/// `slow_closed`), anything else answers `origin <path>`.
struct Origin {
    port: u16,
    requests: Arc<AtomicUsize>,
    slow_closed: Arc<AtomicBool>,
}

impl Origin {
    fn start() -> Origin {
        Origin::serving(None)
    }

    /// Also serves the files under `root` (a directory's `index.html` for the directory).
    fn serving(root: Option<std::path::PathBuf>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let slow_closed = Arc::new(AtomicBool::new(false));
        let (count, closed) = (requests.clone(), slow_closed.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (count, closed, root) = (count.clone(), closed.clone(), root.clone());
                std::thread::spawn(move || serve(stream, &count, &closed, root.as_deref()));
            }
        });
        Origin {
            port,
            requests,
            slow_closed,
        }
    }
}

fn serve(
    mut stream: TcpStream,
    count: &AtomicUsize,
    closed: &AtomicBool,
    root: Option<&std::path::Path>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    count.fetch_add(1, Ordering::SeqCst);
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    if path == "/slow" {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n");
        let chunk = [b'x'; 1024];
        while stream.write_all(&chunk).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
        closed.store(true, Ordering::SeqCst);
        return;
    }
    if let Some(root) = root {
        let relative = path.split('?').next().unwrap_or("").trim_start_matches('/');
        let mut file = root.join(relative);
        if file.is_dir() {
            file = file.join("index.html");
        }
        let (status, body) = match std::fs::read(&file) {
            Ok(body) if !relative.contains("..") => ("200 OK", body),
            _ => ("404 Not Found", b"not found\n".to_vec()),
        };
        let kind = if file.extension().is_some_and(|e| e == "html") {
            "text/html"
        } else {
            "application/octet-stream"
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
        return;
    }
    let body = format!("origin {path}\n");
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

fn worker() -> Worker {
    Worker::start_walls(
        &[
            r#"network.resolve={"allowed.test":"127.0.0.1","denied.test":"127.0.0.1","other.test":"127.0.0.1"}"#,
        ],
        &[],
    )
}

fn run(worker: &mut Worker, script: &str, network: Value) -> Value {
    let job = worker.dispatch(json!({
        "argv": ["bash", "-c", script],
        "network": network,
        "wait_ms": PATIENCE.as_millis() as u64,
    }));
    assert_eq!(job["phase"], "done", "{job}");
    job
}

fn stdout(job: &Value) -> &str {
    job["stdout"].as_str().unwrap_or_default()
}

#[test]
fn allowed_names_pass_and_everything_else_is_refused_with_its_rule() {
    let origin = Origin::start();
    let port = origin.port;
    let mut worker = worker();
    let script = format!(
        r#"
        echo "allowed: $(curl -sS http://allowed.test:{port}/a)"
        echo "tunnel: $(curl -sS -p http://allowed.test:{port}/t)"
        echo "denied: $(curl -sS http://denied.test:{port}/d | tr '\n' '|')"
        echo "denied-connect: $(curl -sS -o /dev/null -w '%{{http_connect}}' -p http://denied.test:{port}/ 2>/dev/null)"
        echo "literal: $(curl -sS --noproxy '' -x "$HTTP_PROXY" http://127.0.0.1:{port}/l | tr '\n' '|')"
        echo "direct: $(curl -sS --noproxy '*' --max-time 5 http://127.0.0.1:{port}/x 2>&1; echo rc=$?)"
        "#
    );
    // allowed.test resolves to loopback, so its address is listed too (see the next test
    // for what happens without it); that entry also lets the literal through.
    let job = run(
        &mut worker,
        &script,
        json!({"allow": ["allowed.test", format!("127.0.0.1:{port}")], "deny": []}),
    );
    let out = stdout(&job);
    assert!(out.contains("allowed: origin /a"), "{job}");
    assert!(out.contains("tunnel: origin /t"), "{job}");
    assert!(
        out.contains("denied: opencode-worker egress: connection to denied.test"),
        "{job}"
    );
    assert!(
        out.contains("rule: no entry of network.allow matches"),
        "{job}"
    );
    assert!(out.contains("denied-connect: 403"), "{job}");
    assert!(out.contains("direct: curl: (7)"), "{job}");
    assert!(out.contains("literal: origin /l"), "{job}");
    let denied = job["network_denied"].as_array().unwrap();
    assert_eq!(
        denied,
        &vec![json!({"host": "denied.test", "port": port, "count": 2})],
        "{job}"
    );
    let network = &job["metrics"]["network"];
    assert_eq!(network["connections"], 3, "{job}");
    assert!(network["bytes_in"].as_u64().unwrap() > 0, "{job}");
    assert!(network["bytes_out"].as_u64().unwrap() > 0, "{job}");
    // The proxy reached the origin for the three allowed requests only; the direct connect
    // never left the job's namespace.
    assert_eq!(origin.requests.load(Ordering::SeqCst), 3);
    let metrics = worker.call(table::GetMetrics::NAME, json!({}));
    let totals = &metrics["egress"];
    assert_eq!(
        (&totals["jobs"], &totals["connections"], &totals["denied"]),
        (&json!(1), &json!(3), &json!(2)),
        "{metrics}"
    );
    assert_eq!(totals["bytes_in"], network["bytes_in"], "{metrics}");
}

#[test]
fn loopback_behind_an_allowed_name_and_bare_literals_need_an_address_entry() {
    let origin = Origin::start();
    let port = origin.port;
    let mut worker = worker();
    let script = format!(
        r#"
        echo "ssrf: $(curl -sS http://allowed.test:{port}/s | tr '\n' '|')"
        echo "literal: $(curl -sS --noproxy '' -x "$HTTP_PROXY" http://127.0.0.1:{port}/l | tr '\n' '|')"
        echo "metadata: $(curl -sS --noproxy '' -x "$HTTP_PROXY" http://169.254.169.254/ | tr '\n' '|')"
        "#
    );
    let job = run(&mut worker, &script, json!({"allow": ["allowed.test"]}));
    let out = stdout(&job);
    assert!(
        out.contains("ssrf: opencode-worker egress: connection to allowed.test"),
        "{job}"
    );
    assert!(out.contains("a loopback address"), "{job}");
    assert!(out.contains(&format!("add `127.0.0.1:{port}`")), "{job}");
    assert!(
        out.contains("literal: opencode-worker egress: connection to 127.0.0.1"),
        "{job}"
    );
    assert!(
        out.contains("metadata: opencode-worker egress: connection to 169.254.169.254:80"),
        "{job}"
    );
    assert_eq!(origin.requests.load(Ordering::SeqCst), 0);
    assert_eq!(job["metrics"]["network"]["connections"], 0, "{job}");
    assert_eq!(job["network_denied"].as_array().unwrap().len(), 3, "{job}");
}

#[test]
fn a_job_cannot_send_dns_or_other_udp_out_of_its_namespace() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut worker = worker();
    // A DNS-shaped query to a resolver on the host's loopback, and name resolution through
    // the system's resolver configuration: both stay inside the job's empty namespace.
    let script = format!(
        r#"
        python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
try:
    s.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07allowed\x04test\x00\x00\x01\x00\x01", ("127.0.0.1", {port}))
    s.recvfrom(512)
    print("udp: answered")
except OSError as e:
    print("udp: no answer", type(e).__name__)
try:
    socket.getaddrinfo("allowed.test", 80)
    print("resolve: resolved")
except OSError as e:
    print("resolve: failed")
PY
        "#
    );
    let job = run(&mut worker, &script, json!({"allow": ["allowed.test"]}));
    let out = stdout(&job);
    assert!(out.contains("udp: no answer"), "{job}");
    assert!(out.contains("resolve: failed"), "{job}");
    let mut buffer = [0u8; 512];
    assert!(
        server.recv_from(&mut buffer).is_err(),
        "the host saw the job's datagram"
    );
}

#[test]
fn jobs_running_at_once_see_only_their_own_rules() {
    let origin = Origin::start();
    let port = origin.port;
    let mut worker = worker();
    let script = format!(
        r#"
        sleep 0.3
        for name in allowed.test other.test; do
          code=$(curl -sS -o /dev/null -w '%{{http_code}}' http://$name:{port}/)
          echo "$name=$code"
        done
        "#
    );
    let mut ids = Vec::new();
    for (index, name) in ["allowed.test", "other.test"]
        .iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        let mut spec = json!({
            "job_id": format!("egress-{index}"),
            "argv": ["bash", "-c", script],
            "network": {"allow": [name, format!("127.0.0.1:{port}")]},
        });
        worker.mark(&mut spec);
        worker.call(table::DispatchJob::NAME, spec);
        ids.push((format!("egress-{index}"), *name));
    }
    for (id, name) in ids {
        let job = worker.wait_ended(&id);
        let output = worker.call(table::CollectOutput::NAME, json!({"job_id": id}));
        let out = output["stdout"]["data"].as_str().unwrap_or_default();
        let other = if name == "allowed.test" {
            "other.test"
        } else {
            "allowed.test"
        };
        assert!(out.contains(&format!("{name}=200")), "{id}: {job}");
        assert!(out.contains(&format!("{other}=403")), "{id}: {job}");
        assert_eq!(
            job["network_denied"],
            json!([{"host": other, "port": port, "count": 1}]),
            "{id}: {job}"
        );
    }
}

#[test]
fn a_killed_download_leaves_no_connection_and_garbage_does_not_hurt_the_proxy() {
    let origin = Origin::start();
    let port = origin.port;
    let mut worker = worker();
    let script = format!(
        r#"
        exec 3<>/dev/tcp/127.0.0.1/3128
        printf 'NONSENSE \x00\x01\r\n\r\n' >&3
        echo "garbage: $(head -1 <&3)"
        exec 3<&-
        exec 4<>/dev/tcp/127.0.0.1/3128
        exec 4<&-
        echo "after: $(curl -sS http://allowed.test:{port}/ok)"
        curl -sS -o /dev/null http://allowed.test:{port}/slow
        "#
    );
    let job = worker.dispatch(json!({
        "argv": ["bash", "-c", script],
        "network": {"allow": ["allowed.test", format!("127.0.0.1:{port}")]},
        "limits": {"timeout": 2000},
        "wait_ms": PATIENCE.as_millis() as u64,
    }));
    assert_eq!(job["status"], "timeout", "{job}");
    let out = stdout(&job);
    assert!(out.contains("garbage: HTTP/1.1 400 Bad Request"), "{job}");
    assert!(out.contains("after: origin /ok"), "{job}");
    assert!(
        job["metrics"]["network"]["bytes_in"].as_u64().unwrap() > 1024,
        "{job}"
    );
    eventually("the origin sees the proxied download closed", || {
        origin.slow_closed.load(Ordering::SeqCst)
    });
}

#[test]
fn bad_entries_are_invalid_params_naming_the_entry() {
    let mut worker = worker();
    let error = worker.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "network": {"allow": ["ok.test", "*"]}}),
    );
    assert_eq!(error["code"], -32602, "{error}");
    assert_eq!(error["data"]["field"], "network.allow[1]", "{error}");
    let error = worker.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "network": {"allow": ["@packages"]}}),
    );
    assert_eq!(error["data"]["field"], "network.allow[0]", "{error}");
    assert!(
        error["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("network.allowlists"),
        "{error}"
    );
}

#[test]
fn named_sets_and_the_default_come_from_config() {
    let origin = Origin::start();
    let port = origin.port;
    let mut worker = Worker::start_walls(
        &[
            r#"network.resolve={"allowed.test":"127.0.0.1"}"#,
            &format!(r#"network.allowlists={{"local":["allowed.test","127.0.0.1:{port}"]}}"#),
            r#"network.default={"allow":["@local"]}"#,
        ],
        &[],
    );
    let job = worker.dispatch(json!({
        "command": format!("curl -sS http://allowed.test:{port}/set"),
        "wait_ms": PATIENCE.as_millis() as u64,
    }));
    assert_eq!(stdout(&job), "origin /set\n", "{job}");
    let job = worker.dispatch(json!({
        "command": format!("curl -sS --max-time 5 http://allowed.test:{port}/none"),
        "network": "none",
        "wait_ms": PATIENCE.as_millis() as u64,
    }));
    assert_eq!(job["status"], "failed", "{job}");
    assert!(job.get("network_denied").is_none(), "{job}");
}

#[test]
fn without_a_network_namespace_an_allowlist_is_refused_not_ignored() {
    let mut worker = Worker::start_walls(&["isolation.profile=none"], &[]);
    let job = worker.dispatch(json!({
        "command": "true",
        "network": {"allow": ["allowed.test"]},
        "wait_ms": PATIENCE.as_millis() as u64,
    }));
    assert_eq!(job["reason"], "prepare_error", "{job}");
    assert!(
        job["message"]
            .as_str()
            .unwrap()
            .contains("network allowlist"),
        "{job}"
    );
}

fn sh(dir: &std::path::Path, script: &str) {
    let status = std::process::Command::new("bash")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "setup failed: {script}");
}

#[test]
fn pip_and_git_fetch_through_the_proxy_into_the_work_dir() {
    let root = tempfile::tempdir().unwrap();
    // A one-package simple index with a real wheel, and a bare repository served as dumb HTTP.
    sh(
        root.path(),
        r#"
        mkdir -p simple/demo-pkg
        python3 - <<'PY'
import zipfile
with zipfile.ZipFile("simple/demo-pkg/demo_pkg-1.0-py3-none-any.whl", "w") as wheel:
    wheel.writestr("demo_pkg/__init__.py", "VALUE = 1\n")
    wheel.writestr("demo_pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n")
    wheel.writestr("demo_pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    wheel.writestr("demo_pkg-1.0.dist-info/RECORD", "")
PY
        echo '<a href="demo_pkg-1.0-py3-none-any.whl">demo_pkg-1.0-py3-none-any.whl</a>' > simple/demo-pkg/index.html
        git init -q -b main src
        echo "fetched through the proxy" > src/README
        git -C src add README
        git -C src -c user.name=t -c user.email=t@t.test commit -qm one
        git clone -q --bare src repo.git
        git -C repo.git update-server-info
        "#,
    );
    let origin = Origin::serving(Some(root.path().to_owned()));
    let port = origin.port;
    let mut worker = worker();
    let script = format!(
        r#"
        set -e
        python3 -m pip download -q --disable-pip-version-check --no-deps --no-cache-dir \
          --trusted-host allowed.test --index-url http://allowed.test:{port}/simple/ -d wheels demo-pkg 2>&1
        git clone -q http://allowed.test:{port}/repo.git clone 2>&1
        ls wheels; cat clone/README
        "#
    );
    let job = run(
        &mut worker,
        &script,
        json!({"allow": ["allowed.test", format!("127.0.0.1:{port}")]}),
    );
    let out = stdout(&job);
    assert!(out.contains("demo_pkg-1.0-py3-none-any.whl"), "{job}");
    assert!(out.contains("fetched through the proxy"), "{job}");
    assert_eq!(job["exit_code"], 0, "{job}");
    assert_eq!(job["network_denied"], json!([]), "{job}");
}

#[test]
fn tls_is_tunnelled_not_intercepted() {
    let dir = tempfile::tempdir().unwrap();
    sh(
        dir.path(),
        r#"
        openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=allowed.test \
          -addext subjectAltName=DNS:allowed.test -keyout key.pem -out cert.pem 2>/dev/null
        echo "over tls" > index.html
        "#,
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-cert", "cert.pem", "-key", "key.pem"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the TLS server listens", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let ca = std::fs::read_to_string(dir.path().join("cert.pem")).unwrap();
    let mut worker = worker();
    let job = worker.dispatch(json!({
        "argv": ["bash", "-c", format!("curl -sS --cacert ca.pem https://allowed.test:{port}/index.html")],
        "files": {"ca.pem": ca},
        "network": {"allow": ["allowed.test", format!("127.0.0.1:{port}")]},
        "wait_ms": PATIENCE.as_millis() as u64,
    }));
    let _ = server.kill();
    let _ = server.wait();
    // The origin's own certificate verified in the job: the proxy only moved bytes.
    assert_eq!(stdout(&job), "over tls\n", "{job}");
    assert_eq!(job["metrics"]["network"]["connections"], 1, "{job}");
}

#[test]
fn the_connection_cap_and_deny_entries_hold() {
    let origin = Origin::start();
    let port = origin.port;
    let mut worker = Worker::start_walls(
        &[
            r#"network.resolve={"allowed.test":"127.0.0.1","denied.test":"127.0.0.1"}"#,
            "network.max_connections=1",
        ],
        &[],
    );
    // One tunnel held open takes the only slot; the next connection is turned away.
    let script = format!(
        r#"
        exec 3<>/dev/tcp/127.0.0.1/3128
        printf 'CONNECT allowed.test:{port} HTTP/1.1\r\n\r\n' >&3
        echo "held: $(head -1 <&3)"
        echo "second: $(curl -sS -o /dev/null -w '%{{http_code}}' http://allowed.test:{port}/)"
        exec 3<&-
        sleep 0.2
        echo "after: $(curl -sS http://allowed.test:{port}/again)"
        "#
    );
    let job = run(
        &mut worker,
        &script,
        json!({"allow": ["*.test", "127.0.0.0/8"], "deny": [format!("127.0.0.1:{port}")]}),
    );
    let out = stdout(&job);
    // The deny entry on the address refuses even the tunnel, whose name is allowed.
    assert!(out.contains("held: HTTP/1.1 403"), "{job}");
    assert_eq!(origin.requests.load(Ordering::SeqCst), 0, "{job}");
    let job = run(
        &mut worker,
        &script,
        json!({"allow": ["allowed.test", "127.0.0.0/8"]}),
    );
    let out = stdout(&job);
    assert!(out.contains("held: HTTP/1.1 200"), "{job}");
    assert!(out.contains("second: 503"), "{job}");
    assert!(out.contains("after: origin /again"), "{job}");
}

#[test]
fn npm_installs_from_a_local_registry_through_the_proxy() {
    let root = tempfile::tempdir().unwrap();
    let origin = Origin::serving(Some(root.path().to_owned()));
    let port = origin.port;
    // A one-package registry: the packument at /demo-npm and the tarball `npm pack` made.
    sh(
        root.path(),
        &format!(
            r#"
        mkdir pkg && cd pkg
        echo '{{"name":"demo-npm","version":"1.0.0","main":"index.js"}}' > package.json
        echo 'module.exports = "installed through the proxy";' > index.js
        npm pack --silent >/dev/null 2>&1
        mv demo-npm-1.0.0.tgz .. && cd .. && rm -r pkg
        python3 - <<'PY'
import base64, hashlib, json
data = open("demo-npm-1.0.0.tgz", "rb").read()
version = {{"name": "demo-npm", "version": "1.0.0", "dist": {{
    "tarball": "http://allowed.test:{port}/demo-npm-1.0.0.tgz",
    "shasum": hashlib.sha1(data).hexdigest(),
    "integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()}}}}
json.dump({{"name": "demo-npm", "dist-tags": {{"latest": "1.0.0"}}, "versions": {{"1.0.0": version}}}}, open("demo-npm", "w"))
PY
        "#
        ),
    );
    let mut worker = worker();
    let script = format!(
        r#"
        set -e
        echo '{{"name":"app","version":"0.0.0"}}' > package.json
        npm install --silent --no-audit --no-fund --registry http://allowed.test:{port}/ demo-npm 2>&1
        node -e 'console.log(require("demo-npm"))'
        "#
    );
    let job = run(
        &mut worker,
        &script,
        json!({"allow": ["allowed.test", format!("127.0.0.1:{port}")]}),
    );
    assert_eq!(stdout(&job), "installed through the proxy\n", "{job}");
    assert_eq!(job["exit_code"], 0, "{job}");
    // The packument and the tarball: the job has no other way out of its namespace.
    assert!(origin.requests.load(Ordering::SeqCst) >= 2, "{job}");
    assert!(
        job["metrics"]["network"]["connections"].as_u64().unwrap() >= 2,
        "{job}"
    );
}

#[test]
fn cargo_fetches_from_a_local_sparse_registry_through_the_proxy() {
    let root = tempfile::tempdir().unwrap();
    let origin = Origin::serving(Some(root.path().to_owned()));
    let port = origin.port;
    // A sparse registry with one crate: config.json, its index file, and the `.crate`.
    sh(
        root.path(),
        &format!(
            r#"
        export CARGO_HOME="$PWD/build-home"
        cargo new -q --lib --vcs none democrate
        (cd democrate && cargo package -q --no-verify --allow-dirty --offline)
        mkdir -p index/de/mo dl/democrate/0.1.0
        cp democrate/target/package/democrate-0.1.0.crate dl/democrate/0.1.0/download
        sum=$(sha256sum dl/democrate/0.1.0/download | cut -d' ' -f1)
        echo '{{"dl":"http://allowed.test:{port}/dl","api":null}}' > index/config.json
        echo '{{"name":"democrate","vers":"0.1.0","deps":[],"cksum":"'$sum'","features":{{}},"yanked":false}}' > index/de/mo/democrate
        rm -r democrate build-home
        "#
        ),
    );
    let mut worker = worker();
    let script = format!(
        r#"
        set -e
        export CARGO_HOME="$PWD/cargo-home"
        mkdir -p app/src .cargo && touch app/src/lib.rs
        printf '[registries.local]\nindex = "sparse+http://allowed.test:{port}/index/"\n' > .cargo/config.toml
        printf '[package]\nname = "app"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ndemocrate = {{ version = "0.1", registry = "local" }}\n' > app/Cargo.toml
        cd app && cargo fetch -q 2>&1
        ls "$CARGO_HOME"/registry/cache/*/
        "#
    );
    let job = run(
        &mut worker,
        &script,
        json!({"allow": ["allowed.test", format!("127.0.0.1:{port}")]}),
    );
    assert!(stdout(&job).contains("democrate-0.1.0.crate"), "{job}");
    assert_eq!(job["exit_code"], 0, "{job}");
}
