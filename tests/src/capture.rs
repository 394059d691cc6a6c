//! Counting RTP packets on loopback ports with tcpdump (needs root).
//!
//! SIPp sends a pcap's RTP from its media port through a raw socket and does not count what comes
//! back, and a relay in the middle only shows in the addresses packets carry, so RTP is counted
//! here: tcpdump writes every UDP packet to or from the captured ports into a pcap file (`-U
//! --immediate-mode`, so each packet is on disk as soon as it is seen), and [`RtpCapture::flows`]
//! reads that file while tcpdump still runs and counts the RTP packets per source and destination.

use crate::process::{file_tail, wait_for, ChildGuard};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tcpdump capture of UDP ports on `lo`, stopped when dropped.
#[derive(Debug)]
pub struct RtpCapture {
    guard: ChildGuard,
    file: PathBuf,
}

impl RtpCapture {
    /// Starts capturing UDP packets from or to any of `ports` into `<dir>/<name>.pcap` and waits
    /// until tcpdump says it is listening.
    pub fn start(dir: &Path, name: &str, ports: &[RangeInclusive<u16>]) -> Result<RtpCapture> {
        let file = dir.join(format!("{name}.pcap"));
        let filter = ports
            .iter()
            .map(|range| {
                if range.start() == range.end() {
                    format!("port {}", range.start())
                } else {
                    format!("portrange {}-{}", range.start(), range.end())
                }
            })
            .collect::<Vec<_>>()
            .join(" or ");
        let mut command = Command::new("tcpdump");
        command
            .args([
                "-i",
                "lo",
                "-n",
                "-U",
                "--immediate-mode",
                "-s",
                "128",
                "-w",
            ])
            .arg(&file)
            .arg(format!("udp and ({filter})"));
        let mut guard = ChildGuard::spawn(&format!("tcpdump-{name}"), command, dir, false)?;
        wait_until_capturing(&mut guard)?;
        Ok(RtpCapture { guard, file })
    }

    /// RTP packets captured so far.
    pub fn flows(&self) -> Result<RtpFlows> {
        Ok(RtpFlows::from_pcap(&std::fs::read(&self.file)?))
    }

    /// Waits until `done` holds for the packets captured so far (or `deadline`), then returns them.
    pub fn wait_until(
        &self,
        deadline: Instant,
        mut done: impl FnMut(&RtpFlows) -> bool,
    ) -> Result<RtpFlows> {
        wait_for(deadline, || self.flows().ok().filter(|f| done(f)));
        self.flows()
    }

    /// Waits until no new packet has been captured for `quiet` (or `deadline`): the media of a call
    /// is over. Returns the packets.
    pub fn wait_quiet(&self, quiet: Duration, deadline: Instant) -> Result<RtpFlows> {
        let mut last = (self.flows()?.total(), Instant::now());
        wait_for(deadline, || {
            let total = self.flows().ok()?.total();
            if total != last.0 {
                last = (total, Instant::now());
            }
            (last.1.elapsed() >= quiet).then_some(())
        });
        self.flows()
    }

    /// The pcap file.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl Drop for RtpCapture {
    fn drop(&mut self) {
        let _ = self.guard.signal("INT");
        let _ = self
            .guard
            .wait_until(Instant::now() + Duration::from_secs(2));
    }
}

/// RTP packets (UDP, version 2, not RTCP) counted per source and destination address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtpFlows {
    packets: BTreeMap<(SocketAddr, SocketAddr), u64>,
}

impl RtpFlows {
    /// Counts the RTP packets in a pcap file written by tcpdump on `lo` (Ethernet link type; IPv4
    /// and IPv6). A record cut short at the end of the file (still being written) is ignored.
    pub fn from_pcap(pcap: &[u8]) -> RtpFlows {
        let mut flows = RtpFlows::default();
        for_each_datagram(pcap, |_, source, destination, payload| {
            if is_rtp(payload) {
                *flows.packets.entry((source, destination)).or_default() += 1;
            }
        });
        flows
    }

    /// RTP packets from a source port in `from` to a destination port in `to`.
    pub fn count(&self, from: &RangeInclusive<u16>, to: &RangeInclusive<u16>) -> u64 {
        self.matching(from, to).map(|(_, n)| n).sum()
    }

