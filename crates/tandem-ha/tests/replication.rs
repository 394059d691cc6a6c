//! The replication stream between an active node and its standby: snapshot then deltas, resume
//! from the ring after a reconnect, a fresh snapshot when the ring lost the gap, a stale standby
//! resynchronised, and convergence under connection resets. Virtual time, two nodes.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;
use support::*;
use tandem_ha::{
    CallChange, HelloOutcome, MirrorState, MirroredMedia, NodeRole, OutboxConfig, RoleConfig,
};

/// Node "a" active with `calls` established calls, "b" its standby with a synced mirror.
fn pair_with_calls(outbox: OutboxConfig, calls: usize) -> Net {
    let mut a = RoleConfig::new("a", "b");
    a.prefer_active = true;
    let mut net = Net::with_configs(a, RoleConfig::new("b", "a"), outbox);
    assert!(net.run_until(Duration::from_secs(2), |n| n.node("a").serving));
    let unix_ms = net.unix_ms();
    for _ in 0..calls {
        net.node_mut("a").core.new_call(unix_ms);
    }
    assert!(net.run_until(Duration::from_secs(2), Net::mirror_matches));
    net
}

#[test]
fn a_snapshot_then_deltas_give_a_synced_mirror_equal_to_the_core() {
    let outbox = OutboxConfig {
        chunk_calls: 100,
        ..OutboxConfig::default()
    };
    let mut a = RoleConfig::new("a", "b");
    a.prefer_active = true;
    let mut net = Net::with_configs(a, RoleConfig::new("b", "a"), outbox);
    assert!(net.run_until(Duration::from_secs(2), |n| n.node("a").serving));
    // Calls arrive before the standby's snapshot is taken and while it streams.
    net.run_with_load(Duration::from_millis(300), 3);
    assert!(
        net.node("a").core.calls() > 250,
        "{}",
        net.node("a").core.calls()
    );
    net.run_with_load(Duration::from_secs(2), 3);
    // The last changes wait for the batch window (1 ms), then for the link.
    net.run(Duration::from_millis(20));

    assert!(net.mirror_matches(), "{}", net.describe());
    let a = net.node("a");
    let outbox = a.outbox.as_ref().unwrap();
    assert!(outbox.synced());
    assert_eq!(outbox.lag(net.now).deltas, 0);
    assert_eq!(outbox.acked(), outbox.last_seq());
    let b = net.node("b");
    assert_eq!(b.mirror.calls(), a.core.calls());
    assert_eq!(b.mirror.epoch(), 1);
    assert_eq!(b.mirror.applied_seq(), outbox.last_seq());
    assert!(b.mirror.metrics().deltas > 1_000);
}

#[test]
fn a_standby_that_lost_its_mirror_gets_the_state_again_in_chunks() {
    let outbox = OutboxConfig {
        chunk_calls: 10,
        ..OutboxConfig::default()
    };
    let mut net = pair_with_calls(outbox, 0);
    let unix_ms = net.unix_ms();
    for _ in 0..95 {
        net.node_mut("a").core.new_call(unix_ms);
    }
    // A reconnect under another epoch forces a snapshot of the 95 calls.
    net.node_mut("b").mirror.reset();
    net.cut_link(Failure::Reset);
    net.run(Duration::from_millis(5));
    net.restore_link();
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
    assert_eq!(net.node("b").mirror.calls(), 95);
    assert_eq!(
        net.node("a").outbox.as_ref().unwrap().metrics().snapshots,
        2
    );
}

#[test]
fn a_reconnecting_standby_resumes_from_the_ring() {
    let mut net = pair_with_calls(OutboxConfig::default(), 50);
    net.cut_link(Failure::Reset);
    net.run_with_load(Duration::from_millis(100), 2);
    assert!(!net.node("a").outbox.as_ref().unwrap().synced());
    net.restore_link();
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));

    let a = net.node("a");
    let metrics = a.outbox.as_ref().unwrap().metrics();
    assert_eq!(metrics.snapshots, 1, "only the first connection needed one");
    assert_eq!(metrics.resumes, 1);
    assert!(matches!(a.last_hello, Some(HelloOutcome::Resumed { .. })));
    assert!(net.node("b").role.status().can_take_over, "caught up again");
    assert_eq!(net.node("b").role.role(), NodeRole::Standby);
}

#[test]
fn a_standby_whose_gap_left_the_ring_gets_a_fresh_snapshot() {
    let outbox = OutboxConfig {
        ring_capacity: 50,
        ..OutboxConfig::default()
    };
    let mut net = pair_with_calls(outbox, 20);
    net.cut_link(Failure::Reset);
    net.run_with_load(Duration::from_millis(100), 2);
    net.restore_link();
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));

    let a = net.node("a");
    assert_eq!(a.last_hello, Some(HelloOutcome::Snapshot));
    let metrics = a.outbox.as_ref().unwrap().metrics();
    assert_eq!((metrics.snapshots, metrics.resumes), (2, 0));
}

