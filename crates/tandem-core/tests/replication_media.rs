//! What the relay learns about a call's media reaches the standby and comes back on promotion: the
//! sources it latched (a caller behind NAT) and the outbound stream it keeps continuous across a
//! switch of source, one change per report, never per packet.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tandem_core::media::OutboundRecord;
use tandem_core::{Durability, ReplicationChange};
use tandem_media::continuity::{SourceSnapshot, StreamSnapshot};
use tandem_media::session::{MediaCommand, MediaEvent, MediaSide, SessionPlan};

fn changes(net: &mut Net) -> Vec<ReplicationChange> {
    std::iter::from_fn(|| net.core.poll_replication())
        .map(|(_, change)| change)
        .collect()
}

fn plans(net: &mut Net) -> Vec<SessionPlan> {
    std::iter::from_fn(|| net.core.poll_media())
        .filter_map(|command| match command {
            MediaCommand::Apply(plan) => Some(plan),
            MediaCommand::Remove { .. } | MediaCommand::Prepare(_) => None,
        })
        .collect()
}

/// An answered call with a standby attached and every change so far taken; returns its key.
fn answered_call(net: &mut Net, call_id: &str) -> u64 {
    net.core.set_durability(net.now, Durability::Async);
    establish(net, call_id);
    changes(net);
    plans(net);
    net.core.replication_snapshot(net.now).calls[0].key
}

fn latched(call: u64, side: MediaSide, source: SocketAddr, rtcp: bool) -> MediaEvent {
    MediaEvent::Latched {
        call,
        side,
        index: 0,
        source,
        rtcp,
    }
}

/// The relay's report that the stream toward the caller of `call` now follows [`SWITCHED`]'s
/// source.
fn switched(call: u64) -> MediaEvent {
    MediaEvent::Outbound {
        call,
        side: MediaSide::Caller,
        index: 0,
        stream: SWITCHED,
    }
}

const SWITCHED: StreamSnapshot = StreamSnapshot {
    outbound_ssrc: 0x1111,
    last_sequence: 905,
    last_timestamp: 144_800,
    since_last_sent: Duration::from_millis(20),
    source: Some(SourceSnapshot {
        inbound_ssrc: 0x2222,
        sequence_offset: 400,
        timestamp_offset: 8000,
    }),
};

#[test]
fn each_latch_is_one_change_and_a_known_source_none() {
    let mut net = Net::new();
    let key = answered_call(&mut net, "m1@caller");
    let natted = addr("198.51.100.7:61000");
    net.core
        .handle_media_event(net.now, latched(key, MediaSide::Caller, natted, false));
    let stream = changes(&mut net);
    let [ReplicationChange::Call(call)] = stream.as_slice() else {
        panic!("{stream:?}")
    };
    assert_eq!(call.media.streams[0].caller.latched_rtp, Some(natted));
    assert_eq!(call.media.streams[0].caller.latched_rtcp, None);

    // The same source again (a relay reporting a latch the core knows) changes nothing.
    net.core
        .handle_media_event(net.now, latched(key, MediaSide::Caller, natted, false));
    assert!(changes(&mut net).is_empty());
    // RTCP and the other side are latches of their own.
    let rtcp = addr("198.51.100.7:61001");
    net.core
        .handle_media_event(net.now, latched(key, MediaSide::Caller, rtcp, true));
    let server = addr("127.0.0.1:20000");
    net.core
        .handle_media_event(net.now, latched(key, MediaSide::Server, server, false));
    let stream = changes(&mut net);
    assert_eq!(stream.len(), 2);
    let ReplicationChange::Call(call) = &stream[1] else {
        panic!("{stream:?}")
    };
    assert_eq!(call.media.streams[0].caller.latched_rtcp, Some(rtcp));
    assert_eq!(call.media.streams[0].server.latched_rtp, Some(server));
    // Reports about unknown calls or streams are ignored.
    net.core
        .handle_media_event(net.now, latched(key + 1, MediaSide::Caller, natted, false));
    net.core.handle_media_event(
        net.now,
        MediaEvent::Latched {
            call: key,
            side: MediaSide::Caller,
            index: 7,
            source: natted,
            rtcp: false,
        },
    );
    assert!(changes(&mut net).is_empty());
    assert!(plans(&mut net).is_empty(), "the relay already knows");
}

