//! Tandem and SIPp started inside the nodes of a [`Topology`].

use super::{Node, Topology};
use crate::process::{file_tail, wait_for, ChildGuard};
use crate::sipp::{find_file, MessageCounts, Sipp, SippOutcome, SippStats};
use crate::tandem::{tandem_binary, MediaConfig, TandemConfig};
use anyhow::{bail, Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long Tandem may take to bind its SIP socket.
const TANDEM_START: Duration = Duration::from_secs(10);

impl Topology {
    /// Whether something in `node`'s namespace has a UDP socket bound to `addr` (or to the
    /// wildcard address on its port).
    pub fn udp_bound(&self, node: Node, addr: SocketAddr) -> Result<bool> {
        let output = self.exec(node, &["ss", "-H", "-l", "-n", "-u"])?;
        let port = addr.port();
        let wanted = [
            addr.to_string(),
            format!("0.0.0.0:{port}"),
            format!("*:{port}"),
            format!("[::]:{port}"),
        ];
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().nth(3))
            .any(|local| wanted.iter().any(|w| w == local)))
    }

    /// Waits until `guard`'s process has bound `addr` in `node` (Ok), or has exited, or `deadline`.
    fn wait_bound(
        &self,
        node: Node,
        addr: SocketAddr,
        guard: &mut ChildGuard,
        deadline: Instant,
    ) -> Result<()> {
        let bound = wait_for(deadline, || {
            if !guard.is_running() {
                return Some(false);
            }
            self.udp_bound(node, addr).ok().filter(|b| *b)
        });
        match bound {
            Some(true) => Ok(()),
            Some(false) => bail!("{} exited before binding {addr} in {node}", guard.name()),
            None => bail!("{} did not bind {addr} in {node} in time", guard.name()),
        }
    }

    /// HTTP/1.0 GET of `path` on `addr`, sent from inside `from` (bash's /dev/tcp, at most 3 s);
    /// the body of a 200 answer. The test process itself cannot reach into the namespaces.
    pub fn http_get(&self, from: Node, addr: SocketAddr, path: &str) -> Result<String> {
        let script = "exec 3<>\"/dev/tcp/$1/$2\" && \
                      printf 'GET %s HTTP/1.0\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n' \"$3\" \"$1\" >&3 && \
                      cat <&3";
        let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
        let output = self.exec(
            from,
            &[
                "timeout", "3", "bash", "-c", script, "bash", &ip, &port, path,
            ],
        )?;
        let response = String::from_utf8_lossy(&output.stdout);
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split_whitespace().nth(1);
        if !head.starts_with("HTTP/1.") || status != Some("200") {
            bail!(
                "GET {path} on {addr} from {from}: {:?} {}",
                head.lines().next().unwrap_or_default(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(body.to_owned())
    }

    /// A config for a Tandem in `node`: SIP on the VIP port 5060 (UDP and TCP), the media relay on
    /// the VIP, both admin listeners (HTTP and gRPC) on the node's own address (so they answer
    /// whether or not the node owns the VIP), `servers` as its pool (UDP). Bindings on the VIP work
    /// before the node owns it ([module docs](super)).
    pub fn tandem_config(&self, node: Node, servers: &[SocketAddr]) -> TandemConfig {
        let vip = IpAddr::V4(self.vip());
        let own = IpAddr::V4(self.addr(node));
        let mut config = TandemConfig::new(servers, crate::Transport::Udp);
        config.sip = SocketAddr::new(vip, 5060);
        config.admin = SocketAddr::new(own, config.admin.port());
        config.admin_grpc = SocketAddr::new(own, config.admin_grpc.port());
        config.media = MediaConfig::on(vip);
        config
    }

    /// Starts Tandem in `node` with `config` (e.g. from [`Topology::tandem_config`]), config and
    /// logs in `<dir>/tandem-<node>/`; waits until it has bound its SIP address.
    pub fn start_tandem(&self, node: Node, config: TandemConfig, dir: &Path) -> Result<NsTandem> {
        let log_dir = dir.join(format!("tandem-{node}"));
        std::fs::create_dir_all(&log_dir)?;
        let config_path = log_dir.join("tandem.toml");
        std::fs::write(&config_path, config.to_toml())?;
        let mut command = Command::new(tandem_binary()?);
        command.arg("--config").arg(&config_path);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "debug");
        }
        let guard = self.spawn(node, "tandem", command, &log_dir, false)?;
        let mut tandem = NsTandem {
            guard,
            node,
            config,
            log_dir,
        };
        let sip = tandem.config.sip;
        if let Err(error) =
            self.wait_bound(node, sip, &mut tandem.guard, Instant::now() + TANDEM_START)
        {
            bail!("{error}\n{}", tandem.describe());
        }
        Ok(tandem)
    }

    /// Starts `sipp` in `node`, listening and sending media on the node's service address, with
    /// its logs in `<dir>/<role>/`; waits until it has bound its SIP port (or has already ended).
    pub fn spawn_sipp(&self, node: Node, role: &str, sipp: Sipp, dir: &Path) -> Result<NsSipp> {
        let log_dir = dir.join(role);
        std::fs::create_dir_all(&log_dir)?;
        let ip = self.addr(node).to_string();
        let mut args = sipp.args();
        // SIPp takes the last -i / -mi it is given
        args.extend(["-i", &ip, "-mi", &ip].map(str::to_owned));
        let scenario = args
            .iter()
            .skip_while(|a| *a != "-sf")
            .nth(1)
            .and_then(|p| Path::new(p).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut command = Command::new("sipp");
        command.args(&args).current_dir(&log_dir);
        let mut guard = self.spawn(node, "sipp", command, &log_dir, false)?;
        let addr = SocketAddr::new(IpAddr::V4(self.addr(node)), sipp.addr().port());
        let deadline = Instant::now() + Duration::from_secs(5);
        if self.wait_bound(node, addr, &mut guard, deadline).is_err() && guard.is_running() {
            bail!(
                "{role} SIPp ({scenario}) did not bind {addr} in {node}: {}\nlogs: {}",
                file_tail(guard.stdout_log(), 5),
                log_dir.display()
            );
        }
        Ok(NsSipp {
            guard,
            role: role.to_owned(),
            scenario,
            log_dir,
            addr,
        })
    }
}

/// A Tandem running in a node of a [`Topology`].
#[derive(Debug)]
pub struct NsTandem {
    guard: ChildGuard,
    node: Node,
    config: TandemConfig,
    log_dir: PathBuf,
}

impl NsTandem {
    /// Its node.
    pub fn node(&self) -> Node {
        self.node
    }

    /// Its SIP service address.
    pub fn sip_addr(&self) -> SocketAddr {
        self.config.sip
    }

    /// Its config (with the admin address it was started with).
    pub fn config(&self) -> &TandemConfig {
        &self.config
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.guard.is_running()
    }

    /// `kill -9` (the process dies at once; its sockets close).
    pub fn kill9(&mut self) -> Result<()> {
        self.guard.signal("KILL")
    }

    /// GET /metrics from its admin address (Prometheus text), from inside its node.
    pub fn metrics(&self, topology: &Topology) -> Result<String> {
        topology.http_get(self.node, self.config.admin, "/metrics")
    }

    /// The value of the metric line starting with `selector` (e.g. `tandem_calls_total`), if any.
    pub fn metric(&self, topology: &Topology, selector: &str) -> Result<Option<f64>> {
        let text = self.metrics(topology)?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.starts_with(selector))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok()))
    }

    /// Its log folder (config, stdout, stderr).
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Node, state, log folder and the end of its stderr, for failure messages.
    pub fn describe(&mut self) -> String {
        let state = match self.guard.try_status() {
            Ok(None) => "running".to_owned(),
            Ok(Some(status)) => format!("EXITED ({status})"),
            Err(e) => format!("unknown ({e})"),
        };
        format!(
            "Tandem in {} {state}; config and logs in {}; last lines of stderr:\n      {}",
            self.node,
            self.log_dir.display(),
            self.guard.stderr_tail(15).replace('\n', "\n      ")
        )
    }
}

