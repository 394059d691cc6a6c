//! The RTP blaster: paced `sendmmsg` of G.711-sized RTP both ways on every stream, `recvmmsg` of
//! what the relay forwards, loss and latency counted with no allocation per packet.
//!
//! Pacing: the flows (stream × direction) are visited round-robin in a fixed order, and the number
//! of packets due is `elapsed × total rate`, so every flow sends at the per-stream rate with an even
//! phase spread. The order groups flows by sending socket, so consecutive packets share a socket and
//! go out in one `sendmmsg`.
//!
//! Each packet carries, after its 12-byte RTP header: a magic, its stream, direction, step number
//! and the CLOCK_REALTIME nanoseconds when its batch was sent. Latency is the kernel's receive
//! timestamp (`SO_TIMESTAMPNS`, taken when the relay's send enqueues the packet on loopback) minus
//! that send time, so the generator's own wake-up delay on receive does not count.

use std::net::{SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::backend::{Backend, Session};
use crate::histogram::Histogram;
use crate::sys::{self, RecvBatch, SendBatch};

/// RTP header length.
const RTP_HEADER: usize = 12;
/// Smallest payload that holds the generator's fields.
pub const MIN_PAYLOAD: usize = 20;
const MAGIC: &[u8; 4] = b"RTPL";
/// Most packets sent in one loop turn before receiving again.
const MAX_BURST: u64 = 1024;
/// `recvmmsg` calls per socket in one loop turn.
const MAX_RECV_CALLS: usize = 32;
/// How often signalling is serviced while media runs.
const SERVICE_EVERY: Duration = Duration::from_millis(20);

/// One direction of one stream.
#[derive(Debug, Clone, Copy)]
struct Flow {
    dest: SocketAddrV4,
    socket: u16,
    stream: u32,
    direction: u8,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
}

/// Parameters of one step.
#[derive(Debug, Clone, Copy)]
pub struct StepPlan {
    /// Step number written in the packets (late packets of an earlier step are not counted).
    pub step: u16,
    /// Packets per second per flow (each stream has two flows).
    pub rate: f64,
    /// Sending time.
    pub duration: Duration,
    /// Longest wait after sending for packets still in flight.
    pub drain: Duration,
    /// Most packets per `sendmmsg`.
    pub batch: usize,
    /// Sleep when caught up with the schedule.
    pub tick: Duration,
}

/// What one step measured.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Packets sent per direction.
    pub sent: [u64; 2],
    /// Packets of this step received per direction.
    pub received: [u64; 2],
    /// Packets of an earlier step received during this one.
    pub stale: u64,
    /// Datagrams that were not the generator's packets.
    pub foreign: u64,
    /// Packets with no kernel timestamp (latency taken at user-space receive instead).
    pub unstamped: u64,
    /// Time spent sending (the step's duration, unless the generator fell behind).
    pub send_time: Duration,
    /// Packets that were due but not sent by the end (the generator could not keep up).
    pub behind: u64,
    /// `sendmmsg` calls that failed, or sent only part of the batch (socket buffer full).
    pub send_stalls: u64,
    /// The last error `sendmmsg` returned, if any.
    pub send_error: Option<std::io::ErrorKind>,
    /// One-way latency, send to relay's send, microseconds.
    pub latency: Histogram,
}

impl StepReport {
    /// Packets sent in both directions.
    pub fn sent_total(&self) -> u64 {
        self.sent[0] + self.sent[1]
    }

    /// Packets received in both directions.
    pub fn received_total(&self) -> u64 {
        self.received[0] + self.received[1]
    }

    /// Lost share of the sent packets of direction `d` (or of both with `None`), percent.
    pub fn loss_pct(&self, d: Option<usize>) -> f64 {
        let (sent, received) = match d {
            Some(d) => (self.sent[d], self.received[d]),
            None => (self.sent_total(), self.received_total()),
        };
        if sent == 0 {
            return 0.0;
        }
        sent.saturating_sub(received) as f64 * 100.0 / sent as f64
    }
}

/// The generator's RTP sockets and flows.
#[derive(Debug)]
pub struct Blaster {
    sockets: Vec<UdpSocket>,
    flows: Vec<Flow>,
    order: Vec<u32>,
    streams: u32,
    send: SendBatch,
    recv: RecvBatch,
    payload: usize,
}

