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
        let text = config.to_toml();
        self.start_tandem_with(node, config, text, dir)
    }

    /// Starts Tandem in a tandem node as one of the HA pair: `config` (e.g. from
    /// [`Topology::tandem_config`]; give both nodes the same media port range, as a takeover
    /// keeps every call's relay ports) plus [`Topology::ha_toml`]. How SIP listens follows
    /// `ha.second_path` ([`SecondPath`]). Config and logs in `<dir>/tandem-<node>/`.
    pub fn start_ha_tandem(
        &self,
        node: Node,
        config: TandemConfig,
        ha: &HaOptions,
        dir: &Path,
    ) -> Result<NsTandem> {
        let mut text = config.to_toml();
        if ha.second_path == SecondPath::OwnAddress {
            let head = format!("[sip]\nlisten = \"{}\"\n", config.sip);
            let rest = text
                .strip_prefix(&head)
                .context("the harness's config no longer starts with [sip] listen")?;
            text = format!(
                "[sip]\nlisten = \"0.0.0.0:{}\"\nadvertised = \"{}\"\n{rest}",
                config.sip.port(),
                config.sip,
            );
        }
        text = format!("{text}\n{}", self.ha_toml(node, ha)?);
        self.start_tandem_with(node, config, text, dir)
    }

    /// The `[ha]` and `[ha.vip]` tables of `node`: named by its node name, replication on
    /// `<replication address>:`[`HA_PORT`] toward the other tandem's, the second path as
    /// `ha.second_path` says (port 5060), the VIP as `/24` on the service interface.
    /// Failure detection as `ha.detection` says.
    pub fn ha_toml(&self, node: Node, ha: &HaOptions) -> Result<String> {
        let (Some(peer), Some(own)) = (node.peer(), self.replication_addr(node)) else {
            bail!("{node} is not a tandem node");
        };
        let peer_replication = self.replication_addr(peer).context("peer address")?;
        let peer_sip = match ha.second_path {
            SecondPath::OwnAddress => self.addr(peer),
            SecondPath::ServiceAddress => self.vip(),
        };
        Ok(format!(
            "[ha]\nnode = \"{node}\"\npeer = \"{peer}\"\nlisten = \"{own}:{HA_PORT}\"\n\
             peer_address = \"{peer_replication}:{HA_PORT}\"\npeer_sip = \"{peer_sip}:5060\"\n\
             prefer_active = {}\nstate_dir = \"{}\"\n{}\n[ha.vip]\naddress = \"{}/24\"\n\
             interface = \"{}\"\n",
            ha.prefer_active,
            ha.state_dir.display(),
            ha.detection.toml(),
            self.vip(),
            super::SERVICE_DEV,
        ))
    }

    /// Starts Tandem in `node` with the config file `text` (`config` gives its addresses),
    /// config and logs in `<dir>/tandem-<node>/`; waits until it has bound its SIP address.
    pub(crate) fn start_tandem_with(
        &self,
        node: Node,
        config: TandemConfig,
        text: String,
        dir: &Path,
    ) -> Result<NsTandem> {
        let log_dir = dir.join(format!("tandem-{node}"));
        std::fs::create_dir_all(&log_dir)?;
        let config_path = log_dir.join("tandem.toml");
        std::fs::write(&config_path, text)?;
        let mut command = Command::new(tandem_binary()?);
        command.arg("--config").arg(&config_path);
        if std::env::var_os("RUST_LOG").is_none() {
            // the replication link's HTTP/2 frames would drown Tandem's own lines
            command.env("RUST_LOG", "debug,h2=info,hyper=info,tower=info,tonic=info");
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

impl NsTandem {
    /// Runs `tandemctl --addr <admin gRPC> --json <args>` in its node; the output, whatever the
    /// exit code (2: Tandem not reached).
    pub fn ctl(&self, topology: &Topology, args: &[&str]) -> Result<std::process::Output> {
        let ctl = tandemctl_binary()?;
        let addr = self.config.admin_grpc.to_string();
        let mut command = topology.command(self.node, ctl);
        command
            .args(["--addr", &addr, "--timeout", "1s"])
            .args(args);
        command
            .output()
            .with_context(|| format!("tandemctl {args:?} in {}", self.node))
    }

    /// `tandemctl status --json`: its role and replication state.
    pub fn status(&self, topology: &Topology) -> Result<HaStatus> {
        let output = self.ctl(topology, &["--json", "status"])?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "tandemctl status in {}: {} {}",
                self.node,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        HaStatus::parse(&text).with_context(|| format!("tandemctl status: {text}"))
    }

    /// Polls [`NsTandem::status`] until `wanted` holds (then returns it) or `deadline`.
    pub fn wait_status(
        &self,
        topology: &Topology,
        deadline: Instant,
        wanted: impl Fn(&HaStatus) -> bool,
    ) -> Result<HaStatus> {
        let mut last = None;
        let found = wait_for(deadline, || {
            let status = self.status(topology);
            let hit = status.as_ref().ok().filter(|s| wanted(s)).cloned();
            last = Some(status);
            hit
        });
        match (found, last) {
            (Some(status), _) => Ok(status),
            (None, Some(Ok(status))) => bail!("{} stays at {status:?}", self.node),
            (None, Some(Err(error))) => bail!("{} does not answer: {error:#}", self.node),
            (None, None) => bail!("{}: no status before the deadline", self.node),
        }
    }

    /// `tandemctl incidents --json`, newest first.
    pub fn incidents(&self, topology: &Topology) -> Result<Vec<Incident>> {
        let output = self.ctl(topology, &["--json", "incidents"])?;
        if !output.status.success() {
            bail!("tandemctl incidents in {}: {}", self.node, output.status);
        }
        Ok(Incident::parse_all(&String::from_utf8_lossy(
            &output.stdout,
        )))
    }
}

/// The replication port of both tandems (on their replication addresses).
pub const HA_PORT: u16 = 7070;

/// What differs between the two nodes' `[ha]` tables besides their addresses.
#[derive(Debug, Clone)]
pub struct HaOptions {
    /// `ha.state_dir` (the epoch file): keep it across restarts of the node.
    pub state_dir: PathBuf,
    /// `ha.prefer_active`.
    pub prefer_active: bool,
    /// Where the standby's second path (`ha.peer_sip`) asks whether the active is alive.
    pub second_path: SecondPath,
    /// How fast a silent peer counts as dead.
    pub detection: Detection,
}

/// How fast a node counts a silent peer as dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// Tandem's defaults (4 missed 50 ms heartbeats, 100 ms for the second path): what
    /// benches/failover.sh measures, on a quiet machine.
    Defaults,
    /// 8 missed heartbeats and 300 ms for the second path. The scenario tests check what happens,
    /// not how fast; both Tandems share two cores with SIPp callers, an RTP echo server and a
    /// capture, where a stall of a few hundred milliseconds once made a live active look dead.
    Patient,
}

impl Detection {
    /// Its lines of the `[ha]` table.
    fn toml(self) -> &'static str {
        match self {
            Detection::Defaults => "",
            Detection::Patient => "misses = 8\nconfirm_timeout = \"300ms\"\n",
        }
    }
}

