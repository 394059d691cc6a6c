//! RTP header read/write, `OutboundStream` continuity over a sequence of packets and RTCP SSRC
//! rewriting, on packets cut from arbitrary bytes. Nothing may panic; a few documented
//! properties are checked on the way.
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run rtp` from `crates/tandem-media`.
//!
//! Input layout: 4 configuration bytes (clock rate choice, sequence jump, max dropout, max
//! misorder), then records of `[op, time, length, packet bytes...]`: `op` picks what to do with
//! the packet, `time` moves the clock (backwards too), `length` bytes are cut (fewer at the end).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tandem_media::continuity::{
    rewrite_rtcp_ssrcs, ContinuityConfig, OutboundStream, RtpHeaderFields,
};

const CLOCK_RATES: [u32; 6] = [8000, 16000, 48000, 90000, 0, u32::MAX];

fuzz_target!(|data: &[u8]| {
    let Some((config, mut rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let config = ContinuityConfig {
        clock_rate: CLOCK_RATES[usize::from(config[0]) % CLOCK_RATES.len()],
        sequence_jump: u16::from(config[1]),
        max_dropout: u16::from(config[2]) << 6,
        max_misorder: u16::from(config[3]),
    };
    let mut stream = OutboundStream::new(config);
    // Far enough from the process start that going back in time stays a valid Instant.
    let origin = Instant::now() + Duration::from_secs(3600);
    let mut now = origin;
    while let Some((&[op, time, length], tail)) = rest.split_first_chunk::<3>() {
        let length = usize::from(length).min(tail.len());
        let (packet, tail) = tail.split_at(length);
        rest = tail;
        now = step_clock(origin, now, time);
        let mut packet = packet.to_vec();
        match op % 5 {
            0 => header_round_trip(&packet),
            1 => continue_stream(&mut stream, now, &mut packet),
            2 => rewrite_rtcp(&mut packet, |ssrc| stream.map_ssrc(ssrc)),
            3 => rewrite_rtcp(&mut packet, |ssrc| Some(!ssrc)),
            _ => {
                // Hand the stream over as a standby would, then go on with it.
                if let Some(snapshot) = stream.snapshot(now) {
                    stream = OutboundStream::resume(config, snapshot, now);
                    assert_eq!(stream.outbound_ssrc(), Some(snapshot.outbound_ssrc));
                }
                continue_stream(&mut stream, now, &mut packet);
            }
        }
    }
});

/// Forward by up to ~2 s in 10 ms steps, or (high bit) back by up to ~1.3 s, never before
/// `origin` minus an hour.
fn step_clock(origin: Instant, now: Instant, time: u8) -> Instant {
    let step = Duration::from_millis(u64::from(time & 0x7f) * 10);
    if time & 0x80 == 0 {
        now + step
    } else {
        now.checked_sub(step)
            .unwrap_or(origin)
            .max(origin - Duration::from_secs(3600))
    }
}

/// `write(read(p))` gives `p` back.
fn header_round_trip(packet: &[u8]) {
    let Ok(fields) = RtpHeaderFields::read(packet) else {
        return;
    };
    let mut copy = packet.to_vec();
    fields
        .write(&mut copy)
        .expect("a readable header is writable");
    assert_eq!(copy, packet);
}

/// An RTCP rewrite that fails leaves the packet untouched.
fn rewrite_rtcp(packet: &mut [u8], map: impl FnMut(u32) -> Option<u32>) {
    let before = packet.to_vec();
    if rewrite_rtcp_ssrcs(packet, map).is_err() {
        assert_eq!(
            packet,
            &before[..],
            "a rejected RTCP packet is left untouched"
        );
    }
}

/// One packet through the stream: a forwarded packet carries the outbound SSRC.
fn continue_stream(stream: &mut OutboundStream, now: Instant, packet: &mut [u8]) {
    let Ok(outcome) = stream.rewrite_packet(now, packet) else {
        return;
    };
    if outcome.forward() {
        let fields = RtpHeaderFields::read(packet).expect("a rewritten packet reads");
        assert_eq!(Some(fields.ssrc), stream.outbound_ssrc());
    }
}
