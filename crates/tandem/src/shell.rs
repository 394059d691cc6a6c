//! The core task: the one task that owns the [`Core`]. It reads the UDP socket itself (draining a
//! batch of datagrams per wake-up), takes TCP messages and connection news from a channel, takes
//! the media relay's reports from another, wakes at the core's next timer, answers admin requests,
//! and after every input sends what the core queued, hands its media commands to the relay (which
//! never blocks) and logs the events it produced.

use crate::admin::AdminRequest;
use crate::calls_view;
use crate::ha::link::LinkEvent;
use crate::ha::HaNode;
use crate::metrics::{MediaSnapshot, ShellCounters, Snapshot};
use crate::now;
use crate::transport::tcp::TcpConnections;
use crate::transport::udp::{drain_datagrams, send_datagram, MAX_DATAGRAM};
use crate::transport::{CloseReason, Inbound};
use std::future::Future;
use std::pin::pin;
use std::time::Duration;
use tandem_core::{CallEvent, Core, Peer, Transmit, Transport};
use tandem_media::session::MediaEvent;
use tandem_relay::Relay;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

/// Most channel messages handled per wake-up before the other inputs get a turn.
const INBOUND_BATCH: usize = 64;

/// Everything the core task owns.
#[derive(Debug)]
pub struct CoreTask {
    pub core: Core,
    pub udp: UdpSocket,
    /// `None` when `sip.tcp = false`.
    pub tcp: Option<TcpConnections>,
    pub inbound: mpsc::Receiver<Inbound>,
    pub admin: mpsc::Receiver<AdminRequest>,
    /// The media data plane; `None` when media anchoring is off.
    pub relay: Option<Relay>,
    /// What the relay reports (latches, silent sides, bind failures).
    pub media_events: mpsc::UnboundedReceiver<MediaEvent>,
    /// The HA side of a node with a peer (`[ha]`); `None` for a standalone node.
    pub ha: Option<HaNode>,
    /// What the replication link reports (never fires without `[ha]`).
    pub link_events: mpsc::Receiver<LinkEvent>,
}

/// Mutable state of a running loop besides the owned parts.
#[derive(Debug, Default)]
struct LoopState {
    counters: ShellCounters,
    /// Shutting down: the loop ends once no call is left.
    draining: bool,
    /// Drained for maintenance through the admin API: new calls get 503, the node keeps running.
    maintenance: bool,
}