/// Where a standby's SIP OPTIONS probe (`ha.peer_sip`) goes, and how SIP listens to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondPath {
    /// The peer's own service address (10.N.0.11/12): SIP listens on `0.0.0.0:5060` with the VIP
    /// advertised, so a node answers there. Tandem's SIP then leaves from the node's own
    /// address, not from the VIP.
    OwnAddress,
    /// The VIP: SIP listens on the VIP (as [`Topology::tandem_config`] sets it), so Tandem's SIP
    /// leaves from the VIP; the probe reaches whichever node holds the VIP (a killed node's
    /// kernel refuses it, a dead node's stays silent).
    ServiceAddress,
}

/// A node's answer to `tandemctl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaStatus {
    /// `active`, `standby`, `standalone`.
    pub role: String,
    /// Its epoch.
    pub epoch: u64,
    /// Whether its replication stream to the peer is up.
    pub peer_connected: bool,
    /// Standby: its mirror is complete; active: its standby's is.
    pub synced: bool,
    /// Calls it carries (active) or mirrors (standby).
    pub calls: u64,
}

impl HaStatus {
    /// Whether it is active.
    pub fn is_active(&self) -> bool {
        self.role == "active"
    }

    /// Whether it is a synced standby.
    pub fn is_synced_standby(&self) -> bool {
        self.role == "standby" && self.synced
    }