    /// The (source, destination) pairs from a port in `from` to a port in `to`, with their packets.
    pub fn matching<'a>(
        &'a self,
        from: &'a RangeInclusive<u16>,
        to: &'a RangeInclusive<u16>,
    ) -> impl Iterator<Item = ((SocketAddr, SocketAddr), u64)> + 'a {
        self.packets
            .iter()
            .filter(|((s, d), _)| from.contains(&s.port()) && to.contains(&d.port()))
            .map(|(pair, n)| (*pair, *n))
    }

    /// RTP packets sent to `destination` (any source).
    pub fn received_by(&self, destination: SocketAddr) -> u64 {
        self.packets
            .iter()
            .filter(|((_, d), _)| *d == destination)
            .map(|(_, n)| n)
            .sum()
    }

    /// RTP packets sent from `source` (any destination).
    pub fn sent_by(&self, source: SocketAddr) -> u64 {
        self.packets
            .iter()
            .filter(|((s, _), _)| *s == source)
            .map(|(_, n)| n)
            .sum()
    }

    /// All RTP packets.
    pub fn total(&self) -> u64 {
        self.packets.values().sum()
    }
}

/// One line per (source, destination): `127.0.0.1:22004 → 127.0.0.1:10000: 236`.
impl fmt::Display for RtpFlows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.packets.is_empty() {
            return f.write_str("no RTP captured");
        }
        for ((source, destination), n) in &self.packets {
            writeln!(f, "{source} → {destination}: {n}")?;
        }
        Ok(())
    }
}

/// Waits (5 s at most) until the tcpdump in `guard` says it is listening, so that nothing sent
/// after this returns escapes the capture.
pub(crate) fn wait_until_capturing(guard: &mut ChildGuard) -> Result<()> {
    let stderr = guard.stderr_log().to_path_buf();
    let listening = wait_for(Instant::now() + Duration::from_secs(5), || {
        if !guard.is_running() {
            return Some(false);
        }
        std::fs::read_to_string(&stderr)
            .ok()
            .filter(|t| t.contains("listening on"))
            .map(|_| true)
    });
    if listening != Some(true) {
        bail!("tcpdump did not start capturing: {}", file_tail(&stderr, 5));
    }
    Ok(())
}

/// RTP version 2 with a full fixed header, and not RTCP (RFC 5761 §4: packet types 192–223).
fn is_rtp(payload: &[u8]) -> bool {
    payload.len() >= 12 && payload[0] >> 6 == 2 && !(192..=223).contains(&payload[1])
}

