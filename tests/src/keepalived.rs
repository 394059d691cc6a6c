//! The real keepalived (Debian 12: 2.2.7) moving the VIP between the tandem nodes of a
//! [`Topology`].
//!
//! Each instance runs in its node's namespace in the foreground with a generated config and its own
//! pid files, logs on the console into its log folder: `keepalived -n -l -D -G -P -f <conf>
//! -p/-r/-c <pid files>` (no fork, console log, detailed, no syslog, VRRP only). The config holds
//! one VRRP instance, [`INSTANCE`], on the service interface, whose virtual address is the VIP (/32);
//! VRRP version 3, so the advertisement interval may be below a second (centisecond steps; 100 ms by
//! default: a backup takes over about 3 intervals after the last advertisement). The notify scripts
//! are whatever the caller gives (e.g. a script calling Tandem's admin API). keepalived runs them as
//! root with `enable_script_security`: it disables a script that a non-root user could change (the
//! file or a folder on its path writable by others, sticky /tmp excepted), which
//! [`Keepalived::start`] reports as an error.
//!
//! For a Tandem pair whose VIP keepalived owns: [`Topology::start_keepalived_tandem`] starts a
//! node with `ha.vip.owner = "keepalived"`, and [`tandem_notify`] gives the command line of
//! `scripts/keepalived-notify.sh` for that node (as `notify`, and with ` check` appended as the
//! tracked health check, [`KeepalivedConfig::check`]).
use crate::netns::{HaOptions, Node, NsTandem, Topology, SERVICE_DEV};
use crate::process::{file_tail, wait_for, ChildGuard};
use crate::tandem::{tandem_binary, TandemConfig};
use crate::workdir::workspace_root;
use anyhow::{bail, ensure, Context, Result};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The name of the VRRP instance in the generated config (it appears in keepalived's log lines and
/// as the second argument of a generic `notify` script).
pub const INSTANCE: &str = "tandem";

/// The name of the health check in the generated config ([`KeepalivedConfig::check`]).
pub const CHECK: &str = "tandem_check";

/// How long keepalived may take to enter its first state.
const START_DEADLINE: Duration = Duration::from_secs(5);

/// The config of one keepalived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepalivedConfig {
    /// `router_id` (names the node in logs).
    pub router_id: String,
    /// Interface the VRRP instance runs on and the VIP is added to.
    pub interface: String,
    /// VRRP router id, the same on both nodes (1–255).
    pub virtual_router_id: u8,
    /// Priority (1–254): the higher one becomes master.
    pub priority: u8,
    /// Advertisement interval (VRRPv3: centisecond steps).
    pub advert_interval: Duration,
    /// The virtual address (added as /32).
    pub vip: Ipv4Addr,
    /// Whether a higher-priority node takes the address back when it comes (keepalived's default);
    /// `false` writes `nopreempt` (which needs the initial state BACKUP, as generated).
    pub preempt: bool,
    /// Command line run on becoming master (`notify_master`).
    pub notify_master: Option<String>,
    /// Command line run on becoming backup (`notify_backup`).
    pub notify_backup: Option<String>,
    /// Command line run on entering the fault state (`notify_fault`).
    pub notify_fault: Option<String>,
    /// Command line run on every change, with the arguments `INSTANCE <name> <STATE> <priority>`
    /// appended by keepalived (`notify`).
    pub notify: Option<String>,
    /// Command line of a health check the instance tracks (`vrrp_script` [`CHECK`], every second,
    /// 3 s timeout): one failure puts the instance in FAULT (it gives the VIP up), one success
    /// takes it out.
    pub check: Option<String>,
}

impl KeepalivedConfig {
    /// For `node` of `topology`: router id the node's name, the VIP on the service interface,
    /// router id 51, `priority`, advertisements every 100 ms, preemption, no notify scripts.
    pub fn new(topology: &Topology, node: Node, priority: u8) -> KeepalivedConfig {
        KeepalivedConfig {
            router_id: node.name().to_owned(),
            interface: SERVICE_DEV.to_owned(),
            virtual_router_id: 51,
            priority,
            advert_interval: Duration::from_millis(100),
            vip: topology.vip(),
            preempt: true,
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify: None,
            check: None,
        }
    }

