//! The call flows of tests/scenarios and a runner that plays one through a chain of proxies:
//! SIPp caller → hop → … → SIPp media server(s).
//!
//! The same runner checks the scenarios themselves: the unit tests at the bottom play every flow
//! through Kamailio alone, so a flow that fails through Tandem but passes there points at Tandem.

use crate::kamailio::{Kamailio, KamailioConfig};
use crate::sipp::{Invites, Sipp, SippProcess};
use crate::tandem::{Tandem, TandemConfig};
use crate::workdir::{need_tool, skip, TestDir};
use crate::{IpFamily, Transport};
use anyhow::{bail, Result};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One call flow: the caller's scenario, the media servers' scenarios and what they must see.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    /// Short name (used in log folder names).
    pub name: &'static str,
    /// Caller scenario (tests/scenarios/uac_*.xml).
    pub caller: &'static str,
    /// One scenario per media server, in pool order (ms1, ms2).
    pub servers: &'static [&'static str],
    /// Calls the caller places, one after another.
    pub calls: u32,
    /// INVITEs each media server must receive, in pool order.
    pub server_invites: &'static [Invites],
}

/// A flow with one media server that must receive exactly one INVITE.
macro_rules! one_server_flow {
    ($name:literal, $caller:literal, $server:literal) => {
        Flow {
            name: $name,
            caller: $caller,
            servers: &[$server],
            calls: 1,
            server_invites: &[Invites::Exactly(1)],
        }
    };
}

/// INVITE, 180, 200, ACK, 1 s, BYE from the caller.
pub const BASIC: Flow = one_server_flow!("basic", "uac_basic.xml", "uas_basic.xml");
/// The media server hangs up (BYE from the server side).
pub const SERVER_BYE: Flow =
    one_server_flow!("server_bye", "uac_server_bye.xml", "uas_server_bye.xml");
/// CANCEL while ringing: caller gets 487, server gets CANCEL and answers 487.
pub const CANCEL: Flow = one_server_flow!("cancel", "uac_cancel.xml", "uas_cancel.xml");
/// 486 Busy Here from the server reaches the caller.
pub const BUSY: Flow = one_server_flow!("busy", "uac_busy.xml", "uas_busy.xml");
/// Hold: re-INVITE with a=sendonly from the caller, 200 a=recvonly, ACK.
pub const HOLD: Flow = one_server_flow!("hold", "uac_hold.xml", "uas_hold.xml");
/// 183 with SDP (early media) before the 200.
pub const EARLY_MEDIA: Flow =
    one_server_flow!("early_media", "uac_early_media.xml", "uas_early_media.xml");
/// INFO (DTMF) in the dialog, answered 200.
pub const INFO: Flow = one_server_flow!("info", "uac_info.xml", "uas_info.xml");
/// Compact header names in the caller's requests.
pub const COMPACT: Flow = one_server_flow!("compact", "uac_compact.xml", "uas_basic.xml");
/// A ~3 kB INVITE (16 extra headers, long SDP).
pub const LARGE: Flow = one_server_flow!("large", "uac_large.xml", "uas_large.xml");
/// ms1 answers 503, ms2 takes the call: three calls one after another all succeed, ms1 was tried.
pub const FAILOVER: Flow = Flow {
    name: "failover",
    caller: "uac_basic.xml",
    servers: &["uas_unavailable.xml", "uas_basic.xml"],
    calls: 3,
    server_invites: &[Invites::AtLeast(1), Invites::Exactly(3)],
};
/// INVITE with Max-Forwards: 0 is answered 483 by the proxy; no server sees it.
pub const MAX_FORWARDS: Flow = Flow {
    name: "max_forwards",
    caller: "uac_max_forwards.xml",
    servers: &["uas_basic.xml"],
    calls: 1,
    server_invites: &[Invites::Exactly(0)],
};
/// OPTIONS to the proxy itself is answered 200 by the proxy; no server sees an INVITE.
pub const OPTIONS: Flow = Flow {
    name: "options",
    caller: "uac_options.xml",
    servers: &["uas_basic.xml"],
    calls: 1,
    server_invites: &[Invites::Exactly(0)],
};

