//! Running the Tandem binary with a generated config.
//!
//! [`TandemConfig::to_toml`] is the one place that knows Tandem's config file format.

use crate::ports::{free_media_range, free_port};
use crate::process::{wait_for, ChildGuard};
use crate::sip_ping::ping;
use crate::workdir::{workspace_root, TestDir};
use crate::{IpFamily, Transport};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long Tandem may take to answer its first OPTIONS.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// One `[[media_server]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaServer {
    /// Name in logs and metrics.
    pub name: String,
    /// SIP address.
    pub address: SocketAddr,
    /// Transport Tandem uses toward it.
    pub transport: Transport,
}

/// `[media]`: Tandem's RTP/RTCP relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Address the relay ports bind to and the rewritten SDP names.
    pub address: IpAddr,
    /// Relay ports (even RTP / odd RTCP pairs); each Tandem of a test gets its own range.
    pub ports: RangeInclusive<u16>,
    /// A call whose media has been silent this long is ended (zero: never).
    pub inactivity_timeout: Duration,
    /// Data-plane threads (0: one per core).
    pub shards: u32,
    /// Latch a leg to the first source from any IP, not only the signalled one.
    pub latch_any_ip: bool,
}

impl MediaConfig {
    /// On `address`, with its own free port range, a 60 s inactivity timeout, two shards (calls of
    /// one test land on different data-plane threads) and latching from the signalled IP only.
    pub fn on(address: IpAddr) -> MediaConfig {
        MediaConfig {
            address,
            ports: free_media_range(),
            inactivity_timeout: Duration::from_secs(60),
            shards: 2,
            latch_any_ip: false,
        }
    }
}

/// What the tests configure in Tandem.
#[derive(Debug, Clone, PartialEq)]
pub struct TandemConfig {
    /// SIP service address (UDP, and TCP if `tcp`).
    pub sip: SocketAddr,
    /// Whether Tandem also listens on TCP.
    pub tcp: bool,
    /// Admin HTTP address (GET /metrics).
    pub admin: SocketAddr,
    /// Admin gRPC address (what tandemctl speaks).
    pub admin_grpc: SocketAddr,
    /// Time between two health probes of one server.
    pub probe_interval: Duration,
    /// A probe without a final answer within this time failed.
    pub probe_timeout: Duration,
    /// Failed probes in a row before a server is down.
    pub failures_to_down: u32,
    /// Successful probes in a row before a server is up again.
    pub successes_to_up: u32,
    /// `sip.max_call_duration`; `None`: Tandem's default.
    pub max_call_duration: Option<Duration>,
    /// The media relay.
    pub media: MediaConfig,
    /// The pool.
    pub media_servers: Vec<MediaServer>,
}

impl TandemConfig {
    /// 127.0.0.1 on free ports, probing every 500 ms (300 ms timeout, down after 2 failures, up
    /// after 2 successes), the media relay on 127.0.0.1 with its own port range
    /// ([`MediaConfig::on`]), and the given media servers named ms1, ms2, ...
    pub fn new(servers: &[SocketAddr], transport: Transport) -> TandemConfig {
        TandemConfig::on(IpFamily::V4, servers, transport)
    }

    /// As [`TandemConfig::new`], with the SIP, admin and media addresses on `family`'s loopback
    /// address.
    pub fn on(family: IpFamily, servers: &[SocketAddr], transport: Transport) -> TandemConfig {
        TandemConfig {
            sip: family.addr(free_port()),
            tcp: true,
            admin: family.addr(free_port()),
            admin_grpc: family.addr(free_port()),
            probe_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_millis(300),
            failures_to_down: 2,
            successes_to_up: 2,
            max_call_duration: None,
            media: MediaConfig::on(family.loopback()),
            media_servers: servers
                .iter()
                .enumerate()
                .map(|(i, address)| MediaServer {
                    name: format!("ms{}", i + 1),
                    address: *address,
                    transport,
                })
                .collect(),
        }
    }

    /// The longest time a dead server can still be taken for up: the probes that must fail, each
    /// waiting out its timeout, plus one interval of phase.
    pub fn probe_window(&self) -> Duration {
        (self.probe_interval + self.probe_timeout) * self.failures_to_down + self.probe_interval
    }

