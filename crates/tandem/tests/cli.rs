//! The binary's command line: help, version, --check-config and its exit codes.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest wait for the process to do what a test expects.
const DEADLINE: Duration = Duration::from_secs(10);

fn tandem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .output()
        .unwrap()
}

/// A config file in the temp dir, removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(text: &str) -> TempConfig {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tandem-cli-test-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempConfig(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn version_and_help() {
    let out = tandem(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("tandem {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = tandem(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("--check-config FILE"));
}

#[test]
fn unknown_argument_exits_64_with_usage() {
    let out = tandem(&["--listen", "0.0.0.0:5060"]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("unknown argument \"--listen\"") && stderr.contains("Usage:"),
        "{stderr}"
    );
}

#[test]
fn check_config_accepts_the_shipped_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/default.toml");
    let out = tandem(&["--check-config", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{path}: ok\n")
    );
}

#[test]
fn check_config_names_the_bad_key_and_exits_64() {
    let file = TempConfig::new(
        "[pool]\nprobe_timeout = \"2s\"\n\
         [[media_server]]\nname = \"a\"\naddress = \"127.0.0.1:5080\"\n",
    );
    let out = tandem(&["--check-config", file.path()]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("pool.probe_timeout: must be shorter than pool.probe_interval"),
        "{stderr}"
    );
}

#[test]
fn serving_with_a_bad_config_exits_64_before_binding() {
    let file = TempConfig::new("[sip]\nlisten = \"nowhere\"\n");
    let out = tandem(&["--config", file.path()]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("sip.listen: invalid socket address \"nowhere\""),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_file_exits_64() {
    let out = tandem(&["--check-config", "/nonexistent/tandem.toml"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("cannot read /nonexistent/tandem.toml"));
}

/// A `tandem` process serving a config, killed if a test leaves it running.
struct Serving {
    child: std::process::Child,
    /// Its stderr, line by line; disconnected once the process closed stderr (exited).
    lines: mpsc::Receiver<String>,
    /// The SIP address it logged.
    sip: Option<std::net::SocketAddr>,
}

impl Serving {
    /// Starts the binary with `config` and waits until it logs that it runs.
    fn start(config: &TempConfig) -> Serving {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["--config", config.path()])
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut serving = Serving {
            child,
            lines,
            sip: None,
        };
        let running = serving.wait_for_line("tandem running");
        serving.sip = running
            .split_whitespace()
            .find_map(|field| field.strip_prefix("sip="))
            .and_then(|addr| addr.parse().ok());
        serving
    }

    /// Waits for a log line containing `needle` and returns it.
    fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Exit code, once stderr closed (the process ended).
    fn exit_code(mut self) -> Option<i32> {
        let deadline = Instant::now() + DEADLINE;
        while self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
        {}
        self.child.wait().unwrap().code()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn sigterm_without_calls_drains_and_exits_0() {
    let config = TempConfig::new(
        "[sip]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n\
         [[media_server]]\nname = \"a\"\naddress = \"127.0.0.1:5080\"\n",
    );
    let tandem = Serving::start(&config);
    tandem.signal("-TERM");
    tandem.wait_for_line("drained");
    assert_eq!(tandem.exit_code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once_with_a_call_up() {
    let (media, _seen) = support::start_media_server().await;
    let config = TempConfig::new(&format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n\
         [shutdown]\ngrace = \"1h\"\n\
         [[media_server]]\nname = \"a\"\naddress = \"{media}\"\n"
    ));
    let tandem = Serving::start(&config);
    let caller = support::Caller::new(tandem.sip.unwrap()).await;
    let _call = caller.call("call-1").await;
    tandem.signal("-INT");
    tandem.wait_for_line("draining: new calls get 503");
    tandem.signal("-TERM");
    tandem.wait_for_line("second signal");
    assert_eq!(tandem.exit_code(), Some(tandem::signals::EXIT_FORCED));
}
