//! Core replication types ↔ the `tandem.replication.v1` wire types.
//!
//! A [`CallSnapshot`] becomes a [`CallRecord`] and back without loss for everything the record has a
//! field for, with three documented normalisations:
//!
//! * a TCP peer's connection id (`Peer::conn`) is local to the node that made it and is not sent;
//!   the record comes back with `conn: None` (the new node opens or reuses a connection);
//! * an empty remote tag or server name is the wire's "none" (`Option::None` on the way back);
//! * the call's age travels as a wall-clock creation time (`created_unix_ms = now − age`), so the
//!   age comes back at millisecond precision, relative to the `now_unix_ms` given on the way back;
//! * the outbound RTP streams' send times ([`OutboundRecord::sent_at`], on the call's time base)
//!   travel as wall-clock times too (`Continuity.sent_unix_ms = created_unix_ms + sent_at`) and
//!   come back at millisecond precision;
//! * [`CallMedia::outbound`] comes back empty when no stream has a record.
//!
//! A record that cannot be read back (an address that is not `ip:port`, a relay port that is not
//! an even non-zero port, a number too large for its field, an unknown enum value, a missing leg)
//! is a [`ConvertError`], never a panic.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tandem_core::call::{CallState, CallTimes, Leg};
use tandem_core::media::{CallMedia, OutboundRecord, VersionTrack};
use tandem_core::{CallSnapshot, Peer, ReplicaSnapshot, ReplicationChange, Transport};
use tandem_media::continuity::SourceSnapshot;
use tandem_media::ports::PortPair;
use tandem_media::session::{EndpointPlan, StreamPlan};
use tandem_proto::replication::v1 as wire;
use wire::{delta::Change, CallRecord, Delta, SnapshotChunk};

/// Why a wire record cannot be turned back into core state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A call record lacks one of its legs.
    #[error("call {key}: {side} leg missing")]
    MissingLeg {
        /// The call.
        key: u64,
        /// "caller" or "server".
        side: &'static str,
    },
    /// A media stream lacks one of its endpoints.
    #[error("call {key}: stream {index}: {side} endpoint missing")]
    MissingEndpoint {
        /// The call.
        key: u64,
        /// The stream's m-line index.
        index: u32,
        /// "caller" or "server".
        side: &'static str,
    },
    /// An address field is not `ip:port`.
    #[error("call {key}: {field} is not ip:port: {value:?}")]
    BadAddress {
        /// The call.
        key: u64,
        /// Which field.
        field: &'static str,
        /// The text received.
        value: String,
    },
    /// A relay port is not an even, non-zero port below 65535.
    #[error("call {key}: relay port {port} is not a valid RTP port")]
    BadPort {
        /// The call.
        key: u64,
        /// The value received.
        port: u32,
    },
    /// A stream's m-line index does not fit in 16 bits.
    #[error("call {key}: stream index {index} out of range")]
    BadStreamIndex {
        /// The call.
        key: u64,
        /// The value received.
        index: u32,
    },
    /// A number does not fit its field (an RTP sequence number or offset above 65535).
    #[error("call {key}: {field} {value} out of range")]
    OutOfRange {
        /// The call.
        key: u64,
        /// Which field.
        field: &'static str,
        /// The value received.
        value: u64,
    },
    /// An enum field holds a value this version does not know.
    #[error("call {key}: unknown {field} value {value}")]
    UnknownEnum {
        /// The call.
        key: u64,
        /// Which field.
        field: &'static str,
        /// The value received.
        value: i32,
    },
    /// A delta carries no change.
    #[error("delta {seq} carries no change")]
    EmptyDelta {
        /// The delta's sequence number.
        seq: u64,
    },
}

