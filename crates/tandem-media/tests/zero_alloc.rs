//! Continuity allocates nothing per packet, RTP or RTCP: an instrumented global allocator (this file's
//! own, hence its own test binary with this single test) counts allocations while packets prepared
//! beforehand are rewritten. The relay's own test (tandem-relay `zero_alloc`) covers the RTP path
//! through sockets; this one also covers RTCP, whose SDES packets `rtcp-types` would parse into `Vec`s.
#![allow(clippy::unwrap_used)]

mod support;

use std::alloc::System;
use std::time::{Duration, Instant};

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use support::*;
use tandem_media::continuity::{
    rewrite_rtcp_ssrcs, ContinuityConfig, OutboundStream, RtpHeaderFields,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn rewriting_rtp_and_rtcp_allocates_nothing() {
    let mut stream = OutboundStream::new(ContinuityConfig::AUDIO_8KHZ);
    let start = Instant::now();
    // Two sources taking turns, so that every other packet re-anchors; one of them sends a header
    // whose CSRC count overruns the packet (the bare-fixed-header path).
    let mut rtp: Vec<(Instant, Vec<u8>)> = (0..1000u16)
        .map(|i| {
            let at = start + Duration::from_millis(20 * u64::from(i));
            let timestamp = u32::from(i) * 160;
            let packet = match (i / 10) % 2 {
                0 => pcma(0xa, i, timestamp),
                _ => rtp_raw(0x8f, 0x08, 0xb, i, timestamp, &[0; 20]),
            };
            (at, packet)
        })
        .collect();
    let parts = [
        Part::Sr(0xb, vec![0xc, 0xb]),
        Part::Sdes(vec![(0xb, b"asterisk-2@192.0.2.2".to_vec())]),
        Part::Nack(0xb, 0xc),
        Part::Bye(vec![0xb], Some(b"failover".to_vec())),
    ];
    let mut rtcp: Vec<Vec<u8>> = (0..100).map(|_| compound(&parts, &|ssrc| ssrc)).collect();

    let region = Region::new(GLOBAL);
    let mut forwarded = 0usize;
    for (at, packet) in &mut rtp {
        RtpHeaderFields::read(packet).unwrap();
        forwarded += usize::from(stream.rewrite_packet(*at, packet).unwrap().forward());
    }
    let mut changed = 0;
    for packet in &mut rtcp {
        changed += rewrite_rtcp_ssrcs(packet, |ssrc| stream.map_ssrc(ssrc)).unwrap();
    }
    let stats = region.change();

    assert_eq!(forwarded, 1000);
    assert_eq!(changed, 100 * 5);
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "{stats:?}"
    );
}