#[test]
fn a_switch_of_source_is_recorded_on_the_calls_time_base() {
    let mut net = Net::new();
    let key = answered_call(&mut net, "m2@caller");
    net.advance(Duration::from_secs(30));
    net.core.handle_media_event(net.now, switched(key));
    let stream = changes(&mut net);
    let [ReplicationChange::Call(call)] = stream.as_slice() else {
        panic!("{stream:?}")
    };
    let record: OutboundRecord = call.media.outbound[0][0].unwrap();
    assert_eq!(record.ssrc, 0x1111);
    assert_eq!(record.sent_at, call.age - Duration::from_millis(20));
    assert_eq!(record.source, SWITCHED.source);
    assert_eq!(call.media.outbound[0][1], None, "toward the server: none");
}

#[test]
fn the_promoted_node_gets_the_latched_sources_and_the_stream_in_its_first_plan() {
    let mut active = Net::new();
    let key = answered_call(&mut active, "m3@caller");
    active.advance(Duration::from_secs(1));
    let natted = addr("198.51.100.7:61000");
    active
        .core
        .handle_media_event(active.now, latched(key, MediaSide::Caller, natted, false));
    active.core.handle_media_event(active.now, switched(key));
    // The standby has it all; the active dies ten seconds later.
    active.advance(Duration::from_secs(10));
    let snapshot = active.core.replication_snapshot(active.now);

    let mut standby = Net::new();
    assert_eq!(standby.core.restore(standby.now, snapshot), 1);
    let plans = plans(&mut standby);
    let caller = plans[0].streams[0].caller;
    assert_eq!(caller.latched_rtp, Some(natted));
    let stream = caller.outbound.unwrap();
    assert_eq!(stream.outbound_ssrc, 0x1111);
    assert_eq!(stream.source, SWITCHED.source);
    assert_eq!(
        stream.since_last_sent,
        Duration::from_secs(10) + SWITCHED.since_last_sent,
        "everything since the last packet the active reported"
    );
    assert_eq!(plans[0].streams[0].server.outbound, None);
}

#[test]
fn a_standby_prepares_the_mirrored_calls_relay_ports_and_its_promotion_applies_them() {
    let mut active = Net::new();
    let key = answered_call(&mut active, "m4@caller");
    active.core.handle_media_event(active.now, switched(key));
    let snapshot = active.core.replication_snapshot(active.now);
    let record = snapshot.calls[0].clone();

    let mut standby = Net::new();
    standby
        .core
        .prepare_standby_media(key, &record.caller.call_id, &record.media, record.age);
    let commands: Vec<MediaCommand> = std::iter::from_fn(|| standby.core.poll_media()).collect();
    let [MediaCommand::Prepare(prepared)] = commands.as_slice() else {
        panic!("{commands:?}")
    };
    assert_eq!(prepared.call, key);
    assert_eq!(prepared.streams, record.media.plan_streams(record.age));
    assert_eq!(
        standby.core.media_ports().map(|(used, _)| used),
        Some(0),
        "the standby's range is untouched: the call is not its own yet"
    );
    standby.core.forget_standby_media(key);
    assert_eq!(
        standby.core.poll_media(),
        Some(MediaCommand::Remove { call: key })
    );

    // Promoted: the same call is applied (the relay turns the prepared session live); a call the
    // node carries is never prepared or forgotten by the mirror.
    standby
        .core
        .prepare_standby_media(key, &record.caller.call_id, &record.media, record.age);
    std::iter::from_fn(|| standby.core.poll_media()).for_each(drop);
    assert_eq!(standby.core.restore(standby.now, snapshot), 1);
    assert_eq!(plans(&mut standby)[0].call, key);
    standby
        .core
        .prepare_standby_media(key, &record.caller.call_id, &record.media, record.age);
    standby.core.forget_standby_media(key);
    assert_eq!(standby.core.poll_media(), None);
}

#[test]
fn each_sides_sdp_as_it_sent_it_travels_with_the_call() {
    let mut net = Net::new();
    answered_call(&mut net, "m5@caller");
    let snapshot = net.core.replication_snapshot(net.now);
    let [caller, server] = &snapshot.calls[0].media.bodies;
    // Before Tandem's rewrite: the sides' own ports and origins, not the relay's.
    let caller = std::str::from_utf8(caller).unwrap();
    let server = std::str::from_utf8(server).unwrap();
    assert!(caller.starts_with("v=0\r\no=caller 1 1 "), "{caller}");
    assert!(caller.contains("m=audio 16000 "), "{caller}");
    assert!(server.starts_with("v=0\r\no=ms 1 1 "), "{server}");
    assert!(server.contains("m=audio 20000 "), "{server}");

    // A standby that promotes has them.
    let mut standby = Net::new();
    standby.core.restore(standby.now, snapshot.clone());
    let again = standby.core.replication_snapshot(standby.now);
    assert_eq!(again.calls[0].media.bodies, snapshot.calls[0].media.bodies);
}
