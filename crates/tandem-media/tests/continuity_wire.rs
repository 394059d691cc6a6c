//! Continuity on the wire format as `rtp-types` and `rtcp-types` parse it: RTP packets with CSRCs,
//! extensions and padding (well-formed or not), every RTCP packet type whose SSRCs are rewritten,
//! and the malformed RTCP that `rtcp-types` refuses.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use support::*;
use tandem_media::continuity::{
    rewrite_rtcp_ssrcs, ContinuityConfig, OutboundStream, Rewrite, RtcpError, RtpError,
    RtpHeaderFields,
};

/// The fixed header read byte by byte, as RFC 3550 §5.1 lays it out.
fn reference_fields(packet: &[u8]) -> Result<RtpHeaderFields, RtpError> {
    let be32 = |at: usize| u32::from_be_bytes(packet[at..at + 4].try_into().unwrap());
    if packet.len() < 12 {
        return Err(RtpError::TooShort { len: packet.len() });
    }
    if packet[0] >> 6 != 2 {
        return Err(RtpError::UnsupportedVersion {
            version: packet[0] >> 6,
        });
    }
    Ok(RtpHeaderFields {
        ssrc: be32(8),
        sequence: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: be32(4),
        marker: packet[1] & 0x80 != 0,
    })
}

/// Sends `packet` (SSRC 0xb, sequence 7, timestamp 42) after a first source 0xa stopped at sequence
/// 100, timestamp 1000, and checks that only the fixed header fields changed.
fn assert_switch_rewrites_the_fixed_header_only(mut packet: Vec<u8>) {
    let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    let now = Instant::now();
    stream
        .rewrite_packet(now, &mut pcma(0xa, 100, 1000))
        .unwrap();
    let original = packet.clone();
    let later = now + Duration::from_millis(20);
    assert_eq!(
        stream.rewrite_packet(later, &mut packet),
        Ok(Rewrite::Reanchored)
    );
    assert_eq!(
        RtpHeaderFields::read(&packet),
        Ok(RtpHeaderFields {
            ssrc: 0xa,
            sequence: 101,
            timestamp: 1160,
            marker: true,
        })
    );
    assert_eq!(packet[0], original[0], "version, P, X and CC untouched");
    assert_eq!(
        packet[1] & 0x7f,
        original[1] & 0x7f,
        "payload type untouched"
    );
    assert_eq!(
        packet[12..],
        original[12..],
        "CSRCs, extension, payload untouched"
    );
}

#[test]
fn rtp_with_csrcs_extension_and_padding_is_rewritten_in_its_fixed_header_only() {
    let mut rest = Vec::new();
    rest.extend_from_slice(&0x1111_1111u32.to_be_bytes());
    rest.extend_from_slice(&0x2222_2222u32.to_be_bytes());
    rest.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, 0xaa, 0x00, 0x00]);
    rest.extend_from_slice(&[0x55; 20]);
    rest.extend_from_slice(&[0, 0, 0, 4]);
    // Version 2, padding, extension, two CSRCs.
    let packet = rtp_raw(0xb2, 0x08, 0xb, 7, 42, &rest);
    assert!(rtp_types::RtpPacket::parse(&packet).is_ok());
    assert_switch_rewrites_the_fixed_header_only(packet);
}

#[test]
fn rtp_whose_csrcs_extension_or_padding_overrun_is_still_rewritten() {
    let cases = [
        // Fifteen CSRCs announced, none present.
        rtp_raw(0x8f, 0x08, 0xb, 7, 42, &[]),
        // Extension announced, no extension header.
        rtp_raw(0x90, 0x08, 0xb, 7, 42, &[1, 2]),
        // Extension of 16 words announced, one present.
        rtp_raw(
            0x90,
            0x08,
            0xb,
            7,
            42,
            &[0xbe, 0xde, 0x00, 0x10, 1, 2, 3, 4],
        ),
        // Padding count 0.
        rtp_raw(0xa0, 0x08, 0xb, 7, 42, &[1, 2, 3, 0]),
        // Padding count past the start of the packet.
        rtp_raw(0xa0, 0x88, 0xb, 7, 42, &[1, 2, 3, 200]),
    ];
    for packet in cases {
        assert!(
            rtp_types::RtpPacket::parse(&packet).is_err(),
            "{packet:02x?}"
        );
        assert_eq!(RtpHeaderFields::read(&packet), reference_fields(&packet));
        assert_switch_rewrites_the_fixed_header_only(packet);
    }
}

proptest! {
    #[test]
    fn rtp_header_fields_agree_with_the_fixed_header_and_write_nothing_else(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..64),
        version_2 in any::<bool>(),
    ) {
        if let (true, Some(first)) = (version_2, bytes.first_mut()) {
            *first = (*first & 0x3f) | 0x80;
        }
        let fields = RtpHeaderFields::read(&bytes);
        prop_assert_eq!(fields, reference_fields(&bytes));
        let mut packet = bytes.clone();
        let Ok(fields) = fields else {
            let written = RtpHeaderFields { ssrc: 1, sequence: 2, timestamp: 3, marker: true };
            prop_assert!(written.write(&mut packet).is_err());
            prop_assert_eq!(packet, bytes);
            return Ok(());
        };
        let written = RtpHeaderFields {
            ssrc: !fields.ssrc,
            sequence: fields.sequence.wrapping_add(1),
            timestamp: fields.timestamp.wrapping_add(160),
            marker: !fields.marker,
        };
        written.write(&mut packet).unwrap();
        prop_assert_eq!(RtpHeaderFields::read(&packet), Ok(written));
        prop_assert_eq!(packet[0], bytes[0]);
        prop_assert_eq!(packet[1] & 0x7f, bytes[1] & 0x7f);
        prop_assert_eq!(&packet[12..], &bytes[12..]);
    }
}

