//! Roles of two nodes whose service address keepalived moves (`AddressOwner::Keepalived`), in
//! virtual time: no node promotes itself (at start, when the active dies, when it steps down),
//! the promote command of the notify script makes the node that got the address active with every
//! mirrored call and the reason in its incident, demote steps down at once, a switchover is
//! refused, and epoch fencing still makes a returning old active step down.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;
use support::*;
use tandem_ha::{
    AddressOwner, IncidentKind, NodeRole, OutboxConfig, RoleConfig, RoleError, StepName,
};

const MASTER: &str = "keepalived: MASTER of tandem";
const BACKUP: &str = "keepalived: BACKUP of tandem";

fn keepalived(node: &str, peer: &str) -> RoleConfig {
    let mut config = RoleConfig::new(node, peer);
    config.address_owner = AddressOwner::Keepalived;
    config
}

fn keepalived_pair() -> Net {
    let mut a = keepalived("a", "b");
    a.prefer_active = true;
    Net::with_configs(a, keepalived("b", "a"), OutboxConfig::default())
}

/// keepalived made "a" master: "a" active (epoch 1) with `calls` calls, "b" synced behind it.
fn promoted_pair(calls: usize) -> Net {
    let mut net = keepalived_pair();
    net.run(Duration::from_millis(100));
    let now = net.now;
    net.node_mut("a")
        .role
        .promote_because(now, true, MASTER)
        .unwrap();
    assert!(net.run_until(Duration::from_millis(10), |n| n.node("a").serving));
    let unix_ms = net.unix_ms();
    for _ in 0..calls {
        net.node_mut("a").core.new_call(unix_ms);
    }
    net.run_with_load(Duration::from_millis(300), 2);
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
    net
}

#[test]
fn at_start_no_node_becomes_active_by_itself_not_even_the_preferred_one() {
    let mut net = keepalived_pair();
    net.run(Duration::from_secs(5));
    for name in ["a", "b"] {
        let node = net.node(name);
        assert!(!node.serving, "{name} promoted itself");
        assert_eq!(node.role.epoch(), 0);
        let status = node.role.status();
        assert!(status.peer_connected);
        assert_eq!(status.peer_alive, None, "{name} probed its peer");
    }
}

#[test]
fn the_promote_command_makes_the_node_active_with_its_reason_in_the_incident() {
    let net = promoted_pair(20);
    let a = net.node("a");
    assert_eq!((a.role.epoch(), a.persisted_epoch), (1, 1));
    let incident = a.role.incidents().latest().unwrap();
    assert_eq!(incident.kind, IncidentKind::Promote);
    assert_eq!(
        incident.summary,
        "a promoted by command (keepalived: MASTER of tandem)"
    );
    assert_eq!(
        incident.step(StepName::Requested).unwrap().detail,
        "keepalived: MASTER of tandem; forced"
    );
    assert!(net.node("b").role.status().can_take_over);
}

#[test]
fn the_standby_waits_for_keepalived_when_the_active_dies_then_carries_every_call() {
    for failure in [Failure::Silent, Failure::Reset] {
        let mut net = promoted_pair(50);
        let calls = net.node("a").core.keys();
        net.kill("a", failure);
        net.run(Duration::from_secs(3));
        let b = net.node("b");
        assert!(!b.serving, "{failure:?}: b took over by itself");
        assert_eq!(b.role.status().peer_alive, None, "{failure:?}: b probed");

        let now = net.now;
        net.node_mut("b")
            .role
            .promote_because(now, true, MASTER)
            .unwrap();
        assert!(net.run_until(Duration::from_millis(5), |n| n.node("b").serving));
        let b = net.node("b");
        assert_eq!(b.role.epoch(), 2);
        assert_eq!(b.core.keys(), calls, "{failure:?}: every call carried on");
        let names: Vec<&str> = b
            .role
            .incidents()
            .latest()
            .unwrap()
            .steps
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["requested", "promoted", "address-taken", "calls-resumed"]
        );
    }
}

#[test]
fn a_returning_old_active_is_fenced_by_the_epoch_and_the_backup_demote_is_harmless() {
    let mut net = promoted_pair(30);
    net.kill("a", Failure::Silent); // frozen: it still believes it is active
    let now = net.now;
    net.node_mut("b")
        .role
        .promote_because(now, true, MASTER)
        .unwrap();
    net.run_with_load(Duration::from_millis(200), 1);

    net.thaw("a");
    assert!(net.run_until(Duration::from_millis(20), |n| !n.node("a").serving));
    let fenced = net.node("a").role.incidents().latest().unwrap();
    assert_eq!(fenced.kind, IncidentKind::Fenced);
    // keepalived on "a" sees "b" as master: its notify demotes a node that is standby already
    let now = net.now;
    net.node_mut("a").role.demote_because(now, BACKUP).unwrap();
    assert_eq!(
        net.node("a").role.incidents().latest().unwrap().kind,
        IncidentKind::Fenced,
        "a demote of a standby changes nothing"
    );
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
    assert_eq!(net.node("a").role.epoch(), 2);
    assert!(net.node("b").serving);
}

#[test]
fn demote_steps_down_at_once_even_without_a_synced_standby() {
    let mut net = promoted_pair(10);
    net.kill("b", Failure::Reset);
    net.run(Duration::from_millis(5));
    let now = net.now;
    net.node_mut("a").role.demote_because(now, BACKUP).unwrap();
    net.run(Duration::from_millis(5));
    let a = net.node("a");
    assert!(!a.serving);
    let incident = a.role.incidents().latest().unwrap();
    assert_eq!(incident.kind, IncidentKind::Demote);
    assert_eq!(
        incident.summary,
        "a steps down (keepalived: BACKUP of tandem)"
    );
    let names: Vec<&str> = incident.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["requested", "released"]);
}

#[test]
fn after_a_demote_the_standby_is_not_elected_but_promoted_by_keepalived_with_every_call() {
    let mut net = promoted_pair(40);
    let calls = net.node("a").core.keys();
    let now = net.now;
    net.node_mut("a").role.demote_because(now, BACKUP).unwrap();
    net.run(Duration::from_secs(3));
    assert!(!net.node("a").serving && !net.node("b").serving);
    assert_eq!(net.node("b").role.role(), NodeRole::Standby);

    let now = net.now;
    net.node_mut("b")
        .role
        .promote_because(now, false, MASTER)
        .unwrap();
    assert!(net.run_until(Duration::from_millis(5), |n| n.node("b").serving));
    assert_eq!(net.node("b").core.keys(), calls);
    assert_eq!(net.both_active_ticks, 0);
}

#[test]
fn a_switchover_is_refused_the_address_moves_with_keepalived() {
    let mut net = promoted_pair(5);
    let now = net.now;
    let refused = net.node_mut("a").role.switchover(now);
    assert_eq!(refused, Err(RoleError::KeepalivedOwnsAddress));
    assert!(refused.unwrap_err().to_string().contains("keepalived"));
    net.run(Duration::from_millis(100));
    assert!(net.node("a").serving && net.node("a").accepting);
}

#[test]
fn without_keepalived_a_demote_still_needs_a_synced_standby() {
    let mut net = Net::new();
    assert!(net.run_until(Duration::from_secs(2), |n| n.node("a").serving));
    net.kill("b", Failure::Reset);
    net.run(Duration::from_millis(5));
    let now = net.now;
    assert_eq!(
        net.node_mut("a").role.demote_because(now, BACKUP),
        Err(RoleError::NoSyncedStandby)
    );
    assert!(net.node("a").serving);
}
