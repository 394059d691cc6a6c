//! What the signalling core tells the data plane about one call's media, and what the data plane
//! reports back. Plain data: the core builds it from the SDP it relays, the relay applies it, the
//! replication stream will carry it.
//!
//! A call has two sides. For every media section (m-line) Tandem holds one port pair facing each
//! side: the caller sends to the caller-facing pair, the media server to the server-facing pair.
//! A packet that arrives on one side's pair leaves from the other side's pair toward that side's
//! peer.

use crate::continuity::StreamSnapshot;
use crate::ports::PortPair;
use std::net::SocketAddr;

/// Tandem's handle of a call (the core's call key).
pub type CallKey = u64;

/// Which side of a call a relay endpoint faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaSide {
    /// Toward the caller.
    Caller,
    /// Toward the media server.
    Server,
}

impl MediaSide {
    /// The opposite side.
    pub fn other(self) -> MediaSide {
        match self {
            MediaSide::Caller => MediaSide::Server,
            MediaSide::Server => MediaSide::Caller,
        }
    }

    /// A short lowercase name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaSide::Caller => "caller",
            MediaSide::Server => "server",
        }
    }
}

/// One side of one media stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointPlan {
    /// Tandem's relay ports facing this side (what Tandem wrote into the SDP sent to this side).
    pub local: PortPair,
    /// Where this side said it receives RTP (its SDP `c=` address and `m=` port). `None` while no
    /// SDP from this side is known, when it is on hold with `c=0.0.0.0`, or when it rejected the
    /// stream (port 0): nothing is sent toward it until a source latches.
    pub remote_rtp: Option<SocketAddr>,
    /// Where this side said it receives RTCP (`a=rtcp`, else RTP port + 1; the RTP address when
    /// RTCP is multiplexed).
    pub remote_rtcp: Option<SocketAddr>,
    /// The side offered or accepted `a=rtcp-mux`: RTP and RTCP share the RTP port.
    pub rtcp_mux: bool,
    /// The RTP source the relay latched on for this side ([`MediaEvent::Latched`]), `None` before
    /// the first packet and after a change of `remote_rtp`. An endpoint the relay creates sends
    /// toward it from the start, before any packet arrives, rather than toward `remote_rtp`: a node
    /// that takes a call over keeps reaching a caller behind NAT. The relay's own latch wins over
    /// it once packets flow.
    pub latched_rtp: Option<SocketAddr>,
    /// The same for RTCP on the RTCP port (with rtcp-mux, RTCP follows `latched_rtp`).
    pub latched_rtcp: Option<SocketAddr>,
    /// The RTP stream Tandem sent toward this side, as another node left it
    /// ([`MediaEvent::Outbound`], `since_last_sent` counted up to the plan's making). An endpoint
    /// the relay creates resumes it (`OutboundStream::restore`): same SSRC toward the side,
    /// sequence and timestamp carried on. Ignored by an endpoint that already exists.
    pub outbound: Option<StreamSnapshot>,
}

impl EndpointPlan {
    /// An endpoint on `local` that nothing is known about yet.
    pub fn unsignalled(local: PortPair) -> EndpointPlan {
        EndpointPlan {
            local,
            remote_rtp: None,
            remote_rtcp: None,
            rtcp_mux: false,
            latched_rtp: None,
            latched_rtcp: None,
            outbound: None,
        }
    }
}

/// One media section relayed between the two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPlan {
    /// The m-line index in the SDP bodies (0-based, body order).
    pub index: u16,
    /// RTP clock rate of the stream's first payload format, in Hz (8000 for G.711).
    pub clock_rate: u32,
    /// The caller-facing endpoint.
    pub caller: EndpointPlan,
    /// The server-facing endpoint.
    pub server: EndpointPlan,
}

impl StreamPlan {
    /// The endpoint facing `side`.
    pub fn endpoint(&self, side: MediaSide) -> &EndpointPlan {
        match side {
            MediaSide::Caller => &self.caller,
            MediaSide::Server => &self.server,
        }
    }

    /// The endpoint facing `side`, mutable.
    pub fn endpoint_mut(&mut self, side: MediaSide) -> &mut EndpointPlan {
        match side {
            MediaSide::Caller => &mut self.caller,
            MediaSide::Server => &mut self.server,
        }
    }
}

/// The whole media state of one call as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPlan {
    /// The call.
    pub call: CallKey,
    /// The caller leg's Call-ID, for logs.
    pub call_id: String,
    /// Every stream, in m-line order.
    pub streams: Vec<StreamPlan>,
}

/// A command from the core to the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// Create the call's relay sockets, or update an existing session in place: new streams are
    /// added, changed remotes re-signal their latches (a re-INVITE, a new media server) while the
    /// outbound streams stay continuous, streams no longer listed are closed.
    Apply(SessionPlan),
    /// A standby's copy of a call the active node carries: bind its sockets ahead of a takeover
    /// (on the service address the standby does not hold yet), so that the moment the address
    /// moves the relay receives and forwards. Nothing is reported for it (no inactivity, bind
    /// failures only logged) until an `Apply` of the same call makes it live; then every side that
    /// relayed nothing yet takes the plan's outbound stream and a full inactivity period.
    Prepare(SessionPlan),
    /// The call ended: close its sockets.
    Remove {
        /// The call.
        call: CallKey,
    },
}

/// Something the data plane noticed, reported to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP or RTCP arrived from `side` of the call for the configured inactivity timeout.
    Inactive {
        /// The call.
        call: CallKey,
        /// The silent side.
        side: MediaSide,
    },
    /// A side's packets now come from `source` (first packet, or a re-latch).
    Latched {
        /// The call.
        call: CallKey,
        /// The side that sent.
        side: MediaSide,
        /// The stream's m-line index.
        index: u16,
        /// The learned source.
        source: SocketAddr,
        /// It is the latch of the RTCP port (else of the RTP port, which RTCP follows with
        /// rtcp-mux).
        rtcp: bool,
    },
    /// The RTP stream Tandem sends toward `side` started mapping a new source (a switch of media
    /// server, a source that restarted): the state a standby needs to keep that stream continuous.
    /// Sent on such changes only, never per packet.
    Outbound {
        /// The call.
        call: CallKey,
        /// The side the stream goes to.
        side: MediaSide,
        /// The stream's m-line index.
        index: u16,
        /// The stream, as of the moment the event was made.
        stream: StreamSnapshot,
    },
    /// A relay port could not be bound; the stream cannot carry media.
    BindFailed {
        /// The call.
        call: CallKey,
        /// The port that failed.
        port: u16,
        /// The operating system's error text.
        error: String,
    },
}
