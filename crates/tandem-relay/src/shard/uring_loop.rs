//! The shard's loop with [`RelayIo::IoUring`](crate::RelayIo::IoUring): every relay socket has
//! one multishot receive in the ring, every datagram is relayed from the buffer it arrived in,
//! and one `io_uring_enter` per round submits the sends and waits for what comes next (a busy
//! shard waits to gather several datagrams, `crate::gather`).
//!
//! Sockets: the streams log every side they bind or close ([`Streams::logged`]); after each
//! command the loop arms the new sockets and cancels the closed ones, and waits for those
//! cancellations before the next command, so a closed port is free again as with epoll (a
//! request keeps its socket open until it ends).

use super::{relay_packet, Shard};
use crate::counters::RelayTotals;
use crate::flow::Port;
use crate::gather::{Gather, GATHER_COUNT};
use crate::stream::SocketChange;
use crate::uring::{target, untarget, Completion, Ring, Sender};
use mio::Events;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a closed socket's receive may take to end before the shard goes on without it.
const CANCEL_WAIT: Duration = Duration::from_secs(1);

/// How often the inbox is looked at when the command poll cannot be armed.
const COMMAND_POLL: Duration = Duration::from_millis(10);

/// A send in flight from a pool buffer: what its completion counts.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    slot: usize,
    /// The side index the packet goes to.
    side: usize,
    generation: u32,
    rtcp: bool,
}

/// The loop's own state.
struct UringState {
    ring: Ring,
    in_flight: Vec<Option<InFlight>>,
    changes: Vec<SocketChange>,
    /// Receives cancelled and not yet ended.
    cancelling: Vec<u64>,
    woken: bool,
    wake_armed: bool,
    /// Reused for each round's completions.
    completions: Vec<Completion>,
    /// Whether the next wait gathers datagrams.
    gather: Gather,
}

impl Shard {
    /// Runs until [`Command::Stop`] or until the relay is dropped; `ring` has the command poll
    /// armed.
    pub(super) fn run_uring(mut self, ring: Ring) {
        let mut state = UringState {
            in_flight: vec![None; ring.buffers()],
            ring,
            changes: Vec::new(),
            cancelling: Vec::new(),
            woken: false,
            wake_armed: false,
            completions: Vec::with_capacity(1024),
            gather: Gather::new(self.batch_wait, Instant::now()),
        };
        let mut events = Events::with_capacity(8);
        // `Shard::run` armed the command poll before handing the ring over.
        state.wake_armed = true;
        tracing::debug!("relay shard runs with io_uring");
        loop {
            // A wake-up seen while closing sockets (below) is served without waiting; without a
            // command poll (it could not be armed again) the inbox is looked at every 10 ms.
            let timeout = match (state.woken, state.wake_armed) {
                (true, _) => Some(Duration::ZERO),
                (false, true) => self.poll_timeout(Instant::now()),
                (false, false) => Some(
                    self.poll_timeout(Instant::now())
                        .map_or(COMMAND_POLL, |t| t.min(COMMAND_POLL)),
                ),
            };
            let waited = match state.gather.wait().filter(|_| !state.woken) {
                Some(gather) => state
                    .ring
                    .submit_and_gather(GATHER_COUNT, timeout.map_or(gather, |t| t.min(gather))),
                None => state.ring.submit_and_wait(timeout),
            };
            if let Err(error) = waited {
                tracing::error!(%error, "relay shard's ring failed; stopping");
                break;
            }
            self.handle_completions(&mut state);
            if state.woken || !state.wake_armed {
                state.woken = false;
                // Takes the waker's event off the command poll, so that it can fire again.
                let _ = self.poll.poll(&mut events, Some(Duration::ZERO));
                if !self.run_commands_uring(&mut state) {
                    break;
                }
            }
            if !state.wake_armed {
                if let Err(error) = self.arm_wake(&mut state) {
                    tracing::debug!(%error, "relay shard's command poll not armed; polling the inbox");
                }
            }
            self.check_inactivity(Instant::now());
        }
        self.close_all();
        self.sync_sockets(&mut state);
        let _ = state.ring.cancel_wake();
        if !state.ring.drain(CANCEL_WAIT) {
            tracing::warn!(
                receiving = state.ring.receiving(),
                "relay shard stopped with receives pending"
            );
        }
    }