/// A SIPp running in a node of a [`Topology`].
#[derive(Debug)]
pub struct NsSipp {
    guard: ChildGuard,
    role: String,
    scenario: String,
    log_dir: PathBuf,
    addr: SocketAddr,
}

impl NsSipp {
    /// The SIP address it listens on (the node's service address).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log folder.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Waits until SIPp exits by itself (a caller after its calls), killing it at `deadline`.
    pub fn wait(mut self, deadline: Instant) -> Result<SippOutcome> {
        let status = self.guard.wait_until(deadline)?;
        let timed_out = status.is_none();
        if timed_out {
            let _ = self.guard.signal("KILL");
            let _ = self
                .guard
                .wait_until(Instant::now() + Duration::from_secs(2));
        }
        let stats = find_file(&self.log_dir, "stat.csv")
            .and_then(|p| SippStats::parse(&p))
            .unwrap_or_default();
        let counts = find_file(&self.log_dir, "_counts.csv")
            .and_then(|p| MessageCounts::parse(&p))
            .unwrap_or_default();
        Ok(SippOutcome {
            role: self.role.clone(),
            scenario: self.scenario.clone(),
            exit_code: status.and_then(|s| s.code()),
            timed_out,
            stats,
            counts,
            log_dir: self.log_dir.clone(),
        })
    }

    /// Stops taking new calls and exits once the calls in progress are over (SIGUSR1), then waits
    /// as [`NsSipp::wait`] does. Used for media servers.
    pub fn finish(mut self, deadline: Instant) -> Result<SippOutcome> {
        self.guard.signal("USR1").context("stopping SIPp")?;
        self.wait(deadline)
    }
}
