//! Counting RTP packets on a loopback port with tcpdump (needs root).
//!
//! SIPp sends a pcap's RTP from its media port through a raw socket and does not count what comes
//! back, so the echo is counted here: tcpdump writes every UDP packet to or from the port into a
//! pcap file (`-U --immediate-mode`, so each packet is on disk as soon as it is seen), and
//! [`RtpCapture::counts`] reads that file while tcpdump still runs.

use crate::process::{file_tail, wait_for, ChildGuard};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Packets seen on the captured port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketCounts {
    /// UDP packets whose source port is the captured port (what the SIPp side sent).
    pub sent: u64,
    /// UDP packets whose destination port is the captured port (what came back).
    pub received: u64,
}

/// A tcpdump capture of one UDP port on `lo`, stopped when dropped.
#[derive(Debug)]
pub struct RtpCapture {
    guard: ChildGuard,
    file: PathBuf,
    port: u16,
}

impl RtpCapture {
    /// Starts capturing UDP port `port` into `<dir>/rtp-<port>.pcap` and waits until tcpdump says it
    /// is listening.
    pub fn start(dir: &Path, port: u16) -> Result<RtpCapture> {
        let file = dir.join(format!("rtp-{port}.pcap"));
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
            .arg(format!("udp and port {port}"));
        let mut guard = ChildGuard::spawn(&format!("tcpdump-{port}"), command, dir, false)?;
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
        Ok(RtpCapture { guard, file, port })
    }

    /// Packets captured so far.
    pub fn counts(&self) -> Result<PacketCounts> {
        let bytes = std::fs::read(&self.file)?;
        Ok(count_udp_packets(&bytes, self.port))
    }

    /// Waits until at least `received` packets came back to the port (or `deadline`), then returns
    /// the counts.
    pub fn wait_received(&self, received: u64, deadline: Instant) -> Result<PacketCounts> {
        wait_for(deadline, || {
            self.counts().ok().filter(|c| c.received >= received)
        });
        self.counts()
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

/// Counts UDP-over-IPv4 packets from and to `port` in a pcap file (Ethernet link type, as tcpdump
/// writes for `lo`). A record cut short at the end of the file (still being written) is ignored.
pub fn count_udp_packets(pcap: &[u8], port: u16) -> PacketCounts {
    let mut counts = PacketCounts::default();
    let Some(magic) = pcap.get(..4) else {
        return counts;
    };
    let little_endian = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return counts,
    };
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
        if let Some((source, destination)) = udp_ports(frame) {
            counts.sent += u64::from(source == port);
            counts.received += u64::from(destination == port);
        }
    }
    counts
}

/// Source and destination port of an Ethernet + IPv4 + UDP frame.
fn udp_ports(frame: &[u8]) -> Option<(u16, u16)> {
    const ETHERNET_HEADER: usize = 14;
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(ETHERNET_HEADER..)?;
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let udp = ip.get(usize::from(ip[0] & 0x0f) * 4..)?;
    Some((
        u16::from_be_bytes([*udp.first()?, *udp.get(1)?]),
        u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frame(source: u16, destination: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        ip.extend(source.to_be_bytes());
        ip.extend(destination.to_be_bytes());
        ip.extend([0, 8, 0, 0]);
        f.extend(ip);
        f
    }

    #[test]
    fn counts_packets_by_direction_and_ignores_a_cut_record() {
        let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1];
        pcap.extend([0u8; 20]);
        for (s, d) in [(16000, 20001), (20001, 16000), (20001, 16000), (5060, 5070)] {
            let f = frame(s, d);
            pcap.extend([0u8; 8]);
            pcap.extend((f.len() as u32).to_le_bytes());
            pcap.extend((f.len() as u32).to_le_bytes());
            pcap.extend(f);
        }
        pcap.extend([0u8; 10]); // a record being written
        assert_eq!(
            count_udp_packets(&pcap, 16000),
            PacketCounts {
                sent: 1,
                received: 2
            }
        );
    }
}
