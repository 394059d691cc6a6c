//! Every call flow of tests/scenarios with a SIPp caller → Tandem → SIPp media server(s), over UDP.
//!
//! Each test starts its own SIPp media server(s), a Tandem whose pool they form, and a SIPp caller, all
//! on loopback ports of their own; it passes when both SIPp ends report success. The same flows pass
//! through Kamailio (`cargo test -p tandem-tests --lib`), so a failure here points at Tandem.

use anyhow::Result;
use tandem_tests::flows::{self, Flow};
use tandem_tests::{run_flow, Hop, Transport};

fn through_tandem(test: &str, flow: &Flow) -> Result<()> {
    run_flow(test, flow, Transport::Udp, &[Hop::Tandem])
}

/// INVITE, 180, 200, ACK; after a second the caller hangs up (BYE), answered 200.
#[test]
fn caller_calls_and_hangs_up() -> Result<()> {
    through_tandem("udp_caller_calls_and_hangs_up", &flows::BASIC)
}

/// The call is set up; then the media server hangs up: its BYE reaches the caller, 200 goes back.
#[test]
fn media_server_hangs_up() -> Result<()> {
    through_tandem("udp_media_server_hangs_up", &flows::SERVER_BYE)
}

/// The caller gives up while it rings: CANCEL gets 200, the INVITE 487 on both legs, ACKs.
#[test]
fn caller_cancels_while_ringing() -> Result<()> {
    through_tandem("udp_caller_cancels_while_ringing", &flows::CANCEL)
}

/// The media server answers 486 Busy Here; the caller gets 486 and ACKs it.
#[test]
fn busy_media_server_reaches_the_caller() -> Result<()> {
    through_tandem("udp_busy_media_server_reaches_the_caller", &flows::BUSY)
}

/// ms1 answers 503; the call goes to ms2 without the caller noticing (3 calls, one after another).
#[test]
fn unavailable_media_server_fails_over_to_the_next() -> Result<()> {
    through_tandem(
        "udp_unavailable_media_server_fails_over_to_the_next",
        &flows::FAILOVER,
    )
}

/// Mid-call re-INVITE with a=sendonly from the caller, 200 with a=recvonly from the server, ACK, BYE.
#[test]
fn caller_puts_the_call_on_hold() -> Result<()> {
    through_tandem("udp_caller_puts_the_call_on_hold", &flows::HOLD)
}

/// 183 Session Progress with SDP reaches the caller before the 200.
#[test]
fn early_media_before_the_answer() -> Result<()> {
    through_tandem("udp_early_media_before_the_answer", &flows::EARLY_MEDIA)
}

/// An INFO (application/dtmf-relay, Signal=5) from the caller reaches the server and is answered 200.
#[test]
fn dtmf_by_sip_info_in_the_dialog() -> Result<()> {
    through_tandem("udp_dtmf_by_sip_info_in_the_dialog", &flows::INFO)
}

/// The caller writes v: f: t: i: m: l: c: in its INVITE, ACK and BYE.
#[test]
fn caller_uses_compact_header_names() -> Result<()> {
    through_tandem("udp_caller_uses_compact_header_names", &flows::COMPACT)
}

/// A ~3 kB INVITE (16 extra headers, long SDP) arrives whole at the server.
#[test]
fn large_invite() -> Result<()> {
    through_tandem("udp_large_invite", &flows::LARGE)
}

/// An INVITE with Max-Forwards: 0 is answered 483 by Tandem; no media server sees it.
#[test]
fn max_forwards_zero_is_answered_483() -> Result<()> {
    through_tandem(
        "udp_max_forwards_zero_is_answered_483",
        &flows::MAX_FORWARDS,
    )
}

/// OPTIONS to Tandem itself is answered 200; no media server sees an INVITE.
#[test]
fn options_to_tandem_is_answered_200() -> Result<()> {
    through_tandem("udp_options_to_tandem_is_answered_200", &flows::OPTIONS)
}