    /// The config file's text.
    pub fn to_conf(&self) -> String {
        let centis = (self.advert_interval.as_millis() / 10).max(1);
        let advert = if centis.is_multiple_of(100) {
            format!("{}", centis / 100)
        } else {
            format!("{}.{:02}", centis / 100, centis % 100)
        };
        let mut text = format!(
            "global_defs {{\n  router_id {}\n  script_user root\n  enable_script_security\n}}\n\n",
            self.router_id
        );
        if let Some(check) = &self.check {
            let _ = write!(
                text,
                "vrrp_script {CHECK} {{\n  script \"{}\"\n  interval 1\n  timeout 3\n  fall 1\n  \
                 rise 1\n}}\n\n",
                check.replace('"', "\\\"")
            );
        }
        let _ = write!(
            text,
            "vrrp_instance {INSTANCE} {{\n  state BACKUP\n  interface {}\n  virtual_router_id {}\n  \
             priority {}\n  advert_int {advert}\n  version 3\n",
            self.interface, self.virtual_router_id, self.priority
        );
        if !self.preempt {
            text.push_str("  nopreempt\n");
        }
        let _ = write!(
            text,
            "  virtual_ipaddress {{\n    {}/32 dev {}\n  }}\n",
            self.vip, self.interface
        );
        if self.check.is_some() {
            let _ = writeln!(text, "  track_script {{\n    {CHECK}\n  }}");
        }
        let scripts = [
            ("notify_master", &self.notify_master),
            ("notify_backup", &self.notify_backup),
            ("notify_fault", &self.notify_fault),
            ("notify", &self.notify),
        ];
        for (key, script) in scripts {
            if let Some(script) = script {
                let _ = writeln!(text, "  {key} \"{}\"", script.replace('"', "\\\""));
            }
        }
        text.push_str("}\n");
        text
    }
}

/// A VRRP state, as keepalived logs it ("Entering MASTER STATE").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpState {
    /// Owns the VIP.
    Master,
    /// Waits for the master's advertisements to stop.
    Backup,
    /// The interface is down or a tracked item failed.
    Fault,
}

impl VrrpState {
    fn word(self) -> &'static str {
        match self {
            VrrpState::Master => "master",
            VrrpState::Backup => "backup",
            VrrpState::Fault => "fault",
        }
    }
}

/// A keepalived running in a tandem node.
#[derive(Debug)]
pub struct Keepalived {
    guard: ChildGuard,
    node: Node,
    log_dir: PathBuf,
}

impl Keepalived {
    /// Writes `<dir>/keepalived-<node>/keepalived.conf`, checks it (`keepalived -t`), starts
    /// keepalived in `node` and waits until it has entered its first state.
    pub fn start(
        topology: &Topology,
        node: Node,
        config: &KeepalivedConfig,
        dir: &Path,
    ) -> Result<Keepalived> {
        let log_dir = dir.join(format!("keepalived-{node}"));
        std::fs::create_dir_all(&log_dir)?;
        let conf = log_dir.join("keepalived.conf");
        std::fs::write(&conf, config.to_conf())?;
        let conf_arg = conf.to_string_lossy().into_owned();
        let check = topology.exec(node, &["keepalived", "-t", "-f", &conf_arg])?;
        ensure!(
            check.status.success(),
            "keepalived rejects {}: {}",
            conf.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        );
        let mut command = Command::new("keepalived");
        command.args(["-n", "-l", "-D", "-G", "-P", "-f", &conf_arg]);
        for (flag, file) in [
            ("-p", "keepalived.pid"),
            ("-r", "vrrp.pid"),
            ("-c", "checkers.pid"),
        ] {
            command.arg(flag).arg(log_dir.join(file));
        }
        // own group: the VRRP child goes with the parent on kill9 and on drop
        let guard = topology.spawn(node, "keepalived", command, &log_dir, true)?;
        let mut keepalived = Keepalived {
            guard,
            node,
            log_dir,
        };
        let started = wait_for(Instant::now() + START_DEADLINE, || {
            if !keepalived.guard.is_running() {
                return Some(false);
            }
            keepalived.state().map(|_| true)
        });
        if started != Some(true) {
            bail!(
                "keepalived in {node} did not enter a VRRP state\n{}",
                keepalived.describe()
            );
        }
        if let Some(line) = keepalived
            .log()
            .lines()
            .find(|l| l.contains("Unsafe permissions"))
        {
            bail!(
                "keepalived in {node} disabled a notify script (make it and its folders writable by \
                 root only): {line}"
            );
        }
        Ok(keepalived)
    }

