//! Calls across a hot-standby takeover on the network-namespace topology: the two Tandems of an
//! HA pair ([`HaPair`]), the SIPp echo server in `media`, a tcpdump of the echoed RTP at the
//! caller ([`EchoCapture`]), and what that RTP shows per call ([`MediaGaps`]). Shared by the HA
//! tests (`tests/tests/ha_failover.rs`) and the failover benchmark (`failover-bench`).

use crate::capture::{for_each_datagram, wait_until_capturing};
use crate::netns::{Detection, HaOptions, HaStatus, Incident, NsSipp, NsTandem, SecondPath};
use crate::process::{wait_for, ChildGuard};
use crate::{Node, Sipp, TandemConfig, Topology};
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the standby's second path goes. SIP listens on the VIP, so that Tandem's SIP leaves from
/// the VIP: with `0.0.0.0` (needed to answer a probe on the node's own address) a restored call's
/// BYE leaves from the new node's own address and SIPp answers the dialog's first peer, the dead
/// node, so the BYE is never answered. A probe of the VIP reaches the node that holds it.
pub const SECOND_PATH: SecondPath = SecondPath::ServiceAddress;

/// Both nodes' relay ports unless told otherwise: two pairs per call, so 1,000 calls (the
/// namespaces have the ports to themselves).
pub const RELAY_PORTS: RangeInclusive<u16> = 20000..=23999;

/// `from_now` seconds from now.
pub fn secs(from_now: u64) -> Instant {
    Instant::now() + Duration::from_secs(from_now)
}

/// The wall clock, Unix seconds (what tcpdump's `-tt` and the incident timeline use).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The two Tandems of a topology, with what it takes to (re)start either.
#[derive(Debug)]
pub struct HaPair<'n> {
    net: &'n Topology,
    dir: PathBuf,
    /// Both nodes' configs: same media server, same relay port range.
    configs: BTreeMap<&'static str, TandemConfig>,
    running: BTreeMap<&'static str, NsTandem>,
    detection: Detection,
}

impl<'n> HaPair<'n> {
    /// Starts tandem-a (preferred) and tandem-b with [`RELAY_PORTS`] and patient failure
    /// detection, and waits until a is active and b a synced standby.
    pub fn start(net: &'n Topology, dir: &Path, server: SocketAddr) -> Result<HaPair<'n>> {
        HaPair::start_with(net, dir, server, RELAY_PORTS, Detection::Patient)
    }

    /// As [`HaPair::start`], with `ports` as both nodes' relay port range and `detection`.
    pub fn start_with(
        net: &'n Topology,
        dir: &Path,
        server: SocketAddr,
        ports: RangeInclusive<u16>,
        detection: Detection,
    ) -> Result<HaPair<'n>> {
        let configs = Node::TANDEMS
            .map(|node| {
                let mut config = net.tandem_config(node, &[server]);
                config.media.ports = ports.clone();
                (node.name(), config)
            })
            .into();
        let mut pair = HaPair {
            net,
            dir: dir.to_owned(),
            configs,
            running: BTreeMap::new(),
            detection,
        };
        pair.launch(Node::TandemA, "")?;
        pair.launch(Node::TandemB, "")?;
        pair.wait_roles(Node::TandemA, secs(15))?;
        Ok(pair)
    }

    /// Starts `node`'s Tandem (logs under `<dir>/<run>/tandem-<node>`; the epoch file stays in
    /// `<dir>/state-<node>` across runs).
    pub fn launch(&mut self, node: Node, run: &str) -> Result<()> {
        let ha = HaOptions {
            state_dir: self.dir.join(format!("state-{node}")),
            prefer_active: node == Node::TandemA,
            second_path: SECOND_PATH,
            detection: self.detection,
        };
        let config = self.configs[node.name()].clone();
        let tandem = self
            .net
            .start_ha_tandem(node, config, &ha, &self.dir.join(run))?;
        self.running.insert(node.name(), tandem);
        Ok(())
    }

    /// The Tandem of `node`.
    pub fn tandem(&self, node: Node) -> &NsTandem {
        &self.running[node.name()]
    }

    /// Its `tandemctl status`.
    pub fn status(&self, node: Node) -> Result<HaStatus> {
        self.tandem(node).status(self.net)
    }

    /// `kill -9` of every process in `node` (Tandem and whatever it started); the wall clock of
    /// the kill (Unix seconds).
    pub fn kill(&mut self, node: Node) -> Result<f64> {
        let at = unix_now();
        let killed = self.net.kill_all(node)?;
        ensure!(killed > 0, "nothing ran in {node}");
        Ok(at)
    }

    /// Waits until `active` is active and the other node a synced standby.
    pub fn wait_roles(&mut self, active: Node, deadline: Instant) -> Result<()> {
        let standby = active.peer().context("a tandem node is active")?;
        let result = self
            .tandem(active)
            .wait_status(self.net, deadline, HaStatus::is_active)
            .and_then(|_| {
                self.tandem(standby)
                    .wait_status(self.net, deadline, HaStatus::is_synced_standby)
            });
        match result {
            Ok(_) => Ok(()),
            Err(error) => bail!("{error:#}\n{}", self.describe()),
        }
    }

