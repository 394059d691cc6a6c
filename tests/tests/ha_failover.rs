//! Hot standby on the network-namespace topology: two Tandems with `[ha]` (tandem-a preferred
//! active, each moving the VIP itself), a SIPp echo server in `media`, SIPp callers in `caller`
//! playing RTP to the VIP. The active is killed with `kill -9` while calls run; the standby takes
//! over the VIP and the calls, which keep their RTP and end with BYE answered 200. Then the old
//! active rejoins as standby and survives a second kill; cutting only the replication link makes
//! no second active.
//!
//! Root only (SKIP line otherwise). The tests take turns (they share the machine's cores with two
//! Tandems, SIPp and tcpdump each); each has its own topology prefix and checks that it left no
//! namespace behind. Figures (takeover timeline, media gaps) go to stderr; only correctness is
//! asserted.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tandem_tests::netns::{namespaces_left, HaOptions, HaStatus, NsSipp, NsTandem, SecondPath};
use tandem_tests::process::{file_tail, wait_for, ChildGuard};
use tandem_tests::sipp::Invites;
use tandem_tests::{need_root, need_tool, Node, Sipp, TandemConfig, TestDir, Topology};

/// Established calls held across a takeover (the issue's "a few hundred"), each with RTP both
/// ways.
const CALLS: u32 = 300;
/// New calls per second while they are set up.
const RATE: u32 = 50;

/// Where the standby's second path goes. SIP listens on the VIP, so that Tandem's SIP leaves from
/// the VIP: with `0.0.0.0` (needed to answer a probe on the node's own address) a restored call's
/// BYE leaves from the new node's own address and SIPp answers the dialog's first peer, the dead
/// node, so the BYE is never answered. A probe of the VIP reaches the node that holds it.
const SECOND_PATH: SecondPath = SecondPath::ServiceAddress;

/// The tests run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn ready(test: &str) -> bool {
    need_root(test)
        && ["ip", "arping", "ss", "sipp", "tcpdump"]
            .iter()
            .all(|tool| need_tool(test, tool))
}

