//! A change the core hands out borrowed ([`ChangeView`]) written straight into the wire form of
//! the `ActiveMessage` carrying its delta: the same bytes as converting it into the generated
//! types ([`crate::convert::change_to_delta`]) and encoding those, without building them. On the
//! active node's hot path that saves copying every string of a call into a record and freeing the
//! record again, for each delta.
//!
//! The field numbers and the order below follow `proto/tandem/replication/v1`; the property test
//! in `tests/convert.rs` checks byte for byte that this encoding and the generated one agree for
//! any call, so a field added to the schema and to `convert` but not here fails it.

use crate::convert::{
    continuity_to_wire, created_unix_ms, state_to_wire, time_to_wire, version_to_wire,
};
use bytes::Bytes;
use prost::encoding::{self, encode_key, encode_varint, encoded_len_varint, WireType};
use std::fmt::Display;
use std::io::Write;
use tandem_core::call::Leg;
use tandem_core::{CallView, ChangeView, Transport};
use tandem_media::session::EndpointPlan;
use tandem_proto::replication::v1 as wire;

/// The wire form of the `ActiveMessage` carrying delta `seq` of `epoch` for `change`, described
/// at wall-clock time `now_unix_ms`.
pub fn delta_message(epoch: u64, seq: u64, change: ChangeView<'_>, now_unix_ms: u64) -> Bytes {
    let mut out = Writer(Vec::with_capacity(512));
    // ActiveMessage.delta = 2
    out.message(2, |delta| {
        delta.uint(1, epoch);
        delta.uint(2, seq);
        match change {
            ChangeView::Call(call) => {
                delta.message(3, |record| call_record(record, call, now_unix_ms))
            }
            ChangeView::CallRemoved { key, reason } => delta.message(4, |removed| {
                removed.uint(1, key);
                removed.string(2, reason);
            }),
            ChangeView::ServerHealth { name, up } => delta.message(5, |server| {
                server.string(1, name);
                server.boolean(2, up);
            }),
        }
    });
    Bytes::from(out.0)
}

/// `CallRecord`, as `convert::call_to_record` fills it.
fn call_record(out: &mut Writer, call: CallView<'_>, now_unix_ms: u64) {
    let created = created_unix_ms(now_unix_ms, call.age);
    out.uint(1, call.key);
    out.enumeration(2, state_to_wire(call.state) as i32);
    out.message(3, |leg| leg_fields(leg, call.caller));
    out.message(4, |leg| leg_fields(leg, call.server));
    out.string(5, call.server_name.unwrap_or_default());
    media_streams(out, call, created);
    out.bytes(7, &call.media.bodies[0]);
    out.bytes(8, &call.media.bodies[1]);
    out.uint(9, created);
    out.uint(10, time_to_wire(created, call.times.answered));
    out.uint(11, time_to_wire(created, call.times.session_expires));
    out.uint(12, time_to_wire(created, call.times.max_duration));
    // 13 (agent): the core has none yet.
    let [toward_caller, toward_server] = call.media.versions;
    out.generated(14, version_to_wire(toward_caller).as_ref());
    out.generated(15, version_to_wire(toward_server).as_ref());
}

/// `Leg`, as `convert::leg_to_wire` fills it.
fn leg_fields(out: &mut Writer, leg: &Leg) {
    out.string(1, &leg.call_id);
    out.string(2, &leg.local_tag);
    out.string(3, leg.remote_tag.as_deref().unwrap_or_default());
    out.string(4, &leg.local_party);
    out.string(5, &leg.remote_party);
    out.uint(6, u64::from(leg.local_cseq));
    if let Some(cseq) = leg.remote_cseq {
        out.uint_present(7, u64::from(cseq));
    }
    out.string(8, &leg.remote_target);
    for route in &leg.route_set {
        out.string_present(9, route);
    }
    let transport = match leg.peer.transport {
        Transport::Udp => wire::Transport::Udp,
        Transport::Tcp => wire::Transport::Tcp,
    };
    out.enumeration(10, transport as i32);
    out.display(11, Some(leg.peer.addr));
}

