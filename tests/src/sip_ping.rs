//! A tiny SIP OPTIONS pinger over UDP, to know when a SIP process is up (IPv4 or IPv6: it sends from
//! the loopback address of the target's family, and writes IPv6 references as `[::1]:port`).

use crate::IpFamily;
use anyhow::{bail, Result};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long one OPTIONS waits for its answer before it is sent again.
const RESEND: Duration = Duration::from_millis(200);

/// The OPTIONS request sent by [`ping`], from `local` to `target` (Request-URI without a user part).
fn options_request(target: SocketAddr, local: SocketAddr, seq: u32) -> String {
    let id = format!("{}-{seq}", std::process::id());
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-ping-{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:ping@{local}>;tag=ping-{id}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: ping-{id}@{local}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:ping@{local}>\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends OPTIONS to `target` (again every 200 ms) until a final response (status ≥ 200) arrives or
/// `deadline` passes; returns the response's status line.
pub fn ping(target: SocketAddr, deadline: Instant) -> Result<String> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let socket = UdpSocket::bind(IpFamily::of(target.ip()).addr(0))?;
    let local = socket.local_addr()?;
    let mut buf = [0u8; 65_535];
    while Instant::now() < deadline {
        let request = options_request(target, local, SEQ.fetch_add(1, Ordering::Relaxed));
        // a refused send (ICMP port unreachable from an earlier datagram) only means "not up yet"
        let _ = socket.send_to(request.as_bytes(), target);
        let resend_at = (Instant::now() + RESEND).min(deadline);
        while let Some(left) = resend_at
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        {
            socket.set_read_timeout(Some(left))?;
            let Ok((n, _)) = socket.recv_from(&mut buf) else {
                break;
            };
            let text = String::from_utf8_lossy(&buf[..n]);
            let status_line = text.lines().next().unwrap_or_default().to_owned();
            let code: u16 = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            if status_line.starts_with("SIP/2.0 ") && code >= 200 {
                return Ok(status_line);
            }
        }
    }
    bail!("no answer to SIP OPTIONS from {target}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// IPv6 references in the Request-URI, Via, From, To and Contact are bracketed (RFC 5118 §4.1).
    #[test]
    fn ipv6_options_uses_bracketed_references() {
        let request = options_request(
            "[::1]:5060".parse().unwrap(),
            "[::1]:40000".parse().unwrap(),
            7,
        );
        assert!(
            request.starts_with("OPTIONS sip:[::1]:5060 SIP/2.0\r\n"),
            "{request}"
        );
        assert!(
            request.contains("\r\nVia: SIP/2.0/UDP [::1]:40000;branch="),
            "{request}"
        );
        assert!(
            request.contains("\r\nTo: <sip:[::1]:5060>\r\n"),
            "{request}"
        );
        assert!(
            request.contains("\r\nContact: <sip:ping@[::1]:40000>\r\n"),
            "{request}"
        );
    }
}
