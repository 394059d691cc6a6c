//! The network-namespace topology the hot-standby tests run on, proved with what exists today: a
//! call through a single Tandem on the VIP, the VIP moved to a second Tandem, the replication link
//! cut and degraded alone, keepalived moving the VIP when the master's keepalived is killed, and a
//! crashed run's namespaces cleaned up by the next one.
//!
//! Root only (SKIP line otherwise). Each test has its own prefix, so they run in parallel; each
//! checks at the end that no namespace of its prefix is left. Figures (VIP move times, loss) are
//! printed on stderr.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Result};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};
use tandem_tests::keepalived::{keepalived_version, marker_lines, write_marker_script};
use tandem_tests::netns::namespaces_left;
use tandem_tests::process::wait_for;
use tandem_tests::sipp::Invites;
use tandem_tests::{
    need_root, need_tool, Keepalived, KeepalivedConfig, Node, Sipp, TestDir, Topology, VrrpState,
};

/// Whether the test can run: root and every tool (a missing tool fails under CI).
fn ready(test: &str, tools: &[&str]) -> bool {
    need_root(test) && tools.iter().all(|tool| need_tool(test, tool))
}

/// A line on stderr that shows even when the harness captures output.
fn report(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn secs(from_now: u64) -> Instant {
    Instant::now() + Duration::from_secs(from_now)
}

/// Runs `body` on a fresh topology, then checks that dropping it left no namespace behind.
fn with_topology(prefix: &str, body: impl FnOnce(&Topology) -> Result<()>) -> Result<()> {
    let topology = Topology::build(prefix)?;
    let outcome = body(&topology);
    drop(topology);
    let left = namespaces_left(prefix)?;
    ensure!(left.is_empty(), "namespaces left after the test: {left:?}");
    outcome
}

/// OPTIONS from the caller to the VIP, answered 200 (SIPp's uac_options.xml).
fn options_answered(net: &Topology, dir: &TestDir, role: &str) -> Result<()> {
    let target = std::net::SocketAddr::new(net.vip().into(), 5060);
    let outcome = net
        .spawn_sipp(
            Node::Caller,
            role,
            Sipp::uac(role, "uac_options.xml", target).timeout(Duration::from_secs(5)),
            dir.path(),
        )?
        .wait(secs(10))?;
    outcome.check_caller(1).map_err(anyhow::Error::msg)
}

/// A call to the VIP reaches the media server through the Tandem in tandem-a. Then tandem-a's
/// Tandem is killed, the VIP moves to tandem-b, whose Tandem (bound to the VIP before it owned it)
/// answers the caller's OPTIONS.
#[test]
fn a_call_through_tandem_on_the_vip_and_the_vip_moves_to_the_standby() -> Result<()> {
    let test = "netns_call_and_vip_move";
    if !ready(test, &["ip", "ping", "arping", "ss", "sipp"]) {
        return Ok(());
    }
    let mut dir = TestDir::new(test)?;
    with_topology("call", |net| {
        // A Tandem without [ha] on a VIP moved by others binds it through the sysctl.
        net.allow_nonlocal_bind()?;
        let media = net.spawn_sipp(
            Node::Media,
            "ms1",
            Sipp::uas("ms1", "uas_basic.xml").timeout(Duration::from_secs(60)),
            dir.path(),
        )?;
        net.assign_vip(Node::TandemA)?;
        let mut active = net.start_tandem(
            Node::TandemA,
            net.tandem_config(Node::TandemA, &[media.addr()]),
            dir.path(),
        )?;
        let mut standby = net.start_tandem(
            Node::TandemB,
            net.tandem_config(Node::TandemB, &[media.addr()]),
            dir.path(),
        )?;
        net.wait_vip_at(Node::Caller, Node::TandemA, secs(5))?;

        let caller = net
            .spawn_sipp(
                Node::Caller,
                "caller",
                Sipp::uac("caller", "uac_basic.xml", active.sip_addr())
                    .timeout(Duration::from_secs(20)),
                dir.path(),
            )?
            .wait(secs(30))?;
        let server = media.finish(secs(10))?;
        if let Err(failure) = caller
            .check_caller(1)
            .and_then(|()| server.check_server(Invites::Exactly(1)))
        {
            bail!("{failure}\n{}", active.describe());
        }
        let answered = active.metric(net, "tandem_calls_answered_total")?;
        ensure!(
            answered == Some(1.0),
            "tandem-a's metrics: {answered:?} calls answered"
        );

        active.kill9()?;
        let moving = Instant::now();
        net.release_vip(Node::TandemA)?;
        net.assign_vip(Node::TandemB)?;
        net.wait_vip_at(Node::Caller, Node::TandemB, secs(5))?;
        report(&format!(
            "{test}: VIP moved by hand (ip addr + arping -U): the caller reaches tandem-b {} ms later",
            moving.elapsed().as_millis()
        ));
        ensure!(net.vip_holders()? == [Node::TandemB]);
        if let Err(failure) = options_answered(net, &dir, "options-after-move") {
            bail!("{failure}\n{}", standby.describe());
        }
        ensure!(standby.is_running(), "{}", standby.describe());
        Ok(())
    })?;
    dir.passed();
    Ok(())
}

/// Cutting the replication link leaves the service network working; restoring it brings the
/// tandems back in touch. 5 % loss on it drops some pings and none once cleared.
#[test]
fn the_replication_link_can_be_cut_and_degraded_alone() -> Result<()> {
    let test = "netns_replication_link";
    if !ready(test, &["ip", "ping", "tc"]) {
        return Ok(());
    }
    with_topology("repl", |net| {
        let a = net.replication_addr(Node::TandemA).unwrap();
        let b = net.replication_addr(Node::TandemB).unwrap();
        let short = Duration::from_millis(300);
        ensure!(
            net.ping(Node::TandemA, b, secs_f(1.0))?,
            "replication link down at start"
        );

        net.cut_replication()?;
        ensure!(
            !net.ping(Node::TandemA, b, short)?,
            "a reaches b over a cut link"
        );
        ensure!(
            !net.ping(Node::TandemB, a, short)?,
            "b reaches a over a cut link"
        );
        ensure!(net.ping(Node::TandemA, net.addr(Node::TandemB), secs_f(1.0))?);
        ensure!(net.ping(Node::Caller, net.addr(Node::TandemA), secs_f(1.0))?);
        ensure!(net.ping(Node::Media, net.addr(Node::TandemB), secs_f(1.0))?);

        net.restore_replication()?;
        let back = wait_for(secs(3), || {
            net.ping(Node::TandemA, b, short).ok().filter(|ok| *ok)
        });
        ensure!(back.is_some(), "replication link not back after restore");

        let method = net.replication_loss(5.0)?;
        for node in Node::TANDEMS {
            ensure!(
                net.replication_loss_of(node)? == Some(5.0),
                "{node}: loss not set"
            );
        }
        let sent = 400;
        let answered = net.ping_many(Node::TandemA, b, sent)?;
        report(&format!(
            "{test}: 5 % loss each way ({method:?}): {answered}/{sent} pings answered"
        ));
        ensure!(
            (sent * 7 / 10..sent).contains(&answered),
            "{answered}/{sent} pings answered with 5 % loss each way"
        );
        net.clear_replication_loss()?;
        for node in Node::TANDEMS {
            ensure!(
                net.replication_loss_of(node)?.is_none(),
                "{node}: loss left"
            );
        }
        ensure!(
            net.ping_many(Node::TandemA, b, 100)? == 100,
            "loss after clearing"
        );
        Ok(())
    })
}

fn secs_f(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

/// keepalived puts the VIP on tandem-a (higher priority); `kill -9` of its keepalived moves the VIP
/// to tandem-b within about three advertisement intervals; both notify scripts ran; tandem-b's
/// Tandem, bound to the VIP all along, answers the caller.
#[test]
fn keepalived_moves_the_vip_when_the_masters_keepalived_is_killed() -> Result<()> {
    let test = "netns_keepalived_failover";
    if !ready(test, &["ip", "ping", "ss", "keepalived", "sipp"]) {
        return Ok(());
    }
    let mut dir = TestDir::new(test)?;
    report(&format!("{test}: {}", keepalived_version()?));
    with_topology("ka", |net| {
        // A Tandem without [ha] on a VIP moved by others binds it through the sysctl.
        net.allow_nonlocal_bind()?;
        let start = |node: Node, priority: u8| -> Result<(Keepalived, std::path::PathBuf)> {
            let script = dir.join(&format!("notify-{node}.sh"));
            let marker = dir.join(&format!("notify-{node}.log"));
            write_marker_script(&script, &marker)?;
            let mut config = KeepalivedConfig::new(net, node, priority);
            config.notify_master = Some(format!("{} master", script.display()));
            config.notify_backup = Some(format!("{} backup", script.display()));
            Ok((Keepalived::start(net, node, &config, dir.path())?, marker))
        };
        let (mut a, marker_a) = start(Node::TandemA, 150)?;
        let (mut b, marker_b) = start(Node::TandemB, 100)?;
        a.wait_state(VrrpState::Master, secs(5))?;
        b.wait_state(VrrpState::Backup, secs(5))?;
        ensure!(net.vip_holders()? == [Node::TandemA]);
        net.wait_vip_at(Node::Caller, Node::TandemA, secs(3))?;
        let notified = |marker: &std::path::Path, state: &str| {
            wait_for(secs(3), || {
                marker_lines(marker)
                    .iter()
                    .any(|l| l == state)
                    .then_some(())
            })
            .is_some()
        };
        ensure!(
            notified(&marker_a, "master"),
            "tandem-a's notify_master did not run"
        );
        ensure!(
            notified(&marker_b, "backup"),
            "tandem-b's notify_backup did not run"
        );

        // a Tandem in each tandem node, bound to the VIP (the pool is unused: OPTIONS only)
        let pool = [std::net::SocketAddr::new(
            net.addr(Node::Media).into(),
            5060,
        )];
        let _active = net.start_tandem(
            Node::TandemA,
            net.tandem_config(Node::TandemA, &pool),
            dir.path(),
        )?;
        let mut standby = net.start_tandem(
            Node::TandemB,
            net.tandem_config(Node::TandemB, &pool),
            dir.path(),
        )?;

        let killed = Instant::now();
        a.kill9()?;
        let on_b = wait_for(secs(5), || {
            net.vip_holders()
                .ok()
                .filter(|h| h.contains(&Node::TandemB))
                .map(|_| killed.elapsed())
        });
        let Some(on_b) = on_b else {
            bail!("the VIP did not reach tandem-b\n{}", b.describe());
        };
        net.wait_vip_at(Node::Caller, Node::TandemB, secs(5))?;
        let caller_follows = killed.elapsed();
        b.wait_state(VrrpState::Master, secs(1))?;
        report(&format!(
            "{test}: kill -9 of the master's keepalived (advert_int 100 ms): VIP on tandem-b after \
             {} ms, the caller reaches tandem-b after {} ms; the VIP also stays on {:?}",
            on_b.as_millis(),
            caller_follows.as_millis(),
            net.vip_holders()?
        ));
        ensure!(
            notified(&marker_b, "master"),
            "tandem-b's notify_master did not run"
        );
        if let Err(failure) = options_answered(net, &dir, "options-after-failover") {
            bail!("{failure}\n{}", standby.describe());
        }
        Ok(())
    })?;
    dir.passed();
    Ok(())
}

/// A run that dies without dropping its topology leaves namespaces and processes; the next build
/// with the same prefix removes them (killing the processes) and builds afresh.
#[test]
fn a_crashed_runs_namespaces_are_removed_by_the_next_build() -> Result<()> {
    let test = "netns_leftovers";
    if !ready(test, &["ip", "ping"]) {
        return Ok(());
    }
    let prefix = "leftover";
    let crashed = Topology::build(prefix)?;
    let mut orphan = crashed.command(Node::Media, "sleep").arg("60").spawn()?;
    let entered = wait_for(secs(2), || {
        crashed
            .pids(Node::Media)
            .ok()?
            .contains(&orphan.id())
            .then_some(())
    });
    ensure!(
        entered.is_some(),
        "the process did not enter the media namespace"
    );
    // the crash: no Drop runs
    std::mem::forget(crashed);
    ensure!(namespaces_left(prefix)?.len() == 5);

    with_topology(prefix, |net| {
        let status = wait_for(secs(3), || orphan.try_wait().ok().flatten());
        ensure!(
            status.and_then(|s| s.signal()) == Some(9),
            "the leftover process was not killed: {status:?}"
        );
        ensure!(net.pids(Node::Media)?.is_empty());
        ensure!(net.ping(Node::Caller, net.addr(Node::Media), secs_f(1.0))?);
        Ok(())
    })
}

/// A node can be unplugged from both networks and plugged back, and every process in it killed.
#[test]
fn a_node_can_be_unplugged_and_its_processes_killed() -> Result<()> {
    let test = "netns_node_faults";
    if !ready(test, &["ip", "ping"]) {
        return Ok(());
    }
    with_topology("node", |net| {
        let one_second = secs_f(1.0);
        let b_replication = net.replication_addr(Node::TandemB).unwrap();
        net.disconnect(Node::TandemB)?;
        ensure!(!net.ping(Node::Caller, net.addr(Node::TandemB), secs_f(0.3))?);
        ensure!(!net.ping(Node::TandemA, b_replication, secs_f(0.3))?);
        ensure!(net.ping(Node::Caller, net.addr(Node::TandemA), one_second)?);
        net.reconnect(Node::TandemB)?;
        ensure!(net.ping(Node::Caller, net.addr(Node::TandemB), one_second)?);
        ensure!(net.ping(Node::TandemA, b_replication, one_second)?);

        let mut sleepers = [
            net.command(Node::TandemA, "sleep").arg("60").spawn()?,
            net.command(Node::TandemA, "sleep").arg("60").spawn()?,
        ];
        // `ip netns exec` enters the namespace a moment after it was spawned
        let entered = wait_for(secs(2), || {
            (net.pids(Node::TandemA).ok()?.len() == 2).then_some(())
        });
        ensure!(entered.is_some(), "the sleepers are not in tandem-a");
        ensure!(net.kill_all(Node::TandemA)? == 2);
        for sleeper in &mut sleepers {
            ensure!(sleeper.wait()?.signal() == Some(9));
        }
        ensure!(net.pids(Node::TandemA)?.is_empty());
        Ok(())
    })
}