#[test]
fn a_standby_that_stops_acknowledging_is_marked_stale_and_resynced() {
    let mut net = pair_with_calls(OutboxConfig::default(), 30);
    net.node_mut("b").acks_enabled = false;
    net.run_with_load(Duration::from_millis(500), 1);
    {
        let outbox = net.node("a").outbox.as_ref().unwrap();
        assert!(!outbox.stale(), "within the one-second bound");
        assert!(outbox.lag(net.now).oldest >= Duration::from_millis(490));
    }
    net.run_with_load(Duration::from_millis(600), 1);
    {
        let outbox = net.node("a").outbox.as_ref().unwrap();
        assert!(outbox.stale());
        assert!(!outbox.synced(), "the shell drops to async durability");
        assert_eq!(outbox.metrics().stale, 1);
        assert_eq!(outbox.metrics().snapshots, 2, "resynced by snapshot");
    }

    net.node_mut("b").acks_enabled = true;
    net.run_with_load(Duration::from_millis(100), 1);
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
    let outbox = net.node("a").outbox.as_ref().unwrap();
    assert!(outbox.synced() && !outbox.stale());
}

#[test]
fn too_many_unacknowledged_deltas_make_the_standby_stale_at_once() {
    let outbox = OutboxConfig {
        max_unacked: 100,
        ..OutboxConfig::default()
    };
    let mut net = pair_with_calls(outbox, 10);
    net.node_mut("b").acks_enabled = false;
    net.run_with_load(Duration::from_millis(60), 2);
    let outbox = net.node("a").outbox.as_ref().unwrap();
    assert!(outbox.stale());
    assert!(outbox.lag(net.now).oldest < Duration::from_millis(100));
}

#[test]
fn connection_resets_on_five_percent_of_deltas_still_converge() {
    let mut net = pair_with_calls(OutboxConfig::default(), 100);
    net.delta_loss_per_mille = 50;
    net.run_with_load(Duration::from_secs(5), 2);
    assert!(net.resets > 20, "resets: {}", net.resets);
    assert!(net.node("b").mirror.metrics().deltas > 100);

    net.delta_loss_per_mille = 0;
    net.run_with_load(Duration::from_millis(50), 2);
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
    // The probe found "a" alive after every reset: never a second active.
    assert_eq!(net.both_active_ticks, 0);
    assert_eq!(net.node("b").role.role(), NodeRole::Standby);
    assert_eq!(net.node("a").role.epoch(), 1);
    assert!(net.node("b").role.status().can_take_over);
}

#[test]
fn a_gap_in_the_deltas_makes_the_mirror_ask_for_a_snapshot() {
    use tandem_proto::replication::v1 as wire;
    let mut net = pair_with_calls(OutboxConfig::default(), 3);
    let mirror = &mut net.node_mut("b").mirror;
    let applied = mirror.applied_seq();
    let removal = |seq| wire::Delta {
        epoch: 1,
        seq,
        change: Some(wire::delta::Change::CallRemoved(wire::CallRemoved {
            key: 1,
            reason: String::new(),
        })),
    };
    assert!(mirror.handle_delta(removal(applied + 2)).is_err());
    assert_eq!(mirror.state(), MirrorState::NeedsResync);
    assert_eq!(mirror.calls(), 3, "the last complete state stays");
    let hello = mirror.hello("b", 1);
    assert_eq!(hello.applied_seq, 0);

    // Deltas of another epoch break it too, and nothing is acknowledged then.
    let mut net = pair_with_calls(OutboxConfig::default(), 3);
    let mirror = &mut net.node_mut("b").mirror;
    let mut other_epoch = removal(mirror.applied_seq() + 1);
    other_epoch.epoch = 7;
    assert!(mirror.handle_delta(other_epoch).is_err());
    assert!(mirror.needs_resync());
    assert_eq!(mirror.poll_ack(), None);

    // The harness reconnects with Hello applied_seq 0: snapshot, synced again.
    assert!(net.run_until(Duration::from_secs(1), Net::mirror_matches));
}

