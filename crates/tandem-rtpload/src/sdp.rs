//! The SDP the generator offers and answers with, and reading a relay's media address back.
//!
//! Every body carries the stream's index as its `o=` session id, so that an SDP coming back
//! through a relay (which rewrites only addresses, ports and the `o=` version) still names its
//! stream even where the relay changed the Call-ID.

use std::net::{IpAddr, SocketAddrV4};

use tandem_sdp::Sdp;
use thiserror::Error;

/// Why a relay's SDP gives no usable media address.
#[derive(Debug, Error)]
pub enum SdpTargetError {
    /// The body is not SDP that tandem-sdp can index.
    #[error("unparsable SDP: {0}")]
    Parse(#[from] tandem_sdp::SdpError),
    /// No `m=` section.
    #[error("SDP has no media section")]
    NoMedia,
    /// The first media section is rejected (port 0).
    #[error("SDP media section is rejected (port 0)")]
    Rejected,
    /// The connection address is missing, not a literal or not IPv4.
    #[error("SDP connection address is missing or not IPv4")]
    NoIpv4,
    /// The `o=` session id is not one of ours.
    #[error("SDP o= session id is not a stream index")]
    NoStream,
}

/// The body offered or answered for stream `stream`, whose RTP socket is `addr`: one PCMU audio
/// section, 20 ms packets.
pub fn body(stream: u32, addr: SocketAddrV4) -> String {
    let ip = addr.ip();
    let port = addr.port();
    format!(
        "v=0\r\no=rtpload {stream} 1 IN IP4 {ip}\r\ns=rtpload\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// Where a body says to send RTP: the first media section's port at its effective `c=` address.
pub fn media_target(body: &[u8]) -> Result<SocketAddrV4, SdpTargetError> {
    let sdp = Sdp::parse(body)?;
    let media = sdp.media().first().ok_or(SdpTargetError::NoMedia)?;
    if media.is_rejected() {
        return Err(SdpTargetError::Rejected);
    }
    match sdp.effective_connection(0).and_then(|c| c.ip) {
        Some(IpAddr::V4(ip)) => Ok(SocketAddrV4::new(ip, media.port)),
        _ => Err(SdpTargetError::NoIpv4),
    }
}

/// The stream index a body names in its `o=` session id.
pub fn stream_of(body: &[u8]) -> Result<u32, SdpTargetError> {
    let sdp = Sdp::parse(body)?;
    let origin = sdp
        .lines()
        .iter()
        .find(|line| line.kind == b'o')
        .ok_or(SdpTargetError::NoStream)?;
    let session_id = origin
        .value
        .split(|&b| b == b' ')
        .filter(|token| !token.is_empty())
        .nth(1)
        .ok_or(SdpTargetError::NoStream)?;
    std::str::from_utf8(session_id)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(SdpTargetError::NoStream)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn own_body_round_trips() {
        let addr: SocketAddrV4 = "127.0.0.1:40002".parse().unwrap();
        let b = body(17, addr);
        assert_eq!(media_target(b.as_bytes()).unwrap(), addr);
        assert_eq!(stream_of(b.as_bytes()).unwrap(), 17);
    }

    #[test]
    fn media_level_connection_wins() {
        let b = "v=0\r\no=- 5 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                 m=audio 30010 RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\n";
        assert_eq!(
            media_target(b.as_bytes()).unwrap(),
            "127.0.0.1:30010".parse().unwrap()
        );
        assert_eq!(stream_of(b.as_bytes()).unwrap(), 5);
        let rejected = b.replace("30010", "0");
        assert!(matches!(
            media_target(rejected.as_bytes()),
            Err(SdpTargetError::Rejected)
        ));
    }
}