    /// Its node.
    pub fn node(&self) -> Node {
        self.node
    }

    /// The pid of its parent process (the leader of its process group).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Its log (console output).
    pub fn log(&self) -> String {
        let mut text = std::fs::read_to_string(self.guard.stdout_log()).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(self.guard.stderr_log()).unwrap_or_default());
        text
    }

    /// The last state it logged entering ("(tandem) Entering MASTER STATE", "(tandem) entering
    /// FAULT state").
    pub fn state(&self) -> Option<VrrpState> {
        let log = self.log().to_ascii_lowercase();
        let entering = format!("({INSTANCE}) entering ");
        log.lines()
            .rev()
            .filter_map(|line| line.split_once(&entering).map(|(_, rest)| rest))
            .find_map(|rest| {
                [VrrpState::Master, VrrpState::Backup, VrrpState::Fault]
                    .into_iter()
                    .find(|s| rest.starts_with(&format!("{} state", s.word())))
            })
    }

    /// Waits until it logs entering `state`.
    pub fn wait_state(&mut self, state: VrrpState, deadline: Instant) -> Result<()> {
        if wait_for(deadline, || (self.state() == Some(state)).then_some(())).is_none() {
            let node = self.node;
            bail!(
                "keepalived in {node} did not enter {state:?}\n{}",
                self.describe()
            );
        }
        Ok(())
    }

    /// `kill -9` of the parent and its VRRP child at once: no last advertisement, and the VIP stays
    /// on the interface, as when the node hangs.
    pub fn kill9(&mut self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.pid())])
            .status()
            .context("running kill")?;
        ensure!(status.success(), "kill -9 of keepalived's group failed");
        Ok(())
    }

    /// Node, state, log folder and the end of its log, for failure messages.
    pub fn describe(&mut self) -> String {
        let running = if self.guard.is_running() {
            "running"
        } else {
            "EXITED"
        };
        format!(
            "keepalived in {} {running}, state {:?}; config and logs in {}; last lines:\n      {}",
            self.node,
            self.state(),
            self.log_dir.display(),
            file_tail(self.guard.stdout_log(), 15).replace('\n', "\n      ")
        )
    }
}

impl Topology {
    /// Starts Tandem in a tandem node as one of an HA pair whose VIP keepalived moves: as
    /// [`Topology::start_ha_tandem`], with `[ha.vip] owner = "keepalived"` (Tandem neither adds
    /// nor removes the VIP and never promotes itself; the notify script of [`tandem_notify`] makes
    /// it follow keepalived).
    pub fn start_keepalived_tandem(
        &self,
        node: Node,
        config: TandemConfig,
        ha: &HaOptions,
        dir: &Path,
    ) -> Result<NsTandem> {
        let ha_toml = self.ha_toml(node, ha)?;
        let (ha_table, _) = ha_toml
            .split_once("[ha.vip]")
            .context("the harness's [ha] tables no longer have [ha.vip]")?;
        let text = format!(
            "{}\n{ha_table}[ha.vip]\nowner = \"keepalived\"\naddress = \"{}\"\n",
            config.to_toml(),
            self.vip()
        );
        self.start_tandem_with(node, config, text, dir)
    }
}