fn report(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn secs(from_now: u64) -> Instant {
    Instant::now() + Duration::from_secs(from_now)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs `body` on a fresh topology (one test at a time), then checks that no namespace is left.
fn with_topology(prefix: &str, body: impl FnOnce(&Topology) -> Result<()>) -> Result<()> {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let topology = Topology::build(prefix)?;
    let outcome = body(&topology);
    drop(topology);
    let left = namespaces_left(prefix)?;
    ensure!(left.is_empty(), "namespaces left after the test: {left:?}");
    outcome
}

/// The two Tandems of a topology, with what it takes to (re)start either.
struct Pair<'n> {
    net: &'n Topology,
    dir: PathBuf,
    /// Both nodes' configs: same media server, same relay port range.
    configs: BTreeMap<&'static str, TandemConfig>,
    running: BTreeMap<&'static str, NsTandem>,
}

impl<'n> Pair<'n> {
    /// Starts tandem-a (preferred) and tandem-b and waits until a is active and b a synced standby.
    fn start(net: &'n Topology, dir: &Path, server: SocketAddr) -> Result<Pair<'n>> {
        // two pairs per call; the namespaces have the ports to themselves
        let ports: RangeInclusive<u16> = 20000..=23999;
        let configs = Node::TANDEMS
            .map(|node| {
                let mut config = net.tandem_config(node, &[server]);
                config.media.ports = ports.clone();
                (node.name(), config)
            })
            .into();
        let mut pair = Pair {
            net,
            dir: dir.to_owned(),
            configs,
            running: BTreeMap::new(),
        };
        pair.launch(Node::TandemA, "")?;
        pair.launch(Node::TandemB, "")?;
        pair.wait_roles(Node::TandemA, secs(15))?;
        Ok(pair)
    }

    /// Starts `node`'s Tandem (logs under `<dir>/<run>/tandem-<node>`; the epoch file stays in
    /// `<dir>/state-<node>` across runs).
    fn launch(&mut self, node: Node, run: &str) -> Result<()> {
        let ha = HaOptions {
            state_dir: self.dir.join(format!("state-{node}")),
            prefer_active: node == Node::TandemA,
            second_path: SECOND_PATH,
        };
        let config = self.configs[node.name()].clone();
        let tandem = self
            .net
            .start_ha_tandem(node, config, &ha, &self.dir.join(run))?;
        self.running.insert(node.name(), tandem);
        Ok(())
    }

    fn tandem(&self, node: Node) -> &NsTandem {
        &self.running[node.name()]
    }

    fn status(&self, node: Node) -> Result<HaStatus> {
        self.tandem(node).status(self.net)
    }

    /// `kill -9` of every process in `node` (Tandem and whatever it started); the wall clock of
    /// the kill (Unix seconds).
    fn kill(&mut self, node: Node) -> Result<f64> {
        let at = unix_now();
        let killed = self.net.kill_all(node)?;
        ensure!(killed > 0, "nothing ran in {node}");
        Ok(at)
    }

    /// Waits until `active` is active and the other node a synced standby.
    fn wait_roles(&mut self, active: Node, deadline: Instant) -> Result<()> {
        let standby = active.peer().unwrap();
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
    fn wait_calls(&mut self, calls: u64, deadline: Instant) -> Result<()> {
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

    /// The incidents of `node`, printed as `tandemctl incidents` shows them.
    fn print_incidents(&self, test: &str, node: Node) {
        let text = self
            .tandem(node)
            .ctl(self.net, &["incidents"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e.to_string());
        report(&format!(
            "{test}: {node}'s incidents:\n    {}",
            text.trim_end().replace('\n', "\n    ")
        ));
    }

    fn describe(&mut self) -> String {
        self.running
            .values_mut()
            .map(NsTandem::describe)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The SIPp echo server in `media`: answers every call, echoes its RTP.
fn echo_server(net: &Topology, dir: &Path) -> Result<NsSipp> {
    net.spawn_sipp(
        Node::Media,
        "ms1",
        Sipp::uas("ms1", "uas_basic.xml")
            .rtp_echo()
            .arg("-aa")
            .timeout(Duration::from_secs(170)),
        dir,
    )
}

/// `calls` long echo calls (ha_uac_echo.xml: RTP for about 14 s, then BYE) from `caller` to the
/// VIP at `RATE` a second.
fn echo_calls(net: &Topology, dir: &Path, role: &str, calls: u32) -> Result<(NsSipp, u16)> {
    let vip = SocketAddr::new(net.vip().into(), 5060);
    let sipp = Sipp::uac(role, "ha_uac_echo.xml", vip)
        .calls(calls)
        .rate(RATE)
        .limit(calls)
        .timeout(Duration::from_secs(60));
    let media_port = sipp.media_port();
    Ok((net.spawn_sipp(Node::Caller, role, sipp, dir)?, media_port))
}

/// `calls` short calls without media (uac_basic.xml) to the VIP; Ok when all succeed.
fn short_calls(net: &Topology, dir: &Path, role: &str, calls: u32) -> Result<()> {
    let outcome = arriving_calls(net, dir, role, calls)?.wait(secs(30))?;
    outcome
        .check_caller(u64::from(calls))
        .map_err(anyhow::Error::msg)
}

/// tcpdump on the caller's service interface: the echoed RTP arriving at the caller's media port
/// from the VIP (from each call's own relay port).
struct EchoCapture {
    guard: ChildGuard,
    file: PathBuf,
}

impl EchoCapture {
    fn start(net: &Topology, dir: &Path, name: &str, media_port: u16) -> Result<EchoCapture> {
        let file = dir.join(format!("{name}.pcap"));
        let filter = format!("udp and src host {} and dst port {media_port}", net.vip());
        let mut command = Command::new("tcpdump");
        command
            .args(["-i", "svc0", "-n", "-U", "--immediate-mode", "-s", "64"])
            .arg("-w")
            .arg(&file)
            .arg(filter);
        let mut guard = net.spawn(Node::Caller, name, command, dir, false)?;
        let stderr = guard.stderr_log().to_owned();
        let listening = wait_for(secs(5), || {
            if !guard.is_running() {
                return Some(false);
            }
            std::fs::read_to_string(&stderr)
                .ok()
                .filter(|t| t.contains("listening on"))
                .map(|_| true)
        });
        ensure!(
            listening == Some(true),
            "tcpdump in caller: {}",
            file_tail(&stderr, 5)
        );
        Ok(EchoCapture { guard, file })
    }

    /// Arrival times (Unix seconds) of the echoed packets so far, per relay port (one per call).
    fn arrivals(&self) -> Result<BTreeMap<u16, Vec<f64>>> {
        let output = Command::new("tcpdump")
            .args(["-r"])
            .arg(&self.file)
            .args(["-n", "-tt"])
            .output()
            .context("tcpdump -r")?;
        let mut calls: BTreeMap<u16, Vec<f64>> = BTreeMap::new();
        // 1732200000.123456 IP 10.9.0.100.20002 > 10.9.0.10.6000: UDP, length 172
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let mut words = line.split_whitespace();
            let (Some(time), Some(_), Some(source)) = (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let port = source.rsplit('.').next().and_then(|p| p.parse().ok());
            if let (Ok(time), Some(port)) = (time.parse::<f64>(), port) {
                calls.entry(port).or_default().push(time);
            }
        }
        Ok(calls)
    }

    /// Waits until echoed RTP arrives for `calls` calls.
    fn wait_calls(&self, calls: usize, deadline: Instant) -> Result<()> {
        let mut seen = 0;
        let all = wait_for(deadline, || {
            seen = self.arrivals().ok()?.len();
            (seen >= calls).then_some(())
        });
        ensure!(
            all.is_some(),
            "echoed RTP reaches the caller for {seen} of {calls} calls"
        );
        Ok(())
    }

    fn stop(mut self) -> Result<BTreeMap<u16, Vec<f64>>> {
        let _ = self.guard.signal("INT");
        let _ = self.guard.wait_until(secs(3));
        self.arrivals()
    }
}

/// What the echoed RTP of each call shows about a takeover at `kill` (Unix seconds).
#[derive(Debug, Default)]
struct MediaGaps {
    /// Per call: the silence spanning the kill (last packet before, first after), ms.
    across_kill: Vec<f64>,
    /// Per call: its longest silence anywhere between its first and last packet, ms.
    longest: Vec<f64>,
    /// Relay ports whose call received nothing after the kill.
    silent_after_kill: Vec<u16>,
}

impl MediaGaps {
    fn measure(arrivals: &BTreeMap<u16, Vec<f64>>, kill: f64) -> MediaGaps {
        let mut gaps = MediaGaps::default();
        for (port, times) in arrivals {
            let before = times
                .iter()
                .copied()
                .filter(|t| *t <= kill)
                .reduce(f64::max);
            let after = times.iter().copied().filter(|t| *t > kill).reduce(f64::min);
            match (before, after) {
                (Some(before), Some(after)) => gaps.across_kill.push((after - before) * 1000.0),
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

    fn summary(&self) -> String {
        format!(
            "media gap across the takeover per call p50/p99/max {}; longest gap per call p50/p99/max {}",
            percentiles(&self.across_kill),
            percentiles(&self.longest)
        )
    }
}

fn percentiles(values: &[f64]) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    format!("{:.0}/{:.0}/{:.0} ms", at(0.5), at(0.99), at(1.0))
}

/// Detection, confirmation, promotion, address and calls, relative to `kill` (the kill or the
/// switchover request, Unix seconds), from the newest incident of `node` with a promotion.
fn takeover_figures(pair: &Pair<'_>, node: Node, kill: f64) -> Result<String> {
    let incidents = pair.tandem(node).incidents(pair.net)?;
    let takeover = incidents
        .iter()
        .find(|i| i.step("promoted").is_some())
        .with_context(|| format!("{node} recorded no promotion: {incidents:?}"))?;
    let kill_ms = kill * 1000.0;
    let steps: Vec<String> = takeover
        .steps
        .iter()
        .map(|s| {
            let after = s.at_unix_ms as f64 - kill_ms;
            let calls = if s.calls > 0 {
                format!(" ({} calls)", s.calls)
            } else {
                String::new()
            };
            format!("{} +{after:.0} ms{calls}", s.name)
        })
        .collect();
    Ok(format!(
        "{} timeline from the kill (or request): {}",
        takeover.kind,
        steps.join(", ")
    ))
}

/// Checks the end of an echo caller: every call ended with its BYE answered 200.
fn all_calls_ended(caller: NsSipp, calls: u32, pair: &mut Pair<'_>) -> Result<()> {
    let outcome = caller.wait(secs(60))?;
    if let Err(failure) = outcome.check_caller(u64::from(calls)) {
        bail!("{failure}\n{}", pair.describe());
    }
    Ok(())
}

/// `CALLS` established calls with RTP both ways; `kill -9` of the active: the standby takes the
/// VIP and the calls, whose RTP goes on and which all end with BYE answered 200; new calls work.
#[test]
fn kill_9_of_the_active_keeps_every_call() -> Result<()> {
    let test = "ha_kill_9";
    if !ready(test) {
        return Ok(());
    }
    let mut dir = TestDir::new(test)?;
    with_topology("ha-kill", |net| {
        let media = echo_server(net, dir.path())?;
        let mut pair = Pair::start(net, dir.path(), media.addr())?;
        net.wait_vip_at(Node::Caller, Node::TandemA, secs(5))?;

        let (caller, media_port) = echo_calls(net, dir.path(), "caller", CALLS)?;
        let capture = EchoCapture::start(net, dir.path(), "echo", media_port)?;
        pair.wait_calls(u64::from(CALLS), secs(30))?;
        capture.wait_calls(CALLS as usize, secs(10))?;

        let kill = pair.kill(Node::TandemA)?;
        let killed = Instant::now();
        let taken = pair
            .tandem(Node::TandemB)
            .wait_status(net, secs(5), HaStatus::is_active);
        let taken = match taken {
            Ok(status) => status,
            Err(error) => bail!("{error:#}\n{}", pair.describe()),
        };
        let active_seen = killed.elapsed();
        net.wait_vip_at(Node::Caller, Node::TandemB, secs(5))?;
        let holders = net.vip_holders()?;
        ensure!(
            holders.contains(&Node::TandemB),
            "tandem-b does not hold the VIP: {holders:?}"
        );
        ensure!(
            taken.calls == u64::from(CALLS),
            "tandem-b carries {} calls, not {CALLS}",
            taken.calls
        );
        report(&format!(
            "{test}: kill -9 of tandem-a with {CALLS} calls: tandem-b reports active {} ms later \
             (polled), epoch {}; VIP configured on {holders:?}; {}",
            active_seen.as_millis(),
            taken.epoch,
            takeover_figures(&pair, Node::TandemB, kill)?
        ));
        pair.print_incidents(test, Node::TandemB);

        short_calls(net, dir.path(), "after-takeover", 10)
            .context("new calls after the takeover")?;
        all_calls_ended(caller, CALLS, &mut pair)?;
        let gaps = MediaGaps::measure(&capture.stop()?, kill);
        report(&format!("{test}: {CALLS} calls: {}", gaps.summary()));
        ensure!(
            gaps.silent_after_kill.is_empty(),
            "no echoed RTP after the kill for the calls on relay ports {:?}",
            gaps.silent_after_kill
        );
        ensure!(
            gaps.longest.len() == CALLS as usize,
            "echoed RTP for {} relay ports, not {CALLS} (a call changed ports?)",
            gaps.longest.len()
        );
        let server = media.finish(secs(10))?;
        server
            .check_server(Invites::AtLeast(u64::from(CALLS) + 10))
            .map_err(anyhow::Error::msg)?;
        Ok(())
    })?;
    dir.passed();
    Ok(())
}

/// After a takeover the old active is started again: it comes up standby, gets synced and leaves
/// the VIP alone. Calls placed then (and those still running from before the first kill) survive
/// a `kill -9` of the new active: the restarted node takes over and they end with BYE 200.
#[test]
fn restarted_old_active_rejoins_as_standby_and_a_second_kill_is_survived() -> Result<()> {
    let test = "ha_rejoin";
    if !ready(test) {
        return Ok(());
    }
    let mut dir = TestDir::new(test)?;
    let calls = 30;
    with_topology("ha-rejoin", |net| {
        let media = echo_server(net, dir.path())?;
        let mut pair = Pair::start(net, dir.path(), media.addr())?;
        let (first, media_port) = echo_calls(net, dir.path(), "caller-1", calls)?;
        let capture = EchoCapture::start(net, dir.path(), "echo-1", media_port)?;
        pair.wait_calls(u64::from(calls), secs(20))?;
        capture.wait_calls(calls as usize, secs(10))?;
        let first_kill = pair.kill(Node::TandemA)?;
        pair.tandem(Node::TandemB)
            .wait_status(net, secs(5), HaStatus::is_active)?;

        pair.launch(Node::TandemA, "restarted")?;
        pair.wait_roles(Node::TandemB, secs(10))?;
        let a = pair.status(Node::TandemA)?;
        ensure!(
            a.calls == u64::from(calls),
            "the rejoined tandem-a mirrors {} calls, not {calls}",
            a.calls
        );
        let holders = net.vip_holders()?;
        ensure!(
            holders == [Node::TandemB],
            "after tandem-a rejoined, the VIP is on {holders:?}"
        );
        report(&format!(
            "{test}: tandem-a restarted: standby, synced, epoch {}, mirrors {} calls; VIP on {holders:?}",
            a.epoch, a.calls
        ));

        let (second, media_port_2) = echo_calls(net, dir.path(), "caller-2", calls)?;
        let capture_2 = EchoCapture::start(net, dir.path(), "echo-2", media_port_2)?;
        pair.wait_calls(u64::from(2 * calls), secs(20))?;
        capture_2.wait_calls(calls as usize, secs(10))?;
        let second_kill = pair.kill(Node::TandemB)?;
        if let Err(error) =
            pair.tandem(Node::TandemA)
                .wait_status(net, secs(5), HaStatus::is_active)
        {
            bail!("{error:#}\n{}", pair.describe());
        }
        net.wait_vip_at(Node::Caller, Node::TandemA, secs(5))?;
        report(&format!(
            "{test}: second kill (tandem-b) with {} calls: {}",
            2 * calls,
            takeover_figures(&pair, Node::TandemA, second_kill)?
        ));
        pair.print_incidents(test, Node::TandemA);

        all_calls_ended(first, calls, &mut pair)?;
        all_calls_ended(second, calls, &mut pair)?;
        for (name, capture, kills) in [
            (
                "calls placed before the first kill",
                capture,
                vec![first_kill, second_kill],
            ),
            (
                "calls placed after the rejoin",
                capture_2,
                vec![second_kill],
            ),
        ] {
            let arrivals = capture.stop()?;
            for kill in kills {
                let gaps = MediaGaps::measure(&arrivals, kill);
                report(&format!("{test}: {name}: {}", gaps.summary()));
                ensure!(
                    gaps.silent_after_kill.is_empty() && arrivals.len() == calls as usize,
                    "{name}: {} relay ports, silent after a kill: {:?}",
                    arrivals.len(),
                    gaps.silent_after_kill
                );
            }
        }
        short_calls(net, dir.path(), "after-second-kill", 5)?;
        Ok(())
    })?;
    dir.passed();
    Ok(())
}

/// Cutting only the replication link: the standby's second path still finds the active alive,
/// so for as long as the link is down exactly one node is active and holds the VIP. Restored,
/// the standby resyncs.
#[test]
fn cutting_only_the_replication_link_makes_no_second_active() -> Result<()> {
    let test = "ha_cut";
    if !ready(test) {
        return Ok(());
    }
    let mut dir = TestDir::new(test)?;
    let calls = 20;
    with_topology("ha-cut", |net| {
        let media = echo_server(net, dir.path())?;
        let mut pair = Pair::start(net, dir.path(), media.addr())?;
        let (caller, _) = echo_calls(net, dir.path(), "caller", calls)?;
        pair.wait_calls(u64::from(calls), secs(20))?;

        net.cut_replication()?;
        let cut = Instant::now();
        // calls the standby cannot hear of while the link is down
        let (during_cut, _) = echo_calls(net, dir.path(), "caller-during-cut", calls)?;
        let mut checks = 0;
        let mut standby_seen = Vec::new();
        while cut.elapsed() < Duration::from_millis(2500) {
            let holders = net.vip_holders()?;
            let roles: Vec<(Node, String)> = Node::TANDEMS
                .iter()
                .map(|&n| (n, pair.status(n).map_or_else(|e| e.to_string(), |s| s.role)))
                .collect();
            let actives = roles.iter().filter(|(_, r)| r == "active").count();
            if holders != [Node::TandemA] || actives != 1 || roles[0].1 != "active" {
                bail!(
                    "{} ms after the cut: VIP on {holders:?}, roles {roles:?}\n{}",
                    cut.elapsed().as_millis(),
                    pair.describe()
                );
            }
            let standby = pair.status(Node::TandemB)?;
            let seen = (standby.synced, standby.peer_connected, standby.calls);
            if standby_seen.last() != Some(&seen) {
                standby_seen.push(seen);
            }
            checks += 1;
        }
        let a = pair.status(Node::TandemA)?;
        net.restore_replication()?;
        let restored = Instant::now();
        pair.wait_roles(Node::TandemA, secs(10))?;
        pair.wait_calls(u64::from(2 * calls), secs(10))?;
        report(&format!(
            "{test}: link cut {} ms: {checks} checks, always one active (tandem-a, {} calls at the \
             end of the cut) holding the VIP; the standby's (synced, peer connected, calls) during \
             the cut: {standby_seen:?}; mirrors all {} calls again {} ms after the restore",
            restored.duration_since(cut).as_millis(),
            a.calls,
            2 * calls,
            restored.elapsed().as_millis()
        ));
        pair.print_incidents(test, Node::TandemB);
        all_calls_ended(caller, calls, &mut pair)?;
        all_calls_ended(during_cut, calls, &mut pair)?;
        Ok(())
    })?;
    dir.passed();
    Ok(())
}

/// `tandemctl switchover` on the active while calls run and new ones arrive: the standby takes
/// the active role (and the VIP), the old active becomes its synced standby, and no call fails.
#[test]
fn planned_switchover_under_load_loses_no_call() -> Result<()> {
    let test = "ha_switchover";
    if !ready(test) {
        return Ok(());
    }
    let mut dir = TestDir::new(test)?;
    let calls = 30;
    with_topology("ha-switch", |net| {
        let media = echo_server(net, dir.path())?;
        let mut pair = Pair::start(net, dir.path(), media.addr())?;
        let (caller, media_port) = echo_calls(net, dir.path(), "caller", calls)?;
        let capture = EchoCapture::start(net, dir.path(), "echo", media_port)?;
        pair.wait_calls(u64::from(calls), secs(20))?;
        capture.wait_calls(calls as usize, secs(10))?;
        let arriving = arriving_calls(net, dir.path(), "arriving", 30)?;

        let asked = unix_now();
        let output = pair.tandem(Node::TandemA).ctl(net, &["switchover"])?;
        let answer = String::from_utf8_lossy(&output.stdout).into_owned();
        ensure!(
            output.status.success(),
            "tandemctl switchover: {} {answer} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        pair.wait_roles(Node::TandemB, secs(10))?;
        net.wait_vip_at(Node::Caller, Node::TandemB, secs(5))?;
        report(&format!(
            "{test}: switchover with {calls} calls: tandemctl answered {:?}; {}",
            answer.trim(),
            takeover_figures(&pair, Node::TandemB, asked)?
        ));
        pair.print_incidents(test, Node::TandemB);

        let arriving = arriving.wait(secs(40))?;
        arriving.check_caller(30).map_err(|failure| {
            anyhow::anyhow!("calls arriving during the switchover: {failure}")
        })?;
        all_calls_ended(caller, calls, &mut pair)?;
        let gaps = MediaGaps::measure(&capture.stop()?, asked);
        report(&format!("{test}: {calls} calls: {}", gaps.summary()));
        ensure!(
            gaps.silent_after_kill.is_empty(),
            "no echoed RTP after the switchover for the calls on relay ports {:?}",
            gaps.silent_after_kill
        );
        Ok(())
    })?;
    dir.passed();
    Ok(())
}

/// 5 % of the packets on the replication link lost (each way) while calls run and new ones
/// arrive: never a second active, and once the loss is gone the standby is synced and mirrors
/// every call without help.
#[test]
fn five_percent_loss_on_the_replication_link() -> Result<()> {
    let test = "ha_loss";
    if !ready(test) || !need_tool(test, "tc") {
        return Ok(());
    }
    let mut dir = TestDir::new(test)?;
    let calls = 30;
    with_topology("ha-loss", |net| {
        let media = echo_server(net, dir.path())?;
        let mut pair = Pair::start(net, dir.path(), media.addr())?;
        let method = net.replication_loss(5.0)?;
        let (caller, _) = echo_calls(net, dir.path(), "caller", calls)?;
        let arriving = arriving_calls(net, dir.path(), "arriving", 40)?;
        let lossy = Instant::now();
        let mut standby_seen = Vec::new();
        while lossy.elapsed() < Duration::from_secs(4) {
            let holders = net.vip_holders()?;
            let roles: Vec<String> = Node::TANDEMS
                .iter()
                .map(|&n| pair.status(n).map_or_else(|e| e.to_string(), |s| s.role))
                .collect();
            if holders != [Node::TandemA] || roles != ["active", "standby"] {
                bail!(
                    "{} ms into the loss: VIP on {holders:?}, roles {roles:?}\n{}",
                    lossy.elapsed().as_millis(),
                    pair.describe()
                );
            }
            let synced = pair.status(Node::TandemB)?.synced;
            if standby_seen.last() != Some(&synced) {
                standby_seen.push(synced);
            }
        }
        let during = (pair.status(Node::TandemA)?, pair.status(Node::TandemB)?);
        net.clear_replication_loss()?;
        let cleared = Instant::now();
        pair.wait_roles(Node::TandemA, secs(10))?;
        let active_calls = pair.status(Node::TandemA)?.calls;
        pair.tandem(Node::TandemB)
            .wait_status(net, secs(10), |s| s.calls == active_calls)?;
        report(&format!(
            "{test}: 4 s of 5 % loss each way ({method:?}) with calls set up: the standby's synced \
             flag went {standby_seen:?}; at the end active {} / standby {} calls; after clearing, \
             synced and mirroring all {active_calls} calls within {} ms",
            during.0.calls,
            during.1.calls,
            cleared.elapsed().as_millis()
        ));
        pair.print_incidents(test, Node::TandemB);
        arriving
            .wait(secs(40))?
            .check_caller(40)
            .map_err(anyhow::Error::msg)?;
        all_calls_ended(caller, calls, &mut pair)?;
        Ok(())
    })?;
    dir.passed();
    Ok(())
}

/// `calls` short calls (uac_basic.xml, 1 s each) at 10 a second, running in the background.
fn arriving_calls(net: &Topology, dir: &Path, role: &str, calls: u32) -> Result<NsSipp> {
    let vip = SocketAddr::new(net.vip().into(), 5060);
    let sipp = Sipp::uac(role, "uac_basic.xml", vip)
        .calls(calls)
        .rate(10)
        .timeout(Duration::from_secs(40));
    net.spawn_sipp(Node::Caller, role, sipp, dir)
}
