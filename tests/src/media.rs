//! Where a call's RTP went: through Tandem's relay ports, hop by hop, or straight between the
//! caller and the media server (what happens when Tandem does not anchor the media).

use crate::capture::RtpFlows;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;

/// The media ports of one call's three parties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPath {
    /// The caller's RTP port(s).
    pub caller: RangeInclusive<u16>,
    /// Tandem's relay range (`[media] port_min..=port_max`).
    pub tandem: RangeInclusive<u16>,
    /// The media server's RTP port(s) (a SIPp's media port, or an Asterisk's RTP range).
    pub server: RangeInclusive<u16>,
}

/// A call's RTP packets on each of the four hops through Tandem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayedRtp {
    /// Tandem's caller-facing address: where the caller's RTP went (the first, if several).
    pub caller_facing: Option<SocketAddr>,
    /// Tandem's server-facing address: where the server's RTP went (the first, if several).
    pub server_facing: Option<SocketAddr>,
    /// Caller → Tandem's caller-facing port.
    pub caller_to_tandem: u64,
    /// Tandem's server-facing port → the media server.
    pub tandem_to_server: u64,
    /// The media server → Tandem's server-facing port.
    pub server_to_tandem: u64,
    /// Tandem's caller-facing port → the caller.
    pub tandem_to_caller: u64,
}

impl RelayedRtp {
    /// The four counts, caller to caller.
    pub fn hops(&self) -> [u64; 4] {
        [
            self.caller_to_tandem,
            self.tandem_to_server,
            self.server_to_tandem,
            self.tandem_to_caller,
        ]
    }
}

impl fmt::Display for RelayedRtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "caller → Tandem {}, Tandem → server {}, server → Tandem {}, Tandem → caller {}",
            self.caller_to_tandem,
            self.tandem_to_server,
            self.server_to_tandem,
            self.tandem_to_caller
        )
    }
}

impl MediaPath {
    /// The packets of each hop through Tandem.
    pub fn relayed(&self, flows: &RtpFlows) -> RelayedRtp {
        let first_destination = |from: &RangeInclusive<u16>| {
            flows
                .matching(from, &self.tandem)
                .map(|((_, destination), _)| destination)
                .next()
        };
        RelayedRtp {
            caller_facing: first_destination(&self.caller),
            server_facing: first_destination(&self.server),
            caller_to_tandem: flows.count(&self.caller, &self.tandem),
            tandem_to_server: flows.count(&self.tandem, &self.server),
            server_to_tandem: flows.count(&self.server, &self.tandem),
            tandem_to_caller: flows.count(&self.tandem, &self.caller),
        }
    }

    /// The hop counts if the media went through Tandem: the caller sent RTP to Tandem, none went
    /// straight between the caller and the server, and toward each side Tandem sent from the one
    /// port that side sends to (symmetric RTP). Otherwise what is wrong, with every flow captured.
    pub fn check_anchored(&self, flows: &RtpFlows) -> Result<RelayedRtp, String> {
        let relayed = self.relayed(flows);
        let mut problems = Vec::new();
        let direct =
            flows.count(&self.caller, &self.server) + flows.count(&self.server, &self.caller);
        if direct > 0 {
            problems.push(format!(
                "{direct} RTP packets went straight between the caller (port {:?}) and the media server \
                 (port {:?}), not through Tandem's relay ports {:?}",
                self.caller, self.server, self.tandem
            ));
        }
        if relayed.caller_to_tandem == 0 {
            problems.push(format!(
                "the caller (port {:?}) sent no RTP to Tandem's relay ports {:?}",
                self.caller, self.tandem
            ));
        }
        for (side, ports) in [("caller", &self.caller), ("server", &self.server)] {
            let receiving = tandem_ports(flows.matching(ports, &self.tandem), |(_, d)| d);
            let sending = tandem_ports(flows.matching(&self.tandem, ports), |(s, _)| s);
            if receiving.len() > 1 || (!sending.is_empty() && sending != receiving) {
                problems.push(format!(
                    "toward the {side}, Tandem received RTP on {receiving:?} and sent from {sending:?} \
                     (expected one port, the same both ways)"
                ));
            }
        }
        if problems.is_empty() {
            return Ok(relayed);
        }
        Err(format!(
            "{}\n    RTP captured (source → destination: packets):\n      {}",
            problems.join("\n    "),
            flows.to_string().trim_end().replace('\n', "\n      ")
        ))
    }
}

/// `None` if the media address a peer received in its SDP (`got`, from its `message`) is Tandem's
/// relay address its RTP went to (`expected`); otherwise what differs.
pub fn sdp_mismatch(
    peer: &str,
    message: &str,
    got: Option<SocketAddr>,
    expected: Option<SocketAddr>,
) -> Option<String> {
    (got.is_none() || got != expected).then(|| {
        format!(
            "the {message} the {peer} received names media at {got:?}, but its RTP went to Tandem's {expected:?}"
        )
    })
}

fn tandem_ports(
    pairs: impl Iterator<Item = ((SocketAddr, SocketAddr), u64)>,
    tandem_end: impl Fn((SocketAddr, SocketAddr)) -> SocketAddr,
) -> BTreeSet<SocketAddr> {
    pairs.map(|(pair, _)| tandem_end(pair)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PATH: MediaPath = MediaPath {
        caller: 22000..=22000,
        tandem: 10000..=10199,
        server: 23000..=23000,
    };

    /// A pcap with `n` copies of each (source port, destination port) RTP packet, all on 127.0.0.1.
    fn flows(pairs: &[(u16, u16, u64)]) -> RtpFlows {
        let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1];
        pcap.extend([0u8; 20]);
        for &(source, destination, n) in pairs {
            let mut f = vec![0u8; 12];
            f.extend([0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 17, 0, 0]);
            f.extend([127, 0, 0, 1, 127, 0, 0, 1]);
            f.extend(source.to_be_bytes());
            f.extend(destination.to_be_bytes());
            f.extend([0, 20, 0, 0, 0x80, 8, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4]);
            for _ in 0..n {
                pcap.extend([0u8; 8]);
                pcap.extend((f.len() as u32).to_le_bytes());
                pcap.extend((f.len() as u32).to_le_bytes());
                pcap.extend(&f);
            }
        }
        RtpFlows::from_pcap(&pcap)
    }

    #[test]
    fn a_relayed_call_is_counted_hop_by_hop() {
        let relayed = PATH
            .check_anchored(&flows(&[
                (22000, 10000, 5),
                (10002, 23000, 5),
                (23000, 10002, 4),
                (10000, 22000, 4),
            ]))
            .unwrap();
        assert_eq!(relayed.hops(), [5, 5, 4, 4]);
    }

    #[test]
    fn media_straight_between_the_peers_is_not_anchored() {
        let error = PATH
            .check_anchored(&flows(&[(22000, 23000, 5), (23000, 22000, 5)]))
            .unwrap_err();
        assert!(error.contains("10 RTP packets went straight"), "{error}");
        assert!(error.contains("sent no RTP to Tandem"), "{error}");
        assert!(
            error.contains("127.0.0.1:22000 → 127.0.0.1:23000: 5"),
            "{error}"
        );
    }

    #[test]
    fn tandem_answering_from_another_port_is_not_symmetric() {
        let error = PATH
            .check_anchored(&flows(&[
                (22000, 10000, 5),
                (10002, 23000, 5),
                (23000, 10002, 5),
                (10004, 22000, 5),
            ]))
            .unwrap_err();
        assert!(error.contains("toward the caller"), "{error}");
        assert!(!error.contains("toward the server"), "{error}");
    }
}
