//! One shard: a thread with a `mio::Poll` over the sockets of its calls, the commands that change
//! them, the batch loop that relays packets, and the inactivity timer. With [`RelayIo::IoUring`]
//! the loop is io_uring's instead ([`uring_loop`]); commands, streams and reports are shared.

mod uring_loop;

use crate::counters::{RelayTotals, ShardCounters};
use crate::flow::{self, Action, DropCause, Port};
use crate::stream::{side_index, untoken, BindError, Stream, StreamSettings, Streams, SIDES};
use crate::sys::{Outgoing, RecvBatch, SendBatch};
use crate::{CallMediaStats, EventSink, QueryReply, RelayConfig, RelayIo, StreamReport};
use mio::{Events, Poll, Token};
use rustc_hash::FxHashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tandem_media::session::{CallKey, MediaCommand, MediaEvent, SessionPlan};

/// The waker's token; socket tokens count up from 0.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// Batches read from one socket before the shard serves the others.
const BATCHES_PER_TURN: usize = 4;

/// Poll events handled per round.
const EVENTS: usize = 1024;

/// What the [`crate::Relay`] asks of a shard.
pub(crate) enum Command {
    /// Apply or remove a call.
    Media(MediaCommand),
    /// Report a call's statistics.
    Query(CallKey, QueryReply),
    /// Close everything and end the thread.
    Stop,
}

/// What a shard thread starts from.
pub(crate) struct ShardSetup {
    pub(crate) poll: Poll,
    pub(crate) inbox: mpsc::Receiver<Command>,
    pub(crate) sink: Arc<dyn EventSink>,
    pub(crate) counters: Arc<ShardCounters>,
    pub(crate) config: RelayConfig,
}

/// A call's streams on this shard.
#[derive(Debug)]
struct Call {
    call_id: String,
    /// Stream slots, in plan order.
    streams: Vec<usize>,
    /// Per side index: when its silence was reported, until a packet re-arms the report.
    inactive_reported: [Option<Instant>; 2],
    /// A standby's copy of a call ([`MediaCommand::Prepare`]): nothing is reported for it.
    prepared: bool,
}

/// The buffers of the batch loop, allocated once.
#[derive(Debug)]
struct BatchIo {
    recv: RecvBatch,
    send: SendBatch,
    /// Packets to send through the other side's RTP socket.
    via_rtp: Vec<Outgoing>,
    /// Packets to send through the other side's RTCP socket.
    via_rtcp: Vec<Outgoing>,
}

/// The shard's state, owned by its thread.
pub(crate) struct Shard {
    poll: Poll,
    inbox: mpsc::Receiver<Command>,
    sink: Arc<dyn EventSink>,
    counters: Arc<ShardCounters>,
    settings: StreamSettings,
    inactivity: Option<Duration>,
    streams: Streams,
    calls: FxHashMap<CallKey, Call>,
    io: BatchIo,
    /// Sockets left with data after their turn, served next round.
    retry: Vec<Token>,
    /// The list being served this round (swapped with `retry`).
    serving: Vec<Token>,
    next_check: Instant,
    io_backend: RelayIo,
    /// `RelayConfig::batch_wait`.
    batch_wait: Duration,
}

impl Shard {
    /// Builds the shard on its own thread (the batch buffers stay there).
    pub(crate) fn new(setup: ShardSetup) -> Self {
        let ShardSetup {
            poll,
            inbox,
            sink,
            counters,
            config,
        } = setup;
        let recv = RecvBatch::new(config.batch);
        let batch = recv.capacity();
        Self {
            poll,
            inbox,
            sink,
            counters,
            settings: StreamSettings {
                address: config.address,
                policies: [config.caller_latch, config.server_latch],
                free_bind: false,
            },
            inactivity: config.inactivity_timeout,
            streams: Streams::default(),
            calls: FxHashMap::default(),
            io: BatchIo {
                recv,
                send: SendBatch::new(batch),
                via_rtp: Vec::with_capacity(batch),
                via_rtcp: Vec::with_capacity(batch),
            },
            retry: Vec::with_capacity(EVENTS),
            serving: Vec::with_capacity(EVENTS),
            next_check: Instant::now(),
            io_backend: config.io,
            batch_wait: config.batch_wait,
        }
    }

