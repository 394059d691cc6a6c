//! Tandem in front of real Asterisk 22 (Debian sid, in a chroot; scripts/asterisk-lab.sh):
//! media really flows, through Tandem's relay ports, and a killed Asterisk loses no new call.
//!
//! Needs root, the chroot (scripts/install-test-deps.sh), sipp and tcpdump; skipped otherwise.
//! The lab's addresses are fixed (127.0.0.1:5080 and 127.0.0.2:5080), so these tests run one at a time.

use anyhow::{bail, Result};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};
use tandem_tests::media::sdp_mismatch;
use tandem_tests::sipp::Invites;
use tandem_tests::{
    free_port, AsteriskLab, MediaPath, RtpCapture, RtpFlows, Sipp, SippOutcome, Tandem,
    TandemConfig, TestDir, Transport,
};

/// Share of the RTP packets that must pass each Asterisk hop (Echo, or the bridge to the agent).
const ASTERISK_SHARE_PERCENT: u64 = 95;
/// Packets in /usr/share/sip-tester/g711a.pcap, which uac_echo.xml plays.
const PCAP_PACKETS: u64 = 236;

/// One caller's echo call: how it ended and the RTP captured on its port and on `ports`.
struct EchoCall {
    caller: SippOutcome,
    caller_port: u16,
    flows: RtpFlows,
}

/// Plays uac_echo.xml toward `extension` at `target` while capturing RTP on the caller's port and on
/// `ports` (Asterisk's, Tandem's, the agent's), until the media is over.
fn echo_call(
    target: SocketAddr,
    extension: &str,
    ports: &[RangeInclusive<u16>],
    dir: &TestDir,
) -> Result<EchoCall> {
    let caller = Sipp::uac("caller", "uac_echo.xml", target)
        .service(extension)
        .timeout(Duration::from_secs(30));
    let caller_port = caller.media_port();
    let mut captured = vec![caller_port..=caller_port];
    captured.extend_from_slice(ports);
    let capture = RtpCapture::start(dir.path(), "rtp", &captured)?;
    let caller = caller
        .spawn(dir.path())?
        .wait(Instant::now() + Duration::from_secs(40))?;
    let flows = capture.wait_quiet(
        Duration::from_millis(300),
        Instant::now() + Duration::from_secs(3),
    )?;
    Ok(EchoCall {
        caller,
        caller_port,
        flows,
    })
}

/// One hop of a call's media path and the RTP packets seen on it.
struct Hop {
    name: &'static str,
    packets: u64,
    /// A relay (Tandem) or SIPp's echo: every packet of the hop before must be here. Asterisk's
    /// hops may lose a few (at most 100 - ASTERISK_SHARE_PERCENT %).
    lossless: bool,
}

/// The failures of a media path: the first hop must carry the whole pcap, and each hop the packets
/// of the one before (all of them after a lossless relay).
fn media_path_failures(hops: &[Hop], capture: &RtpFlows) -> Vec<String> {
    let mut previous = PCAP_PACKETS;
    let broken = hops.iter().any(|hop| {
        let enough = if hop.lossless {
            hop.packets == previous
        } else {
            hop.packets * 100 >= previous * ASTERISK_SHARE_PERCENT && hop.packets <= previous
        };
        previous = hop.packets;
        !enough
    });
    let path: Vec<String> = hops
        .iter()
        .map(|hop| format!("{} {}", hop.name, hop.packets))
        .collect();
    eprintln!("RTP {}", path.join(", "));
    if !broken {
        return Vec::new();
    }
    vec![format!(
        "RTP lost on the way (the caller played {PCAP_PACKETS}; Tandem and SIPp must lose none, Asterisk at most \
         {} %): {}\n    RTP captured:\n      {}",
        100 - ASTERISK_SHARE_PERCENT,
        path.join(", "),
        capture.to_string().trim_end().replace('\n', "\n      ")
    )]
}