/// Calls `each(time, source, destination, udp_payload)` for every UDP datagram in a pcap file
/// (Ethernet link type, as tcpdump writes for `lo` and veth interfaces); `time` is the capture
/// time in Unix seconds. A record cut short at the end (still being written) is skipped.
pub(crate) fn for_each_datagram(
    pcap: &[u8],
    mut each: impl FnMut(f64, SocketAddr, SocketAddr, &[u8]),
) {
    let Some(magic) = pcap.get(..4) else {
        return;
    };
    // (little endian, fraction of a second in nanoseconds rather than microseconds)
    let (little_endian, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => return,
    };
    let fraction = if nanos { 1e-9 } else { 1e-6 };
    let read_u32 = |b: &[u8]| {
        let bytes = [b[0], b[1], b[2], b[3]];
        if little_endian {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    let mut at = 24;
    while let Some(record_header) = pcap.get(at..at + 16) {
        let captured = read_u32(&record_header[8..12]) as usize;
        let Some(frame) = pcap.get(at + 16..at + 16 + captured) else {
            break;
        };
        at += 16 + captured;
        if let Some((source, destination, payload)) = udp_datagram(frame) {
            let time = f64::from(read_u32(&record_header[..4]))
                + f64::from(read_u32(&record_header[4..8])) * fraction;
            each(time, source, destination, payload);
        }
    }
}

/// Source, destination and (captured part of the) payload of an Ethernet + IPv4/IPv6 + UDP frame.
fn udp_datagram(frame: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    const ETHERNET_HEADER: usize = 14;
    let ip = frame.get(ETHERNET_HEADER..)?;
    let (source, destination, udp): (IpAddr, IpAddr, &[u8]) = match frame.get(12..14)? {
        [0x08, 0x00] => {
            if ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
                return None;
            }
            let octets = |at: usize| -> Option<Ipv4Addr> {
                let b: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
                Some(Ipv4Addr::from(b))
            };
            let udp = ip.get(usize::from(ip[0] & 0x0f) * 4..)?;
            (octets(12)?.into(), octets(16)?.into(), udp)
        }
        [0x86, 0xdd] => {
            // no extension headers on loopback test traffic
            if ip.first()? >> 4 != 6 || *ip.get(6)? != 17 {
                return None;
            }
            let octets = |at: usize| -> Option<Ipv6Addr> {
                let b: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
                Some(Ipv6Addr::from(b))
            };
            (octets(8)?.into(), octets(24)?.into(), ip.get(40..)?)
        }
        _ => return None,
    };
    let port = |at: usize| Some(u16::from_be_bytes([*udp.get(at)?, *udp.get(at + 1)?]));
    Some((
        SocketAddr::new(source, port(0)?),
        SocketAddr::new(destination, port(2)?),
        udp.get(8..)?,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const RTP: [u8; 12] = [0x80, 0x08, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
    const RTCP: [u8; 8] = [0x80, 200, 0, 6, 1, 2, 3, 4];

    fn ipv4_frame(source: u16, destination: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00]);
        f.extend([
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2,
        ]);
        f.extend(source.to_be_bytes());
        f.extend(destination.to_be_bytes());
        f.extend([0, 8, 0, 0]);
        f.extend(payload);
        f
    }

    fn ipv6_frame(source: u16, destination: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x86, 0xdd]);
        f.extend([0x60, 0, 0, 0, 0, 8, 17, 64]);
        f.extend(Ipv6Addr::LOCALHOST.octets());
        f.extend(Ipv6Addr::LOCALHOST.octets());
        f.extend(source.to_be_bytes());
        f.extend(destination.to_be_bytes());
        f.extend([0, 8, 0, 0]);
        f.extend(payload);
        f
    }

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1];
        pcap.extend([0u8; 20]);
        for f in frames {
            pcap.extend([0u8; 8]);
            pcap.extend((f.len() as u32).to_le_bytes());
            pcap.extend((f.len() as u32).to_le_bytes());
            pcap.extend(f);
        }
        pcap
    }

    #[test]
    fn datagrams_carry_their_capture_time() {
        let mut file = pcap(&[ipv4_frame(16000, 10000, &RTP)]);
        file[24..32].copy_from_slice(&[0x10, 0, 0, 0, 0x20, 0xa1, 0x07, 0]); // 16 s + 500,000 us
        let mut seen = Vec::new();
        for_each_datagram(&file, |time, source, _, _| seen.push((time, source.port())));
        assert_eq!(seen, [(16.5, 16000)]);
        file[..4].copy_from_slice(&[0x4d, 0x3c, 0xb2, 0xa1]); // the same fraction in nanoseconds
        seen.clear();
        for_each_datagram(&file, |time, _, _, _| seen.push((time, 0)));
        assert!((seen[0].0 - 16.0005).abs() < 1e-9);
    }

    #[test]
    fn counts_rtp_by_source_and_destination_and_ignores_rtcp_sip_and_a_cut_record() {
        let mut file = pcap(&[
            ipv4_frame(16000, 10000, &RTP),
            ipv4_frame(10000, 16000, &RTP),
            ipv4_frame(10000, 16000, &RTP),
            ipv4_frame(16001, 10001, &RTCP),
            ipv4_frame(5060, 5070, b"INVITE sip:100@127.0.0.1 SIP/2.0"),
            ipv6_frame(16000, 10002, &RTP),
        ]);
        file.extend([0u8; 10]); // a record being written
        let flows = RtpFlows::from_pcap(&file);
        let v4 = |ip: u8, port: u16| SocketAddr::from(([127, 0, 0, ip], port));
        let v6 = |port: u16| SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port);
        assert_eq!(flows.total(), 4);
        assert_eq!(flows.count(&(16000..=16000), &(10000..=10199)), 2);
        assert_eq!(flows.count(&(10000..=10199), &(16000..=16000)), 2);
        assert_eq!(flows.received_by(v4(1, 16000)), 0);
        assert_eq!(flows.received_by(v4(2, 16000)), 2);
        assert_eq!(flows.sent_by(v4(1, 10000)), 2);
        assert_eq!(flows.received_by(v6(10002)), 1);
        assert_eq!(
            flows.to_string(),
            "127.0.0.1:10000 → 127.0.0.2:16000: 2\n127.0.0.1:16000 → 127.0.0.2:10000: 1\n\
             [::1]:16000 → [::1]:10002: 1\n"
        );
    }
}
