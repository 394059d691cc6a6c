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
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tandem_tests::ha_calls::{
    all_calls_ended, echo_server, secs, unix_now, EchoCapture, HaPair, MediaGaps,
};
use tandem_tests::netns::{namespaces_left, HaStatus, NsSipp};
use tandem_tests::sipp::Invites;
use tandem_tests::{need_root, need_tool, Node, Sipp, TestDir, Topology};

/// Established calls held across a takeover (the "a few hundred"), each with RTP both
/// ways.
const CALLS: u32 = 300;
/// New calls per second while they are set up.
const RATE: u32 = 50;

/// How long the echo server in `media` takes calls.
const ECHO_SERVER_LIFE: Duration = Duration::from_secs(170);

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
        let media = echo_server(net, dir.path(), ECHO_SERVER_LIFE)?;
        let mut pair = HaPair::start(net, dir.path(), media.addr())?;
        net.wait_vip_at(Node::Caller, Node::TandemA, secs(5))?;

        let (caller, media_port) = echo_calls(net, dir.path(), "caller", CALLS)?;
        let capture = EchoCapture::start(net, dir.path(), "echo", media_port)?;
        pair.wait_calls(u64::from(CALLS), secs(30))?;
        capture.wait_calls(CALLS as usize, secs(10))?;
        // The standby's own probes would leave from the VIP and their answers reach tandem-a:
        // it shows the active's verdict instead (up), not a server it cannot hear.
        let standby_sees = pair
            .tandem(Node::TandemB)
            .metric(net, "tandem_media_server_up")?;
        ensure!(
            standby_sees == Some(1.0),
            "the standby shows the media server up = {standby_sees:?}"
        );

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
            pair.takeover_figures(Node::TandemB, kill)?
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
        let media = echo_server(net, dir.path(), ECHO_SERVER_LIFE)?;
        let mut pair = HaPair::start(net, dir.path(), media.addr())?;
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
            pair.takeover_figures(Node::TandemA, second_kill)?
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
        let media = echo_server(net, dir.path(), ECHO_SERVER_LIFE)?;
        let mut pair = HaPair::start(net, dir.path(), media.addr())?;
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

/// Two actives meet: `tandemctl promote --force` on the standby while the active lives (what a
/// false takeover also does). The new active (epoch 2) takes the VIP; the old one, no longer
/// hearing a standby, dials its peer, hears the higher epoch and steps down, and rejoins as its
/// synced standby. New calls work through the new active.
#[test]
fn a_second_active_fences_the_first_and_it_rejoins_as_standby() -> Result<()> {
    let test = "ha_two_actives";
    if !ready(test) {
        return Ok(());
    }
    let mut dir = TestDir::new(test)?;
    with_topology("ha-two", |net| {
        let media = echo_server(net, dir.path(), ECHO_SERVER_LIFE)?;
        let mut pair = HaPair::start(net, dir.path(), media.addr())?;
        let output = pair.tandem(Node::TandemB).ctl(
            net,
            &["promote", "--force", "--reason", "test: second active"],
        )?;
        ensure!(
            output.status.success(),
            "tandemctl promote --force: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let promoted = Instant::now();
        pair.wait_roles(Node::TandemB, secs(15))?;
        let settled = promoted.elapsed();
        let (a, b) = (pair.status(Node::TandemA)?, pair.status(Node::TandemB)?);
        ensure!(
            b.epoch > a.epoch || (a.epoch == b.epoch && a.role == "standby"),
            "epochs after the meeting: tandem-a {a:?}, tandem-b {b:?}"
        );
        let holders = net.vip_holders()?;
        ensure!(
            holders == [Node::TandemB],
            "VIP on {holders:?}\n{}",
            pair.describe()
        );
        report(&format!(
            "{test}: forced promotion of tandem-b while tandem-a was active: tandem-a stepped down \
             and rejoined as synced standby {} ms later (epochs a {} / b {})",
            settled.as_millis(),
            a.epoch,
            b.epoch
        ));
        pair.print_incidents(test, Node::TandemA);
        let arriving = arriving_calls(net, dir.path(), "arriving", 10)?;
        arriving
            .wait(secs(40))?
            .check_caller(10)
            .map_err(anyhow::Error::msg)?;
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
        let media = echo_server(net, dir.path(), ECHO_SERVER_LIFE)?;
        let mut pair = HaPair::start(net, dir.path(), media.addr())?;
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
            pair.takeover_figures(Node::TandemB, asked)?
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
        let media = echo_server(net, dir.path(), ECHO_SERVER_LIFE)?;
        let mut pair = HaPair::start(net, dir.path(), media.addr())?;
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