    fn parse(json: &str) -> Option<HaStatus> {
        Some(HaStatus {
            role: json_value(json, "role")?.to_owned(),
            epoch: json_value(json, "epoch")?.parse().ok()?,
            peer_connected: json_value(json, "peer_connected")? == "true",
            synced: json_value(json, "synced")? == "true",
            calls: json_value(json, "active_calls")?.parse().ok()?,
        })
    }
}

/// One incident of `tandemctl incidents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// `takeover`, `switchover`, ...
    pub kind: String,
    /// Its timeline.
    pub steps: Vec<IncidentStep>,
}

/// One step of an [`Incident`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentStep {
    /// `detected`, `confirmed`, `promoted`, `address-taken`, `calls-resumed`, ...
    pub name: String,
    /// Wall clock, Unix milliseconds.
    pub at_unix_ms: u64,
    /// The calls it concerns (calls resumed).
    pub calls: u64,
}

impl Incident {
    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&IncidentStep> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Incidents from tandemctl's compact JSON (keys sorted: `id`, `kind`, `steps`, `summary`;
    /// a step's `after_ms`, `at_unix_ms`, `calls`, `detail`, `name`).
    fn parse_all(json: &str) -> Vec<Incident> {
        json.split("{\"id\":")
            .skip(1)
            .map(|incident| Incident {
                kind: json_value(incident, "kind").unwrap_or_default().to_owned(),
                steps: incident
                    .split("{\"after_ms\":")
                    .skip(1)
                    .map(|step| IncidentStep {
                        name: json_value(step, "name").unwrap_or_default().to_owned(),
                        at_unix_ms: json_number(step, "at_unix_ms"),
                        calls: json_number(step, "calls"),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// The value after the first `"key":` of compact JSON, without quotes (strings holding no `"`,
/// numbers, booleans).
fn json_value<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\":");
    let (_, after) = json.split_once(&needle)?;
    if let Some(string) = after.strip_prefix('"') {
        return string.split('"').next();
    }
    after.split([',', '}', ']']).next().map(str::trim)
}

fn json_number(json: &str, key: &str) -> u64 {
    json_value(json, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `TANDEMCTL_BIN`, else `tandemctl` beside the Tandem binary.
fn tandemctl_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("TANDEMCTL_BIN") {
        return Ok(PathBuf::from(path));
    }
    let tandem = tandem_binary()?;
    let ctl = tandem.with_file_name("tandemctl");
    if !ctl.is_file() {
        bail!(
            "no {}: build it (cargo build --release -p tandemctl) or set TANDEMCTL_BIN",
            ctl.display()
        );
    }
    Ok(ctl)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_tandemctl_json() {
        let status = r#"{"active_calls":5,"draining":false,"epoch":3,"last_incident":{"id":2,"kind":"takeover","steps":[],"summary":"x"},"node":"tandem-b","peer":"tandem-a","peer_connected":false,"replication_lag_deltas":0,"replication_lag_ms":0,"role":"active","synced":false,"version":"0.1.0"}"#;
        let status = HaStatus::parse(status).unwrap();
        assert!(status.is_active());
        assert_eq!((status.epoch, status.calls), (3, 5));
        assert!(!status.synced && !status.peer_connected);

        let incidents = r#"{"incidents":[{"id":2,"kind":"takeover","steps":[{"after_ms":0,"at_unix_ms":1000,"calls":0,"detail":"heartbeats","name":"detected"},{"after_ms":90,"at_unix_ms":1090,"calls":5,"detail":"5 calls","name":"calls-resumed"}],"summary":"s"},{"id":1,"kind":"startup","steps":[],"summary":""}]}"#;
        let incidents = Incident::parse_all(incidents);
        assert_eq!(incidents.len(), 2);
        assert_eq!(incidents[0].kind, "takeover");
        let resumed = incidents[0].step("calls-resumed").unwrap();
        assert_eq!((resumed.at_unix_ms, resumed.calls), (1090, 5));
        assert!(incidents[1].steps.is_empty());
    }
}
