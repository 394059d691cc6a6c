//! Stream continuity: one outbound SSRC, increasing sequence numbers and advancing timestamps across
//! a change of media server, plus the matching RTCP SSRC rewriting.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use tandem_media::continuity::{
    rewrite_rtcp_ssrcs, ContinuityConfig, OutboundStream, Rewrite, RtcpError, RtpError,
    RtpHeaderFields,
};

const PTIME: Duration = Duration::from_millis(20);
const SAMPLES_PER_PACKET: u32 = 160;

/// A PCMA packet (payload type 8) with 160 bytes of payload.
fn rtp(ssrc: u32, sequence: u16, timestamp: u32, marker: bool) -> Vec<u8> {
    let mut packet = vec![0x80, if marker { 0x88 } else { 0x08 }];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend((0..160).map(|i| i as u8));
    packet
}

/// A source sending 20 ms packets, driven by the test's virtual clock.
struct Source {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
}

impl Source {
    fn new(ssrc: u32, sequence: u16, timestamp: u32) -> Self {
        Self {
            ssrc,
            sequence,
            timestamp,
        }
    }

    fn next(&mut self) -> Vec<u8> {
        let packet = rtp(self.ssrc, self.sequence, self.timestamp, false);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(SAMPLES_PER_PACKET);
        packet
    }
}

fn header(packet: &[u8]) -> RtpHeaderFields {
    RtpHeaderFields::read(packet).unwrap()
}

#[test]
fn passthrough_leaves_packets_byte_identical() {
    let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    let mut source = Source::new(0x1234_5678, 1000, 50_000);
    let mut now = Instant::now();
    for i in 0..200 {
        let mut packet = source.next();
        if i == 0 {
            packet[1] |= 0x80;
        }
        let original = packet.clone();
        let outcome = stream.rewrite_packet(now, &mut packet).unwrap();
        assert_eq!(
            outcome,
            if i == 0 {
                Rewrite::Started
            } else {
                Rewrite::Continued
            }
        );
        assert_eq!(packet, original);
        now += PTIME;
    }
    assert_eq!(stream.outbound_ssrc(), Some(0x1234_5678));
    assert_eq!(stream.inbound_ssrc(), Some(0x1234_5678));
}

#[test]
fn passthrough_keeps_loss_and_reordering_as_sent() {
    let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    let now = Instant::now();
    for sequence in [10u16, 11, 14, 12, 13, 15, 15] {
        let mut packet = rtp(7, sequence, u32::from(sequence) * 160, false);
        let original = packet.clone();
        assert!(stream.rewrite_packet(now, &mut packet).unwrap().forward());
        assert_eq!(packet, original);
    }
}

#[test]
fn switch_of_source_continues_the_outbound_stream() {
    let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    let mut first = Source::new(0xaaaa_0001, 30_000, 1_000_000);
    let mut now = Instant::now();
    let mut last = header(&first.next());
    for _ in 0..50 {
        let mut packet = first.next();
        stream.rewrite_packet(now, &mut packet).unwrap();
        last = header(&packet);
        now += PTIME;
    }
    // The first Asterisk dies; the second one starts talking 1.5 s after the last packet.
    now += Duration::from_millis(1480);
    let mut second = Source::new(0xbbbb_0002, 7, 42);
    let mut packet = second.next();
    assert_eq!(
        stream.rewrite_packet(now, &mut packet).unwrap(),
        Rewrite::Reanchored
    );
    let switched = header(&packet);
    assert_eq!(switched.ssrc, 0xaaaa_0001);
    assert_eq!(switched.sequence, last.sequence.wrapping_add(1));
    assert_eq!(switched.timestamp, last.timestamp.wrapping_add(1500 * 8));
    assert!(switched.marker);
    assert_eq!(
        &packet[12..],
        &rtp(0, 0, 0, false)[12..],
        "payload untouched"
    );
    assert_eq!(stream.inbound_ssrc(), Some(0xbbbb_0002));
    assert_eq!(stream.map_ssrc(0xbbbb_0002), Some(0xaaaa_0001));
    assert_eq!(stream.map_ssrc(0xaaaa_0001), None);

    let mut previous = switched;
    for _ in 0..20 {
        now += PTIME;
        let mut packet = second.next();
        assert_eq!(
            stream.rewrite_packet(now, &mut packet).unwrap(),
            Rewrite::Continued
        );
        let next = header(&packet);
        assert_eq!(next.ssrc, 0xaaaa_0001);
        assert_eq!(next.sequence, previous.sequence.wrapping_add(1));
        assert_eq!(
            next.timestamp,
            previous.timestamp.wrapping_add(SAMPLES_PER_PACKET)
        );
        assert!(
            !next.marker,
            "marker only on the first packet after the switch"
        );
        previous = next;
    }
}