    /// Waits until both nodes count `calls` calls (the active carries them, the standby mirrors
    /// them).
    pub fn wait_calls(&mut self, calls: u64, deadline: Instant) -> Result<()> {
        for node in Node::TANDEMS {
            if let Err(error) = self
                .tandem(node)
                .wait_status(self.net, deadline, |s| s.calls == calls)
            {
                bail!("waiting for {calls} calls: {error:#}\n{}", self.describe());
            }
        }
        Ok(())
    }

    /// The newest incident of `node` with a promotion.
    pub fn takeover(&self, node: Node) -> Result<Incident> {
        let incidents = self.tandem(node).incidents(self.net)?;
        incidents
            .iter()
            .find(|i| i.step("promoted").is_some())
            .cloned()
            .with_context(|| format!("{node} recorded no promotion: {incidents:?}"))
    }

    /// Detection, confirmation, promotion, address and calls, relative to `kill` (the kill or the
    /// switchover request, Unix seconds), from the newest incident of `node` with a promotion.
    pub fn takeover_figures(&self, node: Node, kill: f64) -> Result<String> {
        let takeover = self.takeover(node)?;
        let steps: Vec<String> = takeover
            .steps
            .iter()
            .map(|s| {
                let calls = if s.calls > 0 {
                    format!(" ({} calls)", s.calls)
                } else {
                    String::new()
                };
                format!("{} +{:.0} ms{calls}", s.name, ms_after(s.at_unix_ms, kill))
            })
            .collect();
        Ok(format!(
            "{} timeline from the kill (or request): {}",
            takeover.kind,
            steps.join(", ")
        ))
    }

