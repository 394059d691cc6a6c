//! API CONTRACT of the Core facade — the I/O shell codes against exactly these names and signatures.
#![allow(clippy::todo, unused_variables, dead_code)] // STUB: replaced by the B2BUA implementation

use crate::{ConnId, CoreConfig, Peer, Transmit};
use bytes::Bytes;
use std::time::Instant;

/// A change of call state, in order; what the replication stream and the metrics consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A caller's INVITE created a call.
    CallCreated { call_id: String },
    /// A media server was chosen (or replaced) for the call.
    ServerChosen { call_id: String, server: String },
    /// The call was answered (2xx relayed to the caller).
    CallAnswered { call_id: String },
    /// The call ended; `reason` is a short token (bye-caller, bye-server, cancel, rejected-486, ...).
    CallEnded { call_id: String, reason: String },
    /// A media server changed health.
    ServerHealthChanged { server: String, up: bool },
}

/// Counters the shell exports as Prometheus metrics.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub calls_total: u64,
    pub calls_answered_total: u64,
    pub calls_failed_total: u64,
    /// Responses sent and received by class: index 1..=6 for 1xx..6xx (index 0 unused).
    pub responses_sent: [u64; 7],
    pub responses_received: [u64; 7],
    pub requests_received: u64,
    pub parse_errors: u64,
    /// Messages dropped for another reason (stray responses, loops, over capacity).
    pub dropped: u64,
}

/// Health of one media server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealth {
    pub name: String,
    pub addr: std::net::SocketAddr,
    pub up: bool,
    pub active_calls: usize,
}

/// The whole sans-IO Tandem node.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
}

impl Core {
    pub fn new(config: CoreConfig, now: Instant) -> Core {
        Core { config }
    }
    /// One message from the network: a UDP datagram, or one frame cut from a TCP stream by
    /// `tandem_sip::frame_stream`. Parse errors are answered 400 (requests) or dropped (responses) and
    /// counted; nothing here panics on bad input.
    pub fn handle_message(&mut self, now: Instant, payload: Bytes, from: Peer) {
        todo!()
    }
    /// A send to `dest` failed (ICMP unreachable, refused or broken TCP connection).
    pub fn handle_transport_error(&mut self, now: Instant, dest: Peer) {
        todo!()
    }
    /// A TCP connection closed; later sends to that peer go through a new connection.
    pub fn handle_connection_closed(&mut self, now: Instant, conn: ConnId) {
        todo!()
    }
    pub fn handle_timeout(&mut self, now: Instant) {
        todo!()
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        todo!()
    }
    /// Graceful shutdown: from now on new calls get 503; established calls go on.
    pub fn begin_drain(&mut self, now: Instant) {
        todo!()
    }
    pub fn active_calls(&self) -> usize {
        todo!()
    }
    /// Live transactions.
    pub fn transactions(&self) -> usize {
        todo!()
    }
    pub fn metrics(&self) -> &Metrics {
        todo!()
    }
    pub fn server_health(&self) -> Vec<ServerHealth> {
        todo!()
    }
}