/// Binds `per_side` RTP sockets for side A and as many for side B on `ip`, non-blocking, with large
/// buffers and kernel receive timestamps. Side A's sockets come first.
pub fn bind_sockets(ip: std::net::Ipv4Addr, per_side: usize) -> anyhow::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(per_side * 2);
    for _ in 0..per_side * 2 {
        let socket = UdpSocket::bind(SocketAddrV4::new(ip, 0))?;
        socket.set_nonblocking(true)?;
        sys::set_buffers(&socket, 16 << 20)?;
        sys::enable_rx_timestamps(&socket)?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// The socket index serving stream `stream` on side A (`b_side` false) or B.
pub fn socket_index(stream: usize, per_side: usize, b_side: bool) -> usize {
    stream % per_side + if b_side { per_side } else { 0 }
}

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Blaster {
    /// A blaster over `sockets` (from [`bind_sockets`]) for the established `sessions` (indexed by
    /// stream; `None` entries get no flows), with `payload` bytes of RTP payload per packet.
    pub fn new(sockets: Vec<UdpSocket>, sessions: &[Option<Session>], payload: usize) -> Blaster {
        let per_side = sockets.len() / 2;
        let mut flows = Vec::with_capacity(sessions.len() * 2);
        for direction in 0..2u8 {
            for (stream, session) in sessions.iter().enumerate() {
                let Some(session) = session else { continue };
                let b_side = direction == 1;
                flows.push(Flow {
                    dest: if b_side {
                        session.b_sends_to
                    } else {
                        session.a_sends_to
                    },
                    socket: socket_index(stream, per_side, b_side) as u16,
                    stream: stream as u32,
                    direction,
                    ssrc: 0x5000_0000 | ((stream as u32) << 1) | u32::from(direction),
                    seq: (stream as u16).wrapping_mul(7919),
                    timestamp: (stream as u32).wrapping_mul(104_729),
                });
            }
        }
        // Round-robin order grouped by sending socket: long runs per socket, one sendmmsg each.
        let mut order: Vec<u32> = (0..flows.len() as u32).collect();
        order.sort_by_key(|&i| (flows[i as usize].socket, flows[i as usize].stream));
        let payload = payload.max(MIN_PAYLOAD);
        let mut template = vec![0xFFu8; RTP_HEADER + payload]; // PCMU silence
        template[0] = 0x80;
        template[RTP_HEADER..RTP_HEADER + 4].copy_from_slice(MAGIC);
        Blaster {
            sockets,
            flows,
            order,
            streams: sessions.len() as u32,
            send: SendBatch::new(&template),
            recv: RecvBatch::default(),
            payload,
        }
    }

    /// Flows (stream × direction) that send.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Bytes per packet on the wire (RTP header and payload).
    pub fn packet_len(&self) -> usize {
        RTP_HEADER + self.payload
    }

    /// Runs one step: sends at `plan.rate` per flow for `plan.duration` while receiving, then
    /// receives until everything sent came back or `plan.drain` passed. `backend.service()` runs
    /// every 20 ms.
    pub fn run_step(&mut self, plan: &StepPlan, backend: &mut dyn Backend) -> StepReport {
        let mut report = StepReport {
            sent: [0; 2],
            received: [0; 2],
            stale: 0,
            foreign: 0,
            unstamped: 0,
            send_time: Duration::ZERO,
            behind: 0,
            send_stalls: 0,
            send_error: None,
            latency: Histogram::default(),
        };
        if self.flows.is_empty() {
            return report;
        }
        let total_rate = plan.rate * self.flows.len() as f64;
        let batch = plan.batch.clamp(1, sys::MAX_BATCH);
        let start = Instant::now();
        let mut next_service = start + SERVICE_EVERY;
        let mut cursor: u64 = 0;
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(start);
            if elapsed >= plan.duration {
                // The packets that fell due since the last turn, then what is still missing.
                let due = (plan.duration.as_secs_f64() * total_rate) as u64;
                let target = due.min(cursor + MAX_BURST);
                cursor = self.send_until(cursor, target, batch, plan.step, &mut report);
                report.behind = due.saturating_sub(cursor);
                break;
            }
            let due = (elapsed.as_secs_f64() * total_rate) as u64;
            let target = due.min(cursor + MAX_BURST);
            cursor = self.send_until(cursor, target, batch, plan.step, &mut report);
            self.receive(plan.step, &mut report);
            if now >= next_service {
                backend.service();
                next_service = now + SERVICE_EVERY;
            }
            if cursor >= due {
                std::thread::sleep(plan.tick);
            }
        }
        report.send_time = start.elapsed();
        let drain_end = Instant::now() + plan.drain;
        while Instant::now() < drain_end && report.received_total() < report.sent_total() {
            self.receive(plan.step, &mut report);
            std::thread::sleep(plan.tick);
        }
        self.receive(plan.step, &mut report);
        report
    }

    /// Sends packets number `cursor..target` of the round-robin; returns the new cursor (short of
    /// `target` when a socket buffer was full).
    fn send_until(
        &mut self,
        mut cursor: u64,
        target: u64,
        batch_max: usize,
        step: u16,
        report: &mut StepReport,
    ) -> u64 {
        let cycle = self.order.len() as u64;
        while cursor < target {
            self.send.clear();
            let first = self.order[(cursor % cycle) as usize] as usize;
            let socket = self.flows[first].socket;
            let sent_ns = realtime_ns().to_le_bytes();
            let mut n = 0u64;
            while cursor + n < target && self.send.len() < batch_max {
                let index = self.order[((cursor + n) % cycle) as usize] as usize;
                let flow = &self.flows[index];
                if flow.socket != socket {
                    break;
                }
                let Some(buf) = self.send.push(flow.dest) else {
                    break;
                };
                buf[1] = 0; // payload type 0 (PCMU), no marker
                buf[2..4].copy_from_slice(&flow.seq.to_be_bytes());
                buf[4..8].copy_from_slice(&flow.timestamp.to_be_bytes());
                buf[8..12].copy_from_slice(&flow.ssrc.to_be_bytes());
                let p = &mut buf[RTP_HEADER..];
                p[4..8].copy_from_slice(&flow.stream.to_le_bytes());
                p[8] = flow.direction;
                p[10..12].copy_from_slice(&step.to_le_bytes());
                p[12..20].copy_from_slice(&sent_ns);
                n += 1;
            }
            let sent = match sys::send_batch(&self.sockets[usize::from(socket)], &self.send) {
                Ok(sent) => sent as u64,
                Err(e) => {
                    report.send_error = Some(e.kind());
                    0
                }
            };
            for k in 0..sent {
                let index = self.order[((cursor + k) % cycle) as usize] as usize;
                let flow = &mut self.flows[index];
                flow.seq = flow.seq.wrapping_add(1);
                flow.timestamp = flow.timestamp.wrapping_add(160);
                report.sent[usize::from(flow.direction)] += 1;
            }
            cursor += sent;
            if sent < n {
                report.send_stalls += 1;
                break; // socket buffer full: try again next turn
            }
        }
        cursor
    }

    /// Receives everything waiting on every socket.
    fn receive(&mut self, step: u16, report: &mut StepReport) {
        for socket in 0..self.sockets.len() {
            for _ in 0..MAX_RECV_CALLS {
                let got = sys::recv_batch(&self.sockets[socket], &mut self.recv).unwrap_or(0);
                if got == 0 {
                    break;
                }
                let now_ns = realtime_ns();
                for i in 0..got {
                    let Some((packet, stamp)) = self.recv.get(i) else {
                        break;
                    };
                    Self::count(packet, stamp, now_ns, step, self.streams, report);
                }
                if got < sys::MAX_BATCH {
                    break;
                }
            }
        }
    }

    fn count(
        packet: &[u8],
        stamp: Option<u64>,
        now_ns: u64,
        step: u16,
        streams: u32,
        report: &mut StepReport,
    ) {
        let valid = packet.len() >= RTP_HEADER + MIN_PAYLOAD
            && packet[0] & 0xC0 == 0x80
            && &packet[RTP_HEADER..RTP_HEADER + 4] == MAGIC;
        if !valid {
            report.foreign += 1;
            return;
        }
        let p = &packet[RTP_HEADER..];
        let stream = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
        let direction = usize::from(p[8]);
        if stream >= streams || direction > 1 {
            report.foreign += 1;
            return;
        }
        if u16::from_le_bytes([p[10], p[11]]) != step {
            report.stale += 1;
            return;
        }
        let sent_ns = u64::from_le_bytes([p[12], p[13], p[14], p[15], p[16], p[17], p[18], p[19]]);
        let received_ns = match stamp {
            Some(ns) => ns,
            None => {
                report.unstamped += 1;
                now_ns
            }
        };
        report.received[direction] += 1;
        report
            .latency
            .record(received_ns.saturating_sub(sent_ns) / 1000);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backend::{Direct, Endpoints};
    use std::net::Ipv4Addr;

    #[test]
    fn direct_loopback_step_loses_nothing() {
        let per_side = 2;
        let sockets = bind_sockets(Ipv4Addr::LOCALHOST, per_side).unwrap();
        let addr = |i: usize| match sockets[i].local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(_) => panic!("IPv4 socket expected"),
        };
        let endpoints: Vec<Endpoints> = (0..10)
            .map(|s| Endpoints {
                a: addr(socket_index(s, per_side, false)),
                b: addr(socket_index(s, per_side, true)),
            })
            .collect();
        let mut backend = Direct::default();
        let outcome = backend
            .setup(&endpoints, 1000, Instant::now() + Duration::from_secs(1))
            .unwrap();
        let mut blaster = Blaster::new(sockets, &outcome.sessions, 160);
        assert_eq!(blaster.flows(), 20);
        assert_eq!(blaster.packet_len(), 172);
        let plan = StepPlan {
            step: 1,
            rate: 50.0,
            duration: Duration::from_millis(300),
            drain: Duration::from_millis(500),
            batch: 16,
            tick: Duration::from_micros(200),
        };
        let report = blaster.run_step(&plan, &mut backend);
        assert!(report.sent_total() >= 250, "{report:?}");
        assert_eq!(report.received_total(), report.sent_total());
        assert!(report.sent[0].abs_diff(report.sent[1]) <= 20, "{report:?}");
        assert_eq!(report.foreign + report.stale, 0);
        assert_eq!(report.latency.count(), report.received_total());
    }
}
