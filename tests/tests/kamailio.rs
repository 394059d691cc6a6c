//! Tandem in a chain with Kamailio, a record-routing proxy (tests/kamailio/proxy.cfg):
//! SIPp caller → Kamailio → Tandem → SIPp media server, and SIPp caller → Tandem → Kamailio → SIPp
//! media server. In-dialog requests (re-INVITE, INFO, BYE from either side) cross both.

use anyhow::Result;
use tandem_tests::flows::{self, Flow};
use tandem_tests::{run_flow, Hop, Transport};

fn kamailio_in_front(test: &str, flow: &Flow, transport: Transport) -> Result<()> {
    run_flow(test, flow, transport, &[Hop::Kamailio, Hop::Tandem])
}

fn kamailio_behind(test: &str, flow: &Flow) -> Result<()> {
    run_flow(test, flow, Transport::Udp, &[Hop::Tandem, Hop::Kamailio])
}

/// Kamailio record-routes the call into Tandem; the caller's hold re-INVITE and BYE follow the
/// Route set through Kamailio to Tandem, and on to the media server.
#[test]
fn kamailio_in_front_caller_puts_the_call_on_hold() -> Result<()> {
    kamailio_in_front("kamailio_front_hold", &flows::HOLD, Transport::Udp)
}

/// As above over TCP on every leg.
#[test]
fn kamailio_in_front_caller_puts_the_call_on_hold_over_tcp() -> Result<()> {
    kamailio_in_front("kamailio_front_hold_tcp", &flows::HOLD, Transport::Tcp)
}

/// An INFO from the caller crosses Kamailio and Tandem; BYE follows.
#[test]
fn kamailio_in_front_dtmf_by_sip_info() -> Result<()> {
    kamailio_in_front("kamailio_front_info", &flows::INFO, Transport::Udp)
}

/// The media server's BYE goes to Tandem, then through Kamailio (its Record-Route) to the caller.
#[test]
fn kamailio_in_front_media_server_hangs_up() -> Result<()> {
    kamailio_in_front(
        "kamailio_front_server_bye",
        &flows::SERVER_BYE,
        Transport::Udp,
    )
}

/// Tandem's pool is one Kamailio that forwards to the media server and record-routes: the server
/// leg's re-INVITE and BYE from Tandem must follow that route set.
#[test]
fn kamailio_behind_caller_puts_the_call_on_hold() -> Result<()> {
    kamailio_behind("kamailio_behind_hold", &flows::HOLD)
}

/// INFO crosses Tandem, then Kamailio, to the media server.
#[test]
fn kamailio_behind_dtmf_by_sip_info() -> Result<()> {
    kamailio_behind("kamailio_behind_info", &flows::INFO)
}

/// The media server's BYE reaches Tandem through Kamailio, and the caller from there.
#[test]
fn kamailio_behind_media_server_hangs_up() -> Result<()> {
    kamailio_behind("kamailio_behind_server_bye", &flows::SERVER_BYE)
}
