//! Core replication types ↔ wire types: lossless round trips through the encoded bytes, errors
//! (never panics) for records that cannot be read back, snapshot chunking.
#![allow(clippy::unwrap_used)]

mod support;

use proptest::prelude::*;
use prost::Message;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use support::sample_call;
use tandem_core::call::{CallState, CallTimes, Leg};
use tandem_core::media::{CallMedia, OutboundRecord, VersionTrack};
use tandem_core::{CallSnapshot, Peer, ReplicaSnapshot, ReplicationChange};
use tandem_ha::convert::*;
use tandem_media::continuity::SourceSnapshot;
use tandem_media::ports::PortPair;
use tandem_media::session::{EndpointPlan, StreamPlan};
use tandem_proto::replication::v1 as wire;

const NOW_UNIX_MS: u64 = 1_700_000_000_000;

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    (any::<IpAddr>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

fn peer() -> impl Strategy<Value = Peer> {
    (socket_addr(), any::<bool>(), any::<Option<u64>>()).prop_map(|(addr, tcp, conn)| {
        if tcp {
            Peer::tcp(addr, conn)
        } else {
            Peer::udp(addr)
        }
    })
}

fn leg() -> impl Strategy<Value = Leg> {
    (
        (".*", ".*", proptest::option::of(".+"), ".*", ".*"),
        (
            any::<u32>(),
            any::<Option<u32>>(),
            ".*",
            proptest::collection::vec(".*", 0..3),
        ),
        peer(),
    )
        .prop_map(
            |(
                (call_id, local_tag, remote_tag, local_party, remote_party),
                (local_cseq, remote_cseq, remote_target, route_set),
                peer,
            )| Leg {
                call_id,
                local_tag,
                remote_tag,
                local_party,
                remote_party,
                local_cseq,
                remote_cseq,
                remote_target,
                route_set,
                peer,
            },
        )
}

fn endpoint() -> impl Strategy<Value = EndpointPlan> {
    (
        1u16..32767,
        proptest::option::of(socket_addr()),
        proptest::option::of(socket_addr()),
        any::<bool>(),
        proptest::option::of(socket_addr()),
        proptest::option::of(socket_addr()),
    )
        .prop_map(
            |(half, remote_rtp, remote_rtcp, rtcp_mux, latched_rtp, latched_rtcp)| EndpointPlan {
                local: PortPair::from_rtp(half * 2).unwrap(),
                remote_rtp,
                remote_rtcp,
                rtcp_mux,
                latched_rtp,
                latched_rtcp,
                outbound: None,
            },
        )
}

/// An outbound stream record; its send time in whole milliseconds of the call's life, as the
/// wire carries it.
fn outbound_record() -> impl Strategy<Value = OutboundRecord> {
    (
        (any::<u32>(), any::<u16>(), any::<u32>(), 0u64..10_000_000),
        proptest::option::of((any::<u32>(), any::<u16>(), any::<u32>())),
    )
        .prop_map(
            |((ssrc, last_sequence, last_timestamp, sent_ms), source)| OutboundRecord {
                ssrc,
                last_sequence,
                last_timestamp,
                sent_at: Duration::from_millis(sent_ms),
                source: source.map(|(inbound_ssrc, sequence_offset, timestamp_offset)| {
                    SourceSnapshot {
                        inbound_ssrc,
                        sequence_offset,
                        timestamp_offset,
                    }
                }),
            },
        )
}

fn media() -> impl Strategy<Value = CallMedia> {
    let outbound = || proptest::option::of(outbound_record());
    (
        proptest::collection::vec(
            (
                any::<u16>(),
                any::<u32>(),
                endpoint(),
                endpoint(),
                any::<[bool; 2]>(),
                [outbound(), outbound()],
            ),
            0..4,
        ),
        [
            proptest::option::of(any::<(u64, u64)>()),
            proptest::option::of(any::<(u64, u64)>()),
        ],
        [
            proptest::collection::vec(any::<u8>(), 0..96),
            proptest::collection::vec(any::<u8>(), 0..96),
        ],
    )
        .prop_map(|(streams, versions, bodies)| {
            let outbound: Vec<_> = streams.iter().map(|s| s.5).collect();
            CallMedia {
                sending: streams.iter().map(|s| s.4).collect(),
                // Canonical form: empty while no stream has a record.
                outbound: match outbound.iter().flatten().any(Option::is_some) {
                    true => outbound,
                    false => Vec::new(),
                },
                streams: streams
                    .into_iter()
                    .map(|(index, clock_rate, caller, server, _, _)| StreamPlan {
                        index,
                        clock_rate,
                        caller,
                        server,
                    })
                    .collect(),
                versions: versions.map(VersionTrack::from_last),
                bodies: bodies.map(bytes::Bytes::from),
            }
        })
}

fn call() -> impl Strategy<Value = CallSnapshot> {
    let state = prop_oneof![
        Just(CallState::Trying),
        Just(CallState::Confirmed),
        Just(CallState::Cancelling),
        Just(CallState::Terminating),
    ];
    (
        any::<u64>(),
        state,
        leg(),
        leg(),
        proptest::option::of(".+"),
        media(),
        0u64..10_000_000_000,
        times(),
    )
        .prop_map(
            |(key, state, caller, server, server_name, media, age_ms, times)| CallSnapshot {
                key,
                state,
                caller,
                server,
                server_name,
                media,
                age: Duration::from_millis(age_ms),
                times,
            },
        )
}

/// Answer time and deadlines: whole milliseconds after the call's creation, or none.
fn times() -> impl Strategy<Value = CallTimes> {
    let offset = || proptest::option::of((0u64..100_000_000).prop_map(Duration::from_millis));
    (offset(), offset(), offset()).prop_map(|(answered, session_expires, max_duration)| CallTimes {
        answered,
        session_expires,
        max_duration,
    })
}

/// The active's hot path: the change encoded from the view the core hands out.
fn direct_encoding(epoch: u64, seq: u64, change: &ReplicationChange) -> bytes::Bytes {
    tandem_ha::view_encode::delta_message(epoch, seq, change.view(), NOW_UNIX_MS)
}

/// The change converted into the generated types, then encoded by them.
fn generated_encoding(epoch: u64, seq: u64, change: &ReplicationChange) -> bytes::Bytes {
    let delta = change_to_delta(epoch, seq, change.clone(), NOW_UNIX_MS);
    let message = wire::ActiveMessage {
        kind: Some(wire::active_message::Kind::Delta(delta)),
    };
    bytes::Bytes::from(message.encode_to_vec())
}

#[test]
fn the_direct_encoding_holds_for_fields_longer_than_one_length_byte() {
    let mut call = sample_call(7, Duration::from_secs(3));
    for (i, length) in [127usize, 128, 300, 16_383, 16_384, 70_000]
        .into_iter()
        .enumerate()
    {
        call.caller.route_set.push("r".repeat(length));
        call.server.remote_target = "t".repeat(length);
        call.media.bodies[i % 2] = bytes::Bytes::from(vec![b'v'; length]);
        let change = ReplicationChange::Call(Box::new(call.clone()));
        assert_eq!(
            direct_encoding(1, 9, &change),
            generated_encoding(1, 9, &change),
            "strings of {length} bytes"
        );
    }
    let removed = ReplicationChange::CallRemoved {
        key: 0,
        reason: String::new(),
    };
    assert_eq!(
        direct_encoding(0, 0, &removed),
        generated_encoding(0, 0, &removed)
    );
}

/// What the round trip gives back: the TCP connection id is local to the sending node.
fn without_conn(mut call: CallSnapshot) -> CallSnapshot {
    call.caller.peer.conn = None;
    call.server.peer.conn = None;
    call
}

proptest! {
    #[test]
    fn call_records_round_trip_through_the_wire(call in call()) {
        let bytes = call_to_record(call.clone(), NOW_UNIX_MS).encode_to_vec();
        let record = wire::CallRecord::decode(bytes.as_slice()).unwrap();
        let back = call_from_record(record, NOW_UNIX_MS).unwrap();
        prop_assert_eq!(back, without_conn(call));
    }

    #[test]
    fn deltas_round_trip(call in call(), seq in any::<u64>(), epoch in any::<u64>()) {
        let change = ReplicationChange::Call(Box::new(call.clone()));
        let delta = change_to_delta(epoch, seq, change.clone(), NOW_UNIX_MS);
        let delta = wire::Delta::decode(delta.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!((delta.epoch, delta.seq), (epoch, seq));
        let back = change_from_delta(&delta, NOW_UNIX_MS).unwrap();
        prop_assert_eq!(back, Some(ReplicationChange::Call(Box::new(without_conn(call)))));
    }

    #[test]
    fn a_change_encoded_from_its_view_is_the_generated_encoding(
        call in call(),
        seq in any::<u64>(),
        epoch in any::<u64>(),
        text in ".*",
        up in any::<bool>(),
    ) {
        let key = call.key;
        for change in [
            ReplicationChange::Call(Box::new(call)),
            ReplicationChange::CallRemoved { key, reason: text.clone() },
            ReplicationChange::ServerHealth { name: text.clone(), up },
        ] {
            prop_assert_eq!(direct_encoding(epoch, seq, &change), generated_encoding(epoch, seq, &change));
        }
    }

    #[test]
    fn damaged_records_are_errors_not_panics(
        call in call(),
        field in 0usize..6,
        text in ".*",
        number in any::<i32>(),
    ) {
        let mut record = call_to_record(call.clone(), NOW_UNIX_MS);
        match field {
            0 => record.caller.as_mut().unwrap().peer = text,
            1 => record.state = number,
            2 => record.server.as_mut().unwrap().transport = number,
            3 => record.caller = None,
            4 => if let Some(stream) = record.media.first_mut() {
                stream.caller.as_mut().unwrap().relay_rtp_port = number as u32;
            },
            _ => if let Some(stream) = record.media.first_mut() {
                stream.server.as_mut().unwrap().remote_rtcp = text;
            },
        }
        // Either it still reads (the damage happened to be valid) or it is an error.
        let _ = call_from_record(record, NOW_UNIX_MS);
    }
}

#[test]
fn unreadable_fields_name_the_problem() {
    let call = sample_call(7, Duration::from_secs(30));
    let mut record = call_to_record(call.clone(), NOW_UNIX_MS);
    record.caller.as_mut().unwrap().peer = "not-an-address".to_owned();
    assert!(matches!(
        call_from_record(record, NOW_UNIX_MS),
        Err(ConvertError::BadAddress {
            key: 7,
            field: "leg peer",
            ..
        })
    ));

    let mut record = call_to_record(call.clone(), NOW_UNIX_MS);
    record.media[0].server.as_mut().unwrap().relay_rtp_port = 20_001;
    assert_eq!(
        call_from_record(record, NOW_UNIX_MS),
        Err(ConvertError::BadPort {
            key: 7,
            port: 20_001
        })
    );

    let mut record = call_to_record(call.clone(), NOW_UNIX_MS);
    record.media[0].server.as_mut().unwrap().relay_rtp_port = 70_000;
    assert!(matches!(
        call_from_record(record, NOW_UNIX_MS),
        Err(ConvertError::BadPort { port: 70_000, .. })
    ));

    let mut record = call_to_record(call.clone(), NOW_UNIX_MS);
    record.state = wire::CallState::Unspecified as i32;
    assert!(matches!(
        call_from_record(record, NOW_UNIX_MS),
        Err(ConvertError::UnknownEnum { field: "state", .. })
    ));

    let mut record = call_to_record(call.clone(), NOW_UNIX_MS);
    record.server = None;
    assert_eq!(
        call_from_record(record, NOW_UNIX_MS),
        Err(ConvertError::MissingLeg {
            key: 7,
            side: "server"
        })
    );

    let empty = wire::Delta {
        epoch: 1,
        seq: 9,
        change: None,
    };
    assert_eq!(
        change_from_delta(&empty, NOW_UNIX_MS),
        Err(ConvertError::EmptyDelta { seq: 9 })
    );
}

#[test]
fn the_age_travels_as_a_creation_time() {
    let call = sample_call(1, Duration::from_millis(90_000));
    let record = call_to_record(call.clone(), NOW_UNIX_MS);
    assert_eq!(record.created_unix_ms, NOW_UNIX_MS - 90_000);
    let later = call_from_record(record, NOW_UNIX_MS + 10_000).unwrap();
    assert_eq!(later.age, Duration::from_millis(100_000));
}

#[test]
fn snapshots_are_cut_into_chunks_and_put_back_together() {
    let snapshot = ReplicaSnapshot {
        seq: 42,
        calls: (1..=5)
            .map(|k| sample_call(k, Duration::from_secs(k)))
            .collect(),
        servers: vec![("ms1".to_owned(), true), ("ms2".to_owned(), false)],
        next_call_key: 6,
    };
    let chunks = snapshot_to_chunks(3, &snapshot, 2, NOW_UNIX_MS);
    assert_eq!(chunks.len(), 3);
    assert!(chunks.iter().all(|c| c.epoch == 3 && c.seq == 42));
    assert_eq!(
        chunks.iter().map(|c| c.calls.len()).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    assert_eq!(chunks.iter().filter(|c| c.last).count(), 1);
    assert!(chunks[2].last);
    assert_eq!(chunks[0].servers.len(), 2);
    let back = snapshot_from_chunks(&chunks, NOW_UNIX_MS).unwrap();
    assert_eq!(back.seq, 42);
    assert_eq!(back.next_call_key, 6);
    assert_eq!(back.servers, snapshot.servers);
    let expected: Vec<CallSnapshot> = snapshot.calls.into_iter().map(without_conn).collect();
    assert_eq!(back.calls, expected);

    let empty = snapshot_to_chunks(1, &ReplicaSnapshot::default(), 100, NOW_UNIX_MS);
    assert_eq!(empty.len(), 1);
    assert!(empty[0].last);
}

#[test]
fn removals_and_server_health_round_trip() {
    for change in [
        ReplicationChange::CallRemoved {
            key: 12,
            reason: "bye-server".to_owned(),
        },
        ReplicationChange::ServerHealth {
            name: "ms2".to_owned(),
            up: false,
        },
    ] {
        let delta = change_to_delta(2, 5, change.clone(), NOW_UNIX_MS);
        assert_eq!(
            change_from_delta(&delta, NOW_UNIX_MS).unwrap(),
            Some(change)
        );
    }
    let agent = wire::Delta {
        epoch: 2,
        seq: 6,
        change: Some(wire::delta::Change::Agent(wire::AgentState::default())),
    };
    assert_eq!(change_from_delta(&agent, NOW_UNIX_MS).unwrap(), None);
}

#[test]
fn latched_sources_versions_and_outbound_streams_travel_on_the_record() {
    let mut call = sample_call(3, Duration::from_secs(100));
    let natted: SocketAddr = "198.51.100.7:61000".parse().unwrap();
    call.media.streams[0].caller.latched_rtp = Some(natted);
    call.media.versions[0] = VersionTrack::from_last(Some((5, 7)));
    call.media.outbound = vec![[
        Some(OutboundRecord {
            ssrc: 0x1111,
            last_sequence: 905,
            last_timestamp: 144_800,
            sent_at: Duration::from_secs(40),
            source: Some(SourceSnapshot {
                inbound_ssrc: 0x2222,
                sequence_offset: 400,
                timestamp_offset: 8000,
            }),
        }),
        None,
    ]];
    let record = call_to_record(call.clone(), NOW_UNIX_MS);
    let caller = record.media[0].caller.as_ref().unwrap();
    assert_eq!(caller.latched_rtp, "198.51.100.7:61000");
    let continuity = caller.outbound.as_ref().unwrap();
    assert!(continuity.started);
    assert_eq!(continuity.sent_ago_us, 60_000_000);
    assert_eq!(continuity.sent_unix_ms, NOW_UNIX_MS - 60_000);
    assert_eq!(continuity.source.as_ref().unwrap().ssrc, 0x2222);
    assert_eq!(record.media[0].server.as_ref().unwrap().outbound, None);
    let version = record.caller_sdp_version.as_ref().unwrap();
    assert_eq!(
        (version.known, version.received, version.sent),
        (true, 5, 7)
    );
    assert_eq!(record.server_sdp_version, None);
    // Read back later: the send time stays where it was in the call's life.
    let back = call_from_record(record, NOW_UNIX_MS + 5_000).unwrap();
    assert_eq!(back.age, Duration::from_secs(105));
    assert_eq!(back.media.outbound, call.media.outbound);
    assert_eq!(back.media.streams[0].caller.latched_rtp, Some(natted));
    assert_eq!(back.media.versions, call.media.versions);
}

#[test]
fn damaged_continuity_is_an_error() {
    let mut call = sample_call(4, Duration::from_secs(10));
    call.media.outbound = vec![[
        None,
        Some(OutboundRecord {
            ssrc: 1,
            last_sequence: 1,
            last_timestamp: 1,
            sent_at: Duration::ZERO,
            source: None,
        }),
    ]];
    let mut record = call_to_record(call.clone(), NOW_UNIX_MS);
    let server = record.media[0].server.as_mut().unwrap();
    server.outbound.as_mut().unwrap().sequence = 70_000;
    assert_eq!(
        call_from_record(record.clone(), NOW_UNIX_MS),
        Err(ConvertError::OutOfRange {
            key: 4,
            field: "sequence",
            value: 70_000
        })
    );
    let server = record.media[0].server.as_mut().unwrap();
    server.outbound = None;
    server.latched_rtcp = "nowhere".to_owned();
    assert!(matches!(
        call_from_record(record, NOW_UNIX_MS),
        Err(ConvertError::BadAddress {
            field: "latched_rtcp",
            ..
        })
    ));
}
