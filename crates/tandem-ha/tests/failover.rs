//! Roles of two nodes in virtual time: cold start, takeover when the active dies (detected,
//! confirmed over the second path, promoted with epoch + 1 within 300 ms), no takeover when only
//! the replication link is lost, fencing of an old active, rejoin and a second takeover, planned
//! switchover without two actives, forced promotion.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;
use support::*;
use tandem_ha::{IncidentKind, NodeRole, OutboxConfig, RoleConfig, RoleError, StepName};

/// "a" active (epoch 1) with `calls` calls, "b" synced behind it.
fn established_pair(calls: usize) -> Net {
    let mut net = Net::new();
    assert!(net.run_until(Duration::from_secs(2), |n| n.node("a").serving));
    let unix_ms = net.unix_ms();
    for _ in 0..calls {
        net.node_mut("a").core.new_call(unix_ms);
    }
    net.run_with_load(Duration::from_millis(500), 2);
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
    net
}

/// Runs until node `name` serves; returns when (virtual time).
fn time_until_serving(net: &mut Net, name: &str, limit: Duration) -> Duration {
    let from = net.now;
    assert!(
        net.run_until(limit, |n| n.node(name).serving),
        "{}",
        net.describe()
    );
    net.now - from
}

/// Lets a few milliseconds pass after the standby heard the active's last heartbeat, like a
/// crash at a random moment between two heartbeats.
fn just_after_a_heartbeat(net: &mut Net, after: Duration) {
    assert!(net.run_until(Duration::from_millis(100), |n| {
        n.node("b").role.status().peer_last_heard == Some(n.now)
    }));
    net.run(after);
}

#[test]
fn a_cold_start_makes_the_configured_node_active_and_the_other_its_synced_standby() {
    let mut net = Net::new();
    let took = time_until_serving(&mut net, "a", Duration::from_secs(2));
    assert!(took < Duration::from_millis(10), "{took:?}");
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
    let (a, b) = (net.node("a"), net.node("b"));
    assert_eq!((a.role.epoch(), a.persisted_epoch), (1, 1));
    assert_eq!(b.role.role(), NodeRole::Standby);
    assert_eq!(b.role.epoch(), 1);
    assert_eq!(
        a.role.incidents().latest().unwrap().kind,
        IncidentKind::Promote
    );
    let joined = b.role.incidents().latest().unwrap();
    assert_eq!(joined.kind, IncidentKind::Rejoined);
    assert!(joined.step(StepName::Synced).is_some());
}

#[test]
fn two_standby_preferences_tie_and_the_lower_name_wins_after_the_grace() {
    let mut net = Net::with_configs(
        RoleConfig::new("a", "b"),
        RoleConfig::new("b", "a"),
        OutboxConfig::default(),
    );
    let took = time_until_serving(&mut net, "a", Duration::from_secs(3));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(1100),
        "{took:?}"
    );
    net.run(Duration::from_secs(1));
    assert!(!net.node("b").serving);
    assert_eq!(net.both_active_ticks, 0);
}

#[test]
fn a_node_alone_at_start_becomes_active_after_the_grace_when_the_probe_finds_no_peer() {
    let mut net = Net::new();
    net.kill("b", Failure::Silent);
    let took = time_until_serving(&mut net, "a", Duration::from_secs(3));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(1010),
        "{took:?}"
    );
    assert_eq!(net.node("a").role.epoch(), 1);
}