    fn arm_wake(&self, state: &mut UringState) -> std::io::Result<()> {
        state.ring.arm_wake(self.poll.as_raw_fd())?;
        state.wake_armed = true;
        Ok(())
    }

    /// Like [`Shard::run_commands`], arming and cancelling the sockets each command changed.
    fn run_commands_uring(&mut self, state: &mut UringState) -> bool {
        loop {
            let command = match self.inbox.try_recv() {
                Ok(command) => command,
                Err(mpsc::TryRecvError::Disconnected) => return false,
                Err(mpsc::TryRecvError::Empty) => return true,
            };
            let going_on = self.run_command(command);
            self.sync_sockets(state);
            if !going_on {
                return false;
            }
        }
    }

    /// Arms the sockets bound since the last call and cancels the closed ones, then waits until
    /// the cancelled receives have ended (their ports are free then).
    fn sync_sockets(&mut self, state: &mut UringState) {
        let mut changes = std::mem::take(&mut state.changes);
        self.streams.take_changes(&mut changes);
        for change in changes.drain(..) {
            match change {
                SocketChange::Bound { slot, side } => {
                    for port in [Port::Rtp, Port::Rtcp] {
                        self.arm(state, slot, side, port);
                    }
                    if let Some(stream) = self.streams.get_mut(slot) {
                        let ports = &mut stream.ports[side & 1];
                        for port in [Port::Rtp, Port::Rtcp] {
                            if ports.fixed[port.index()].is_none() {
                                let fd = ports.sender(port).as_raw_fd();
                                ports.fixed[port.index()] = state.ring.register(fd);
                            }
                        }
                    }
                }
                SocketChange::Closed {
                    slot,
                    side,
                    generation,
                    fixed,
                } => {
                    for registered in fixed.into_iter().flatten() {
                        state.ring.unregister(registered);
                    }
                    for port in [Port::Rtp, Port::Rtcp] {
                        let target = target(slot, side, port, generation);
                        match state.ring.cancel_recv(target) {
                            Ok(()) => state.cancelling.push(target),
                            Err(error) => {
                                tracing::warn!(%error, "relay socket's receive not cancelled")
                            }
                        }
                    }
                }
            }
        }
        state.changes = changes;
        let deadline = Instant::now() + CANCEL_WAIT;
        while !state.cancelling.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    pending = state.cancelling.len(),
                    "closed relay sockets' receives did not end in time"
                );
                state.cancelling.clear();
                break;
            }
            if let Err(error) = state.ring.submit_and_wait(Some(deadline - now)) {
                tracing::warn!(%error, "relay ring failed while closing sockets");
                state.cancelling.clear();
                break;
            }
            self.handle_completions(state);
        }
    }

    /// Starts the receive of `side`'s `port` socket in `slot`, if that stream is open and it has
    /// none running.
    fn arm(&mut self, state: &mut UringState, slot: usize, side: usize, port: Port) {
        let Some(stream) = self.streams.get_mut(slot) else {
            return;
        };
        let call = stream.call;
        let ports = &mut stream.ports[side & 1];
        if ports.armed[port.index()] {
            return;
        }
        let target = target(slot, side, port, ports.generation);
        match state.ring.arm_recv(ports.socket(port).as_raw_fd(), target) {
            Ok(()) => ports.armed[port.index()] = true,
            Err(error) => tracing::warn!(%error, call, "relay socket's receive not armed"),
        }
    }

    fn handle_completions(&mut self, state: &mut UringState) {
        let now = Instant::now();
        let mut totals = RelayTotals::default();
        let mut completions = std::mem::take(&mut state.completions);
        state.ring.completions(&mut completions);
        for completion in completions.drain(..) {
            match completion {
                Completion::Received {
                    target,
                    buffer,
                    result,
                    more,
                } => {
                    if let Some(buffer) = buffer {
                        self.relay_received(state, target, buffer, result, now, &mut totals);
                    } else if result < 0 && result != -libc::ECANCELED && result != -libc::ENOBUFS {
                        let error = std::io::Error::from_raw_os_error(-result);
                        tracing::debug!(%error, "relay socket error");
                    }
                    if !more {
                        self.receive_ended(state, target);
                    }
                }
                Completion::Sent { buffer, result } => {
                    self.sent(state, buffer, result, &mut totals);
                }
                Completion::Woken { more } => {
                    state.woken = true;
                    state.wake_armed = more;
                }
                Completion::Cancelled { target, result } => {
                    // Not found: it had ended already (its end was handled then).
                    if result == -libc::ENOENT {
                        state.cancelling.retain(|&t| t != target);
                    }
                }
            }
        }
        state.completions = completions;
        state.gather.note(now, totals.packets_received);
        totals.recv_batches = u64::from(totals.packets_received > 0);
        self.counters.add(&totals);
    }

    /// A receive request ended: a cancelled one is done; one of a socket still open is armed
    /// again (it ends when the pool ran dry, for instance).
    fn receive_ended(&mut self, state: &mut UringState, target: u64) {
        if let Some(at) = state.cancelling.iter().position(|&t| t == target) {
            state.cancelling.swap_remove(at);
            return;
        }
        let (slot, side, port, generation) = untarget(target);
        let Some(ports) = self
            .streams
            .get_mut(slot)
            .map(|s| &mut s.ports[side])
            .filter(|ports| ports.generation == generation)
        else {
            return;
        };
        ports.armed[port.index()] = false;
        self.arm(state, slot, side, port);
    }

    /// One datagram in `buffer`, received by the socket `target` names.
    fn relay_received(
        &mut self,
        state: &mut UringState,
        target: u64,
        buffer: u16,
        result: i32,
        now: Instant,
        totals: &mut RelayTotals,
    ) {
        let (slot, side, port, generation) = untarget(target);
        let stream = self
            .streams
            .get_mut(slot)
            .filter(|s| s.ports[side].generation == generation);
        let (Some(stream), Some(datagram)) = (stream, state.ring.datagram(buffer, result)) else {
            // A socket closed since, or a buffer the kernel did not fill as promised.
            let _ = state.ring.recycle(buffer);
            return;
        };
        totals.packets_received += 1;
        let Some(source) = datagram.source.filter(|_| !datagram.truncated) else {
            totals.dropped_malformed += 1;
            let _ = state.ring.recycle(buffer);
            return;
        };
        let packet = datagram.payload;
        let forward = relay_packet(stream, side, port, source, now, packet, totals, &*self.sink);
        let len = packet.len();
        let Some(forward) = forward else {
            let _ = state.ring.recycle(buffer);
            return;
        };
        let to = 1 - (side & 1);
        let out = &stream.ports[to];
        let from = match out.fixed[forward.port.index()] {
            Some(registered) => Sender::Fixed(registered),
            None => Sender::Fd(out.sender(forward.port).as_raw_fd()),
        };
        let sent = state
            .ring
            .send(from, buffer, len, forward.destination, stream.ipv6);
        match sent {
            Ok(()) => {
                if let Some(entry) = state.in_flight.get_mut(usize::from(buffer)) {
                    *entry = Some(InFlight {
                        slot,
                        side: to,
                        generation: out.generation,
                        rtcp: forward.rtcp,
                    });
                }
            }
            Err(_) => {
                totals.send_errors += 1;
                let _ = state.ring.recycle(buffer);
            }
        }
    }

    /// The send from `buffer` completed with `result`; the buffer goes back to the pool.
    fn sent(&mut self, state: &mut UringState, buffer: u16, result: i32, totals: &mut RelayTotals) {
        let in_flight = state
            .in_flight
            .get_mut(usize::from(buffer))
            .and_then(Option::take);
        let _ = state.ring.recycle(buffer);
        let Some(sent) = in_flight else {
            return;
        };
        // A send's result is the bytes it sent.
        let Ok(bytes) = u64::try_from(result) else {
            totals.send_errors += 1;
            return;
        };
        totals.packets_relayed += 1;
        totals.bytes_relayed += bytes;
        totals.rtcp_relayed += u64::from(sent.rtcp);
        if let Some(stream) = self
            .streams
            .get_mut(sent.slot)
            .filter(|s| s.ports[sent.side].generation == sent.generation)
        {
            stream.flows[sent.side].counters.packets_sent += 1;
        }
    }
}
