//! The replication link between the two nodes of a pair: a tonic `Replication` server on every
//! node and, on a standby, a client stream to the peer. It only moves messages; every decision is
//! the core task's (`super::HaNode`), which talks to the link through [`LinkHandle`] and
//! [`LinkEvent`]s.

use std::net::SocketAddr;
use std::time::Duration;
use tandem_proto::replication::v1::{ActiveMessage, StandbyMessage};
use tokio::sync::mpsc;

/// Identifies one accepted standby stream on the server side.
pub type StreamId = u64;

/// What happens on the link, for the core task.
#[derive(Debug)]
pub enum LinkEvent {
    /// Server side: a peer opened a stream; its first message follows as `FromStandby`.
    StandbyConnected { stream: StreamId, peer: SocketAddr },
    /// Server side: a message on an accepted stream.
    FromStandby {
        stream: StreamId,
        msg: Box<StandbyMessage>,
    },
    /// Server side: the stream closed or failed.
    StandbyGone { stream: StreamId },
    /// Client side: our stream to the peer is open (send Hello now).
    ActiveConnected,
    /// Client side: a message from the peer.
    FromActive(Box<ActiveMessage>),
    /// Client side: the stream closed, failed or could not be opened.
    ActiveGone,
    /// The second path's answer: whether the peer's SIP stack answered OPTIONS.
    PeerSipAlive(bool),
}

/// How the link runs.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Where this node's Replication server listens.
    pub listen: SocketAddr,
    /// The peer's Replication server.
    pub peer: SocketAddr,
    /// The peer's own SIP address (not the VIP), probed with OPTIONS as the second path.
    pub peer_sip: SocketAddr,
    /// Messages that may wait per direction before `send_*` reports the stream full.
    pub queue: usize,
    /// Time to wait for a connection to the peer.
    pub connect_timeout: Duration,
}

/// The core task's handle on the link.
#[derive(Debug)]
pub struct LinkHandle {
    _config: LinkConfig,
}

impl LinkHandle {
    /// Starts the server and the link's background tasks; events arrive on `events`.
    pub async fn start(
        config: LinkConfig,
        _events: mpsc::Sender<LinkEvent>,
    ) -> anyhow::Result<LinkHandle> {
        Ok(LinkHandle { _config: config })
    }

    /// The bound Replication server address.
    pub fn local_addr(&self) -> SocketAddr {
        self._config.listen
    }

    /// Server side: sends on an accepted stream; false when it is full or gone.
    pub fn send_to_standby(&self, _stream: StreamId, _msg: ActiveMessage) -> bool {
        false
    }

    /// Whether an accepted stream can take another message now.
    pub fn standby_has_room(&self, _stream: StreamId) -> bool {
        false
    }

    /// Server side: closes an accepted stream.
    pub fn close_standby(&self, _stream: StreamId) {}

    /// Client side: (re)opens the stream to the peer; `ActiveConnected` or `ActiveGone` follows.
    pub fn dial(&self) {}

    /// Client side: sends to the peer; false when the stream is full or not open.
    pub fn send_to_active(&self, _msg: StandbyMessage) -> bool {
        false
    }

    /// Client side: closes the stream to the peer.
    pub fn hang_up(&self) {}

    /// Sends one SIP OPTIONS to the peer's own address; `PeerSipAlive` follows within `timeout`.
    pub fn probe_peer_sip(&self, _timeout: Duration) {}
}