/// How long a caller may run (SIPp's own -timeout; the harness kills it 10 s later).
const CALLER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a media server may take to end after the caller is done.
const SERVER_FINISH: Duration = Duration::from_secs(10);

/// A proxy in the chain between the caller and the media servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// The Tandem binary (its pool: what comes after it).
    Tandem,
    /// Kamailio with tests/kamailio/proxy.cfg (forwards to what comes after it; with two media
    /// servers after it, it tries the second on a 5xx from the first).
    Kamailio,
}

/// A started hop.
#[derive(Debug)]
enum Running {
    Tandem(Tandem),
    Kamailio(Kamailio),
}

impl Running {
    fn sip_addr(&self) -> SocketAddr {
        match self {
            Running::Tandem(t) => t.sip_addr(),
            Running::Kamailio(k) => k.sip_addr(),
        }
    }

    fn describe(&mut self) -> String {
        match self {
            Running::Tandem(t) => t.describe(),
            Running::Kamailio(k) => k.describe(),
        }
    }
}

fn chain_text(hops: &[Hop], servers: usize) -> String {
    let mut parts = vec!["caller".to_owned()];
    parts.extend(hops.iter().map(|h| format!("{h:?}")));
    parts.push(
        (1..=servers)
            .map(|i| format!("ms{i}"))
            .collect::<Vec<_>>()
            .join("+"),
    );
    parts.join(" → ")
}

/// Plays `flow` over `transport` on 127.0.0.1 with the caller in front of `hops` and the media
/// servers behind them; Ok if the caller and every media server succeeded. Skips (Ok, with a SKIP
/// line) when SIPp or a needed Kamailio is missing. The error names each SIPp side that failed,
/// what it reported and where its logs are, and the state and logs of every hop.
pub fn run_flow(test: &str, flow: &Flow, transport: Transport, hops: &[Hop]) -> Result<()> {
    run_flow_on(IpFamily::V4, test, flow, transport, hops)
}

/// As [`run_flow`], with every process on `family`'s loopback address (127.0.0.1 or ::1). Also
/// skips when that address is not configured on this machine.
pub fn run_flow_on(
    family: IpFamily,
    test: &str,
    flow: &Flow,
    transport: Transport,
    hops: &[Hop],
) -> Result<()> {
    if !need_tool(test, "sipp") || (hops.contains(&Hop::Kamailio) && !need_tool(test, "kamailio")) {
        return Ok(());
    }
    if !family.is_configured() {
        let address = family.loopback();
        skip(
            test,
            &format!("needs {address}: it is not configured on this machine"),
        );
        return Ok(());
    }
    let mut dir = TestDir::new(test)?;
    let servers = flow
        .servers
        .iter()
        .enumerate()
        .map(|(i, scenario)| {
            Sipp::uas(&format!("ms{}", i + 1), scenario)
                .family(family)
                .transport(transport)
                .timeout(CALLER_TIMEOUT * 3)
                .spawn(dir.path())
        })
        .collect::<Result<Vec<SippProcess>>>()?;

    // start the hops from the server side, each pointing at the one after it
    let mut next: Vec<SocketAddr> = servers.iter().map(SippProcess::addr).collect();
    let mut chain = Vec::new();
    for (i, hop) in hops.iter().enumerate().rev() {
        let running = match hop {
            Hop::Tandem => Running::Tandem(Tandem::start(
                TandemConfig::on(family, &next, transport),
                dir.path(),
            )?),
            Hop::Kamailio => {
                let mut config = KamailioConfig::new(next[0], transport);
                config.alternate_port = next.get(1).map(SocketAddr::port);
                Running::Kamailio(Kamailio::start(
                    &format!("kamailio-hop{}", i + 1),
                    config,
                    dir.path(),
                )?)
            }
        };
        next = vec![running.sip_addr()];
        chain.push(running);
    }

    let caller = Sipp::uac("caller", flow.caller, next[0])
        .family(family)
        .transport(transport)
        .calls(flow.calls)
        .limit(1)
        .timeout(CALLER_TIMEOUT)
        .spawn(dir.path())?
        .wait(Instant::now() + CALLER_TIMEOUT + Duration::from_secs(10))?;
    let server_outcomes = servers
        .into_iter()
        .map(|s| s.finish(Instant::now() + SERVER_FINISH))
        .collect::<Result<Vec<_>>>()?;

    let mut failures = Vec::new();
    failures.extend(caller.check_caller(flow.calls.into()).err());
    for (outcome, invites) in server_outcomes.iter().zip(flow.server_invites) {
        failures.extend(outcome.check_server(*invites).err());
    }
    if failures.is_empty() {
        dir.passed();
        return Ok(());
    }
    let mut message = format!(
        "flow `{}` over {transport} on {} ({}) failed; all logs under {}
  - {}",
        flow.name,
        family.loopback(),
        chain_text(hops, flow.servers.len()),
        dir.path().display(),
        failures.join(
            "
  - "
        )
    );
    for running in chain.iter_mut().rev() {
        message.push_str(
            "
  - ",
        );
        message.push_str(&running.describe());
    }
    bail!(message)
}

