//! Messages encoded with schema v1 stay readable: the bytes in `tests/fixtures/` were written by the
//! v1 code and are never regenerated once released. A later schema version must keep decoding them
//! with the same meaning (fields are only ever added; numbers never reused).
//!
//! To add a fixture for a new message: `TANDEM_WRITE_FIXTURES=1 cargo test -p tandem-proto
//! --test wire_compat` writes the missing files (existing ones are never overwritten).
#![allow(clippy::unwrap_used)]

use prost::Message;
use std::path::PathBuf;
use tandem_proto::replication::v1::{
    active_message, delta, standby_message, ActiveMessage, CallRecord, Continuity, Delta, Endpoint,
    Heartbeat, Hello, Leg, MediaStream, SdpVersion, SnapshotChunk, SourceMapping, StandbyMessage,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture's bytes; written from `fresh` first when asked to and missing.
fn load(name: &str, fresh: &impl Message) -> Vec<u8> {
    let path = fixture(name);
    if std::env::var_os("TANDEM_WRITE_FIXTURES").is_some() && !path.exists() {
        std::fs::write(&path, fresh.encode_to_vec()).unwrap();
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sample_call() -> CallRecord {
    let leg = |call_id: &str, tag: &str| Leg {
        call_id: call_id.into(),
        local_tag: tag.into(),
        remote_tag: "peer".into(),
        local_party: format!("<sip:tandem@192.0.2.1>;tag={tag}"),
        remote_party: "<sip:100@192.0.2.9>;tag=peer".into(),
        local_cseq: 3,
        remote_cseq: Some(7),
        remote_target: "sip:100@192.0.2.9:5060".into(),
        route_set: vec!["<sip:p1.example.com;lr>".into()],
        transport: 1,
        peer: "192.0.2.9:5060".into(),
    };
    let endpoint = |port: u32, remote: &str| Endpoint {
        relay_rtp_port: port,
        remote_rtp: remote.into(),
        remote_rtcp: String::new(),
        rtcp_mux: false,
        sending: true,
        latched_rtp: remote.into(),
        latched_rtcp: String::new(),
        outbound: Some(Continuity {
            started: true,
            ssrc: 0x1234_5678,
            sequence: 4321,
            timestamp: 160_000,
            sent_ago_us: 20_000,
            ..Continuity::default()
        }),
    };
    CallRecord {
        key: 42,
        state: 2,
        caller: Some(leg("abc@caller", "t1")),
        server: Some(leg("tandem-1@192.0.2.1", "t2")),
        server_name: "asterisk-1".into(),
        media: vec![MediaStream {
            index: 0,
            clock_rate: 8000,
            caller: Some(endpoint(20000, "198.51.100.7:4000")),
            server: Some(endpoint(20002, "192.0.2.20:10000")),
        }],
        caller_sdp: b"v=0\r\n".to_vec(),
        server_sdp: Vec::new(),
        created_unix_ms: 1_795_000_000_000,
        answered_unix_ms: 1_795_000_001_000,
        session_expires_unix_ms: 0,
        max_duration_unix_ms: 0,
        agent: "agent-1001".into(),
        caller_sdp_version: None,
        server_sdp_version: None,
    }
}

#[test]
fn a_v1_call_delta_decodes_with_every_field() {
    let fresh = ActiveMessage {
        kind: Some(active_message::Kind::Delta(Delta {
            epoch: 3,
            seq: 1001,
            change: Some(delta::Change::Call(sample_call())),
        })),
    };
    let bytes = load("v1-active-delta-call.bin", &fresh);
    let decoded = ActiveMessage::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded, fresh);
}

#[test]
fn a_v1_snapshot_and_hello_decode() {
    let snapshot = ActiveMessage {
        kind: Some(active_message::Kind::Snapshot(SnapshotChunk {
            epoch: 3,
            seq: 1000,
            calls: vec![sample_call()],
            next_call_key: 43,
            last: true,
            ..SnapshotChunk::default()
        })),
    };
    let bytes = load("v1-active-snapshot.bin", &snapshot);
    assert_eq!(ActiveMessage::decode(bytes.as_slice()).unwrap(), snapshot);

    let hello = StandbyMessage {
        kind: Some(standby_message::Kind::Hello(Hello {
            node: "tandem-b".into(),
            epoch: 3,
            applied_seq: 999,
            schema_version: 1,
        })),
    };
    let bytes = load("v1-standby-hello.bin", &hello);
    assert_eq!(StandbyMessage::decode(bytes.as_slice()).unwrap(), hello);
}

#[test]
fn a_call_delta_with_a_switched_stream_and_sdp_versions_decodes() {
    // Continuity fields 6 and 7 (send time, source mapping) came after the first fixtures.
    let mut call = sample_call();
    let endpoint = call.media[0].caller.as_mut().unwrap();
    endpoint.latched_rtp = "198.51.100.7:61000".into();
    endpoint.latched_rtcp = "198.51.100.7:61001".into();
    endpoint.outbound = Some(Continuity {
        started: true,
        ssrc: 0x1111,
        sequence: 905,
        timestamp: 144_800,
        sent_ago_us: 60_000_000,
        sent_unix_ms: 1_795_000_040_000,
        source: Some(SourceMapping {
            ssrc: 0x2222,
            sequence_offset: 400,
            timestamp_offset: 8000,
        }),
    });
    call.caller_sdp_version = Some(SdpVersion {
        known: true,
        received: 5,
        sent: 7,
    });
    let fresh = ActiveMessage {
        kind: Some(active_message::Kind::Delta(Delta {
            epoch: 4,
            seq: 2002,
            change: Some(delta::Change::Call(call)),
        })),
    };
    let bytes = load("v1-active-delta-call-continuity.bin", &fresh);
    assert_eq!(ActiveMessage::decode(bytes.as_slice()).unwrap(), fresh);
}

#[test]
fn unknown_fields_from_a_newer_schema_are_skipped() {
    // A heartbeat followed by field 99 (varint) that v1 does not know.
    let mut bytes = Heartbeat {
        node: "tandem-a".into(),
        epoch: 5,
        role: 1,
        seq: 77,
        sent_unix_ms: 1,
        synced: true,
    }
    .encode_to_vec();
    bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
    let decoded = Heartbeat::decode(bytes.as_slice()).unwrap();
    assert_eq!((decoded.epoch, decoded.seq, decoded.synced), (5, 77, true));
}