/// Where [`tandem_notify`] has the notify script log what it did.
pub fn notify_log(dir: &Path, node: Node) -> PathBuf {
    dir.join(format!("notify-{node}.log"))
}

/// The `notify` command line that makes `tandem` follow keepalived: the repository's
/// `scripts/keepalived-notify.sh` asking `tandem`'s admin gRPC address with the `tandemctl` beside
/// the Tandem binary, its state in `<dir>/notify-state-<node>/` and its log in [`notify_log`].
pub fn tandem_notify(tandem: &NsTandem, dir: &Path) -> Result<String> {
    let script = workspace_root().join("scripts/keepalived-notify.sh");
    ensure!(script.is_file(), "no {}", script.display());
    let tandemctl = tandem_binary()?.with_file_name("tandemctl");
    ensure!(
        tandemctl.is_file(),
        "no {}: build it (cargo build --release -p tandemctl)",
        tandemctl.display()
    );
    let node = tandem.node();
    Ok(format!(
        "{} --addr {} --tandemctl {} --state-dir {} --log {}",
        script.display(),
        tandem.config().admin_grpc,
        tandemctl.display(),
        dir.join(format!("notify-state-{node}")).display(),
        notify_log(dir, node).display()
    ))
}

/// The first line `keepalived --version` prints (e.g. "Keepalived v2.2.7 (01/16,2022)").
pub fn keepalived_version() -> Result<String> {
    let output = Command::new("keepalived")
        .arg("--version")
        .output()
        .context("running keepalived --version")?;
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("Keepalived"))
        .map(str::to_owned)
        .context("keepalived --version printed no version")
}

/// Writes an executable shell script at `script` that appends a line "<unix time> <its arguments>"
/// to `marker`: a notify script that shows when keepalived ran it and with what.
pub fn write_marker_script(script: &Path, marker: &Path) -> Result<()> {
    let text = format!(
        "#!/bin/sh\necho \"$(date +%s.%N) $*\" >> '{}'\n",
        marker.display()
    );
    std::fs::write(script, text).with_context(|| format!("writing {}", script.display()))?;
    std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The lines a marker script wrote, without their times ("master", "backup", ...).
pub fn marker_lines(marker: &Path) -> Vec<String> {
    std::fs::read_to_string(marker)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_owned()))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn config_file_has_the_expected_shape() {
        let config = KeepalivedConfig {
            router_id: "tandem-a".to_owned(),
            interface: "svc0".to_owned(),
            virtual_router_id: 51,
            priority: 150,
            advert_interval: Duration::from_millis(100),
            vip: Ipv4Addr::new(10, 9, 0, 100),
            preempt: false,
            notify_master: Some("/x/notify.sh master".to_owned()),
            notify_backup: None,
            notify_fault: None,
            notify: None,
            check: None,
        };
        let expected = "global_defs {\n  router_id tandem-a\n  script_user root\n  enable_script_security\n}\n\n\
                        vrrp_instance tandem {\n  state BACKUP\n  interface svc0\n  virtual_router_id 51\n  \
                        priority 150\n  advert_int 0.10\n  version 3\n  nopreempt\n  virtual_ipaddress {\n    \
                        10.9.0.100/32 dev svc0\n  }\n  notify_master \"/x/notify.sh master\"\n}\n";
        assert_eq!(config.to_conf(), expected);
        let slow = KeepalivedConfig {
            advert_interval: Duration::from_secs(1),
            ..config
        };
        assert!(slow.to_conf().contains("  advert_int 1\n"));
        let checked = KeepalivedConfig {
            check: Some("/x/check.sh --addr 10.9.0.11:9091 check".to_owned()),
            ..slow
        }
        .to_conf();
        assert!(checked.contains(
            "}\n\nvrrp_script tandem_check {\n  script \"/x/check.sh --addr 10.9.0.11:9091 check\"\n  \
             interval 1\n  timeout 3\n  fall 1\n  rise 1\n}\n\nvrrp_instance tandem {\n"
        ));
        assert!(checked.contains("  }\n  track_script {\n    tandem_check\n  }\n"));
    }
}
