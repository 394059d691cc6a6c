//! Tandem's RTP/RTCP data plane: moves every call's media through Tandem's relay ports.
//!
//! The signalling core computes a [`SessionPlan`](tandem_media::session::SessionPlan) per call and
//! hands it over as a [`MediaCommand`]; [`Relay::apply`] routes it to one shard and returns at once.
//! The shard binds the call's sockets and relays packets between the two sides: latching each
//! side's real source ([`tandem_media::latch`]), keeping one continuous RTP stream toward each side
//! across source switches ([`tandem_media::continuity`]), and keeping receive statistics
//! ([`tandem_media::stats`]). What it notices comes back through an [`EventSink`].
//!
//! # Threading model
//!
//! `shards` worker threads, each owning its calls completely: call `k` lives on shard
//! `k % shards`. With [`RelayIo::IoUring`] (the default) a shard runs an io_uring: one multishot
//! `recvmsg` per socket into a registered buffer ring, each packet processed in its buffer and sent
//! from it by a `send` request through the other side's socket (a registered file), one
//! `io_uring_enter` per round (see `shard::uring_loop` and the `uring` module). A shard whose ring
//! cannot be set up runs as follows, as does every shard with [`RelayIo::Epoll`].
//!
//! An epoll shard thread runs one `mio::Poll` over its own sockets plus a `mio::Waker`.
//! mio is edge-triggered, so a readable socket is drained with `recvmmsg` until the kernel queue is
//! empty — at most a few batches per turn; a socket that still has data goes on a retry list that
//! is served after the other ready sockets (with a zero poll timeout), so one flooded port cannot
//! starve the others. Every received batch is processed in place and forwarded with one
//! `sendmmsg` per outgoing socket (`sendto` for a single packet, the common case with real calls).
//! RTP leaves through a send-only socket bound to the same port and kept out of the poll, so a
//! send does not wake the poll's callback (see `stream::bind_rtp`). A full send buffer drops the
//! rest of the batch (counted): the data plane never blocks.
//!
//! Commands ([`Relay::apply`], [`Relay::query`], shutdown) travel over a per-shard channel and wake
//! the shard through its waker; the shard runs them between poll rounds, so socket changes never
//! race with packet handling and a closed stream's token is never seen again.
//!
//! # Lock rules
//!
//! * Hot path (per packet): no lock, no allocation, no channel, no system call other than
//!   `recvmmsg`/`sendmmsg`/`sendto` (epoll) or one `io_uring_enter` per round (io_uring), and one
//!   `Instant::now()` per batch or round. Buffers are allocated when the
//!   shard starts; per-packet counts are plain fields.
//! * Per batch: the shard adds its counts to its own atomics (relaxed; one writer each), which
//!   [`Relay::totals`] sums.
//! * Per command: a channel send and a waker write from the caller's thread; the shard owns all call
//!   state, so the caller never waits for a lock the data plane holds.
//! * Events go to the [`EventSink`] from the shard thread, only when something changes (a latch, an
//!   inactivity report, a bind failure), never per packet.
//!
//! Only the `sys` and `uring` modules use `unsafe` code (system calls, and memory the kernel
//! shares); the rest of the crate denies it.
//!
//! # Packets
//!
//! Every datagram first passes the receiving side's latch (so NAT keep-alives latch too), then must
//! be version-2 RTP or RTCP (RFC 5761 §4 tells them apart on an RTP port): anything else — STUN,
//! DTLS, truncated or oversized datagrams — is dropped and counted as malformed. RTCP whose
//! compound structure cannot be walked (SRTCP's encrypted tail) is relayed untouched. No packet
//! content can make the relay panic; a property test feeds it arbitrary bytes.
//!
//! # Measured
//!
//! `cargo bench -p tandem-relay --bench throughput` drives one shard over loopback: about 3.5 µs of relay
//! thread CPU per packet on the 2-core development VM with batches of ~30, of which user space is
//! about 2 % and the loopback delivery into the receiving test socket (charged to the sending
//! thread, done by the NIC on a real network) about 60 %.

mod counters;
mod flow;
mod gather;
mod shard;
mod stream;
#[allow(unsafe_code)]
mod sys;
#[allow(unsafe_code)]
mod uring;

pub use counters::RelayTotals;