/// Caller → Tandem → Asterisk 1 and back: the media went through Tandem's relay ports, each Tandem
/// hop carried every packet, and the caller's 200 names Tandem's caller-facing port. `agent` is the
/// media port of the agent Asterisk bridged the call to (its echo replaces Asterisk's).
fn relayed_echo_failures(call: &EchoCall, tandem: &Tandem, agent: Option<u16>) -> Vec<String> {
    let path = MediaPath {
        caller: call.caller_port..=call.caller_port,
        tandem: tandem.media_ports(),
        server: AsteriskLab::rtp_ports(1),
    };
    let relayed = match path.check_anchored(&call.flows) {
        Ok(relayed) => relayed,
        Err(problem) => return vec![problem],
    };
    let hop = |name, packets, lossless| Hop {
        name,
        packets,
        lossless,
    };
    let mut hops = vec![
        hop("caller → Tandem", relayed.caller_to_tandem, true),
        hop("Tandem → Asterisk", relayed.tandem_to_server, true),
    ];
    if let Some(agent) = agent {
        let agent = agent..=agent;
        hops.push(hop(
            "Asterisk → agent",
            call.flows.count(&path.server, &agent),
            false,
        ));
        hops.push(hop(
            "agent → Asterisk",
            call.flows.count(&agent, &path.server),
            true,
        ));
    }
    hops.push(hop("Asterisk → Tandem", relayed.server_to_tandem, false));
    hops.push(hop("Tandem → caller", relayed.tandem_to_caller, true));
    let mut failures = media_path_failures(&hops, &call.flows);
    failures.extend(sdp_mismatch(
        "caller",
        "200",
        call.caller.received_media("SIP/2.0 200"),
        relayed.caller_facing,
    ));
    failures
}

/// Turns collected failures into the test's error, with Tandem's state and the Asterisk logs.
fn verdict(
    mut dir: TestDir,
    failures: Vec<String>,
    tandem: &mut Tandem,
    lab: &AsteriskLab,
) -> Result<()> {
    if failures.is_empty() {
        dir.passed();
        return Ok(());
    }
    lab.save_logs(dir.path());
    bail!(
        "all logs under {} (Asterisk console logs copied there)\n  - {}\n  - {}",
        dir.path().display(),
        failures.join("\n  - "),
        tandem.describe()
    )
}

/// The lab itself, without Tandem: a caller straight to Asterisk extension 100 gets its RTP back.
/// If this fails, the Tandem tests below say nothing about Tandem.
#[test]
fn asterisk_lab_echoes_a_direct_call() -> Result<()> {
    const TEST: &str = "asterisk_direct_echo";
    if !AsteriskLab::available(TEST) {
        return Ok(());
    }
    let _serial = AsteriskLab::lock();
    let mut dir = TestDir::new(TEST)?;
    let mut lab = AsteriskLab::new(free_port());
    lab.start(1)?;
    let call = echo_call(
        AsteriskLab::addr(1),
        "100",
        &[AsteriskLab::rtp_ports(1)],
        &dir,
    )?;
    let caller = call.caller_port..=call.caller_port;
    let mut failures: Vec<String> = call.caller.check_caller(1).err().into_iter().collect();
    failures.extend(media_path_failures(
        &[
            Hop {
                name: "caller → Asterisk",
                packets: call.flows.count(&caller, &AsteriskLab::rtp_ports(1)),
                lossless: true,
            },
            Hop {
                name: "Asterisk → caller",
                packets: call.flows.count(&AsteriskLab::rtp_ports(1), &caller),
                lossless: false,
            },
        ],
        &call.flows,
    ));
    if failures.is_empty() {
        dir.passed();
        return Ok(());
    }
    lab.save_logs(dir.path());
    bail!(
        "the Asterisk lab is broken; logs under {}\n  - {}",
        dir.path().display(),
        failures.join("\n  - ")
    )
}

/// Caller → Tandem → Asterisk extension 100 (Answer + Echo): the call succeeds and the caller gets
/// its own RTP back, through Tandem's relay ports both ways (caller → Tandem → Asterisk → Tandem →
/// caller).
#[test]
fn caller_hears_its_echo_from_asterisk_through_tandem() -> Result<()> {
    const TEST: &str = "asterisk_echo";
    if !AsteriskLab::available(TEST) {
        return Ok(());
    }
    let _serial = AsteriskLab::lock();
    let dir = TestDir::new(TEST)?;
    let mut lab = AsteriskLab::new(free_port());
    lab.start(1)?;
    let mut tandem = Tandem::start(
        TandemConfig::new(&[AsteriskLab::addr(1)], Transport::Udp),
        dir.path(),
    )?;
    let ports = [tandem.media_ports(), AsteriskLab::rtp_ports(1)];
    let call = echo_call(tandem.sip_addr(), "100", &ports, &dir)?;
    let mut failures: Vec<String> = call.caller.check_caller(1).err().into_iter().collect();
    failures.extend(relayed_echo_failures(&call, &tandem, None));
    verdict(dir, failures, &mut tandem, &lab)
}

