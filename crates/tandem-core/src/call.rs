//! Call state: a caller leg and a server leg, each a dialog of its own (RFC 3261 §12).
//!
//! Everything here is plain data so that it can be streamed to a standby and rebuilt there.

use crate::pool::ServerIndex;
use crate::transaction::TxId;
use crate::Peer;
use bytes::Bytes;
use std::time::Duration;

/// Tandem-internal handle of a call.
pub type CallKey = u64;

/// Which leg of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Toward the caller (Tandem acts as UAS on it).
    Caller,
    /// Toward the media server (Tandem acts as UAC on it).
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Caller => Side::Server,
            Side::Server => Side::Caller,
        }
    }
}

/// One dialog of a call, seen from Tandem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub call_id: String,
    /// Tandem's tag on this leg (unique: dialogs are looked up by it).
    pub local_tag: String,
    /// The peer's tag, once known.
    pub remote_tag: Option<String>,
    /// Header value naming Tandem on this leg, with `;tag=` (From of requests Tandem sends here).
    pub local_party: String,
    /// Header value naming the peer, with its tag once known (To of requests Tandem sends here).
    pub remote_party: String,
    /// Last CSeq Tandem used on this leg.
    pub local_cseq: u32,
    /// Highest CSeq the peer used on this leg.
    pub remote_cseq: Option<u32>,
    /// Where requests on this leg go (the peer's Contact URI).
    pub remote_target: String,
    /// Route set (Record-Route values in the order Route headers take).
    pub route_set: Vec<String>,
    /// The flow the peer is reached through (its source address / connection).
    pub peer: Peer,
}

/// Where the call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// INVITE sent to a media server, no final response yet.
    Trying,
    /// A 2xx was relayed to the caller.
    Confirmed,
    /// The caller cancelled: waiting for the server leg to finish.
    Cancelling,
    /// BYE under way.
    Terminating,
}

impl CallState {
    /// A short lowercase name for logs and the admin endpoint.
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Trying => "trying",
            CallState::Confirmed => "confirmed",
            CallState::Cancelling => "cancelling",
            CallState::Terminating => "terminating",
        }
    }
}

/// An ACK Tandem sent on a leg, kept to answer 2xx retransmissions.
#[derive(Debug, Clone)]
pub struct SentAck {
    pub cseq: u32,
    pub payload: Bytes,
}

/// An INVITE relayed across the call whose ACK must be mapped too: the originating leg's CSeq and the
/// CSeq Tandem used on the other leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InviteMapping {
    pub from_side: Side,
    pub from_cseq: u32,
    pub to_cseq: u32,
}

/// When a call was answered and when it must end, as offsets from its creation ([`Call::created`])
/// so that they travel to a standby as plain data, whatever its clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallTimes {
    /// The 2xx of the caller's INVITE went out.
    pub answered: Option<Duration>,
    /// The session expires unless refreshed (RFC 4028: the last 2xx of an INVITE or UPDATE that
    /// carried Session-Expires, plus its interval).
    pub session_expires: Option<Duration>,
    /// The call's maximum duration runs out (`calls.max_duration` after the answer).
    pub max_duration: Option<Duration>,
}

impl CallTimes {
    /// The deadlines the call has, each with what it is.
    pub fn deadlines(&self) -> impl Iterator<Item = (Duration, CallDeadline)> {
        [
            (self.session_expires, CallDeadline::SessionExpiry),
            (self.max_duration, CallDeadline::MaxDuration),
        ]
        .into_iter()
        .filter_map(|(offset, kind)| Some((offset?, kind)))
    }
}

/// A deadline that ends an answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallDeadline {
    /// The session timer (RFC 4028) runs out without a refresh.
    SessionExpiry,
    /// The maximum call duration.
    MaxDuration,
}

impl CallDeadline {
    /// What it is called where it is still ahead (the admin views).
    pub fn name(self) -> &'static str {
        match self {
            CallDeadline::SessionExpiry => "session-expires",
            CallDeadline::MaxDuration => "max-duration",
        }
    }

    /// The reason of a call it ended (`CallEvent::CallEnded`).
    pub fn end_reason(self) -> &'static str {
        match self {
            CallDeadline::SessionExpiry => "session-expired",
            CallDeadline::MaxDuration => "max-duration",
        }
    }
}

/// One call.
#[derive(Debug)]
pub struct Call {
    pub key: CallKey,
    pub state: CallState,
    pub caller: Leg,
    pub server: Leg,
    /// The server the server leg is (or is being) set up with; `None` until one is chosen.
    pub server_index: Option<ServerIndex>,
    /// Servers already tried for this call (failover skips them).
    pub tried: Vec<ServerIndex>,
    /// The caller's INVITE server transaction, until it has a final response.
    pub caller_invite_tx: Option<TxId>,
    /// The INVITE client transaction toward the current server, until it has a final response.
    pub server_invite_tx: Option<TxId>,
    /// Whether the current server sent anything for the INVITE (failover by timeout stops then).
    pub server_responded: bool,
    /// The caller's initial INVITE, replayed toward the next server on failover; `None` for a call
    /// restored from a replica (it is past set-up).
    pub initial_invite: Option<tandem_sip::Message>,
    /// The latest INVITE relayed across the call, for mapping its ACK.
    pub invite_mapping: Option<InviteMapping>,
    /// Last ACK Tandem sent on the server and caller legs.
    pub server_ack: Option<SentAck>,
    pub caller_ack: Option<SentAck>,
    /// Generation of the failover timer: a timer firing with an older value is stale.
    pub failover_generation: u64,
    /// The server leg's INVITE went over TCP only because of its size (RFC 3261 §18.1.1).
    pub tcp_for_size: bool,
    /// Timer C deadline while the server leg rings.
    pub setup_deadline: Option<std::time::Instant>,
    /// When the caller's INVITE arrived.
    pub created: std::time::Instant,
    /// Answer time and the deadlines that end the call.
    pub times: CallTimes,
    /// Relay ports and media endpoints of both sides.
    pub media: crate::media::CallMedia,
    /// The standby has (or is being sent) this call: its end must be replicated too.
    pub replicated: bool,
    /// The caller's initial offer anchored for the server leg (sent again on failover); `None`
    /// when the INVITE carries no SDP or is forwarded unchanged.
    pub server_offer: Option<Bytes>,
}

impl Call {
    pub fn leg(&self, side: Side) -> &Leg {
        match side {
            Side::Caller => &self.caller,
            Side::Server => &self.server,
        }
    }

    pub fn leg_mut(&mut self, side: Side) -> &mut Leg {
        match side {
            Side::Caller => &mut self.caller,
            Side::Server => &mut self.server,
        }
    }

    pub fn sent_ack_mut(&mut self, side: Side) -> &mut Option<SentAck> {
        match side {
            Side::Caller => &mut self.caller_ack,
            Side::Server => &mut self.server_ack,
        }
    }
}