#[test]
fn acknowledgements_are_cumulative_and_coalesced() {
    let mut net = pair_with_calls(OutboxConfig::default(), 0);
    let unix_ms = net.unix_ms();
    let now = net.now;
    let a = net.node_mut("a");
    for _ in 0..5 {
        a.core.new_call(unix_ms);
    }
    let outbox = a.outbox.as_mut().unwrap();
    while let Some((seq, change)) = a.core.poll_replication(unix_ms) {
        outbox.push(now, unix_ms, seq, change).unwrap();
    }
    // An answer waits for the last change: all five go at once.
    outbox.send_through(outbox.last_seq());
    let messages: Vec<_> = std::iter::from_fn(|| outbox.poll_send())
        .map(|m| m.into_message().unwrap())
        .collect();
    assert_eq!(messages.len(), 5);
    let last = outbox.last_seq();
    let b = net.node_mut("b");
    for message in messages {
        b.mirror.handle_message(message).unwrap();
    }
    let ack = b.mirror.poll_ack().unwrap();
    assert_eq!((ack.epoch, ack.seq), (1, last));
    assert_eq!(b.mirror.poll_ack(), None, "one ack per batch");
    let outbox = net.node_mut("a").outbox.as_mut().unwrap();
    assert_eq!(outbox.handle_ack(now, &ack), Some(last));
    assert_eq!(outbox.handle_ack(now, &ack), None, "nothing new");
}

#[test]
fn the_ring_and_the_queue_stay_bounded_without_a_standby() {
    let outbox = OutboxConfig {
        ring_capacity: 200,
        ..OutboxConfig::default()
    };
    let mut net = pair_with_calls(outbox, 10);
    net.kill("b", Failure::Reset);
    net.run_with_load(Duration::from_secs(2), 3);
    let a = net.node("a");
    let outbox = a.outbox.as_ref().unwrap();
    assert!(!outbox.connected());
    assert!(outbox.last_seq() > 5_000);
    assert_eq!(outbox.kept(), 200);
    assert_eq!(outbox.lag(net.now), Default::default());
}

#[test]
fn the_mirror_tells_each_call_change_once_for_the_standby_relay() {
    let mut net = pair_with_calls(OutboxConfig::default(), 5);
    let now = net.unix_ms();
    let mut keys = net.node("a").core.keys();
    keys.sort_unstable();
    let present = |changes: &[CallChange]| -> Vec<u64> {
        changes
            .iter()
            .filter_map(|c| match c {
                CallChange::Present(call) => Some(call.key),
                CallChange::Gone(_) => None,
            })
            .collect()
    };
    let first = net.node_mut("b").mirror.take_call_changes(now);
    assert_eq!(present(&first), keys, "the snapshot's calls, each once");
    assert!(net.node_mut("b").mirror.take_call_changes(now).is_empty());

    // One call changes, one ends: one change each.
    net.node_mut("a").core.update_call(keys[1], now);
    net.node_mut("a").core.end_call(keys[3]);
    assert!(net.run_until(Duration::from_secs(2), Net::mirror_matches));
    let now = net.unix_ms();
    let next = net.node_mut("b").mirror.take_call_changes(now);
    let call = net.node("b").mirror.to_snapshot(now).calls[1].clone();
    assert_eq!(
        next,
        vec![
            CallChange::Present(Box::new(MirroredMedia {
                key: call.key,
                call_id: call.caller.call_id,
                media: call.media,
                age: call.age,
            })),
            CallChange::Gone(keys[3]),
        ]
    );
    // Discarded changes (a standby without a relay) are not told later.
    net.node_mut("a").core.update_call(keys[0], now);
    assert!(net.run_until(Duration::from_secs(2), Net::mirror_matches));
    net.node_mut("b").mirror.discard_call_changes();
    assert!(net.node_mut("b").mirror.take_call_changes(now).is_empty());
}

#[test]
fn the_mirror_tells_the_media_servers_health_when_it_changes() {
    let mut net = pair_with_calls(OutboxConfig::default(), 1);
    let first = net
        .node_mut("b")
        .mirror
        .take_server_changes()
        .map(<[_]>::to_vec);
    assert_eq!(
        first,
        Some(vec![("ms1".to_owned(), true), ("ms2".to_owned(), true)]),
        "the snapshot's verdicts"
    );
    assert_eq!(net.node_mut("b").mirror.take_server_changes(), None);

    // A call changing tells nothing about the servers; a server going down does.
    let now = net.unix_ms();
    let key = net.node("a").core.keys()[0];
    net.node_mut("a").core.update_call(key, now);
    assert!(net.run_until(Duration::from_secs(2), Net::mirror_matches));
    assert_eq!(net.node_mut("b").mirror.take_server_changes(), None);
    net.node_mut("a").core.server_health("ms2", false);
    assert!(net.run_until(Duration::from_secs(2), Net::mirror_matches));
    let next = net
        .node_mut("b")
        .mirror
        .take_server_changes()
        .map(<[_]>::to_vec);
    assert_eq!(
        next,
        Some(vec![("ms1".to_owned(), true), ("ms2".to_owned(), false)])
    );
}