/// Caller → Tandem → Asterisk extension 200, which dials agent1 (a SIPp that echoes RTP): ringing
/// and answer pass through both, and the agent's echo reaches the caller through Asterisk's bridge
/// and Tandem's relay (caller → Tandem → Asterisk → agent → Asterisk → Tandem → caller).
#[test]
fn agent_answers_a_call_through_tandem_and_asterisk() -> Result<()> {
    const TEST: &str = "asterisk_agent";
    if !AsteriskLab::available(TEST) {
        return Ok(());
    }
    let _serial = AsteriskLab::lock();
    let dir = TestDir::new(TEST)?;
    let agent_port = free_port();
    let agent = Sipp::uas("agent1", "uas_basic.xml")
        .port(agent_port)
        .rtp_echo()
        .timeout(Duration::from_secs(60));
    let agent_media = agent.media_port();
    let agent = agent.spawn(dir.path())?;
    let mut lab = AsteriskLab::new(agent_port);
    lab.start(1)?;
    let mut tandem = Tandem::start(
        TandemConfig::new(&[AsteriskLab::addr(1)], Transport::Udp),
        dir.path(),
    )?;
    let ports = [
        tandem.media_ports(),
        AsteriskLab::rtp_ports(1),
        agent_media..=agent_media,
    ];
    let call = echo_call(tandem.sip_addr(), "200", &ports, &dir)?;
    let agent = agent.finish(Instant::now() + Duration::from_secs(10))?;
    let mut failures: Vec<String> = call.caller.check_caller(1).err().into_iter().collect();
    failures.extend(agent.check_server(Invites::Exactly(1)).err());
    failures.extend(relayed_echo_failures(&call, &tandem, Some(agent_media)));
    verdict(dir, failures, &mut tandem, &lab)
}

/// Two Asterisks in the pool; the first is killed with SIGKILL (no BYE, no answer, only ICMP).
/// Calls placed from that moment on, over more than the probe window, all succeed, and all of them
/// are answered by the survivor.
#[test]
fn new_calls_go_to_the_surviving_asterisk_after_a_kill() -> Result<()> {
    const TEST: &str = "asterisk_kill";
    if !AsteriskLab::available(TEST) {
        return Ok(());
    }
    let _serial = AsteriskLab::lock();
    let dir = TestDir::new(TEST)?;
    let mut lab = AsteriskLab::new(free_port());
    lab.start(1)?;
    lab.start(2)?;
    let config = TandemConfig::new(
        &[AsteriskLab::addr(1), AsteriskLab::addr(2)],
        Transport::Udp,
    );
    let probe_window = config.probe_window();
    let mut tandem = Tandem::start(config, dir.path())?;

    // both servers take calls before the kill
    let warm_up = Sipp::uac("before-kill", "uac_basic.xml", tandem.sip_addr())
        .calls(4)
        .limit(1);
    let warm_up = warm_up
        .spawn(dir.path())?
        .wait(Instant::now() + Duration::from_secs(30))?;
    let mut failures: Vec<String> = warm_up.check_caller(4).err().into_iter().collect();

    let survivor_before = lab.calls_processed(2)?;
    lab.kill9(1)?;
    // two new calls a second, from the kill until well past the probe window
    let calls = 2 * (probe_window.as_secs() + 3);
    let after = Sipp::uac("after-kill", "uac_basic.xml", tandem.sip_addr())
        .calls(calls as u32)
        .rate(2)
        .timeout(Duration::from_secs(45));
    let after = after
        .spawn(dir.path())?
        .wait(Instant::now() + Duration::from_secs(55))?;
    failures.extend(after.check_caller(calls).err());
    let survivor_calls = lab.calls_processed(2)? - survivor_before;
    if survivor_calls != calls {
        failures.push(format!("the surviving Asterisk answered {survivor_calls} of the {calls} calls placed after the kill"));
    }
    verdict(dir, failures, &mut tandem, &lab)
}