    /// The config file's text (TOML).
    pub fn to_toml(&self) -> String {
        let limit = self
            .max_call_duration
            .map(|limit| format!("max_call_duration = \"{}ms\"\n", limit.as_millis()))
            .unwrap_or_default();
        let mut text = format!(
            "[sip]\nlisten = \"{}\"\ntcp = {}\n{limit}\n[admin]\nlisten = \"{}\"\ngrpc_listen = \"{}\"\n\n[pool]\n\
             probe_interval = \"{}ms\"\nprobe_timeout = \"{}ms\"\nfailures_to_down = {}\nsuccesses_to_up = {}\n",
            self.sip,
            self.tcp,
            self.admin,
            self.admin_grpc,
            self.probe_interval.as_millis(),
            self.probe_timeout.as_millis(),
            self.failures_to_down,
            self.successes_to_up,
        );
        let media = &self.media;
        text.push_str(&format!(
            "\n[media]\naddress = \"{}\"\nport_min = {}\nport_max = {}\ninactivity_timeout = \"{}ms\"\n\
             shards = {}\nlatch_any_ip = {}\n",
            media.address,
            media.ports.start(),
            media.ports.end(),
            media.inactivity_timeout.as_millis(),
            media.shards,
            media.latch_any_ip,
        ));
        for server in &self.media_servers {
            text.push_str(&format!(
                "\n[[media_server]]\nname = \"{}\"\naddress = \"{}\"\ntransport = \"{}\"\n",
                server.name, server.address, server.transport
            ));
        }
        text
    }
}

/// The Tandem binary: `TANDEM_BIN`, else the newest of `target/release/tandem` and
/// `target/debug/tandem` under the workspace root (or CARGO_TARGET_DIR).
pub fn tandem_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("TANDEM_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("TANDEM_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let newest = ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("tandem"))
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.with_context(|| {
        format!(
            "no Tandem binary: set TANDEM_BIN or build it (cargo build --release -p tandem); looked in {}",
            target.display()
        )
    })
}

/// A running Tandem.
#[derive(Debug)]
pub struct Tandem {
    guard: ChildGuard,
    config: TandemConfig,
    log_dir: PathBuf,
}

impl Tandem {
    /// Writes `<dir>/tandem/tandem.toml`, starts Tandem (stderr to `tandem.stderr.log` there) and waits
    /// until it answers SIP OPTIONS on its service address.
    pub fn start(config: TandemConfig, dir: &Path) -> Result<Tandem> {
        let log_dir = dir.join("tandem");
        std::fs::create_dir_all(&log_dir)?;
        let config_path = log_dir.join("tandem.toml");
        std::fs::write(&config_path, config.to_toml())?;
        let binary = tandem_binary()?;
        let mut command = Command::new(&binary);
        command.arg("--config").arg(&config_path);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "debug");
        }
        let guard = ChildGuard::spawn("tandem", command, &log_dir, false)?;
        let mut tandem = Tandem {
            guard,
            config,
            log_dir,
        };
        tandem.wait_ready(Instant::now() + START_DEADLINE)?;
        Ok(tandem)
    }

    fn wait_ready(&mut self, deadline: Instant) -> Result<()> {
        let sip = self.config.sip;
        let answered = wait_for(deadline, || {
            if !self.guard.is_running() {
                return Some(Err(()));
            }
            ping(
                sip,
                (Instant::now() + Duration::from_millis(250)).min(deadline),
            )
            .ok()
            .map(Ok)
        });
        match answered {
            Some(Ok(_)) => Ok(()),
            Some(Err(())) => bail!("Tandem exited at start-up\n{}", self.describe()),
            None => bail!(
                "Tandem did not answer SIP OPTIONS on {sip} within {START_DEADLINE:?}\n{}",
                self.describe()
            ),
        }
    }

    /// Its SIP service address.
    pub fn sip_addr(&self) -> SocketAddr {
        self.config.sip
    }

    /// Its media relay port range.
    pub fn media_ports(&self) -> RangeInclusive<u16> {
        self.config.media.ports.clone()
    }

    /// Its config.
    pub fn config(&self) -> &TandemConfig {
        &self.config
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.guard.is_running()
    }

    /// GET /metrics from the admin address (Prometheus text).
    pub fn metrics(&self) -> Result<String> {
        http_get(self.config.admin, "/metrics")
    }

    /// The value of a metric line starting with `selector` (e.g.
    /// `tandem_media_server_up{server="ms1"}`), if present.
    pub fn metric(&self, selector: &str) -> Result<Option<f64>> {
        let text = self.metrics()?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.starts_with(selector))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok()))
    }

    /// Where its logs are, whether it still runs, and the end of its stderr.
    pub fn describe(&mut self) -> String {
        let state = match self.guard.try_status() {
            Ok(None) => "running".to_owned(),
            Ok(Some(status)) => format!("EXITED ({status})"),
            Err(e) => format!("unknown ({e})"),
        };
        format!(
            "Tandem {state}; config and logs in {}; last lines of stderr:\n      {}",
            self.log_dir.display(),
            self.guard.stderr_tail(15).replace('\n', "\n      ")
        )
    }
}

