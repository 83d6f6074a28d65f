//! A real TLS server on loopback (`openssl s_server` with a fresh self-signed certificate),
//! killed and its files removed when dropped.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use super::free_port;

pub struct TlsServer {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl TlsServer {
    /// `openssl s_server` on 127.0.0.1 at a free port, its certificate for `common_name`.
    /// The caller waits for it to listen (a probe connection is a connection too).
    pub fn start(openssl: &str, common_name: &str) -> TlsServer {
        let dir =
            std::env::temp_dir().join(format!("flow-tls-{}-{}", std::process::id(), common_name));
        std::fs::create_dir_all(&dir).unwrap();
        let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
        let made = Command::new(openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .arg("-subj")
            .arg(format!("/CN={common_name}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(made.success(), "openssl req failed");
        let port = free_port();
        let child = Command::new(openssl)
            .args([
                "s_server",
                "-quiet",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("-key")
            .arg(&key)
            .arg("-cert")
            .arg(&cert)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        TlsServer { port, child, dir }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