    /// Prints the incidents of `node` to stderr as `tandemctl incidents` shows them, after
    /// `label`.
    pub fn print_incidents(&self, label: &str, node: Node) {
        let text = self
            .tandem(node)
            .ctl(self.net, &["incidents"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e.to_string());
        let _ = writeln!(
            std::io::stderr(),
            "{label}: {node}'s incidents:\n    {}",
            text.trim_end().replace('\n', "\n    ")
        );
    }

    /// Each Tandem's state, log folder and last lines, for failure messages.
    pub fn describe(&mut self) -> String {
        self.running
            .values_mut()
            .map(NsTandem::describe)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Milliseconds from `since` (Unix seconds) to `at_unix_ms`.
pub fn ms_after(at_unix_ms: u64, since: f64) -> f64 {
    at_unix_ms as f64 - since * 1000.0
}

/// The SIPp echo server in `media`: answers every call, echoes its RTP, gives up after `life`.
pub fn echo_server(net: &Topology, dir: &Path, life: Duration) -> Result<NsSipp> {
    net.spawn_sipp(
        Node::Media,
        "ms1",
        Sipp::uas("ms1", "uas_basic.xml")
            .rtp_echo()
            .arg("-aa")
            .timeout(life),
        dir,
    )
}

/// Waits for an echo caller to end: Ok when every one of its `calls` calls ended with its BYE
/// answered 200.
pub fn all_calls_ended(caller: NsSipp, calls: u32, pair: &mut HaPair<'_>) -> Result<()> {
    let outcome = caller.wait(secs(60))?;
    if let Err(failure) = outcome.check_caller(u64::from(calls)) {
        bail!("{failure}\n{}", pair.describe());
    }
    Ok(())
}

/// Arrival times (Unix seconds) of the echoed RTP, per relay port (one per call).
pub type Arrivals = BTreeMap<u16, Vec<f64>>;

/// tcpdump on the caller's service interface: the echoed RTP arriving at the caller's media port
/// from the VIP (from each call's own relay port).
#[derive(Debug)]
pub struct EchoCapture {
    guard: ChildGuard,
    file: PathBuf,
}

impl EchoCapture {
    /// Starts tcpdump in `caller` (file `<dir>/<name>.pcap`, 32 MiB of kernel buffer) and waits
    /// until it listens.
    pub fn start(net: &Topology, dir: &Path, name: &str, media_port: u16) -> Result<EchoCapture> {
        let file = dir.join(format!("{name}.pcap"));
        let filter = format!("udp and src host {} and dst port {media_port}", net.vip());
        let mut command = Command::new("tcpdump");
        command
            .args(["-i", "svc0", "-n", "-U", "--immediate-mode", "-s", "64"])
            .args(["-B", "32768", "-w"])
            .arg(&file)
            .arg(filter);
        let mut guard = net.spawn(Node::Caller, name, command, dir, false)?;
        wait_until_capturing(&mut guard)?;
        Ok(EchoCapture { guard, file })
    }

    /// The echoed packets captured so far (the file is read while tcpdump writes it).
    pub fn arrivals(&self) -> Result<Arrivals> {
        let pcap = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        let mut calls = Arrivals::new();
        for_each_datagram(&pcap, |time, source, _, _| {
            calls.entry(source.port()).or_default().push(time);
        });
        Ok(calls)
    }

    /// Waits until echoed RTP arrives for `calls` calls.
    pub fn wait_calls(&self, calls: usize, deadline: Instant) -> Result<()> {
        self.wait_calls_after(f64::NEG_INFINITY, calls, deadline)
    }

    /// Waits until echoed RTP captured after `since` (Unix seconds) arrives for `calls` calls.
    pub fn wait_calls_after(&self, since: f64, calls: usize, deadline: Instant) -> Result<()> {
        let mut seen = 0;
        let all = wait_for(deadline, || {
            let arrivals = self.arrivals().ok()?;
            seen = arrivals
                .values()
                .filter(|times| times.iter().any(|&t| t > since))
                .count();
            (seen >= calls).then_some(())
        });
        ensure!(
            all.is_some(),
            "echoed RTP reaches the caller for {seen} of {calls} calls"
        );
        Ok(())
    }

    /// Stops the capture; what it captured.
    pub fn stop(self) -> Result<Arrivals> {
        Ok(self.stop_counting_drops()?.0)
    }

    /// Stops the capture; what it captured, and how many packets the kernel dropped before
    /// tcpdump read them (from tcpdump's closing statistics; `None` if it printed none).
    pub fn stop_counting_drops(mut self) -> Result<(Arrivals, Option<u64>)> {
        let _ = self.guard.signal("INT");
        let _ = self.guard.wait_until(secs(3));
        let stats = std::fs::read_to_string(self.guard.stderr_log()).unwrap_or_default();
        let dropped = stats
            .lines()
            .find(|l| l.ends_with("packets dropped by kernel"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok());
        Ok((self.arrivals()?, dropped))
    }
}

/// What the echoed RTP of each call shows about a takeover at `kill` (Unix seconds).
#[derive(Debug, Default)]
pub struct MediaGaps {
    /// Per call: the silence spanning the kill (last packet before, first after), ms.
    pub across_kill: Vec<f64>,
    /// Per call heard before the kill: the time from the kill to its first packet after it, ms.
    pub resumed_after_kill: Vec<f64>,
    /// Per call: its longest silence anywhere between its first and last packet, ms.
    pub longest: Vec<f64>,
    /// Relay ports whose call received nothing after the kill.
    pub silent_after_kill: Vec<u16>,
}

impl MediaGaps {
    /// The gaps of every call in `arrivals`.
    pub fn measure(arrivals: &Arrivals, kill: f64) -> MediaGaps {
        let mut gaps = MediaGaps::default();
        for (port, times) in arrivals {
            let before = times
                .iter()
                .copied()
                .filter(|t| *t <= kill)
                .reduce(f64::max);
            let after = times.iter().copied().filter(|t| *t > kill).reduce(f64::min);
            match (before, after) {
                (Some(before), Some(after)) => {
                    gaps.across_kill.push((after - before) * 1000.0);
                    gaps.resumed_after_kill.push((after - kill) * 1000.0);
                }
                (None, Some(_)) => {}
                (_, None) => gaps.silent_after_kill.push(*port),
            }
            let longest = times
                .windows(2)
                .map(|w| (w[1] - w[0]) * 1000.0)
                .fold(0.0, f64::max);
            gaps.longest.push(longest);
        }
        gaps
    }

    /// Both distributions as `p50/p99/max`, one line.
    pub fn summary(&self) -> String {
        format!(
            "media gap across the takeover per call p50/p99/max {}; longest gap per call p50/p99/max {}",
            percentiles(&self.across_kill),
            percentiles(&self.longest)
        )
    }
}

/// The `q` quantile (0..=1) of `values` (nearest rank); `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    let rank = (last as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(rank).copied()
}

/// `p50/p99/max ms` of `values` (ms), or `-`.
pub fn percentiles(values: &[f64]) -> String {
    match (
        quantile(values, 0.5),
        quantile(values, 0.99),
        quantile(values, 1.0),
    ) {
        (Some(p50), Some(p99), Some(max)) => format!("{p50:.0}/{p99:.0}/{max:.0} ms"),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gaps_span_the_kill_per_call() {
        let arrivals: Arrivals = [
            (20000, vec![1.00, 1.02, 1.04, 1.30, 1.32]),
            (20004, vec![1.01, 1.03]),
            (20008, vec![1.10, 1.12]),
        ]
        .into();
        let gaps = MediaGaps::measure(&arrivals, 1.05);
        assert_eq!(gaps.across_kill.len(), 1);
        assert!((gaps.across_kill[0] - 260.0).abs() < 1e-6);
        assert!((gaps.resumed_after_kill[0] - 250.0).abs() < 1e-6);
        assert_eq!(gaps.silent_after_kill, [20004]);
        assert_eq!(gaps.longest.len(), 3);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(percentiles(&[5.0, 10.0, 300.0]), "10/300/300 ms");
    }
}