use counters::ShardCounters;
use shard::{Command, Shard, ShardSetup};
use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use tandem_media::latch::LatchPolicy;
use tandem_media::session::{CallKey, MediaCommand, MediaEvent, MediaSide};

/// Lets `socket` bind `addr` although this host may not hold it yet (`IP_FREEBIND` /
/// `IPV6_FREEBIND`): a node of an HA pair binds the service address (the VIP) before it owns it,
/// without `net.ipv4.ip_nonlocal_bind`. The relay does it for a standby's prepared sessions, the
/// SIP transport for the sockets on `ha.vip`; every other socket binds plainly, so a mistyped
/// address fails at once instead of binding where no packet ever comes.
pub fn set_free_bind(socket: &socket2::Socket, addr: SocketAddr) -> std::io::Result<()> {
    match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true),
        SocketAddr::V6(_) => socket.set_freebind_v6(true),
    }
}

/// How the relay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    /// Relay sockets bind here (the media address, or the virtual IP of an HA pair).
    pub address: IpAddr,
    /// Worker threads; 0 uses one per available CPU.
    pub shards: usize,
    /// Latch policy of caller-facing endpoints (phones, often behind NAT).
    pub caller_latch: LatchPolicy,
    /// Latch policy of server-facing endpoints (media servers: signalled IP only).
    pub server_latch: LatchPolicy,
    /// Report a side silent for this long with [`MediaEvent::Inactive`]; `None` never reports.
    pub inactivity_timeout: Option<Duration>,
    /// Packets per `recvmmsg`/`sendmmsg` call (1..=1024), with [`RelayIo::Epoll`].
    pub batch: usize,
    /// How shards wait for and move packets.
    pub io: RelayIo,
    /// With [`RelayIo::IoUring`], a shard receiving more than 10,000 datagrams a second waits up
    /// to this long to gather several before relaying them (fewer wake-ups, less CPU per packet,
    /// at most this much more latency); a quieter shard relays each datagram at once. Zero: never.
    pub batch_wait: Duration,
}

/// How a relay shard waits for and moves packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RelayIo {
    /// epoll readiness, then `recvmmsg` per ready socket and `sendto`/`sendmmsg` per destination
    /// socket.
    Epoll,
    /// io_uring (Linux 6.0 or later): a multishot receive per socket into a buffer pool the ring
    /// owns, sends queued from the same buffers, one `io_uring_enter` per round; about 15 % less
    /// CPU per packet than epoll (`benches/rtp-load.sh`). A shard whose ring cannot be set up
    /// (io_uring disabled, or refused by a container's seccomp profile) runs with epoll and says
    /// so.
    #[default]
    IoUring,
}

impl RelayConfig {
    /// Defaults for relaying on `address`: one shard per CPU, callers may latch from any IP,
    /// servers only from their signalled IP, no inactivity reports, io_uring (epoll batches of 32
    /// where it is refused).
    pub fn new(address: IpAddr) -> Self {
        Self {
            address,
            shards: 0,
            caller_latch: LatchPolicy {
                accept_any_ip: true,
                ..LatchPolicy::default()
            },
            server_latch: LatchPolicy::default(),
            inactivity_timeout: None,
            batch: 32,
            io: RelayIo::IoUring,
            batch_wait: Duration::from_millis(1),
        }
    }
}

/// Receives the relay's [`MediaEvent`]s, on shard threads: keep `send` short and non-blocking.
pub trait EventSink: Send + Sync + 'static {
    /// Handles one event.
    fn send(&self, event: MediaEvent);
}

impl<F: Fn(MediaEvent) + Send + Sync + 'static> EventSink for F {
    fn send(&self, event: MediaEvent) {
        self(event)
    }
}

/// Media statistics of one call, as [`Relay::query`] reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct CallMediaStats {
    /// The call.
    pub call: CallKey,
    /// One report per stream and side, in plan order, caller side first.
    pub streams: Vec<StreamReport>,
}

