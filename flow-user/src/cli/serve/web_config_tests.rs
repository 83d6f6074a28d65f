use std::path::Path;

use hyper::header::HeaderValue;

use super::WebConfig;

/// `htpasswd -nbBC 10 alice s3cret` (apache2-utils).
const ALICE: &str = "$2y$10$VT/5z/ELRcNQI73JnjccYeOfUh9Z9yweVEOHuGh6rdNBOR4K1ZwIG";

fn parse(text: &str) -> anyhow::Result<WebConfig> {
    WebConfig::parse(text, Path::new("/nonexistent"))
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(err) => {
            let line = format!("{err:#}");
            assert!(!line.contains('\n'), "not one line: {line}");
            line
        }
    }
}

fn basic(user: &str, password: &str) -> HeaderValue {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::try_from(format!("Basic {encoded}")).unwrap()
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn empty_or_comment_only_file_is_plain_http_without_auth() {
    for text in ["", "# nothing yet\n", "---\n"] {
        let config = parse(text).unwrap();
        assert!(config.tls.is_none() && config.auth.is_none() && config.headers.is_empty());
    }
}

#[test]
fn good_file_with_users_and_headers() {
    let text = format!(
        "# as node_exporter takes it\n\
         http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n\
         basic_auth_users:\n  alice: {ALICE}\n"
    );
    let config = parse(&text).unwrap();
    assert!(config.tls.is_none());
    assert_eq!(config.headers.len(), 1);
    assert_eq!(config.headers[0].0.as_str(), "x-frame-options");
    let auth = config.auth.unwrap();
    block_on(async {
        assert!(!auth.allows(None).await);
        assert!(!auth.allows(Some(&basic("alice", "wrong"))).await);
        assert!(!auth.allows(Some(&basic("bob", "s3cret"))).await);
        assert!(
            !auth
                .allows(Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
        assert!(auth.allows(Some(&basic("alice", "s3cret"))).await);
        // Now from memory: no bcrypt, so it is quick.
        let started = std::time::Instant::now();
        for _ in 0..100 {
            assert!(auth.allows(Some(&basic("alice", "s3cret"))).await);
        }
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        // A remembered password does not let a different one in.
        assert!(!auth.allows(Some(&basic("alice", "s3cre"))).await);
        assert!(!auth.allows(Some(&basic("alice", "s3crett"))).await);
    });
}

#[test]
fn unknown_key_is_named() {
    let line = error("tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n  certfile: b\n");
    assert!(line.contains("unknown field `certfile`"), "{line}");
    let line = error("basic_auth:\n  alice: x\n");
    assert!(line.contains("unknown field `basic_auth`"), "{line}");
}

#[test]
fn torn_file_is_one_line() {
    // Cut in the middle of a key, of a hash, and of a flow mapping.
    let line = error("tls_server_config:\n  cert_file: /etc/flow/cert.pem\n  key_fi");
    assert!(line.contains("line"), "{line}");
    let torn = format!("basic_auth_users:\n  alice: {}", &ALICE[..30]);
    let line = error(&torn);
    assert!(line.contains("alice") && line.contains("bcrypt"), "{line}");
    let line = error("basic_auth_users: {alice: ");
    assert!(!line.is_empty());
    let line = error("basic_auth_users:\n  - alice\n");
    assert!(line.contains("basic_auth_users"), "{line}");
}

#[test]
fn what_cannot_be_honoured_is_refused() {
    let line = error("tls_server_config:\n  key_file: a.key\n");
    assert!(line.contains("cert_file is missing"), "{line}");
    let line = error("tls_server_config:\n  cert_file: /nonexistent/a.pem\n  key_file: a.key\n");
    assert!(line.contains("cannot read /nonexistent/a.pem"), "{line}");
    let line = error("rate_limit:\n  interval: 1s\n  burst: 5\n");
    assert!(line.contains("rate_limit"), "{line}");
    let line = error("http_server_config:\n  headers:\n    Content-Type: text/html\n");
    assert!(line.contains("Content-Type"), "{line}");
}

#[test]
fn tls_identity_and_versions() {
    let Some(dir) = self_signed() else {
        return;
    };
    let base = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";
    // Relative to the config file's directory, as the toolkit takes them.
    let config = WebConfig::parse(base, &dir).unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
    let parse_in = |extra: &str| WebConfig::parse(&format!("{base}{extra}"), &dir);
    assert!(parse_in("  min_version: TLS13\n").is_ok());
    assert!(parse_in("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n").is_ok());
    assert!(parse_in("  curve_preferences: [X25519, CurveP256]\n").is_ok());
    let line = format!("{:#}", parse_in("  min_version: TLS10\n").err().unwrap());
    assert!(line.contains("TLS 1.2 and 1.3 only"), "{line}");
    let line = format!(
        "{:#}",
        parse_in("  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n")
            .err()
            .unwrap()
    );
    assert!(
        line.contains("TLS_RSA_WITH_RC4_128_SHA is not offered"),
        "{line}"
    );
    let line = format!(
        "{:#}",
        parse_in("  client_auth_type: RequireAndVerifyClientCert\n")
            .err()
            .unwrap()
    );
    assert!(line.contains("client_ca_file is missing"), "{line}");
    assert!(parse_in(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: cert.pem\n"
    )
    .is_ok());
    // A key that is not the certificate's.
    std::fs::write(dir.join("other.pem"), b"not pem").unwrap();
    let line = format!(
        "{:#}",
        WebConfig::parse(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: other.pem\n",
            &dir
        )
        .err()
        .unwrap()
    );
    assert!(line.contains("no private key"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A self-signed certificate and key made by `openssl` in a temporary directory.
fn self_signed() -> Option<std::path::PathBuf> {
    if !Path::new("/usr/bin/openssl").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl must be installed"
        );
        eprintln!("NOT RUN: needs openssl");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("flow-web-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = std::process::Command::new("/usr/bin/openssl")
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
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    Some(dir)
}
