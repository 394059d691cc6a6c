//! Builders of RTP packets and RTCP compound packets for the continuity tests that look at the wire
//! format (`continuity_wire.rs`, `zero_alloc.rs`).
#![allow(clippy::unwrap_used, dead_code)]

use proptest::prelude::*;

/// An RTP packet: `first` is the first header byte (version, P, X, CC), `second` the marker bit and
/// payload type; `rest` follows the fixed header as it is.
pub fn rtp_raw(
    first: u8,
    second: u8,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    rest: &[u8],
) -> Vec<u8> {
    let mut packet = vec![first, second];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(rest);
    packet
}

/// A plain PCMA packet (version 2, no CSRC, no extension, no padding) with 160 bytes of payload.
pub fn pcma(ssrc: u32, sequence: u16, timestamp: u32) -> Vec<u8> {
    let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
    rtp_raw(0x80, 0x08, ssrc, sequence, timestamp, &payload)
}

/// An RTCP packet: version 2, padding bit `padded`, `count`, `packet_type`, and the length of `body`
/// (a multiple of 4, padding included).
pub fn rtcp_packet(padded: bool, count: u8, packet_type: u8, body: &[u8]) -> Vec<u8> {
    let words = u16::try_from(body.len() / 4).unwrap();
    let mut packet = vec![0x80 | if padded { 0x20 } else { 0 } | count, packet_type];
    packet.extend_from_slice(&words.to_be_bytes());
    packet.extend_from_slice(body);
    packet
}

/// One RTCP packet of a compound, described by its SSRCs and filler, so that the same packet can be
/// written with every SSRC field passed through a map (the expected result of a rewrite).
#[derive(Debug, Clone)]
pub enum Part {
    /// Sender report: sender SSRC, one report block per SSRC.
    Sr(u32, Vec<u32>),
    /// Receiver report: sender SSRC, one report block per SSRC.
    Rr(u32, Vec<u32>),
    /// SDES: one chunk per (SSRC, CNAME).
    Sdes(Vec<(u32, Vec<u8>)>),
    /// BYE: the SSRCs and an optional reason.
    Bye(Vec<u32>, Option<Vec<u8>>),
    /// APP: SSRC, name, 4 bytes of data.
    App(u32),
    /// Generic NACK (RTPFB, FMT 1): sender SSRC, media SSRC, one FCI entry.
    Nack(u32, u32),
    /// PLI (PSFB, FMT 1): sender SSRC, media SSRC.
    Pli(u32, u32),
    /// XR (left alone by the rewrite): sender SSRC and one report block naming an SSRC.
    Xr(u32, u32),
}

impl Part {
    /// The packet with each rewritten SSRC field passed through `map`.
    pub fn bytes(&self, map: &dyn Fn(u32) -> u32) -> Vec<u8> {
        let ssrc = |value: u32| map(value).to_be_bytes();
        match self {
            Part::Sr(sender, reports) | Part::Rr(sender, reports) => {
                let mut body = ssrc(*sender).to_vec();
                let packet_type = match self {
                    Part::Sr(..) => {
                        body.extend_from_slice(&[0x22; 20]);
                        200
                    }
                    _ => 201,
                };
                for &report in reports {
                    body.extend_from_slice(&ssrc(report));
                    body.extend_from_slice(&[0x11; 20]);
                }
                rtcp_packet(false, reports.len() as u8, packet_type, &body)
            }
            Part::Sdes(chunks) => {
                let mut body = Vec::new();
                for (source, cname) in chunks {
                    body.extend_from_slice(&ssrc(*source));
                    body.extend_from_slice(&[1, cname.len() as u8]);
                    body.extend_from_slice(cname);
                    body.push(0);
                    while !body.len().is_multiple_of(4) {
                        body.push(0);
                    }
                }
                rtcp_packet(false, chunks.len() as u8, 202, &body)
            }
            Part::Bye(sources, reason) => {
                let mut body: Vec<u8> = sources.iter().flat_map(|&s| ssrc(s)).collect();
                if let Some(reason) = reason {
                    body.push(reason.len() as u8);
                    body.extend_from_slice(reason);
                    while !body.len().is_multiple_of(4) {
                        body.push(0);
                    }
                }
                rtcp_packet(false, sources.len() as u8, 203, &body)
            }
            Part::App(source) => {
                let mut body = ssrc(*source).to_vec();
                body.extend_from_slice(b"TNDMdata");
                rtcp_packet(false, 3, 204, &body)
            }
            Part::Nack(sender, media) => {
                let mut body = ssrc(*sender).to_vec();
                body.extend_from_slice(&ssrc(*media));
                body.extend_from_slice(&[0x01, 0x02, 0x00, 0x05]);
                rtcp_packet(false, 1, 205, &body)
            }
            Part::Pli(sender, media) => {
                let mut body = ssrc(*sender).to_vec();
                body.extend_from_slice(&ssrc(*media));
                rtcp_packet(false, 1, 206, &body)
            }
            Part::Xr(sender, source) => {
                // Left alone: written unmapped.
                let mut body = sender.to_be_bytes().to_vec();
                body.extend_from_slice(&[4, 0, 0, 2]);
                body.extend_from_slice(&source.to_be_bytes());
                body.extend_from_slice(&[0x33; 4]);
                rtcp_packet(false, 0, 207, &body)
            }
        }
    }

    /// How many SSRC fields the rewrite touches.
    pub fn rewritten_fields(&self) -> usize {
        match self {
            Part::Sr(_, reports) | Part::Rr(_, reports) => 1 + reports.len(),
            Part::Sdes(chunks) => chunks.len(),
            Part::Bye(sources, _) => sources.len(),
            Part::App(_) => 1,
            Part::Nack(..) | Part::Pli(..) => 2,
            Part::Xr(..) => 0,
        }
    }
}

/// The compound packet of `parts`, each SSRC field passed through `map`.
pub fn compound(parts: &[Part], map: &dyn Fn(u32) -> u32) -> Vec<u8> {
    parts.iter().flat_map(|part| part.bytes(map)).collect()
}

/// Any [`Part`], with up to 31 report blocks, chunks or sources.
pub fn part() -> impl Strategy<Value = Part> {
    let ssrcs = || proptest::collection::vec(any::<u32>(), 0..32);
    let text = || proptest::collection::vec(1u8..=255, 0..40);
    prop_oneof![
        (any::<u32>(), ssrcs()).prop_map(|(s, r)| Part::Sr(s, r)),
        (any::<u32>(), ssrcs()).prop_map(|(s, r)| Part::Rr(s, r)),
        proptest::collection::vec((any::<u32>(), text()), 0..32).prop_map(Part::Sdes),
        (ssrcs(), proptest::option::of(text())).prop_map(|(s, r)| Part::Bye(s, r)),
        any::<u32>().prop_map(Part::App),
        (any::<u32>(), any::<u32>()).prop_map(|(s, m)| Part::Nack(s, m)),
        (any::<u32>(), any::<u32>()).prop_map(|(s, m)| Part::Pli(s, m)),
        (any::<u32>(), any::<u32>()).prop_map(|(s, m)| Part::Xr(s, m)),
    ]
}
