//! Real Asterisk 22 instances (scripts/asterisk-lab.sh) as media servers.
//!
//! Instance 1 listens on 127.0.0.1:5080, instance 2 on 127.0.0.2:5080 (UDP and TCP); both take calls
//! from a proxy at 127.0.0.1 (any port): extension 100 answers and echoes the media, extension 200
//! dials agent1, a SIPp on 127.0.0.1:`agent_port`. The ports are fixed, so tests using the lab take
//! [`AsteriskLab::lock`] first. Instances left over by a killed test run are stopped before a start.

use crate::process::file_tail;
use crate::workdir::{need_root, need_tool, skip, workspace_root};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// The chroot built by scripts/install-test-deps.sh.
fn chroot_dir() -> PathBuf {
    if let Some(root) = std::env::var_os("ASTERISK_ROOT") {
        return PathBuf::from(root);
    }
    let cache = std::env::var_os("TANDEM_LAB_CACHE").map(PathBuf::from);
    cache
        .unwrap_or_else(|| PathBuf::from("/var/cache/tandem-lab"))
        .join("asterisk-root")
}

/// Handle on the lab; dropping it stops the instances it started.
#[derive(Debug)]
pub struct AsteriskLab {
    run_dir: PathBuf,
    agent_port: u16,
    started: Vec<u8>,
}

impl AsteriskLab {
    /// Whether the lab can run here (root, the chroot, sipp and tcpdump); prints a SKIP line if not.
    pub fn available(test: &str) -> bool {
        if !need_root(test) || !need_tool(test, "sipp") || !need_tool(test, "tcpdump") {
            return false;
        }
        if !chroot_dir().join("usr/sbin/asterisk").is_file() {
            skip(
                test,
                &format!(
                    "no Asterisk chroot at {} (run scripts/install-test-deps.sh)",
                    chroot_dir().display()
                ),
            );
            return false;
        }
        true
    }

    /// Serialises the tests that use the lab (fixed addresses).
    pub fn lock() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A lab whose rendered configs, pid files and console logs go to `target/tandem-tests/asterisk-lab`,
    /// with agent1 expected on 127.0.0.1:`agent_port`.
    pub fn new(agent_port: u16) -> AsteriskLab {
        let run_dir = workspace_root()
            .join("target")
            .join("tandem-tests")
            .join("asterisk-lab");
        AsteriskLab {
            run_dir,
            agent_port,
            started: Vec::new(),
        }
    }

    /// SIP address of instance `n`.
    pub fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 5080))
    }

    /// RTP ports of instance `n` (its rtp.conf, rendered by scripts/asterisk-lab.sh).
    pub fn rtp_ports(n: u8) -> RangeInclusive<u16> {
        let start = 20_000 + (u16::from(n.max(1)) - 1) * 1_000;
        start..=start + 999
    }

    fn script(&self, args: &[&str]) -> Result<String> {
        let script = workspace_root().join("scripts").join("asterisk-lab.sh");
        let output = Command::new(&script)
            .args(args)
            .env("ASTERISK_LAB_RUN", &self.run_dir)
            .env("ASTERISK_ROOT", chroot_dir())
            .env("AGENT_PORT", self.agent_port.to_string())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "asterisk-lab.sh {} failed: {}{}",
                args.join(" "),
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    }

    /// Starts instance `n` (stopping a leftover one first) and waits until it takes calls.
    pub fn start(&mut self, n: u8) -> Result<()> {
        self.script(&["stop", &n.to_string()])?;
        self.script(&["start", &n.to_string()])?;
        self.started.push(n);
        self.script(&["ready", &n.to_string(), "15"])
            .with_context(|| format!("console log: {}", file_tail(&self.console_log(n), 15)))?;
        Ok(())
    }

    /// `kill -9` of instance `n`.
    pub fn kill9(&mut self, n: u8) -> Result<()> {
        self.script(&["kill9", &n.to_string()]).map(|_| ())
    }

    /// Stops instance `n`.
    pub fn stop(&mut self, n: u8) -> Result<()> {
        self.started.retain(|i| *i != n);
        self.script(&["stop", &n.to_string()]).map(|_| ())
    }

    /// Runs an Asterisk CLI command on instance `n`.
    pub fn cli(&self, n: u8, command: &str) -> Result<String> {
        self.script(&["cli", &n.to_string(), command])
    }

    /// "calls processed" of `core show channels count` on instance `n`: calls since it started.
    pub fn calls_processed(&self, n: u8) -> Result<u64> {
        let text = self.cli(n, "core show channels count")?;
        text.lines()
            .find(|l| l.contains("calls processed") || l.contains("call processed"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no 'calls processed' in: {text}"))
    }

    /// Console log of instance `n`.
    pub fn console_log(&self, n: u8) -> PathBuf {
        self.run_dir.join(format!("asterisk-{n}.out"))
    }

    /// Copies the console logs of the instances into `dir` (for failure messages).
    pub fn save_logs(&self, dir: &Path) {
        for n in [1u8, 2] {
            let _ = std::fs::copy(self.console_log(n), dir.join(format!("asterisk-{n}.out")));
        }
    }
}

impl Drop for AsteriskLab {
    fn drop(&mut self) {
        for n in std::mem::take(&mut self.started) {
            let _ = self.script(&["stop", &n.to_string()]);
        }
    }
}