#[test]
fn configured_jump_skips_sequence_numbers_on_a_switch() {
    let config = ContinuityConfig {
        sequence_jump: 5,
        ..ContinuityConfig::AUDIO_8KHZ
    };
    let mut stream = OutboundStream::new(config);
    let now = Instant::now();
    let mut packet = rtp(1, 100, 0, false);
    stream.rewrite_packet(now, &mut packet).unwrap();
    let mut packet = rtp(2, 9, 0, false);
    stream.rewrite_packet(now + PTIME, &mut packet).unwrap();
    assert_eq!(header(&packet).sequence, 106);
    assert_eq!(header(&packet).timestamp, 160);
}

#[test]
fn a_source_restarting_its_sequence_is_a_switch() {
    let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    let now = Instant::now();
    let mut packet = rtp(9, 20_000, 80_000, false);
    stream.rewrite_packet(now, &mut packet).unwrap();
    let mut packet = rtp(9, 3, 500, false);
    assert_eq!(
        stream.rewrite_packet(now + PTIME, &mut packet).unwrap(),
        Rewrite::Reanchored
    );
    let restarted = header(&packet);
    assert_eq!(
        (restarted.ssrc, restarted.sequence, restarted.timestamp),
        (9, 20_001, 80_160)
    );
    assert!(restarted.marker);
}

#[test]
fn late_packets_from_before_a_switch_are_dropped() {
    let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    let now = Instant::now();
    stream
        .rewrite_packet(now, &mut rtp(1, 500, 0, false))
        .unwrap();
    stream
        .rewrite_packet(now, &mut rtp(2, 50, 0, false))
        .unwrap();
    let mut late = rtp(2, 49, 0, false);
    let original = late.clone();
    assert_eq!(
        stream.rewrite_packet(now, &mut late).unwrap(),
        Rewrite::Stale
    );
    assert!(!Rewrite::Stale.forward());
    assert_eq!(late, original);
    let mut reordered = rtp(2, 52, 320, false);
    stream.rewrite_packet(now, &mut reordered).unwrap();
    let mut late = rtp(2, 51, 160, false);
    assert_eq!(
        stream.rewrite_packet(now, &mut late).unwrap(),
        Rewrite::Continued
    );
    assert_eq!(header(&late).sequence, 502);
}

#[test]
fn sequence_and_timestamp_wrap_through_passthrough_and_switch() {
    let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    let mut now = Instant::now();
    let mut first = Source::new(5, u16::MAX - 2, u32::MAX - 300);
    for _ in 0..5 {
        let mut packet = first.next();
        let original = packet.clone();
        assert!(stream.rewrite_packet(now, &mut packet).unwrap().forward());
        assert_eq!(packet, original);
        now += PTIME;
    }
    // Outbound stands at sequence 1, timestamp (u32::MAX - 300) + 4 × 160 = 339 (wrapped).
    let mut second = Source::new(6, u16::MAX, u32::MAX - 10);
    let mut packet = second.next();
    stream.rewrite_packet(now, &mut packet).unwrap();
    assert_eq!(header(&packet).sequence, 2);
    assert_eq!(header(&packet).timestamp, 339 + 160);
    // The new source wraps its own counters; the outbound stream just keeps counting.
    let mut packet = second.next();
    stream.rewrite_packet(now + PTIME, &mut packet).unwrap();
    assert_eq!(header(&packet).sequence, 3);
    assert_eq!(header(&packet).timestamp, 339 + 320);

    // A switch when the outbound stream sits right before both wraps.
    let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    stream
        .rewrite_packet(now, &mut rtp(1, u16::MAX, u32::MAX - 80, false))
        .unwrap();
    let mut packet = rtp(2, 1234, 5678, false);
    stream.rewrite_packet(now + PTIME, &mut packet).unwrap();
    assert_eq!(header(&packet).sequence, 0);
    assert_eq!(header(&packet).timestamp, 79);
}