/// What one side of one stream sent and received.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamReport {
    /// The m-line index.
    pub index: u16,
    /// The side reported on.
    pub side: MediaSide,
    /// Tandem's RTP port facing this side.
    pub local_rtp_port: u16,
    /// Where the side said it receives RTP.
    pub signalled: Option<SocketAddr>,
    /// The RTP source the side latched to.
    pub latched: Option<SocketAddr>,
    /// RTP packets accepted from the side.
    pub packets_received: u64,
    /// Bytes of those packets.
    pub bytes_received: u64,
    /// Packets (RTP and RTCP) sent toward the side.
    pub packets_sent: u64,
    /// RTCP packets accepted from the side.
    pub rtcp_received: u64,
    /// Cumulative RTP packets lost from the side (negative with duplicates), RFC 3550.
    pub lost: i64,
    /// Interarrival jitter of the side's RTP, in milliseconds.
    pub jitter_ms: f64,
    /// Time since the side's latest accepted packet (RTP or RTCP), `None` if it never sent.
    pub last_packet_age: Option<Duration>,
    /// Packets from the side refused by its latches.
    pub stray_dropped: u64,
}

/// A reply to [`Relay::query`], called on the shard thread.
pub(crate) type QueryReply = Box<dyn FnOnce(Option<CallMediaStats>) + Send + 'static>;

/// One shard's thread and how to reach it.
struct ShardHandle {
    commands: mpsc::Sender<Command>,
    waker: Arc<mio::Waker>,
    counters: Arc<ShardCounters>,
    thread: Option<JoinHandle<()>>,
}

impl ShardHandle {
    fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            tracing::warn!("relay shard is gone; command dropped");
            return;
        }
        if let Err(error) = self.waker.wake() {
            tracing::warn!(%error, "relay shard could not be woken");
        }
    }
}

/// The running data plane. Dropping it stops and joins the shard threads, like [`Relay::shutdown`].
pub struct Relay {
    shards: Vec<ShardHandle>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Relay {
    /// Starts the shard threads. Fails if a poller or thread cannot be created.
    pub fn start(config: RelayConfig, sink: impl EventSink) -> std::io::Result<Relay> {
        let count = match config.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let sink: Arc<dyn EventSink> = Arc::new(sink);
        let mut relay = Relay {
            shards: Vec::with_capacity(count),
        };
        for number in 0..count {
            let poll = mio::Poll::new()?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), shard::WAKER)?);
            let (commands, inbox) = mpsc::channel();
            let counters = Arc::new(ShardCounters::default());
            let setup = ShardSetup {
                poll,
                inbox,
                sink: Arc::clone(&sink),
                counters: Arc::clone(&counters),
                config,
            };
            let thread = std::thread::Builder::new()
                .name(format!("tandem-relay-{number}"))
                .spawn(move || Shard::new(setup).run())?;
            relay.shards.push(ShardHandle {
                commands,
                waker,
                counters,
                thread: Some(thread),
            });
        }
        tracing::info!(address = %config.address, shards = count, batch = config.batch, io = ?config.io, "media relay started");
        Ok(relay)
    }

    /// Hands a command to the call's shard (`call % shards`); never blocks.
    pub fn apply(&self, command: MediaCommand) {
        let call = match &command {
            MediaCommand::Apply(plan) | MediaCommand::Prepare(plan) => plan.call,
            MediaCommand::Remove { call } => *call,
        };
        if let Some(shard) = self.shard(call) {
            shard.send(Command::Media(command));
        }
    }

    /// Asks the call's shard for its statistics; `reply` runs on the shard thread, with `None` for
    /// a call the relay does not know. Commands sent before are applied first.
    pub fn query(
        &self,
        call: CallKey,
        reply: impl FnOnce(Option<CallMediaStats>) + Send + 'static,
    ) {
        if let Some(shard) = self.shard(call) {
            shard.send(Command::Query(call, Box::new(reply)));
        }
    }

    /// Counters summed over the shards (each updated once per batch).
    pub fn totals(&self) -> RelayTotals {
        let mut totals = RelayTotals::default();
        for shard in &self.shards {
            totals.add(&shard.counters.load());
        }
        totals
    }

    /// How many shard threads run.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Stops the shard threads (closing every socket) and waits for them.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn shard(&self, call: CallKey) -> Option<&ShardHandle> {
        let count = self.shards.len() as u64;
        let index = call.checked_rem(count)?;
        self.shards.get(usize::try_from(index).ok()?)
    }

    fn stop(&mut self) {
        for shard in &self.shards {
            shard.send(Command::Stop);
        }
        for shard in &mut self.shards {
            if let Some(thread) = shard.thread.take() {
                if thread.join().is_err() {
                    tracing::error!("relay shard thread panicked");
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Relay>();
        shareable::<RelayTotals>();
        shareable::<CallMediaStats>();
    }
}