impl CoreTask {
    /// Runs until the drain after `shutdown` completes: no active call left, or `grace` expired.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>, grace: Duration) {
        let mut state = LoopState::default();
        let mut scratch = vec![0u8; MAX_DATAGRAM].into_boxed_slice();
        let mut shutdown = pin!(shutdown);
        let mut grace_timer = pin!(sleep_until(Instant::from_std(now())));
        let mut core_timer = pin!(sleep_until(Instant::from_std(now())));
        let mut armed: Option<std::time::Instant> = None;
        loop {
            let deadline = [
                self.core.poll_timeout(),
                self.ha.as_ref().and_then(HaNode::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min();
            if deadline != armed {
                if let Some(at) = deadline {
                    core_timer.as_mut().reset(Instant::from_std(at));
                }
                armed = deadline;
            }
            tokio::select! {
                biased;
                () = &mut shutdown, if !state.draining => {
                    state.draining = true;
                    self.core.begin_drain(now());
                    grace_timer.as_mut().reset(Instant::from_std(now() + grace));
                    let active_calls = self.core.active_calls();
                    let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
                    info!(active_calls, grace_ms, "draining: new calls get 503");
                }
                () = &mut grace_timer, if state.draining => {
                    let active_calls = self.core.active_calls();
                    warn!(active_calls, "shutdown grace expired, stopping with calls active");
                    break;
                }
                () = &mut core_timer, if armed.is_some() => {
                    armed = None;
                    self.core.handle_timeout(now());
                    if let Some(ha) = &mut self.ha {
                        ha.handle_timeout(&mut self.core);
                    }
                }
                // Before SIP: an Ack releases answers held for the standby (sync durability), and a
                // loaded SIP socket is readable at nearly every turn of this biased select.
                Some(first) = self.link_events.recv() => {
                    if let Some(ha) = &mut self.ha {
                        let link_events = &mut self.link_events;
                        let rest = std::iter::from_fn(|| link_events.try_recv().ok());
                        let batch = std::iter::once(first).chain(rest.take(INBOUND_BATCH - 1));
                        ha.handle_link_events(&mut self.core, batch);
                    }
                }
                ready = self.udp.readable() => {
                    if ready.is_ok() {
                        let at = now();
                        let core = &mut self.core;
                        let ha = self.ha.as_ref();
                        drain_datagrams(&self.udp, &mut scratch, |payload, from| {
                            if ha.is_none_or(|ha| ha.admits(&payload)) {
                                core.handle_message(at, payload, Peer::udp(from));
                            }
                        });
                    }
                }
                Some(first) = self.inbound.recv() => {
                    self.handle_inbound(first, &mut state);
                    for _ in 1..INBOUND_BATCH {
                        let Ok(next) = self.inbound.try_recv() else { break };
                        self.handle_inbound(next, &mut state);
                    }
                }
                Some(event) = self.media_events.recv() => {
                    self.core.handle_media_event(now(), event);
                    for _ in 1..INBOUND_BATCH {
                        let Ok(next) = self.media_events.try_recv() else { break };
                        self.core.handle_media_event(now(), next);
                    }
                }
                Some(request) = self.admin.recv() => self.answer(request, &mut state),
            }
            self.flush(&mut state).await;
            if self.ha.is_some() {
                // The replication link's tasks share this thread: under load the loop would find
                // SIP ready at every turn and hold them (and so the Acks) back.
                tokio::task::yield_now().await;
            }
            if state.draining && self.core.active_calls() == 0 {
                info!("drained: no call left");
                break;
            }
        }
    }

    fn handle_inbound(&mut self, inbound: Inbound, state: &mut LoopState) {
        match inbound {
            Inbound::Message { payload, from } => {
                if self.ha.as_ref().is_none_or(|ha| ha.admits(&payload)) {
                    self.core.handle_message(now(), payload, from);
                }
            }
            Inbound::Accepted { conn, addr, writer } => match &mut self.tcp {
                Some(tcp) => tcp.accepted(conn, addr, writer),
                None => drop(writer),
            },
            Inbound::Closed { conn, addr, reason } => {
                let lost_dest = self.tcp.as_mut().and_then(|tcp| tcp.closed(conn));
                if reason == CloseReason::InvalidStream {
                    state.counters.tcp_framing_errors += 1;
                }
                let at = now();
                if reason.lost_messages() {
                    state.counters.send_errors += 1;
                    let dest = lost_dest.unwrap_or(Peer::tcp(addr, Some(conn)));
                    self.core.handle_transport_error(at, dest);
                }
                self.core.handle_connection_closed(at, conn);
            }
        }
    }

    /// Sends everything the core queued (including what transport errors make it queue), then
    /// logs its events.
    async fn flush(&mut self, state: &mut LoopState) {
        if let Some(ha) = &mut self.ha {
            ha.after_core(&mut self.core);
        }
        while let Some(transmit) = self.core.poll_transmit() {
            let dest = transmit.dest;
            if let Err(error) = self.send(transmit).await {
                state.counters.send_errors += 1;
                let transport = dest.transport.via_token();
                debug!(peer = %dest.addr, transport, %error, "send failed");
                self.core.handle_transport_error(now(), dest);
            }
        }
        while let Some(command) = self.core.poll_media() {
            if let Some(relay) = &self.relay {
                relay.apply(command);
            }
        }
        while let Some(event) = self.core.poll_event() {
            log_event(&event);
        }
    }

    fn answer(&mut self, request: AdminRequest, state: &mut LoopState) {
        match request {
            AdminRequest::Snapshot(reply) => {
                let _ = reply.send(self.snapshot(state));
            }
            AdminRequest::Calls(reply) => {
                let _ = reply.send(calls_view::calls_json(&self.core.calls_overview(now())));
            }
            AdminRequest::Grpc(request) => match &mut self.ha {
                Some(ha) => crate::admin_answers::answer_ha(
                    &mut self.core,
                    ha,
                    &mut state.maintenance,
                    request,
                ),
                None => crate::admin_answers::answer_standalone(
                    &mut self.core,
                    &mut state.maintenance,
                    request,
                ),
            },
            AdminRequest::Call { call_id, reply } => {
                let Some(call) = self.core.call_overview(now(), &call_id) else {
                    let _ = reply.send(None);
                    return;
                };
                match &self.relay {
                    // The relay answers from its shard thread, after the commands sent before.
                    Some(relay) => relay.query(call.key, move |stats| {
                        let _ = reply.send(Some(calls_view::call_json(&call, stats.as_ref())));
                    }),
                    None => {
                        let _ = reply.send(Some(calls_view::call_json(&call, None)));
                    }
                }
            }
        }
    }

    async fn send(&mut self, transmit: Transmit) -> Result<(), String> {
        let Transmit { dest, payload } = transmit;
        match (dest.transport, &mut self.tcp) {
            (Transport::Udp, _) => send_datagram(&self.udp, &payload, dest.addr)
                .await
                .map_err(|e| e.to_string()),
            (Transport::Tcp, Some(tcp)) => tcp
                .send(dest, payload)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            (Transport::Tcp, None) => Err("TCP is disabled (sip.tcp = false)".to_owned()),
        }
    }

    fn snapshot(&self, state: &LoopState) -> Snapshot {
        let tcp_connections = self.tcp.as_ref().map_or(0, TcpConnections::len);
        Snapshot {
            core: self.core.metrics().clone(),
            active_calls: self.core.active_calls(),
            transactions: self.core.transactions(),
            servers: self.core.server_health(),
            draining: state.draining || state.maintenance,
            media: self.relay.as_ref().map(|relay| MediaSnapshot {
                relay: relay.totals(),
                anchor: self.core.media_metrics().unwrap_or_default(),
                pairs: self.core.media_ports().unwrap_or_default(),
            }),
            shell: ShellCounters {
                tcp_connections,
                ..state.counters
            },
            replication_ack_latency: self
                .ha
                .as_ref()
                .and_then(HaNode::outbox)
                .map(|outbox| *outbox.ack_latency()),
        }
    }
}

fn log_event(event: &CallEvent) {
    match event {
        CallEvent::CallCreated { call_id } => info!(%call_id, "call created"),
        CallEvent::ServerChosen { call_id, server } => {
            info!(%call_id, %server, "media server chosen")
        }
        CallEvent::CallAnswered { call_id } => info!(%call_id, "call answered"),
        CallEvent::CallEnded { call_id, reason } => info!(%call_id, %reason, "call ended"),
        CallEvent::ServerHealthChanged { server, up: true } => info!(%server, "media server up"),
        CallEvent::ServerHealthChanged { server, up: false } => warn!(%server, "media server down"),
    }
}