#[test]
fn snapshot_resumes_the_stream_on_a_standby() {
    let mut active = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    let now = Instant::now();
    assert_eq!(active.snapshot(now), None);
    active
        .rewrite_packet(now, &mut rtp(11, 800, 16_000, false))
        .unwrap();
    let snapshot = active.snapshot(now + Duration::from_millis(100)).unwrap();
    assert_eq!(snapshot.since_last_sent, Duration::from_millis(100));

    let later = now + Duration::from_secs(5);
    let mut standby = OutboundStream::resume(ContinuityConfig::AUDIO_8KHZ, snapshot, later);
    let mut packet = rtp(12, 1, 1, false);
    let resumed_at = later + Duration::from_millis(400);
    assert_eq!(
        standby.rewrite_packet(resumed_at, &mut packet).unwrap(),
        Rewrite::Reanchored
    );
    let resumed = header(&packet);
    assert_eq!((resumed.ssrc, resumed.sequence), (11, 801));
    assert_eq!(resumed.timestamp, 16_000 + 500 * 8);
    assert!(resumed.marker);
}

#[test]
fn malformed_rtp_is_rejected_untouched() {
    let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    let now = Instant::now();
    for len in 0..12 {
        let mut short = rtp(1, 1, 1, false);
        short.truncate(len);
        let original = short.clone();
        assert_eq!(
            stream.rewrite_packet(now, &mut short),
            Err(RtpError::TooShort { len })
        );
        assert_eq!(short, original);
    }
    for version in [0u8, 1, 3] {
        let mut packet = rtp(1, 1, 1, false);
        packet[0] = (packet[0] & 0x3f) | (version << 6);
        let original = packet.clone();
        assert_eq!(
            stream.rewrite_packet(now, &mut packet),
            Err(RtpError::UnsupportedVersion { version })
        );
        assert_eq!(packet, original);
    }
    assert_eq!(
        stream.outbound_ssrc(),
        None,
        "rejected packets teach nothing"
    );
    let mut header_only = rtp(1, 1, 1, false);
    header_only.truncate(12);
    assert_eq!(
        stream.rewrite_packet(now, &mut header_only),
        Ok(Rewrite::Started)
    );
}

/// An RTCP header: version 2, `count`, `packet_type`, and the length of `body` (a multiple of 4).
fn rtcp(count: u8, packet_type: u8, body: &[u8]) -> Vec<u8> {
    let words = u16::try_from(body.len() / 4).unwrap();
    let mut packet = vec![0x80 | count, packet_type];
    packet.extend_from_slice(&words.to_be_bytes());
    packet.extend_from_slice(body);
    packet
}

fn report_block(ssrc: u32) -> Vec<u8> {
    let mut block = ssrc.to_be_bytes().to_vec();
    block.extend_from_slice(&[0x11; 20]);
    block
}

fn sender_report(sender: u32, reports: &[u32]) -> Vec<u8> {
    let mut body = sender.to_be_bytes().to_vec();
    body.extend_from_slice(&[0x22; 20]);
    reports
        .iter()
        .for_each(|&ssrc| body.extend(report_block(ssrc)));
    rtcp(reports.len() as u8, 200, &body)
}