#[test]
fn the_standby_takes_over_a_dead_active_within_300_ms_with_every_call() {
    let mut net = established_pair(200);
    net.probe = Probe::SilentWhenDead;
    just_after_a_heartbeat(&mut net, Duration::from_millis(10));
    let last_heard = net.node("b").role.status().peer_last_heard.unwrap();
    let calls = net.node("a").core.keys();
    let killed_at = net.now;
    net.kill("a", Failure::Silent);

    let took = time_until_serving(&mut net, "b", Duration::from_secs(1));
    assert!(took <= Duration::from_millis(300), "takeover took {took:?}");
    assert!(net.now - last_heard <= Duration::from_millis(300));
    let b = net.node("b");
    assert_eq!(b.role.epoch(), 2);
    assert_eq!(b.persisted_epoch, 2);
    assert_eq!(b.core.keys(), calls, "every established call carried on");
    assert_eq!(b.restored, Some(calls.len()));

    let incident = b.role.incidents().latest().unwrap();
    assert_eq!(incident.kind, IncidentKind::Takeover);
    let names: Vec<&str> = incident.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "detected",
            "confirmed",
            "promoted",
            "address-taken",
            "calls-resumed"
        ]
    );
    let detected = incident.step(StepName::Detected).unwrap();
    assert!(detected.at - killed_at <= Duration::from_millis(200));
    let promoted = incident.step(StepName::Promoted).unwrap();
    assert_eq!(
        incident.offset(promoted),
        Duration::from_millis(100),
        "the unanswered probe's timeout"
    );
    let wire = incident.to_proto();
    assert_eq!(wire.kind, "takeover");
    assert_eq!(wire.steps[4].calls, calls.len() as u64);
    assert!(wire.steps[4].at_unix_ms >= BASE_UNIX_MS);
}

#[test]
fn a_killed_active_whose_connection_resets_is_replaced_at_once() {
    let mut net = established_pair(50);
    let calls = net.node("a").core.keys();
    net.kill("a", Failure::Reset);
    let took = time_until_serving(&mut net, "b", Duration::from_secs(1));
    assert!(took <= Duration::from_millis(10), "{took:?}");
    assert_eq!(net.node("b").core.keys(), calls);
}

#[test]
fn losing_only_the_replication_link_never_makes_a_second_active() {
    let mut net = established_pair(50);
    net.cut_link(Failure::Silent);
    net.run_with_load(Duration::from_secs(5), 1);
    let b = net.node("b");
    assert_eq!(b.role.role(), NodeRole::Standby);
    assert_eq!(net.both_active_ticks, 0);
    let status = b.role.status();
    assert_eq!(status.peer_alive, Some(true));
    assert!(
        !status.can_take_over,
        "its mirror no longer follows the active"
    );

    net.restore_link();
    net.run_with_load(Duration::from_millis(50), 1);
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
    assert!(net.node("b").role.status().can_take_over);

    // Synced again: the next failure is taken over.
    net.kill("a", Failure::Reset);
    time_until_serving(&mut net, "b", Duration::from_millis(300));
}

#[test]
fn a_standby_cut_off_from_a_live_active_needs_force_when_the_active_dies_later() {
    let mut net = established_pair(30);
    let mirrored = net.node("b").mirror.calls();
    net.cut_link(Failure::Silent);
    net.run_with_load(Duration::from_secs(1), 1);
    net.kill("a", Failure::Silent);
    net.run(Duration::from_secs(3));
    assert!(
        !net.node("b").serving,
        "no automatic promotion while diverged"
    );
    assert_eq!(net.node("b").role.status().peer_alive, Some(false));

    let now = net.now;
    let b = net.node_mut("b");
    assert_eq!(b.role.promote(now, false), Err(RoleError::NotSynced));
    b.role.promote(now, true).unwrap();
    time_until_serving(&mut net, "b", Duration::from_millis(10));
    assert_eq!(net.node("b").role.epoch(), 2);
    assert_eq!(
        net.node("b").core.calls(),
        mirrored,
        "the calls of its last mirror"
    );
}

#[test]
fn a_forced_promotion_works_while_the_mirror_is_not_synced() {
    let mut net = established_pair(100);
    // "b" lost its mirror and asks for a snapshot; "a" freezes before the snapshot arrives.
    net.node_mut("b").mirror.reset();
    net.cut_link(Failure::Reset);
    net.run(Duration::from_millis(5));
    net.restore_link();
    assert!(net.run_until(Duration::from_millis(10), |n| {
        n.node("a").outbox.as_ref().unwrap().metrics().snapshots == 2
    }));
    net.probe = Probe::SilentWhenDead;
    net.kill("a", Failure::Silent);
    net.run(Duration::from_secs(2));
    let b = net.node("b");
    assert!(!b.serving && !b.mirror.synced(), "{}", net.describe());
    assert!(!b.role.status().can_take_over);

    let now = net.now;
    net.node_mut("b").role.promote(now, true).unwrap();
    time_until_serving(&mut net, "b", Duration::from_millis(10));
    let b = net.node("b");
    assert_eq!(b.role.epoch(), 2);
    let incident = b.role.incidents().latest().unwrap();
    assert_eq!(incident.kind, IncidentKind::Promote);
    assert_eq!(incident.steps[0].detail, "forced");
}