/// The harness and the scenarios checked without Tandem: every flow through Kamailio alone.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod through_kamailio {
    use super::*;

    macro_rules! flow_tests {
        ($($name:ident => $flow:expr),* $(,)?) => {$(
            mod $name {
                use super::*;

                #[test]
                fn udp() -> Result<()> {
                    run_flow(concat!("kamailio_udp_", stringify!($name)), &$flow, Transport::Udp, &[Hop::Kamailio])
                }

                #[test]
                fn tcp() -> Result<()> {
                    run_flow(concat!("kamailio_tcp_", stringify!($name)), &$flow, Transport::Tcp, &[Hop::Kamailio])
                }
            }
        )*};
    }

    flow_tests!(
        basic => BASIC,
        server_bye => SERVER_BYE,
        cancel => CANCEL,
        busy => BUSY,
        hold => HOLD,
        early_media => EARLY_MEDIA,
        info => INFO,
        compact => COMPACT,
        large => LARGE,
        failover => FAILOVER,
        max_forwards => MAX_FORWARDS,
        options => OPTIONS,
    );

    #[test]
    fn a_mismatched_flow_is_reported_with_its_side_and_logs() {
        let mismatched = Flow {
            name: "mismatched",
            caller: "uac_busy.xml",
            ..BASIC
        };
        let Err(error) = run_flow(
            "kamailio_mismatched",
            &mismatched,
            Transport::Udp,
            &[Hop::Kamailio],
        ) else {
            // without sipp or kamailio the flow is skipped
            return;
        };
        let text = format!("{error:#}");
        assert!(text.contains("caller SIPp (uac_busy.xml) FAILED"), "{text}");
        assert!(text.contains("ms1 SIPp (uas_basic.xml) FAILED"), "{text}");
        assert!(
            text.contains("logs: ") && text.contains("Kamailio running"),
            "{text}"
        );
        let dir = text
            .split("all logs under ")
            .nth(1)
            .and_then(|t| t.lines().next())
            .unwrap_or_default();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The scenarios over ::1 (RFC 5118 references), with a record-routing hop in the middle.
    #[test]
    fn ipv6_hold_and_failover() -> Result<()> {
        for transport in [Transport::Udp, Transport::Tcp] {
            for flow in [&HOLD, &FAILOVER] {
                run_flow_on(
                    IpFamily::V6,
                    &format!("kamailio_ipv6_{transport}_{}", flow.name),
                    flow,
                    transport,
                    &[Hop::Kamailio],
                )?;
            }
        }
        Ok(())
    }

    #[test]
    fn two_kamailios_in_a_row_hold() -> Result<()> {
        run_flow(
            "kamailio_chain_hold",
            &HOLD,
            Transport::Udp,
            &[Hop::Kamailio, Hop::Kamailio],
        )
    }
}