/// Wall-clock milliseconds of a [`Duration`], saturating.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Wall-clock microseconds of a [`Duration`], saturating.
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The wire record of `call`, taken at wall-clock time `now_unix_ms`. Takes the snapshot by value:
/// its strings move into the record (a change is converted once per delta, on the hot path).
pub fn call_to_record(call: CallSnapshot, now_unix_ms: u64) -> CallRecord {
    let created_unix_ms = created_unix_ms(now_unix_ms, call.age);
    let [toward_caller, toward_server] = call.media.versions;
    let media = media_to_wire(&call.media, created_unix_ms, call.age);
    let [caller_sdp, server_sdp] = call.media.bodies;
    CallRecord {
        key: call.key,
        state: state_to_wire(call.state) as i32,
        caller: Some(leg_to_wire(call.caller)),
        server: Some(leg_to_wire(call.server)),
        server_name: call.server_name.unwrap_or_default(),
        media,
        created_unix_ms,
        caller_sdp: Vec::from(caller_sdp),
        server_sdp: Vec::from(server_sdp),
        caller_sdp_version: version_to_wire(toward_caller),
        server_sdp_version: version_to_wire(toward_server),
        answered_unix_ms: time_to_wire(created_unix_ms, call.times.answered),
        session_expires_unix_ms: time_to_wire(created_unix_ms, call.times.session_expires),
        max_duration_unix_ms: time_to_wire(created_unix_ms, call.times.max_duration),
        ..CallRecord::default()
    }
}

/// A call's time `offset` after its creation at `created_unix_ms`, in wall-clock milliseconds
/// (0: none; a time never falls on the epoch itself).
pub(crate) fn time_to_wire(created_unix_ms: u64, offset: Option<Duration>) -> u64 {
    offset.map_or(0, |offset| {
        created_unix_ms.saturating_add(millis(offset)).max(1)
    })
}

/// The offset from the call's creation of a wall-clock time written by [`time_to_wire`].
fn time_from_wire(created_unix_ms: u64, unix_ms: u64) -> Option<Duration> {
    (unix_ms != 0).then(|| Duration::from_millis(unix_ms.saturating_sub(created_unix_ms)))
}

/// The wall-clock creation time of a call `age` old at `now_unix_ms`.
pub(crate) fn created_unix_ms(now_unix_ms: u64, age: Duration) -> u64 {
    now_unix_ms.saturating_sub(millis(age))
}

/// The call `record` describes, with its age as of wall-clock time `now_unix_ms`. Takes the record
/// by value: its strings and SDP bodies move into the call (a standby converts every delta).
pub fn call_from_record(
    record: CallRecord,
    now_unix_ms: u64,
) -> Result<CallSnapshot, ConvertError> {
    let key = record.key;
    let leg = |leg: Option<wire::Leg>, side| match leg {
        Some(leg) => leg_from_wire(key, leg),
        None => Err(ConvertError::MissingLeg { key, side }),
    };
    let times = Times {
        created_unix_ms: record.created_unix_ms,
        now_unix_ms,
    };
    let mut media = media_from_wire(key, &record.media, times)?;
    media.versions = [
        version_from_wire(record.caller_sdp_version.as_ref()),
        version_from_wire(record.server_sdp_version.as_ref()),
    ];
    media.bodies = [
        Bytes::from(record.caller_sdp),
        Bytes::from(record.server_sdp),
    ];
    Ok(CallSnapshot {
        key,
        state: state_from_wire(key, record.state)?,
        caller: leg(record.caller, "caller")?,
        server: leg(record.server, "server")?,
        server_name: (!record.server_name.is_empty()).then_some(record.server_name),
        media,
        age: Duration::from_millis(now_unix_ms.saturating_sub(record.created_unix_ms)),
        times: CallTimes {
            answered: time_from_wire(record.created_unix_ms, record.answered_unix_ms),
            session_expires: time_from_wire(record.created_unix_ms, record.session_expires_unix_ms),
            max_duration: time_from_wire(record.created_unix_ms, record.max_duration_unix_ms),
        },
    })
}

/// The delta announcing `change` as number `seq` of `epoch`.
pub fn change_to_delta(epoch: u64, seq: u64, change: ReplicationChange, now_unix_ms: u64) -> Delta {
    let change = match change {
        ReplicationChange::Call(call) => Change::Call(call_to_record(*call, now_unix_ms)),
        ReplicationChange::CallRemoved { key, reason } => {
            Change::CallRemoved(wire::CallRemoved { key, reason })
        }
        ReplicationChange::ServerHealth { name, up } => {
            Change::Server(wire::ServerHealth { name, up })
        }
    };
    Delta {
        epoch,
        seq,
        change: Some(change),
    }
}

