//! Running Kamailio (tests/kamailio/proxy.cfg) as a record-routing proxy in a test's chain.

use crate::ports::free_port;
use crate::process::{wait_for, ChildGuard};
use crate::sip_ping::ping;
use crate::{IpFamily, Transport};
use anyhow::{bail, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long Kamailio may take to answer its first OPTIONS.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Kamailio's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KamailioConfig {
    /// Config file.
    pub cfg: PathBuf,
    /// Where it listens (UDP and TCP).
    pub listen: SocketAddr,
    /// Where new requests go.
    pub next_hop: SocketAddr,
    /// Transport toward the next hop.
    pub next_transport: Transport,
    /// On a 5xx from the next hop, the port (same host) of a second one to try.
    pub alternate_port: Option<u16>,
    /// Also load the dialog module.
    pub dialog: bool,
    /// Worker processes per listening socket (`-n`).
    pub children: u32,
    /// Shared memory in MiB (`-m`).
    pub shm_mb: u32,
    /// Private memory per process in MiB (`-M`).
    pub pkg_mb: u32,
}

impl KamailioConfig {
    /// tests/kamailio/proxy.cfg on a free port of the loopback address of `next_hop`'s family,
    /// forwarding to `next_hop`; 2 workers, 64 MiB shared and 8 MiB private memory.
    pub fn new(next_hop: SocketAddr, next_transport: Transport) -> KamailioConfig {
        KamailioConfig {
            cfg: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("kamailio")
                .join("proxy.cfg"),
            listen: IpFamily::of(next_hop.ip()).addr(free_port()),
            next_hop,
            next_transport,
            alternate_port: None,
            dialog: false,
            children: 2,
            shm_mb: 64,
            pkg_mb: 8,
        }
    }

    /// The argument list (the run folder holds the pid file and the runtime dir).
    pub fn args(&self, run_dir: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "-DD".into(),
            "-E".into(),
            "-f".into(),
            self.cfg.to_string_lossy().into_owned(),
            "-P".into(),
            run_dir.join("kamailio.pid").to_string_lossy().into_owned(),
            "-Y".into(),
            run_dir.to_string_lossy().into_owned(),
            "-n".into(),
            self.children.to_string(),
            "-m".into(),
            self.shm_mb.to_string(),
            "-M".into(),
            self.pkg_mb.to_string(),
            "-l".into(),
            format!("udp:{}", self.listen),
            "-l".into(),
            format!("tcp:{}", self.listen),
            "-A".into(),
            format!("NEXT_HOST=\"{}\"", uri_host(self.next_hop.ip())),
            "-A".into(),
            format!("NEXT_PORT={}", self.next_hop.port()),
            "-A".into(),
            format!("NEXT_PROTO=\"{}\"", self.next_transport),
        ];
        if let Some(port) = self.alternate_port {
            args.extend(["-A".into(), format!("ALT_PORT={port}")]);
        }
        if self.dialog {
            args.extend(["-A".into(), "WITH_DIALOG".into()]);
        }
        args
    }
}

/// `ip` as the host part of a SIP URI: IPv6 references in brackets (RFC 5118 §4.1).
fn uri_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A running Kamailio (its own process group; dropping it stops all its processes).
#[derive(Debug)]
pub struct Kamailio {
    guard: ChildGuard,
    config: KamailioConfig,
    log_dir: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio with its log (stderr) in `<dir>/<name>/` and waits until it answers OPTIONS.
    pub fn start(name: &str, config: KamailioConfig, dir: &Path) -> Result<Kamailio> {
        let log_dir = dir.join(name);
        std::fs::create_dir_all(&log_dir)?;
        let mut command = Command::new("kamailio");
        command.args(config.args(&log_dir));
        let guard = ChildGuard::spawn("kamailio", command, &log_dir, true)?;
        let mut kamailio = Kamailio {
            guard,
            config,
            log_dir,
        };
        let listen = kamailio.config.listen;
        let deadline = Instant::now() + START_DEADLINE;
        let answered = wait_for(deadline, || {
            if !kamailio.guard.is_running() {
                return Some(false);
            }
            ping(
                listen,
                (Instant::now() + Duration::from_millis(250)).min(deadline),
            )
            .ok()
            .map(|_| true)
        });
        if answered != Some(true) {
            bail!(
                "Kamailio did not come up on {listen}\n{}",
                kamailio.describe()
            );
        }
        Ok(kamailio)
    }

    /// Its SIP address.
    pub fn sip_addr(&self) -> SocketAddr {
        self.config.listen
    }

    /// Its main process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Where its log is, and its end.
    pub fn describe(&mut self) -> String {
        let state = if self.guard.is_running() {
            "running"
        } else {
            "EXITED"
        };
        format!(
            "Kamailio {state}; log in {}; last lines:\n      {}",
            self.log_dir.display(),
            self.guard.stderr_tail(10).replace('\n', "\n      ")
        )
    }
}
