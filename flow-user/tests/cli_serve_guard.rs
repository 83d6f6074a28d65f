//! `flow serve` holds up and lets in only whom it should: a crowd of clients that never finish a
//! request does not delay a scrape, and with `--web-config` (the Prometheus exporter toolkit's
//! file) it serves TLS and asks for a bcrypt-checked password. All traffic stays on 127.0.0.1.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use support::{flow, free_port, privileged, tool, wait_for, Running};

/// Each idle client holds a descriptor here as in the exporter: the soft limit goes up to the hard
/// one (the exporter does the same for itself).
fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// `GET /metrics` over plain HTTP/1.0: the status line and body, or `None` when nothing came
/// within `limit`.
fn scrape(port: u16, limit: Duration) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(limit)).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// `count` connections that each sent half a request line and then nothing.
fn idle_clients(port: u16, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            let mut stream = TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("idle client {i}: {e}"));
            stream.write_all(b"GET /metr").unwrap();
            stream
        })
        .collect()
}

fn start_exporter(port: u16, extra: &[&str]) -> Running {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["serve", "--listen", &listen, "--interval", "200ms"];
    args.extend_from_slice(extra);
    Running::spawn(flow().args(&args))
}

fn stop(mut exporter: Running) {
    assert_eq!(
        exporter.stop_with(libc::SIGTERM, Duration::from_secs(10)),
        Some(0),
        "{}",
        exporter.stderr()
    );
    assert!(
        !exporter.stderr().contains("panicked"),
        "{}",
        exporter.stderr()
    );
}