/// The core change a delta carries; `Ok(None)` for kinds the core does not replicate yet
/// (registrations, agents), which a standby skips.
pub fn change_from_delta(
    delta: &Delta,
    now_unix_ms: u64,
) -> Result<Option<ReplicationChange>, ConvertError> {
    let Some(change) = &delta.change else {
        return Err(ConvertError::EmptyDelta { seq: delta.seq });
    };
    Ok(match change {
        Change::Call(record) => Some(ReplicationChange::Call(Box::new(call_from_record(
            record.clone(),
            now_unix_ms,
        )?))),
        Change::CallRemoved(removed) => Some(ReplicationChange::CallRemoved {
            key: removed.key,
            reason: removed.reason.clone(),
        }),
        Change::Server(server) => Some(ReplicationChange::ServerHealth {
            name: server.name.clone(),
            up: server.up,
        }),
        Change::Registration(_) | Change::RegistrationRemoved(_) | Change::Agent(_) => None,
    })
}

/// `snapshot` cut into chunks of at most `max_calls` calls (at least one chunk; the servers ride
/// on the first, `next_call_key` and `last` on the final one).
pub fn snapshot_to_chunks(
    epoch: u64,
    snapshot: &ReplicaSnapshot,
    max_calls: usize,
    now_unix_ms: u64,
) -> Vec<SnapshotChunk> {
    let empty_chunk = || SnapshotChunk {
        epoch,
        seq: snapshot.seq,
        ..SnapshotChunk::default()
    };
    let mut chunks: Vec<SnapshotChunk> = snapshot
        .calls
        .chunks(max_calls.max(1))
        .map(|calls| SnapshotChunk {
            calls: calls
                .iter()
                .map(|c| call_to_record(c.clone(), now_unix_ms))
                .collect(),
            ..empty_chunk()
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(empty_chunk());
    }
    if let Some(first) = chunks.first_mut() {
        first.servers = snapshot
            .servers
            .iter()
            .map(|(name, up)| wire::ServerHealth {
                name: name.clone(),
                up: *up,
            })
            .collect();
    }
    if let Some(last) = chunks.last_mut() {
        last.next_call_key = snapshot.next_call_key;
        last.last = true;
    }
    chunks
}

/// The snapshot a complete series of chunks describes (the `seq` and `next_call_key` of the final
/// chunk; calls and servers in chunk order).
pub fn snapshot_from_chunks(
    chunks: &[SnapshotChunk],
    now_unix_ms: u64,
) -> Result<ReplicaSnapshot, ConvertError> {
    let mut snapshot = ReplicaSnapshot::default();
    for chunk in chunks {
        snapshot.seq = chunk.seq;
        for record in &chunk.calls {
            snapshot
                .calls
                .push(call_from_record(record.clone(), now_unix_ms)?);
        }
        snapshot
            .servers
            .extend(chunk.servers.iter().map(|s| (s.name.clone(), s.up)));
        if chunk.last {
            snapshot.next_call_key = chunk.next_call_key;
        }
    }
    Ok(snapshot)
}

/// Wraps a heartbeat for the active → standby direction.
pub fn active_heartbeat(heartbeat: wire::Heartbeat) -> wire::ActiveMessage {
    wire::ActiveMessage {
        kind: Some(wire::active_message::Kind::Heartbeat(heartbeat)),
    }
}

/// Wraps a heartbeat for the standby → active direction.
pub fn standby_heartbeat(heartbeat: wire::Heartbeat) -> wire::StandbyMessage {
    wire::StandbyMessage {
        kind: Some(wire::standby_message::Kind::Heartbeat(heartbeat)),
    }
}

pub(crate) fn state_to_wire(state: CallState) -> wire::CallState {
    match state {
        CallState::Trying => wire::CallState::Trying,
        CallState::Confirmed => wire::CallState::Confirmed,
        CallState::Cancelling => wire::CallState::Cancelling,
        CallState::Terminating => wire::CallState::Terminating,
    }
}

fn state_from_wire(key: u64, value: i32) -> Result<CallState, ConvertError> {
    match wire::CallState::try_from(value) {
        Ok(wire::CallState::Trying) => Ok(CallState::Trying),
        Ok(wire::CallState::Confirmed) => Ok(CallState::Confirmed),
        Ok(wire::CallState::Cancelling) => Ok(CallState::Cancelling),
        Ok(wire::CallState::Terminating) => Ok(CallState::Terminating),
        Ok(wire::CallState::Unspecified) | Err(_) => Err(ConvertError::UnknownEnum {
            key,
            field: "state",
            value,
        }),
    }
}

fn leg_to_wire(leg: Leg) -> wire::Leg {
    wire::Leg {
        call_id: leg.call_id,
        local_tag: leg.local_tag,
        remote_tag: leg.remote_tag.unwrap_or_default(),
        local_party: leg.local_party,
        remote_party: leg.remote_party,
        local_cseq: leg.local_cseq,
        remote_cseq: leg.remote_cseq,
        remote_target: leg.remote_target,
        route_set: leg.route_set,
        transport: match leg.peer.transport {
            Transport::Udp => wire::Transport::Udp,
            Transport::Tcp => wire::Transport::Tcp,
        } as i32,
        peer: leg.peer.addr.to_string(),
    }
}

fn leg_from_wire(key: u64, leg: wire::Leg) -> Result<Leg, ConvertError> {
    let addr = parse_addr(key, "leg peer", &leg.peer)?;
    let peer = match wire::Transport::try_from(leg.transport) {
        Ok(wire::Transport::Udp) => Peer::udp(addr),
        Ok(wire::Transport::Tcp) => Peer::tcp(addr, None),
        Ok(wire::Transport::Unspecified) | Err(_) => {
            return Err(ConvertError::UnknownEnum {
                key,
                field: "transport",
                value: leg.transport,
            })
        }
    };
    Ok(Leg {
        call_id: leg.call_id,
        local_tag: leg.local_tag,
        remote_tag: (!leg.remote_tag.is_empty()).then_some(leg.remote_tag),
        local_party: leg.local_party,
        remote_party: leg.remote_party,
        local_cseq: leg.local_cseq,
        remote_cseq: leg.remote_cseq,
        remote_target: leg.remote_target,
        route_set: leg.route_set,
        peer,
    })
}

pub(crate) fn version_to_wire(track: VersionTrack) -> Option<wire::SdpVersion> {
    track.last().map(|(received, sent)| wire::SdpVersion {
        known: true,
        received,
        sent,
    })
}

fn version_from_wire(version: Option<&wire::SdpVersion>) -> VersionTrack {
    VersionTrack::from_last(version.filter(|v| v.known).map(|v| (v.received, v.sent)))
}

/// The wall-clock times a record's relative times are read against.
#[derive(Debug, Clone, Copy)]
struct Times {
    created_unix_ms: u64,
    now_unix_ms: u64,
}

fn media_to_wire(media: &CallMedia, created_unix_ms: u64, age: Duration) -> Vec<wire::MediaStream> {
    media
        .streams
        .iter()
        .enumerate()
        .map(|(i, stream)| {
            let sending = media.sending.get(i).copied().unwrap_or_default();
            let [toward_caller, toward_server] = media.outbound.get(i).copied().unwrap_or_default();
            let continuity = |record: Option<OutboundRecord>| {
                record.map(|r| continuity_to_wire(&r, created_unix_ms, age))
            };
            wire::MediaStream {
                index: u32::from(stream.index),
                clock_rate: stream.clock_rate,
                caller: Some(wire::Endpoint {
                    outbound: continuity(toward_caller),
                    ..endpoint_to_wire(&stream.caller, sending[0])
                }),
                server: Some(wire::Endpoint {
                    outbound: continuity(toward_server),
                    ..endpoint_to_wire(&stream.server, sending[1])
                }),
            }
        })
        .collect()
}

fn media_from_wire(
    key: u64,
    streams: &[wire::MediaStream],
    times: Times,
) -> Result<CallMedia, ConvertError> {
    let mut media = CallMedia::default();
    let mut outbound = Vec::with_capacity(streams.len());
    for stream in streams {
        let endpoint = |endpoint: &Option<wire::Endpoint>, side| match endpoint {
            Some(endpoint) => endpoint_from_wire(key, endpoint, times),
            None => Err(ConvertError::MissingEndpoint {
                key,
                index: stream.index,
                side,
            }),
        };
        let (caller, caller_sends, toward_caller) = endpoint(&stream.caller, "caller")?;
        let (server, server_sends, toward_server) = endpoint(&stream.server, "server")?;
        outbound.push([toward_caller, toward_server]);
        let index = u16::try_from(stream.index).map_err(|_| ConvertError::BadStreamIndex {
            key,
            index: stream.index,
        })?;
        media.streams.push(StreamPlan {
            index,
            clock_rate: stream.clock_rate,
            caller,
            server,
        });
        media.sending.push([caller_sends, server_sends]);
    }
    if outbound.iter().flatten().any(Option::is_some) {
        media.outbound = outbound;
    }
    Ok(media)
}

fn endpoint_to_wire(endpoint: &EndpointPlan, sending: bool) -> wire::Endpoint {
    let text = |addr: Option<SocketAddr>| addr.map(|a| a.to_string()).unwrap_or_default();
    wire::Endpoint {
        relay_rtp_port: u32::from(endpoint.local.rtp()),
        remote_rtp: text(endpoint.remote_rtp),
        remote_rtcp: text(endpoint.remote_rtcp),
        rtcp_mux: endpoint.rtcp_mux,
        sending,
        latched_rtp: text(endpoint.latched_rtp),
        latched_rtcp: text(endpoint.latched_rtcp),
        outbound: None,
    }
}

pub(crate) fn continuity_to_wire(
    record: &OutboundRecord,
    created_unix_ms: u64,
    age: Duration,
) -> wire::Continuity {
    wire::Continuity {
        started: true,
        ssrc: record.ssrc,
        sequence: u32::from(record.last_sequence),
        timestamp: record.last_timestamp,
        sent_ago_us: micros(age.saturating_sub(record.sent_at)),
        sent_unix_ms: created_unix_ms.saturating_add(millis(record.sent_at)),
        source: record.source.map(|source| wire::SourceMapping {
            ssrc: source.inbound_ssrc,
            sequence_offset: u32::from(source.sequence_offset),
            timestamp_offset: source.timestamp_offset,
        }),
    }
}

fn continuity_from_wire(
    key: u64,
    continuity: &wire::Continuity,
    times: Times,
) -> Result<Option<OutboundRecord>, ConvertError> {
    if !continuity.started {
        return Ok(None);
    }
    let u16_field = |field, value: u32| {
        u16::try_from(value).map_err(|_| ConvertError::OutOfRange {
            key,
            field,
            value: u64::from(value),
        })
    };
    let sent_unix_ms = match continuity.sent_unix_ms {
        0 => times
            .now_unix_ms
            .saturating_sub(continuity.sent_ago_us / 1000),
        at => at,
    };
    let source = match &continuity.source {
        Some(source) => Some(SourceSnapshot {
            inbound_ssrc: source.ssrc,
            sequence_offset: u16_field("sequence offset", source.sequence_offset)?,
            timestamp_offset: source.timestamp_offset,
        }),
        None => None,
    };
    Ok(Some(OutboundRecord {
        ssrc: continuity.ssrc,
        last_sequence: u16_field("sequence", continuity.sequence)?,
        last_timestamp: continuity.timestamp,
        sent_at: Duration::from_millis(sent_unix_ms.saturating_sub(times.created_unix_ms)),
        source,
    }))
}

/// An endpoint, whether its side sends, and the stream toward it.
type WireEndpoint = (EndpointPlan, bool, Option<OutboundRecord>);

fn endpoint_from_wire(
    key: u64,
    endpoint: &wire::Endpoint,
    times: Times,
) -> Result<WireEndpoint, ConvertError> {
    let local = u16::try_from(endpoint.relay_rtp_port)
        .ok()
        .and_then(PortPair::from_rtp)
        .ok_or(ConvertError::BadPort {
            key,
            port: endpoint.relay_rtp_port,
        })?;
    let optional = |field, text: &str| {
        if text.is_empty() {
            Ok(None)
        } else {
            parse_addr(key, field, text).map(Some)
        }
    };
    let outbound = match &endpoint.outbound {
        Some(continuity) => continuity_from_wire(key, continuity, times)?,
        None => None,
    };
    Ok((
        EndpointPlan {
            local,
            remote_rtp: optional("remote_rtp", &endpoint.remote_rtp)?,
            remote_rtcp: optional("remote_rtcp", &endpoint.remote_rtcp)?,
            rtcp_mux: endpoint.rtcp_mux,
            latched_rtp: optional("latched_rtp", &endpoint.latched_rtp)?,
            latched_rtcp: optional("latched_rtcp", &endpoint.latched_rtcp)?,
            outbound: None,
        },
        endpoint.sending,
        outbound,
    ))
}

fn parse_addr(key: u64, field: &'static str, text: &str) -> Result<SocketAddr, ConvertError> {
    text.parse().map_err(|_| ConvertError::BadAddress {
        key,
        field,
        value: text.to_owned(),
    })
}
