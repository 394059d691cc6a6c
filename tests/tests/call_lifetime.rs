//! Tandem ends calls that outlive their limits, with SIPp on both ends: nobody hangs up, and the
//! BYE both of them receive (and answer 200) comes from Tandem. Once at `sip.max_call_duration`,
//! once when the session timer the media server asked for (RFC 4028 `Session-Expires`) runs out
//! without a refresh.
//!
//! Needs sipp.

use anyhow::Result;
use std::time::{Duration, Instant};
use tandem_tests::sipp::Invites;
use tandem_tests::{need_tool, verdict, Sipp, Tandem, TandemConfig, TestDir, Transport};

/// The caller (uac_server_bye.xml: it waits for a BYE) calls through Tandem to `server_scenario`,
/// which answers and waits for a BYE too. Passes when both ends completed the call, it lasted
/// `at_least` for the caller, and Tandem's `metric` counted one call.
fn call_ended_by_tandem(
    test: &str,
    server_scenario: &str,
    configure: impl FnOnce(&mut TandemConfig),
    metric: &str,
    at_least: Duration,
) -> Result<()> {
    if !need_tool(test, "sipp") {
        return Ok(());
    }
    let dir = TestDir::new(test)?;
    let server = Sipp::uas("ms1", server_scenario)
        .timeout(Duration::from_secs(60))
        .spawn(dir.path())?;
    let mut config = TandemConfig::new(&[server.addr()], Transport::Udp);
    configure(&mut config);
    let mut tandem = Tandem::start(config, dir.path())?;
    let started = Instant::now();
    let caller = Sipp::uac("caller", "uac_server_bye.xml", tandem.sip_addr())
        .timeout(Duration::from_secs(30))
        .spawn(dir.path())?
        .wait(Instant::now() + Duration::from_secs(40))?;
    let lasted = started.elapsed();
    let server = server.finish(Instant::now() + Duration::from_secs(10))?;

    let mut failures = Vec::new();
    failures.extend(caller.check_caller(1).err());
    failures.extend(server.check_server(Invites::Exactly(1)).err());
    if lasted < at_least {
        failures.push(format!(
            "the call ended after {lasted:?}, before {at_least:?}"
        ));
    }
    match tandem.metric(metric)? {
        Some(1.0) => {}
        other => failures.push(format!("{metric} is {other:?}, expected 1")),
    }
    verdict(dir, failures, Some(&mut tandem))
}

/// `sip.max_call_duration = 2s`: the answered call is ended with a BYE to the caller and one to the
/// media server, both answered 200, two seconds after the answer.
#[test]
fn a_call_nobody_hangs_up_ends_at_the_maximum_duration() -> Result<()> {
    call_ended_by_tandem(
        "a_call_nobody_hangs_up_ends_at_the_maximum_duration",
        "uas_basic.xml",
        |config| config.max_call_duration = Some(Duration::from_secs(2)),
        "tandem_calls_max_duration_total",
        Duration::from_secs(2),
    )
}

/// The media server's 200 carries `Session-Expires: 2;refresher=uac`; the caller never refreshes:
/// two seconds after the answer Tandem ends the call on both legs.
#[test]
fn a_session_timer_that_runs_out_ends_the_call_on_both_legs() -> Result<()> {
    call_ended_by_tandem(
        "a_session_timer_that_runs_out_ends_the_call_on_both_legs",
        "uas_session_timer.xml",
        |_| {},
        "tandem_calls_session_expired_total",
        Duration::from_secs(2),
    )
}
