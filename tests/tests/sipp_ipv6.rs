//! Call flows with a SIPp caller → Tandem → SIPp media server(s), every process on ::1, over UDP and
//! over TCP.
//!
//! Tandem listens on `[::1]:port`, its pool is `[::1]:port`, and the SIPp ends write IPv6 references
//! in their Request-URIs, Via, Contact and SDP (`[::1]`, `c=IN IP6 ::1`; RFC 5118); each test passes
//! when both SIPp ends report success, as in sipp_udp.rs and sipp_tcp.rs. The tests skip (SKIP line)
//! on a machine without ::1 (IPv6 disabled).

use anyhow::Result;
use tandem_tests::flows::{self, Flow};
use tandem_tests::{run_flow_on, Hop, IpFamily, Transport};

fn through_tandem(test: &str, flow: &Flow, transport: Transport) -> Result<()> {
    run_flow_on(IpFamily::V6, test, flow, transport, &[Hop::Tandem])
}

/// The flows below, one test each over UDP and over TCP.
macro_rules! over_udp_and_tcp {
    ($($(#[$doc:meta])* $name:ident => $flow:expr),* $(,)?) => {
        mod udp {
            use super::*;
            $($(#[$doc])* #[test]
            fn $name() -> Result<()> {
                through_tandem(concat!("ipv6_udp_", stringify!($name)), &$flow, Transport::Udp)
            })*
        }

        mod tcp {
            use super::*;
            $($(#[$doc])* #[test]
            fn $name() -> Result<()> {
                through_tandem(concat!("ipv6_tcp_", stringify!($name)), &$flow, Transport::Tcp)
            })*
        }
    };
}

over_udp_and_tcp!(
    /// INVITE, 180, 200, ACK; after a second the caller hangs up (BYE), answered 200.
    caller_calls_and_hangs_up => flows::BASIC,
    /// The call is set up; then the media server hangs up: its BYE reaches the caller, 200 goes back.
    media_server_hangs_up => flows::SERVER_BYE,
    /// Mid-call re-INVITE with a=sendonly from the caller, 200 with a=recvonly, ACK, BYE.
    caller_puts_the_call_on_hold => flows::HOLD,
    /// The caller gives up while it rings: CANCEL gets 200, the INVITE 487 on both legs, ACKs.
    caller_cancels_while_ringing => flows::CANCEL,
    /// ms1 answers 503; the call goes to ms2 without the caller noticing (3 calls, one after another).
    unavailable_media_server_fails_over_to_the_next => flows::FAILOVER,
);

/// A ~3 kB INVITE (16 extra headers, long SDP) arrives whole at the server over TCP.
#[test]
fn tcp_large_invite() -> Result<()> {
    through_tandem("ipv6_tcp_large_invite", &flows::LARGE, Transport::Tcp)
}
