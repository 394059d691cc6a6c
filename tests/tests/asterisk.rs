//! Tandem in front of real Asterisk 22 (Debian sid, in a chroot; scripts/asterisk-lab.sh):
//! media really flows, and a killed Asterisk loses no new call.
//!
//! Needs root, the chroot (scripts/install-test-deps.sh), sipp and tcpdump; skipped otherwise.
//! The lab's addresses are fixed (127.0.0.1:5080 and 127.0.0.2:5080), so these tests run one at a time.

use anyhow::{bail, Result};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tandem_tests::sipp::Invites;
use tandem_tests::{
    free_port, AsteriskLab, RtpCapture, Sipp, Tandem, TandemConfig, TestDir, Transport,
};

/// Share of the caller's RTP packets that must come back.
const ECHO_SHARE_PERCENT: u64 = 95;
/// Packets in /usr/share/sip-tester/g711a.pcap, which uac_echo.xml plays.
const PCAP_PACKETS: u64 = 236;

/// Plays uac_echo.xml toward `extension` at `target` while capturing the caller's RTP port;
/// returns the failures (empty when the call succeeded and ≥ 95 % of the RTP came back).
fn echo_call(target: SocketAddr, extension: &str, dir: &TestDir) -> Result<Vec<String>> {
    let caller = Sipp::uac("caller", "uac_echo.xml", target)
        .service(extension)
        .timeout(Duration::from_secs(30));
    let capture = RtpCapture::start(dir.path(), caller.media_port())?;
    let outcome = caller
        .spawn(dir.path())?
        .wait(Instant::now() + Duration::from_secs(40))?;
    let counts = capture.wait_received(
        PCAP_PACKETS * ECHO_SHARE_PERCENT / 100,
        Instant::now() + Duration::from_secs(2),
    )?;
    let mut failures: Vec<String> = outcome.check_caller(1).err().into_iter().collect();
    if counts.sent < PCAP_PACKETS * ECHO_SHARE_PERCENT / 100
        || counts.received * 100 < counts.sent * ECHO_SHARE_PERCENT
    {
        failures.push(format!(
            "RTP: the caller sent {} packets and got {} back (need ≥ {ECHO_SHARE_PERCENT} % of {PCAP_PACKETS}); capture: {}",
            counts.sent,
            counts.received,
            capture.file().display()
        ));
    }
    Ok(failures)
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
    let failures = echo_call(AsteriskLab::addr(1), "100", &dir)?;
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
/// its own RTP back.
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
    let failures = echo_call(tandem.sip_addr(), "100", &dir)?;
    verdict(dir, failures, &mut tandem, &lab)
}

/// Caller → Tandem → Asterisk extension 200, which dials agent1 (a SIPp that echoes RTP): ringing
/// and answer pass through both, and the agent's echo reaches the caller through Asterisk's bridge.
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
    let agent = agent.spawn(dir.path())?;
    let mut lab = AsteriskLab::new(agent_port);
    lab.start(1)?;
    let mut tandem = Tandem::start(
        TandemConfig::new(&[AsteriskLab::addr(1)], Transport::Udp),
        dir.path(),
    )?;
    let mut failures = echo_call(tandem.sip_addr(), "200", &dir)?;
    let agent = agent.finish(Instant::now() + Duration::from_secs(10))?;
    failures.extend(agent.check_server(Invites::Exactly(1)).err());
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