/// The leg's map: the new Asterisk's SSRC `0xb` becomes the SSRC the caller knows, `0xa`.
fn asterisk_to_caller(ssrc: u32) -> Option<u32> {
    (ssrc == 0xb).then_some(0xa)
}

fn asterisk_to_caller_total(ssrc: u32) -> u32 {
    asterisk_to_caller(ssrc).unwrap_or(ssrc)
}

#[test]
fn rtcp_app_and_feedback_ssrcs_are_rewritten_and_xr_is_left_alone() {
    let parts = [
        Part::Xr(0xb, 0xb),
        Part::App(0xb),
        Part::Nack(0xb, 0xc),
        Part::Pli(0xc, 0xb),
        Part::Bye(vec![0xc, 0xb], Some(b"failover".to_vec())),
    ];
    let mut packet = compound(&parts, &|ssrc| ssrc);
    let expected = compound(&parts, &asterisk_to_caller_total);
    assert_eq!(rewrite_rtcp_ssrcs(&mut packet, asterisk_to_caller), Ok(4));
    assert_eq!(packet, expected);
}

#[test]
fn rtcp_padding_of_the_last_packet_is_kept() {
    let mut body = 0xbu32.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 4]);
    let mut packet = Part::Sr(0xb, vec![0xb]).bytes(&|ssrc| ssrc);
    packet.extend(rtcp_packet(true, 0, 201, &body));
    let mut expected_body = 0xau32.to_be_bytes().to_vec();
    expected_body.extend_from_slice(&[0, 0, 0, 4]);
    let mut expected = Part::Sr(0xa, vec![0xa]).bytes(&|ssrc| ssrc);
    expected.extend(rtcp_packet(true, 0, 201, &expected_body));
    assert_eq!(rewrite_rtcp_ssrcs(&mut packet, asterisk_to_caller), Ok(3));
    assert_eq!(packet, expected);
}

#[test]
fn rtcp_refused_by_rtcp_types_is_left_untouched() {
    let sr = Part::Sr(0xb, vec![0xb]).bytes(&|ssrc| ssrc);
    // A receiver report with the padding bit set and a padding count of 0.
    let mut zero_padding = sr.clone();
    let mut body = 0xbu32.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 0]);
    zero_padding.extend(rtcp_packet(true, 0, 201, &body));
    // A BYE whose reason claims 200 bytes.
    let mut long_reason = sr.clone();
    let mut body = 0xbu32.to_be_bytes().to_vec();
    body.extend_from_slice(&[200, b'x', b'y', 0]);
    long_reason.extend(rtcp_packet(false, 1, 203, &body));

    for mut packet in [zero_padding, long_reason] {
        let original = packet.clone();
        let packet_type = packet[sr.len() + 1];
        assert_eq!(
            rewrite_rtcp_ssrcs(&mut packet, asterisk_to_caller),
            Err(RtcpError::BodyOverrun {
                offset: sr.len(),
                packet_type,
            })
        );
        assert_eq!(packet, original);
    }
}

proptest! {
    #[test]
    fn rtcp_compound_packets_get_every_ssrc_field_rewritten(
        parts in proptest::collection::vec(part(), 1..6),
    ) {
        let mut packet = compound(&parts, &|ssrc| ssrc);
        let expected = compound(&parts, &|ssrc| !ssrc);
        let fields = parts.iter().map(Part::rewritten_fields).sum::<usize>();
        prop_assert_eq!(rewrite_rtcp_ssrcs(&mut packet, |ssrc| Some(!ssrc)), Ok(fields));
        prop_assert_eq!(packet, expected);
    }

    #[test]
    fn damaged_rtcp_never_panics_and_is_rewritten_whole_or_not_at_all(
        parts in proptest::collection::vec(part(), 1..4),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut original = compound(&parts, &|ssrc| ssrc);
        for (at, byte) in damage {
            let at = at.index(original.len());
            original[at] = byte;
        }
        original.truncate(original.len() - cut.index(8.min(original.len())));
        let mut packet = original.clone();
        match rewrite_rtcp_ssrcs(&mut packet, |ssrc| Some(!ssrc)) {
            Err(_) => prop_assert_eq!(&packet, &original),
            // SSRC fields are found from the structure alone, which the rewrite does not change:
            // the same involution applied again restores every byte.
            Ok(changed) => {
                prop_assert_eq!(rewrite_rtcp_ssrcs(&mut packet, |ssrc| Some(!ssrc)), Ok(changed));
                prop_assert_eq!(&packet, &original);
            }
        }
    }
}