/// The repeated `MediaStream` field (6), as `convert::media_to_wire` fills it.
fn media_streams(out: &mut Writer, call: CallView<'_>, created: u64) {
    let media = call.media;
    for (i, stream) in media.streams.iter().enumerate() {
        let sending = media.sending.get(i).copied().unwrap_or_default();
        let outbound = media.outbound.get(i).copied().unwrap_or_default();
        out.message(6, |m| {
            m.uint(1, u64::from(stream.index));
            m.uint(2, u64::from(stream.clock_rate));
            for (side_tag, (endpoint, side)) in [(3, (&stream.caller, 0)), (4, (&stream.server, 1))]
            {
                m.message(side_tag, |e| {
                    endpoint_fields(e, endpoint, sending[side]);
                    let continuity =
                        outbound[side].map(|r| continuity_to_wire(&r, created, call.age));
                    e.generated(8, continuity.as_ref());
                });
            }
        });
    }
}

/// `Endpoint` fields 1–7, as `convert::endpoint_to_wire` fills them.
fn endpoint_fields(out: &mut Writer, endpoint: &EndpointPlan, sending: bool) {
    out.uint(1, u64::from(endpoint.local.rtp()));
    out.display(2, endpoint.remote_rtp);
    out.display(3, endpoint.remote_rtcp);
    out.boolean(4, endpoint.rtcp_mux);
    out.boolean(5, sending);
    out.display(6, endpoint.latched_rtp);
    out.display(7, endpoint.latched_rtcp);
}

/// Protobuf fields written as prost's generated code writes them (proto3: a scalar equal to its
/// default is left out; a present message, an `optional` scalar that is set and every element of
/// a repeated field are always written).
struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, tag: u32, value: u64) {
        if value != 0 {
            self.uint_present(tag, value);
        }
    }

    fn uint_present(&mut self, tag: u32, value: u64) {
        encode_key(tag, WireType::Varint, &mut self.0);
        encode_varint(value, &mut self.0);
    }

    /// An `enum` (or `int32`) field: negative values take ten bytes, as prost writes them.
    fn enumeration(&mut self, tag: u32, value: i32) {
        self.uint(tag, i64::from(value).cast_unsigned());
    }

    fn boolean(&mut self, tag: u32, value: bool) {
        self.uint(tag, u64::from(value));
    }

    fn bytes(&mut self, tag: u32, value: &[u8]) {
        if !value.is_empty() {
            self.string_present_bytes(tag, value);
        }
    }

    fn string(&mut self, tag: u32, value: &str) {
        self.bytes(tag, value.as_bytes());
    }

    fn string_present(&mut self, tag: u32, value: &str) {
        self.string_present_bytes(tag, value.as_bytes());
    }

    fn string_present_bytes(&mut self, tag: u32, value: &[u8]) {
        encode_key(tag, WireType::LengthDelimited, &mut self.0);
        encode_varint(value.len() as u64, &mut self.0);
        self.0.extend_from_slice(value);
    }

    /// A string field holding `value` as text (nothing when `None`), formatted in place.
    fn display(&mut self, tag: u32, value: Option<impl Display>) {
        if let Some(value) = value {
            // Writing into a Vec cannot fail; an empty text leaves the field out, as "" would.
            self.length_delimited(tag, true, |out| {
                let _ = write!(out.0, "{value}");
            });
        }
    }

    /// A nested message field, always written (a present message).
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Writer)) {
        self.length_delimited(tag, false, body);
    }

    /// A nested message of a generated type, written by prost itself when present.
    fn generated<M: prost::Message>(&mut self, tag: u32, value: Option<&M>) {
        if let Some(value) = value {
            encoding::message::encode(tag, value, &mut self.0);
        }
    }

    /// Key, length, then what `body` writes; the length is written in front once known (the
    /// body moves when its length takes more than one byte). With `omit_empty`, an empty body
    /// leaves the field out.
    fn length_delimited(&mut self, tag: u32, omit_empty: bool, body: impl FnOnce(&mut Writer)) {
        let field_start = self.0.len();
        encode_key(tag, WireType::LengthDelimited, &mut self.0);
        let length_at = self.0.len();
        self.0.push(0);
        body(self);
        let body_start = length_at + 1;
        let length = self.0.len() - body_start;
        if length == 0 && omit_empty {
            self.0.truncate(field_start);
            return;
        }
        let extra = encoded_len_varint(length as u64) - 1;
        if extra > 0 {
            self.0
                .splice(body_start..body_start, std::iter::repeat_n(0, extra));
        }
        let mut prefix = &mut self.0[length_at..body_start + extra];
        encode_varint(length as u64, &mut prefix);
    }
}
