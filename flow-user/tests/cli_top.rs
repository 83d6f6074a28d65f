//! `flow top` as a person uses it: drawn in tmux and driven with keys, and as plain tables
//! when its output is piped.

mod cli_support;

use std::{process::Command, time::Duration};

use cli_support::{flow, has_nonzero_rate, privileged, tool, wait_for, Running, Transfer};

/// A 64 KiB write every 20 ms: about 3 MiB/s, for at most `limit`.
fn traffic(limit: Duration) -> Transfer {
    Transfer::start(64 * 1024, Duration::from_millis(20), limit)
}

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    tmux: &'static str,
    socket: std::path::PathBuf,
}

impl Tmux {
    /// `name` keeps the servers of tests running in parallel apart.
    fn start(tmux: &'static str, name: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            tmux,
            socket: std::env::temp_dir().join(format!("flow-tmux-{name}-{}", std::process::id())),
        };
        let shell =
            "env -i PATH=/usr/bin:/bin TERM=xterm-256color PS1='$ ' bash --norc --noprofile";
        let width = width.to_string();
        let height = height.to_string();
        let args = [
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            &width,
            "-y",
            &height,
            shell,
        ];
        assert!(tmux.run(&args).status.success(), "tmux new-session");
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.tmux)
            .args(["-u", "-f", "/dev/null", "-S"])
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "tmux send-keys");
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Waits (bounded) until the screen satisfies `check`; the last screen on failure.
    fn wait(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let found = wait_for(Duration::from_secs(20), || {
            last = self.screen();
            check(&last).then(|| last.clone())
        });
        found.unwrap_or_else(|| panic!("screen never showed {what}:\n{last}"))
    }

    fn value(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "top", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The screen line of the connection end whose local port is `port`, and its row index.
fn row_with_local_port(screen: &str, port: u16) -> Option<(usize, String)> {
    let local = format!("127.0.0.1:{port}");
    screen.lines().enumerate().find_map(|(i, line)| {
        let mut words = line.split_whitespace();
        words.next()?; // process/pid
        (words.next()? == local).then(|| (i, line.to_string()))
    })
}

/// Row indexes of the server end (receiving) and the client end (sending).
fn ends(screen: &str, transfer: &Transfer) -> Option<(usize, usize)> {
    let (server, _) = row_with_local_port(screen, transfer.port)?;
    let (client, _) = row_with_local_port(screen, transfer.client_port)?;
    Some((server, client))
}

#[test]
fn top_draws_sorts_and_quits_in_tmux() {
    if !privileged("top_draws_sorts_and_quits_in_tmux") {
        return;
    }
    let Some(tmux_path) = tool("tmux", "top_draws_sorts_and_quits_in_tmux") else {
        return;
    };
    let transfer = traffic(Duration::from_secs(60));
    let tmux = Tmux::start(tmux_path, "keys", 150, 30);
    let command = format!(
        "{} top --interval 500ms --port {}; echo FLOW-EXIT=$?",
        env!("CARGO_BIN_EXE_flow"),
        transfer.port
    );
    tmux.keys(&[&command, "Enter"]);

    // The header, and the receiving end with a rate above zero.
    let screen = tmux.wait("the header and a busy row for the test's connection", |s| {
        s.contains("flow top")
            && s.contains("sort: total")
            && row_with_local_port(s, transfer.port).is_some_and(|(_, row)| has_nonzero_rate(&row))
    });
    assert!(
        screen.contains("PROCESS/PID") && screen.contains("HISTORY"),
        "{screen}"
    );
    assert_eq!(
        tmux.value("#{alternate_on}"),
        "1",
        "draws on the alternate screen"
    );

    // r: receive rate first, so the server end leads; s: send rate, so the client end does.
    tmux.keys(&["r"]);
    tmux.wait("sort by rx: the receiving end first", |s| {
        s.contains("sort: rx")
            && s.contains("RX/S\u{25bc}")
            && ends(s, &transfer).is_some_and(|(srv, cli)| srv < cli)
    });
    tmux.keys(&["s"]);
    tmux.wait("sort by tx: the sending end first", |s| {
        s.contains("sort: tx")
            && s.contains("TX/S\u{25bc}")
            && ends(s, &transfer).is_some_and(|(srv, cli)| cli < srv)
    });
    tmux.keys(&["Space"]);
    tmux.wait("paused", |s| s.contains("[PAUSED]"));
    tmux.keys(&["Space"]);
    tmux.wait("resumed", |s| {
        !s.contains("[PAUSED]") && s.contains("sort: tx")
    });

    // Resizing redraws; q quits with 0 and gives the shell back.
    assert!(tmux
        .run(&["resize-window", "-t", "top", "-x", "100", "-y", "20"])
        .status
        .success());
    tmux.wait("the view after a resize", |s| {
        s.contains("flow top") && s.lines().count() <= 20
    });
    tmux.keys(&["q"]);
    tmux.wait("flow exiting with 0", |s| s.contains("FLOW-EXIT=0"));
    assert_eq!(
        tmux.value("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
    tmux.keys(&["echo READY-$((20+22))", "Enter"]);
    tmux.wait("a shell that runs commands", |s| s.contains("READY-42"));
    drop(transfer);
}

#[test]
fn top_gives_the_terminal_back_on_sigterm() {
    if !privileged("top_gives_the_terminal_back_on_sigterm") {
        return;
    }
    let Some(tmux_path) = tool("tmux", "top_gives_the_terminal_back_on_sigterm") else {
        return;
    };
    let tmux = Tmux::start(tmux_path, "sigterm", 120, 25);
    let command = format!(
        "{} top --interval 300ms; echo FLOW-EXIT=$?",
        env!("CARGO_BIN_EXE_flow")
    );
    tmux.keys(&[&command, "Enter"]);
    tmux.wait("the view", |s| s.contains("sort: total"));
    assert_eq!(tmux.value("#{alternate_on}"), "1");
    let shell: u32 = tmux.value("#{pane_pid}").parse().expect("pane pid");
    let flow = child_of(shell).expect("flow runs under the pane's shell");
    unsafe { libc::kill(flow as i32, libc::SIGTERM) };
    let screen = tmux.wait("flow exiting after SIGTERM", |s| exit_code(s).is_some());
    assert_eq!(exit_code(&screen), Some(0), "{screen}");
    assert!(!screen.contains("panicked"), "{screen}");
    assert_eq!(
        tmux.value("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
}

/// The status `echo FLOW-EXIT=$?` printed (not the typed command line).
fn exit_code(screen: &str) -> Option<i32> {
    screen.split("FLOW-EXIT=").skip(1).find_map(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// The first process whose parent is `parent` (from `/proc/<pid>/stat`).
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The name in parentheses may hold spaces: fields resume after the last ')'.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
}

#[test]
fn top_once_piped_prints_one_plain_table_with_the_connection() {
    if !privileged("top_once_piped_prints_one_plain_table_with_the_connection") {
        return;
    }
    let transfer = traffic(Duration::from_secs(30));
    let out = flow()
        .args(["top", "--once", "--interval", "500ms"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains('\u{1b}'),
        "no terminal control codes when piped"
    );
    assert_eq!(
        stdout.matches("PROCESS/PID").count(),
        1,
        "one table:\n{stdout}"
    );
    let row = row_with_local_port(&stdout, transfer.port)
        .unwrap_or_else(|| panic!("no row for port {}:\n{stdout}", transfer.port));
    assert!(has_nonzero_rate(&row.1), "{}", row.1);
    let pid = std::process::id();
    assert!(row.1.contains(&format!("/{pid}")), "owner shown: {}", row.1);

    // Filters: --pid keeps only ours, --protocol HTTP drops this UNKNOWN connection.
    let filtered = flow()
        .args([
            "top",
            "--once",
            "--interval",
            "300ms",
            "--pid",
            &pid.to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&filtered.stdout);
    let rows: Vec<&str> = text.lines().skip(3).collect();
    assert!(!rows.is_empty(), "{text}");
    assert!(
        rows.iter().all(|r| r.contains(&format!("/{pid} "))),
        "{text}"
    );
    let port = transfer.port.to_string();
    let http = flow()
        .args([
            "top",
            "--once",
            "--interval",
            "300ms",
            "--port",
            &port,
            "--protocol",
            "http",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&http.stdout);
    assert!(
        http.status.success() && !text.contains(&format!(":{port}")),
        "{text}"
    );
    drop(transfer);
}

#[test]
fn top_piped_prints_a_table_every_interval_until_sigterm() {
    if !privileged("top_piped_prints_a_table_every_interval_until_sigterm") {
        return;
    }
    let transfer = traffic(Duration::from_secs(30));
    let port = transfer.port.to_string();
    let mut top = Running::spawn(flow().args(["top", "--interval", "300ms", "--port", &port]));
    let tables = wait_for(Duration::from_secs(20), || {
        let out = top.stdout();
        (out.matches("PROCESS/PID").count() >= 3).then_some(out)
    });
    let tables = tables.unwrap_or_else(|| panic!("fewer than 3 tables:\n{}", top.stdout()));
    assert!(tables.contains(&format!("127.0.0.1:{port}")), "{tables}");
    assert_eq!(
        top.stop_with(libc::SIGTERM, Duration::from_secs(10)),
        Some(0)
    );
    assert!(!top.stderr().contains("panicked"), "{}", top.stderr());
    drop(transfer);
}