#[test]
fn scrape_answers_within_a_second_under_a_thousand_idle_clients() {
    const TEST: &str = "scrape_answers_within_a_second_under_a_thousand_idle_clients";
    if !privileged(TEST) {
        return;
    }
    assert!(raise_descriptor_limit() >= 1_200, "need 1,200 descriptors");
    let port = free_port();
    let exporter = start_exporter(port, &[]);
    let up = wait_for(Duration::from_secs(20), || {
        scrape(port, Duration::from_secs(5)).filter(|(status, _)| status.contains(" 200"))
    });
    assert!(
        up.is_some(),
        "exporter never answered: {}",
        exporter.stderr()
    );

    let started = Instant::now();
    let idle = idle_clients(port, 1_000);
    eprintln!(
        "{TEST}: 1,000 idle clients connected in {:?}",
        started.elapsed()
    );
    // Let the exporter accept them all before the scrape joins the queue behind them.
    std::thread::sleep(Duration::from_millis(500));
    for round in 0..3 {
        let started = Instant::now();
        let answer = scrape(port, Duration::from_secs(5));
        let took = started.elapsed();
        eprintln!("{TEST}: scrape {round} under 1,000 idle clients took {took:?}");
        let (status, body) = answer.unwrap_or_else(|| {
            panic!(
                "no answer within 5 s under 1,000 idle clients: {}",
                exporter.stderr()
            )
        });
        assert!(status.contains(" 200"), "{status}");
        assert!(body.contains("flow_monitor_info"), "{body}");
        assert!(took < Duration::from_secs(1), "scrape took {took:?}");
    }
    // The idle clients were all still open during the scrapes (the header timeout is seconds
    // away); closing them leaves the exporter serving.
    let open = idle
        .iter()
        .filter(|client| {
            client.set_nonblocking(true).unwrap();
            matches!(client.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert_eq!(
        open, 1_000,
        "idle clients closed before the scrapes were done"
    );
    drop(idle);
    let answer = scrape(port, Duration::from_secs(5));
    assert!(answer.is_some_and(|(status, _)| status.contains(" 200")));
    stop(exporter);
}

#[test]
fn crowd_beyond_the_descriptor_limit_costs_its_oldest_not_the_scrape() {
    const TEST: &str = "crowd_beyond_the_descriptor_limit_costs_its_oldest_not_the_scrape";
    if !privileged(TEST) {
        return;
    }
    assert!(raise_descriptor_limit() >= 1_200, "need 1,200 descriptors");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = flow();
    command.args(["serve", "--listen", &listen, "--interval", "200ms"]);
    // The exporter may hold 400 descriptors: 1,000 idle clients are more than it can keep.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 400,
                rlim_max: 400,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let exporter = Running::spawn(&mut command);
    let up = wait_for(Duration::from_secs(20), || {
        scrape(port, Duration::from_secs(5))
    });
    assert!(
        up.is_some(),
        "exporter never answered: {}",
        exporter.stderr()
    );
    let idle = idle_clients(port, 1_000);
    std::thread::sleep(Duration::from_millis(500));
    for round in 0..3 {
        let started = Instant::now();
        let answer = scrape(port, Duration::from_secs(5));
        let took = started.elapsed();
        eprintln!(
            "{TEST}: scrape {round} with 400 descriptors and 1,000 idle clients took {took:?}"
        );
        let (status, body) =
            answer.unwrap_or_else(|| panic!("no answer within 5 s: {}", exporter.stderr()));
        assert!(status.contains(" 200"), "{status}");
        // The monitor still had the descriptors it measures with.
        assert!(body.contains("flow_poll_errors_total 0"), "{body}");
        assert!(took < Duration::from_secs(1), "scrape took {took:?}");
    }
    // Room was made before the descriptors ran out, not by failing accepts.
    assert!(
        !exporter.stderr().contains("Too many open files"),
        "{}",
        exporter.stderr()
    );
    drop(idle);
    stop(exporter);
}

#[test]
fn idle_client_is_dropped_after_the_header_timeout() {
    const TEST: &str = "idle_client_is_dropped_after_the_header_timeout";
    if !privileged(TEST) {
        return;
    }
    let port = free_port();
    let exporter = start_exporter(port, &[]);
    let up = wait_for(Duration::from_secs(20), || {
        scrape(port, Duration::from_secs(5))
    });
    assert!(
        up.is_some(),
        "exporter never answered: {}",
        exporter.stderr()
    );
    let mut idle = idle_clients(port, 1).pop().unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    // hyper closes a connection whose headers did not come in time (it may first say 408).
    let _ = idle.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "a half-sent request held its connection for {took:?}"
    );
    stop(exporter);
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("flow-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

/// `curl` against the exporter: (HTTP status code, body). `000` is curl's "no HTTP answer".
fn curl(curl: &str, url: &str, extra: &[&str]) -> (String, String) {
    let output = run(Command::new(curl)
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url));
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

/// A self-signed certificate for 127.0.0.1 and its key, made by `openssl`.
fn self_signed(openssl: &str, dir: &TempDir) {
    let made = run(Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(dir.path("key.pem"))
        .arg("-out")
        .arg(dir.path("cert.pem")));
    assert!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// `htpasswd -nbBC 10 user password` → the bcrypt hash.
fn bcrypt_hash(htpasswd: &str, user: &str, password: &str) -> String {
    let made = run(Command::new(htpasswd).args(["-nbBC", "10", user, password]));
    assert!(made.status.success());
    let line = String::from_utf8(made.stdout).unwrap();
    let (name, hash) = line.trim().split_once(':').unwrap();
    assert_eq!(name, user);
    hash.to_string()
}

#[test]
fn web_config_serves_tls_and_lets_in_only_the_right_password() {
    const TEST: &str = "web_config_serves_tls_and_lets_in_only_the_right_password";
    if !privileged(TEST) {
        return;
    }
    let (Some(curl_path), Some(openssl), Some(htpasswd)) = (
        tool("curl", TEST),
        tool("openssl", TEST),
        tool("htpasswd", TEST),
    ) else {
        return;
    };
    let dir = TempDir::new("web-config");
    self_signed(openssl, &dir);
    let hash = bcrypt_hash(htpasswd, "prometheus", "s3cret pass");
    // The file as node_exporter takes it, cert and key relative to it.
    let config = dir.path("web.yml");
    std::fs::write(
        &config,
        format!(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let exporter = start_exporter(port, &["--web-config", config.to_str().unwrap()]);
    let url = format!("https://127.0.0.1:{port}/metrics");
    let cacert = dir.path("cert.pem");
    let cacert = cacert.to_str().unwrap();
    let good = ["--cacert", cacert, "-u", "prometheus:s3cret pass"];
    let up = wait_for(Duration::from_secs(20), || {
        let (code, body) = curl(curl_path, &url, &good);
        (code == "200").then_some(body)
    });
    let body = up.unwrap_or_else(|| panic!("no metrics over TLS: {}", exporter.stderr()));
    assert!(body.contains("flow_monitor_info"), "{body}");
    assert!(exporter
        .stderr()
        .contains(&format!("https://127.0.0.1:{port}/metrics")));

    // Verified once, then from memory: a scrape does not pay for bcrypt again.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(curl(curl_path, &url, &good).0, "200");
    }
    eprintln!(
        "{TEST}: 5 authenticated TLS scrapes took {:?}",
        started.elapsed()
    );
    let (code, _) = curl(
        curl_path,
        &url,
        &["--cacert", cacert, "-u", "prometheus:wrong"],
    );
    assert_eq!(code, "401", "wrong password");
    let (code, _) = curl(
        curl_path,
        &url,
        &["--cacert", cacert, "-u", "nobody:s3cret pass"],
    );
    assert_eq!(code, "401", "unknown user");
    let (code, _) = curl(curl_path, &url, &["--cacert", cacert]);
    assert_eq!(code, "401", "no credentials");
    let headers = run(Command::new(curl_path)
        .args([
            "-sS",
            "--max-time",
            "5",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            cacert,
        ])
        .arg(&url));
    let headers = String::from_utf8_lossy(&headers.stdout).to_lowercase();
    assert!(headers.contains("www-authenticate: basic"), "{headers}");
    assert!(
        headers.contains("x-content-type-options: nosniff"),
        "{headers}"
    );
    // Without the CA the certificate is refused; plain HTTP to the TLS port gets no HTTP answer.
    let (code, _) = curl(curl_path, &url, &["-u", "prometheus:s3cret pass"]);
    assert_eq!(code, "000", "an unknown certificate was accepted");
    let plain_url = format!("http://127.0.0.1:{port}/metrics");
    let (code, body) = curl(curl_path, &plain_url, &["-u", "prometheus:s3cret pass"]);
    assert_eq!(code, "000", "plain HTTP got an answer: {body}");
    assert!(!body.contains("flow_"), "{body}");

    // Clients that open a connection and never start the handshake hold no one up.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let started = Instant::now();
    assert_eq!(curl(curl_path, &url, &good).0, "200");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "TLS scrape took {took:?}");
    drop(idle);
    stop(exporter);
}

#[test]
fn bad_web_config_is_one_line_at_start() {
    const TEST: &str = "bad_web_config_is_one_line_at_start";
    let dir = TempDir::new("bad-web-config");
    let cases: [(&str, &str, &str); 4] = [
        (
            "unknown.yml",
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  cert_fil: x\n",
            "unknown field `cert_fil`",
        ),
        (
            "torn.yml",
            "tls_server_config:\n  cert_file: /etc/flow/cert.pem\n  key_fi",
            "line 3",
        ),
        (
            "hash.yml",
            "basic_auth_users:\n  alice: $2y$10$abc\n",
            "alice",
        ),
        (
            "nocert.yml",
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n",
            "missing.pem",
        ),
    ];
    for (name, text, expect) in cases {
        let path = dir.path(name);
        std::fs::write(&path, text).unwrap();
        let port = free_port();
        let output = run(flow()
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--web-config",
            ])
            .arg(&path));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{TEST}: {name} was accepted");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.starts_with("flow: error: --web-config "),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains(name) && stderr.contains(expect),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let missing = Path::new("/nonexistent/web.yml");
    let output = run(flow()
        .args(["serve", "--listen", "127.0.0.1:0", "--web-config"])
        .arg(missing));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("cannot read it"),
        "{stderr}"
    );
}