    /// Runs until [`Command::Stop`] or until the relay is dropped.
    pub(crate) fn run(mut self) {
        if self.io_backend == RelayIo::IoUring {
            let waker = self.poll.as_raw_fd();
            let ring = crate::uring::Ring::new().and_then(|mut ring| {
                ring.arm_wake(waker)?;
                Ok(ring)
            });
            match ring {
                Ok(ring) => {
                    self.streams = Streams::logged();
                    return self.run_uring(ring);
                }
                Err(error) => {
                    tracing::warn!(%error, "io_uring unavailable; this relay shard runs with epoll")
                }
            }
        }
        self.run_epoll();
    }

    fn run_epoll(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(%error, "relay shard cannot poll; stopping");
                    break;
                }
            }
            for event in events.iter() {
                if event.token() != WAKER {
                    self.drain(event.token());
                }
            }
            std::mem::swap(&mut self.retry, &mut self.serving);
            for i in 0..self.serving.len() {
                self.drain(self.serving[i]);
            }
            self.serving.clear();
            if !self.run_commands() {
                break;
            }
            self.check_inactivity(Instant::now());
        }
        self.close_all();
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.retry.is_empty() {
            return Some(Duration::ZERO);
        }
        self.inactivity
            .map(|_| self.next_check.saturating_duration_since(now))
    }

    /// Reads a socket's queue in batches and relays them; requeues it if data is left.
    fn drain(&mut self, token: Token) {
        let (slot, side, port) = untoken(token);
        let Some(stream) = self.streams.get_mut(slot) else {
            return;
        };
        let mut failed = false;
        for _ in 0..BATCHES_PER_TURN {
            match self.io.recv.recv(stream.ports[side].socket(port)) {
                Ok(0) => return,
                Ok(count) => {
                    failed = false;
                    let mut totals = RelayTotals {
                        recv_batches: 1,
                        ..RelayTotals::default()
                    };
                    relay_batch(stream, side, port, &mut self.io, &mut totals, &*self.sink);
                    self.counters.add(&totals);
                    if count < self.io.recv.capacity() {
                        return;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // A queued socket error is consumed by reading it; datagrams may follow.
                    tracing::debug!(%error, call = stream.call, "relay socket error");
                    failed = true;
                }
            }
        }
        if !failed {
            self.retry.push(token);
        }
    }

    /// Runs every queued command; `false` once told to stop (or orphaned).
    fn run_commands(&mut self) -> bool {
        loop {
            match self.inbox.try_recv() {
                Ok(command) => {
                    if !self.run_command(command) {
                        return false;
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => return false,
                Err(mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    /// Runs one command; `false` when it says stop.
    fn run_command(&mut self, command: Command) -> bool {
        match command {
            Command::Media(MediaCommand::Apply(plan)) => self.apply(plan, false),
            Command::Media(MediaCommand::Prepare(plan)) => self.apply(plan, true),
            Command::Media(MediaCommand::Remove { call }) => self.remove(call),
            Command::Query(call, reply) => reply(self.report(call)),
            Command::Stop => return false,
        }
        self.counters
            .set_gauges(self.calls.len(), self.streams.len());
        true
    }

    /// Creates or updates a call's streams to match `plan`; `prepare`: a standby's copy of the
    /// call (a live call stays live).
    fn apply(&mut self, plan: SessionPlan, prepare: bool) {
        let now = Instant::now();
        let call = self.calls.entry(plan.call).or_insert_with(|| Call {
            call_id: plan.call_id.clone(),
            streams: Vec::new(),
            inactive_reported: [None; 2],
            prepared: prepare,
        });
        // Prepared before: what this plan carries from the node that had the call is adopted.
        let adopting = call.prepared;
        call.prepared &= prepare;
        if adopting && !prepare {
            call.inactive_reported = [None; 2];
        }
        if call.call_id != plan.call_id {
            call.call_id.clone_from(&plan.call_id);
        }
        // A prepared session binds on the service address this node does not hold yet.
        let settings = StreamSettings {
            free_bind: call.prepared,
            ..self.settings
        };
        let registry = self.poll.registry();
        let mut previous = std::mem::take(&mut call.streams);
        // Match existing streams by m-line index; close the ones the plan dropped first, so their
        // ports are free for the streams that follow.
        let matched: Vec<Option<usize>> = plan
            .streams
            .iter()
            .map(|wanted| {
                let at = previous.iter().position(|&slot| {
                    self.streams
                        .get(slot)
                        .is_some_and(|stream| stream.index == wanted.index)
                })?;
                Some(previous.swap_remove(at))
            })
            .collect();
        for slot in previous {
            self.streams.close(slot);
        }
        for (wanted, existing) in plan.streams.iter().zip(matched) {
            let result = match existing {
                Some(slot) => self
                    .streams
                    .update(registry, slot, wanted, settings, now)
                    .map(|()| {
                        if adopting {
                            self.streams.adopt(slot, wanted, now);
                        }
                        slot
                    }),
                None => self
                    .streams
                    .open(registry, plan.call, wanted, settings, now),
            };
            match result {
                Ok(slot) => call.streams.push(slot),
                // A prepared port that cannot be bound (taken by another process, or free binding
                // refused) is bound by the call's Apply after the takeover.
                Err(BindError { port, error }) if call.prepared => {
                    tracing::debug!(call = plan.call, call_id = %plan.call_id, index = wanted.index, port, %error, "prepared relay port cannot be bound yet");
                }
                Err(BindError { port, error }) => {
                    tracing::warn!(call = plan.call, call_id = %plan.call_id, index = wanted.index, port, %error, "relay port cannot be bound");
                    self.sink.send(MediaEvent::BindFailed {
                        call: plan.call,
                        port,
                        error: error.to_string(),
                    });
                }
            }
        }
        tracing::debug!(call = plan.call, call_id = %plan.call_id, streams = call.streams.len(), prepared = call.prepared, "media session applied");
    }

    /// Closes a call's sockets; an unknown call is ignored.
    fn remove(&mut self, call: CallKey) {
        let Some(removed) = self.calls.remove(&call) else {
            return;
        };
        for slot in removed.streams {
            self.streams.close(slot);
        }
        tracing::debug!(call, call_id = %removed.call_id, "media session removed");
    }

    /// The call's statistics, or `None` for an unknown call.
    fn report(&self, call: CallKey) -> Option<CallMediaStats> {
        let now = Instant::now();
        let entry = self.calls.get(&call)?;
        let streams = entry
            .streams
            .iter()
            .filter_map(|&slot| self.streams.get(slot))
            .flat_map(|stream| SIDES.map(|side| side_report(stream, side_index(side), now)))
            .collect();
        Some(CallMediaStats { call, streams })
    }

    /// Reports each side of each call that went silent, once per silence.
    fn check_inactivity(&mut self, now: Instant) {
        let Some(timeout) = self.inactivity else {
            return;
        };
        if now < self.next_check {
            return;
        }
        let interval = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        self.next_check = now + interval;
        for (&key, call) in &mut self.calls {
            if call.prepared {
                continue;
            }
            for side in SIDES {
                let i = side_index(side);
                let last = call
                    .streams
                    .iter()
                    .filter_map(|&slot| self.streams.get(slot))
                    .map(|stream| &stream.flows[i])
                    .filter(|flow| flow.has_destination())
                    .map(|flow| flow.last_activity())
                    .max();
                let Some(last) = last else {
                    call.inactive_reported[i] = None;
                    continue;
                };
                let reported = &mut call.inactive_reported[i];
                if reported.is_some_and(|at| last > at) {
                    *reported = None;
                }
                if reported.is_none() && now.saturating_duration_since(last) >= timeout {
                    *reported = Some(now);
                    self.counters.add(&RelayTotals {
                        inactivity_reports: 1,
                        ..RelayTotals::default()
                    });
                    tracing::debug!(call = key, call_id = %call.call_id, side = side.as_str(), "media inactive");
                    self.sink.send(MediaEvent::Inactive { call: key, side });
                }
            }
        }
    }

    fn close_all(&mut self) {
        let calls: Vec<CallKey> = self.calls.keys().copied().collect();
        for call in calls {
            self.remove(call);
        }
        self.counters.set_gauges(0, 0);
    }
}

/// Relays the packets just received on `side`'s `port` socket of `stream` to the other side.
fn relay_batch(
    stream: &mut Stream,
    side: usize,
    port: Port,
    io: &mut BatchIo,
    totals: &mut RelayTotals,
    sink: &dyn EventSink,
) {
    let now = Instant::now();
    io.via_rtp.clear();
    io.via_rtcp.clear();
    for slot in 0..io.recv.len() {
        totals.packets_received += 1;
        let (received, packet) = io.recv.packet_mut(slot);
        let Some(source) = received.source.filter(|_| !received.truncated) else {
            totals.dropped_malformed += 1;
            continue;
        };
        if let Some(forward) = relay_packet(stream, side, port, source, now, packet, totals, sink) {
            let list = match forward.port {
                Port::Rtp => &mut io.via_rtp,
                Port::Rtcp => &mut io.via_rtcp,
            };
            list.push(Outgoing {
                slot,
                len: packet.len(),
                destination: forward.destination,
                rtcp: forward.rtcp,
                sent: false,
            });
        }
    }
    let out = &stream.ports[1 - (side & 1)];
    for (port, list) in [(Port::Rtp, &mut io.via_rtp), (Port::Rtcp, &mut io.via_rtcp)] {
        if list.is_empty() {
            continue;
        }
        let report = io.send.send(&out.sender(port), stream.ipv6, &io.recv, list);
        for packet in list.iter().filter(|packet| packet.sent) {
            totals.bytes_relayed += packet.len as u64;
            totals.rtcp_relayed += u64::from(packet.rtcp);
        }
        totals.packets_relayed += report.sent as u64;
        totals.send_errors += (report.busy + report.failed) as u64;
        stream.flows[1 - (side & 1)].counters.packets_sent += report.sent as u64;
    }
}

/// Where a relayed packet leaves: from the other side's `port` socket toward `destination`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forward {
    pub(crate) port: Port,
    pub(crate) destination: SocketAddr,
    /// An RTCP packet (counted apart).
    pub(crate) rtcp: bool,
}

/// One packet received from `source` on `side`'s `port` socket of `stream`: admitted (or latched),
/// edited in place for the other side, and where it goes; `None` when it is dropped (counted in
/// `totals`). Latches and remapped outbound streams are reported to `sink`.
#[allow(clippy::too_many_arguments)] // the packet's whole context, passed on the hot path
pub(crate) fn relay_packet(
    stream: &mut Stream,
    side: usize,
    port: Port,
    source: SocketAddr,
    now: Instant,
    packet: &mut [u8],
    totals: &mut RelayTotals,
    sink: &dyn EventSink,
) -> Option<Forward> {
    let Stream {
        call, index, flows, ..
    } = stream;
    let [caller, server] = flows;
    let (from, to) = match side {
        0 => (caller, server),
        _ => (server, caller),
    };
    let outcome = flow::forward(from, to, port, source, now, packet);
    if let Some((latched_port, source)) = outcome.latched {
        let side = SIDES[side & 1];
        let rtcp = latched_port == Port::Rtcp;
        tracing::debug!(call = *call, index = *index, side = side.as_str(), %source, rtcp, "media source latched");
        sink.send(MediaEvent::Latched {
            call: *call,
            side,
            index: *index,
            source,
            rtcp,
        });
    }
    let reanchored = outcome.reanchored.then(|| to.outbound_snapshot(now));
    if let Some(stream) = reanchored.flatten() {
        let (side, ssrc) = (SIDES[1 - (side & 1)], stream.outbound_ssrc);
        tracing::debug!(
            call = *call,
            side = side.as_str(),
            ssrc,
            "outbound stream remapped"
        );
        sink.send(MediaEvent::Outbound {
            call: *call,
            side,
            index: *index,
            stream,
        });
    }
    match outcome.action {
        Action::Forward {
            port,
            destination,
            rtcp,
        } => {
            return Some(Forward {
                port,
                destination,
                rtcp,
            })
        }
        Action::Drop(DropCause::Stray) => totals.dropped_stray += 1,
        Action::Drop(DropCause::Malformed) => totals.dropped_malformed += 1,
        Action::Drop(DropCause::NoDestination) => totals.dropped_no_destination += 1,
        Action::Drop(DropCause::Stale) => totals.dropped_stale += 1,
    }
    None
}

fn side_report(stream: &Stream, side: usize, now: Instant) -> StreamReport {
    let flow = &stream.flows[side];
    let stats = flow.stats();
    StreamReport {
        index: stream.index,
        side: SIDES[side],
        local_rtp_port: stream.ports[side].local.rtp(),
        signalled: flow.signalled(),
        latched: flow.latched(),
        packets_received: flow.counters.packets_received,
        bytes_received: flow.counters.bytes_received,
        packets_sent: flow.counters.packets_sent,
        rtcp_received: flow.counters.rtcp_received,
        lost: stats.cumulative_lost(),
        jitter_ms: stats.jitter_duration().as_secs_f64() * 1000.0,
        last_packet_age: flow
            .last_packet()
            .map(|at| now.saturating_duration_since(at)),
        stray_dropped: flow.counters.stray_dropped,
    }
}