#[test]
fn an_old_active_that_comes_back_sees_the_higher_epoch_steps_down_and_resyncs() {
    let mut net = established_pair(40);
    net.probe = Probe::SilentWhenDead;
    net.kill("a", Failure::Silent); // frozen, not dead: it keeps its state and role
    time_until_serving(&mut net, "b", Duration::from_secs(1));
    net.run_with_load(Duration::from_millis(500), 1);

    net.thaw("a");
    assert!(net.node("a").serving, "still believes it is active");
    assert!(net.run_until(Duration::from_millis(20), |n| !n.node("a").serving));
    assert!(net.both_active_ticks <= 3, "{}", net.both_active_ticks);
    let a = net.node("a");
    assert_eq!(a.role.role(), NodeRole::Standby);
    assert_eq!((a.role.epoch(), a.persisted_epoch), (2, 2));
    let fenced = a
        .role
        .incidents()
        .newest_first()
        .find(|i| i.kind == IncidentKind::Fenced)
        .unwrap();
    assert!(fenced.step(StepName::Demoted).is_some());

    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
    assert_eq!(net.node("b").role.epoch(), 2);
}

#[test]
fn a_restarted_node_rejoins_as_standby_and_survives_a_second_failure() {
    let mut net = established_pair(60);
    net.kill("a", Failure::Reset);
    time_until_serving(&mut net, "b", Duration::from_secs(1));
    net.run_with_load(Duration::from_millis(300), 1);

    net.restart("a");
    net.run_with_load(Duration::from_millis(300), 1);
    assert!(
        !net.node("a").serving,
        "a restarted node never comes up active over its peer"
    );
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
    let a = net.node("a");
    assert_eq!(a.role.epoch(), 2);
    assert_eq!(
        a.role.incidents().latest().unwrap().kind,
        IncidentKind::Rejoined
    );

    let calls = net.node("b").core.keys();
    net.kill("b", Failure::Reset);
    time_until_serving(&mut net, "a", Duration::from_millis(300));
    assert_eq!(net.node("a").role.epoch(), 3);
    assert_eq!(net.node("a").core.keys(), calls);
}

#[test]
fn a_switchover_swaps_the_roles_without_two_actives_and_without_losing_a_call() {
    let mut net = established_pair(80);
    let now = net.now;
    net.node_mut("a").role.switchover(now).unwrap();
    assert!(net.run_until(Duration::from_millis(10), |n| !n.node("a").accepting));
    let calls = net.node("a").core.keys();

    let took = time_until_serving(&mut net, "b", Duration::from_secs(1));
    assert!(took < Duration::from_millis(20), "{took:?}");
    assert_eq!(net.both_active_ticks, 0);
    let (a, b) = (net.node("a"), net.node("b"));
    assert_eq!(a.role.role(), NodeRole::Standby);
    assert_eq!(b.role.epoch(), 2);
    assert_eq!(b.core.keys(), calls);

    let handed = a.role.incidents().latest().unwrap();
    assert_eq!(handed.kind, IncidentKind::Switchover);
    let names: Vec<&str> = handed.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["requested", "flushed", "released"]);
    let took_over = b.role.incidents().latest().unwrap();
    assert_eq!(took_over.kind, IncidentKind::Switchover);
    assert!(took_over.step(StepName::CallsResumed).is_some());

    net.run_with_load(Duration::from_millis(200), 1);
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
    assert_eq!(net.both_active_ticks, 0);
}

#[test]
fn a_switchover_needs_a_synced_standby_and_the_active_node() {
    let mut net = established_pair(5);
    let now = net.now;
    assert_eq!(
        net.node_mut("b").role.switchover(now),
        Err(RoleError::NotActive)
    );
    net.kill("b", Failure::Reset);
    net.run(Duration::from_millis(5));
    let now = net.now;
    assert_eq!(
        net.node_mut("a").role.switchover(now),
        Err(RoleError::NoSyncedStandby)
    );
    assert_eq!(
        net.node_mut("a").role.demote(now),
        Err(RoleError::NoSyncedStandby)
    );
}