/// A minimal HTTP/1.0 GET over loopback; returns the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1);
    if !head.starts_with("HTTP/1.") || status != Some("200") {
        bail!(
            "GET {path} on {addr}: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body.to_owned())
}

/// The failures of a test, turned into its error with every log's place.
pub fn verdict(mut dir: TestDir, failures: Vec<String>, tandem: Option<&mut Tandem>) -> Result<()> {
    if failures.is_empty() {
        dir.passed();
        return Ok(());
    }
    bail!(
        "all logs under {}\n  - {}\n  - {}",
        dir.path().display(),
        failures.join("\n  - "),
        tandem.map_or("Tandem did not start".to_owned(), |t| t.describe())
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn config_file_has_the_expected_shape() {
        let mut config = TandemConfig::new(&["127.0.0.1:5070".parse().unwrap()], Transport::Tcp);
        config.sip = "127.0.0.1:5060".parse().unwrap();
        config.admin = "127.0.0.1:9090".parse().unwrap();
        config.admin_grpc = "127.0.0.1:9091".parse().unwrap();
        config.media.ports = 10000..=10199;
        let expected = "[sip]\nlisten = \"127.0.0.1:5060\"\ntcp = true\n\n[admin]\nlisten = \"127.0.0.1:9090\"\n\
                        grpc_listen = \"127.0.0.1:9091\"\n\n\
                        [pool]\nprobe_interval = \"500ms\"\nprobe_timeout = \"300ms\"\nfailures_to_down = 2\n\
                        successes_to_up = 2\n\n[media]\naddress = \"127.0.0.1\"\nport_min = 10000\nport_max = 10199\n\
                        inactivity_timeout = \"60000ms\"\nshards = 2\nlatch_any_ip = false\n\n[[media_server]]\nname = \"ms1\"\naddress = \"127.0.0.1:5070\"\n\
                        transport = \"tcp\"\n";
        assert_eq!(config.to_toml(), expected);
        assert_eq!(config.probe_window(), Duration::from_millis(2100));
    }

    #[test]
    fn ipv6_addresses_are_bracketed_in_the_config_file() {
        let config = TandemConfig::on(
            IpFamily::V6,
            &["[::1]:5070".parse().unwrap()],
            Transport::Udp,
        );
        let text = config.to_toml();
        assert!(
            text.contains(&format!(
                "[sip]\nlisten = \"[::1]:{}\"\n",
                config.sip.port()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "[admin]\nlisten = \"[::1]:{}\"\n",
                config.admin.port()
            )),
            "{text}"
        );
        assert!(text.contains("address = \"[::1]:5070\"\n"), "{text}");
        assert!(text.contains("[media]\naddress = \"::1\"\n"), "{text}");
    }

    /// Catches drift between this generator and Tandem's config format.
    #[test]
    fn generated_config_is_accepted_by_tandem() {
        let Ok(binary) = tandem_binary() else {
            crate::workdir::skip(
                "generated_config_is_accepted_by_tandem",
                "no Tandem binary built",
            );
            return;
        };
        let mut dir = crate::TestDir::new("config_check").unwrap();
        for family in IpFamily::ALL {
            let path = dir.join(&format!("tandem-{family}.toml"));
            let config = TandemConfig::on(
                family,
                &[family.addr(5070), family.addr(5071)],
                Transport::Udp,
            );
            std::fs::write(&path, config.to_toml()).unwrap();
            let output = Command::new(&binary)
                .arg("--check-config")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "tandem --check-config rejects the generated config:\n{}\n{}{}",
                config.to_toml(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        dir.passed();
    }
}