fn receiver_report(sender: u32, reports: &[u32]) -> Vec<u8> {
    let mut body = sender.to_be_bytes().to_vec();
    reports
        .iter()
        .for_each(|&ssrc| body.extend(report_block(ssrc)));
    rtcp(reports.len() as u8, 201, &body)
}

fn sdes_cname(ssrc: u32, cname: &[u8]) -> Vec<u8> {
    let mut body = ssrc.to_be_bytes().to_vec();
    body.push(1);
    body.push(cname.len() as u8);
    body.extend_from_slice(cname);
    body.push(0);
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    rtcp(1, 202, &body)
}

/// The map a leg uses: the new Asterisk's SSRC `0xb` becomes the SSRC the caller knows, `0xa`.
fn asterisk_to_caller(ssrc: u32) -> Option<u32> {
    (ssrc == 0xb).then_some(0xa)
}

#[test]
fn rtcp_sender_and_receiver_reports_are_rewritten_in_a_compound_packet() {
    let mut packet = sender_report(0xb, &[0xc, 0xb]);
    packet.extend(receiver_report(0xb, &[0xb]));
    packet.extend(sdes_cname(0xb, b"asterisk-2@10.0.0.2"));
    packet.extend(rtcp(1, 203, &0xbu32.to_be_bytes()));
    let mut expected = sender_report(0xa, &[0xc, 0xa]);
    expected.extend(receiver_report(0xa, &[0xa]));
    expected.extend(sdes_cname(0xa, b"asterisk-2@10.0.0.2"));
    expected.extend(rtcp(1, 203, &0xau32.to_be_bytes()));

    assert_eq!(rewrite_rtcp_ssrcs(&mut packet, asterisk_to_caller), Ok(6));
    assert_eq!(packet, expected);
}

#[test]
fn rtcp_rewriting_follows_the_outbound_stream() {
    let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    let now = Instant::now();
    stream
        .rewrite_packet(now, &mut rtp(0xa, 1, 1, false))
        .unwrap();
    let mut packet = receiver_report(0xa, &[0x99]);
    let original = packet.clone();
    assert_eq!(
        rewrite_rtcp_ssrcs(&mut packet, |ssrc| stream.map_ssrc(ssrc)),
        Ok(0)
    );
    assert_eq!(packet, original, "passthrough changes nothing");

    stream
        .rewrite_packet(now, &mut rtp(0xb, 1, 1, false))
        .unwrap();
    let mut packet = receiver_report(0xb, &[0x99]);
    assert_eq!(
        rewrite_rtcp_ssrcs(&mut packet, |ssrc| stream.map_ssrc(ssrc)),
        Ok(1)
    );
    assert_eq!(packet, receiver_report(0xa, &[0x99]));
}

#[test]
fn malformed_rtcp_is_rejected_untouched() {
    let valid = sender_report(0xb, &[0xb]);
    let mut cases: Vec<(Vec<u8>, RtcpError)> = vec![(Vec::new(), RtcpError::Empty)];
    // A valid first packet followed by a truncated header: nothing may change.
    let mut truncated = valid.clone();
    truncated.extend_from_slice(&[0x81, 201]);
    cases.push((
        truncated,
        RtcpError::TruncatedHeader {
            offset: valid.len(),
        },
    ));
    let mut wrong_version = valid.clone();
    wrong_version.extend(receiver_report(0xb, &[]));
    let at = valid.len();
    wrong_version[at] &= 0x3f;
    cases.push((
        wrong_version,
        RtcpError::UnsupportedVersion {
            offset: at,
            version: 0,
        },
    ));
    let mut overrun = valid.clone();
    overrun[3] += 1;
    cases.push((
        overrun,
        RtcpError::LengthOverrun {
            offset: 0,
            claimed: valid.len() + 4,
            available: valid.len(),
        },
    ));
    // Two report blocks announced, one present (length consistent with the bytes).
    let mut too_many_blocks = valid.clone();
    too_many_blocks[0] = 0x82;
    cases.push((
        too_many_blocks,
        RtcpError::BodyOverrun {
            offset: 0,
            packet_type: 200,
        },
    ));
    let mut sdes = sdes_cname(0xb, b"x");
    sdes[8 + 1] = 200; // item length past the end
    cases.push((
        sdes,
        RtcpError::BodyOverrun {
            offset: 0,
            packet_type: 202,
        },
    ));
    let bye = rtcp(3, 203, &0xbu32.to_be_bytes());
    cases.push((
        bye,
        RtcpError::BodyOverrun {
            offset: 0,
            packet_type: 203,
        },
    ));

    for (mut packet, error) in cases {
        let original = packet.clone();
        assert_eq!(
            rewrite_rtcp_ssrcs(&mut packet, asterisk_to_caller),
            Err(error)
        );
        assert_eq!(packet, original);
    }
}