#[test]
fn a_switchover_whose_standby_stops_acknowledging_is_aborted() {
    let mut net = established_pair(5);
    net.node_mut("b").acks_enabled = false;
    let unix_ms = net.unix_ms();
    net.node_mut("a").core.new_call(unix_ms);
    net.run(Duration::from_millis(3));
    let now = net.now;
    net.node_mut("a").role.switchover(now).unwrap();
    net.run(Duration::from_millis(1_100));
    let a = net.node("a");
    assert!(a.serving && a.accepting, "back to serving");
    let incident = a.role.incidents().latest().unwrap();
    assert!(incident.step(StepName::Aborted).is_some());
    assert!(!net.node("b").serving);
}

#[test]
fn demote_hands_over_at_once() {
    let mut net = established_pair(10);
    let now = net.now;
    net.node_mut("a").role.demote(now).unwrap();
    time_until_serving(&mut net, "b", Duration::from_millis(20));
    assert_eq!(net.both_active_ticks, 0);
    assert_eq!(net.node("b").core.calls(), net.node("b").restored.unwrap());
    assert_eq!(
        net.node("a").role.incidents().latest().unwrap().kind,
        IncidentKind::Demote
    );
}

mod fencing {
    use super::*;
    use std::time::Instant;
    use tandem_ha::{Action, Role};
    use tandem_proto::replication::v1 as wire;

    fn forced_active(node: &str, peer: &str, epoch: u64, now: Instant) -> Role {
        let mut config = RoleConfig::new(node, peer);
        config.epoch = epoch;
        let mut role = Role::new(config, now, BASE_UNIX_MS);
        role.promote(now, true).unwrap();
        while role.poll_action().is_some() {}
        role
    }

    fn heartbeat(node: &str, epoch: u64, role: wire::Role) -> wire::Heartbeat {
        wire::Heartbeat {
            node: node.to_owned(),
            epoch,
            role: role as i32,
            ..wire::Heartbeat::default()
        }
    }

    fn actions(role: &mut Role) -> Vec<Action> {
        std::iter::from_fn(|| role.poll_action()).collect()
    }

    #[test]
    fn two_actives_of_the_same_epoch_keep_the_lower_name() {
        let now = Instant::now();
        let mut a = forced_active("a", "b", 4, now);
        let mut b = forced_active("b", "a", 4, now);
        assert_eq!((a.epoch(), b.epoch()), (5, 5));
        a.handle_heartbeat(now, &heartbeat("b", 5, wire::Role::Active));
        b.handle_heartbeat(now, &heartbeat("a", 5, wire::Role::Active));
        assert_eq!(a.role(), NodeRole::Active);
        assert_eq!(b.role(), NodeRole::Standby);
        assert!(actions(&mut b).contains(&Action::BecomeStandby { epoch: 5 }));
        assert!(!actions(&mut a)
            .iter()
            .any(|x| matches!(x, Action::BecomeStandby { .. })));
    }

    #[test]
    fn a_hello_with_a_higher_epoch_fences_the_active_and_is_persisted_first() {
        let now = Instant::now();
        let mut a = forced_active("a", "b", 0, now);
        a.handle_hello(
            now,
            &wire::Hello {
                node: "b".to_owned(),
                epoch: 9,
                applied_seq: 0,
                schema_version: 1,
            },
        );
        assert_eq!(a.role(), NodeRole::Standby);
        let done = actions(&mut a);
        let persist = done
            .iter()
            .position(|x| *x == Action::PersistEpoch { epoch: 9 });
        let demote = done
            .iter()
            .position(|x| *x == Action::BecomeStandby { epoch: 9 });
        assert!(persist.unwrap() < demote.unwrap(), "{done:?}");
        assert_eq!(a.incidents().latest().unwrap().kind, IncidentKind::Fenced);
    }

    #[test]
    fn messages_from_an_unknown_node_are_ignored() {
        let now = Instant::now();
        let mut a = forced_active("a", "b", 0, now);
        a.handle_heartbeat(now, &heartbeat("intruder", 99, wire::Role::Active));
        assert_eq!((a.role(), a.epoch()), (NodeRole::Active, 1));
    }
}