#[test]
fn unknown_rtcp_packet_types_are_skipped() {
    let mut packet = rtcp(0, 207, &0xbu32.to_be_bytes());
    packet.extend(receiver_report(0xb, &[]));
    let mut expected = rtcp(0, 207, &0xbu32.to_be_bytes());
    expected.extend(receiver_report(0xa, &[]));
    assert_eq!(rewrite_rtcp_ssrcs(&mut packet, asterisk_to_caller), Ok(1));
    assert_eq!(packet, expected);
}

/// One step of the property test: which of three sources sends, how far its sequence number moves
/// (mostly 1, sometimes a loss, sometimes a restart) and how much time passes.
fn step() -> impl Strategy<Value = (usize, u16, u64)> {
    let gap = prop_oneof![8 => Just(1u16), 2 => 2u16..50, 1 => 50u16..65_000];
    (0usize..3, gap, 0u64..2_000)
}

proptest! {
    #[test]
    fn outbound_stream_stays_one_increasing_sequence(
        base_ssrc in any::<u32>(),
        starts in proptest::array::uniform3(any::<(u16, u32)>()),
        steps in proptest::collection::vec(step(), 1..300),
        jump in 0u16..4,
    ) {
        let ssrcs = [0, 1, 2].map(|i| base_ssrc.wrapping_add(i));
        let config = ContinuityConfig { sequence_jump: jump, ..ContinuityConfig::AUDIO_8KHZ };
        let mut stream = OutboundStream::new(config);
        let mut sources: Vec<Source> = (0..3)
            .map(|i| Source::new(ssrcs[i], starts[i].0, starts[i].1))
            .collect();
        let mut now = Instant::now();
        let mut previous: Option<RtpHeaderFields> = None;
        let mut first_ssrc = None;
        for (index, gap, millis) in steps {
            now += Duration::from_millis(millis);
            let source = &mut sources[index];
            source.sequence = source.sequence.wrapping_add(gap - 1);
            source.timestamp = source.timestamp.wrapping_add(u32::from(gap - 1) * SAMPLES_PER_PACKET);
            let mut packet = source.next();
            let outcome = stream.rewrite_packet(now, &mut packet).unwrap();
            prop_assert!(outcome.forward());
            let sent = header(&packet);
            // Passthrough: the first source to send names the outbound stream.
            prop_assert_eq!(sent.ssrc, *first_ssrc.get_or_insert(ssrcs[index]));
            if let Some(previous) = previous {
                let step = sent.sequence.wrapping_sub(previous.sequence);
                prop_assert!(step != 0 && step < 0x8000, "sequence {} after {}", sent.sequence, previous.sequence);
                prop_assert_eq!(sent.marker, outcome == Rewrite::Reanchored);
            }
            previous = Some(sent);
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_rejections_change_nothing(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
        let mut packet = bytes.clone();
        if stream.rewrite_packet(Instant::now(), &mut packet).is_err() {
            prop_assert_eq!(&packet, &bytes);
        }
        let mut packet = bytes.clone();
        if rewrite_rtcp_ssrcs(&mut packet, |ssrc| Some(!ssrc)).is_err() {
            prop_assert_eq!(&packet, &bytes);
        }
    }
}
