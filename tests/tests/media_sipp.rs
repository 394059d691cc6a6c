//! Media through Tandem's relay, with SIPp on both ends: a caller plays RTP, a SIPp media server
//! (`-rtp_echo`) sends every packet back, and a tcpdump capture on `lo` shows each hop.
//!
//! Needs root (SIPp plays the pcap through a raw socket, tcpdump captures), sipp and tcpdump.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, Result};
use std::net::{SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};
use tandem_tests::media::sdp_mismatch;
use tandem_tests::sipp::Invites;
use tandem_tests::{
    free_media_range, free_port, need_root, need_tool, verdict, Kamailio, KamailioConfig,
    MediaPath, RtpCapture, RtpFlows, Sipp, SippOutcome, SippProcess, Tandem, TandemConfig, TestDir,
    Transport,
};

/// Packets in /usr/share/sip-tester/g711a.pcap, which uac_echo.xml plays.
const PCAP_PACKETS: u64 = 236;

fn available(test: &str) -> bool {
    need_root(test) && need_tool(test, "sipp") && need_tool(test, "tcpdump")
}

/// An RTP media server on its own port that echoes every packet to its source.
fn echo_server(transport: Transport, dir: &TestDir) -> Result<SippProcess> {
    Sipp::uas("ms1", "uas_basic.xml")
        .transport(transport)
        .rtp_echo()
        .timeout(Duration::from_secs(60))
        .spawn(dir.path())
}

fn single(port: u16) -> RangeInclusive<u16> {
    port..=port
}

/// One echo call: how both SIPp ends finished and the RTP captured on the three parties' ports.
struct EchoCall {
    caller: SippOutcome,
    server: SippOutcome,
    path: MediaPath,
    flows: RtpFlows,
}

/// Plays uac_echo.xml through the proxy `start_proxy` starts in front of a SIPp echo server (it
/// gets the server's SIP address and returns its own), capturing RTP on the caller's and the
/// server's media ports and on `proxy_media` (the proxy's relay range).
fn echo_call(
    transport: Transport,
    proxy_media: RangeInclusive<u16>,
    dir: &TestDir,
    start_proxy: impl FnOnce(SocketAddr) -> Result<SocketAddr>,
) -> Result<EchoCall> {
    let server = echo_server(transport, dir)?;
    let proxy = start_proxy(server.addr())?;
    let caller = Sipp::uac("caller", "uac_echo.xml", proxy)
        .transport(transport)
        .timeout(Duration::from_secs(30));
    let path = MediaPath {
        caller: single(caller.media_port()),
        tandem: proxy_media,
        server: single(server.media_port()),
    };
    let capture = RtpCapture::start(
        dir.path(),
        "rtp",
        &[
            path.caller.clone(),
            path.tandem.clone(),
            path.server.clone(),
        ],
    )?;
    let caller = caller
        .spawn(dir.path())?
        .wait(Instant::now() + Duration::from_secs(40))?;
    let flows = capture.wait_quiet(
        Duration::from_millis(300),
        Instant::now() + Duration::from_secs(3),
    )?;
    let server = server.finish(Instant::now() + Duration::from_secs(10))?;
    Ok(EchoCall {
        caller,
        server,
        path,
        flows,
    })
}

/// Caller → Tandem → SIPp echo server: every one of the 236 packets crosses the four hops (caller →
/// Tandem → server → Tandem → caller), on Tandem's relay ports, and the SDP each peer received names
/// the Tandem port it sends to.
fn every_packet_comes_back_through_tandem(test: &str, transport: Transport) -> Result<()> {
    if !available(test) {
        return Ok(());
    }
    let dir = TestDir::new(test)?;
    let mut tandem = None;
    let relay_ports = free_media_range();
    let call = echo_call(transport, relay_ports.clone(), &dir, |server| {
        let mut config = TandemConfig::new(&[server], transport);
        config.media.ports = relay_ports;
        let started = tandem.insert(Tandem::start(config, dir.path())?);
        Ok(started.sip_addr())
    })?;
    let mut failures: Vec<String> = call.caller.check_caller(1).err().into_iter().collect();
    failures.extend(call.server.check_server(Invites::Exactly(1)).err());
    match call.path.check_anchored(&call.flows) {
        Err(problem) => failures.push(problem),
        Ok(relayed) => {
            eprintln!("{test}: RTP {relayed}");
            if relayed.hops() != [PCAP_PACKETS; 4] {
                failures.push(format!(
                    "RTP lost on the way: {relayed} (the caller played {PCAP_PACKETS})\n    RTP captured:\n      {}",
                    call.flows.to_string().trim_end().replace('\n', "\n      ")
                ));
            }
            failures.extend(sdp_mismatch(
                "caller",
                "200",
                call.caller.received_media("SIP/2.0 200"),
                relayed.caller_facing,
            ));
            failures.extend(sdp_mismatch(
                "media server",
                "INVITE",
                call.server.received_media("INVITE"),
                relayed.server_facing,
            ));
        }
    }
    verdict(dir, failures, tandem.as_mut())
}

#[test]
fn every_rtp_packet_comes_back_through_tandem_over_udp() -> Result<()> {
    every_packet_comes_back_through_tandem("media_udp_echo", Transport::Udp)
}

#[test]
fn every_rtp_packet_comes_back_through_tandem_over_tcp() -> Result<()> {
    every_packet_comes_back_through_tandem("media_tcp_echo", Transport::Tcp)
}

/// The check above has teeth: through Kamailio, which passes the SDP on untouched, the same call's
/// RTP goes straight between the caller and the server, and the anchoring check says so.
#[test]
fn media_that_bypasses_the_proxy_fails_the_anchoring_check() -> Result<()> {
    const TEST: &str = "media_bypass_control";
    if !available(TEST) || !need_tool(TEST, "kamailio") {
        return Ok(());
    }
    let mut dir = TestDir::new(TEST)?;
    let mut kamailio = None;
    let call = echo_call(Transport::Udp, free_media_range(), &dir, |server| {
        let config = KamailioConfig::new(server, Transport::Udp);
        Ok(kamailio
            .insert(Kamailio::start("kamailio", config, dir.path())?)
            .sip_addr())
    })?;
    call.caller.check_caller(1).map_err(anyhow::Error::msg)?;
    let Err(problem) = call.path.check_anchored(&call.flows) else {
        bail!(
            "media through Kamailio passed the anchoring check; logs under {}",
            dir.path().display()
        );
    };
    if !problem.contains(&format!("{} RTP packets went straight", 2 * PCAP_PACKETS)) {
        bail!(
            "unexpected: {problem}\n  logs under {}",
            dir.path().display()
        );
    }
    dir.passed();
    Ok(())
}

/// Real RTP packets the latching test's caller sends, and stray ones from another host.
const REAL_PACKETS: u16 = 50;
const STRAY_PACKETS: u16 = 50;
const REAL_MARK: &[u8] = b"real caller";
const STRAY_MARK: &[u8] = b"stray sender";

/// An RTP packet (PCMA, 20 ms) whose payload starts with `mark`.
fn rtp_packet(ssrc: u32, seq: u16, mark: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, 8];
    packet.extend(seq.to_be_bytes());
    packet.extend((u32::from(seq) * 160).to_be_bytes());
    packet.extend(ssrc.to_be_bytes());
    packet.extend(mark);
    packet.resize(12 + 160, 0xd5);
    packet
}

/// What the caller's socket got back.
#[derive(Debug, Default)]
struct Echoes {
    real: u16,
    stray: u16,
}

impl Echoes {
    fn record(&mut self, packet: &[u8]) {
        if packet.get(12..12 + REAL_MARK.len()) == Some(REAL_MARK) {
            self.real += 1;
        } else {
            self.stray += 1;
        }
    }
}

/// Sends the real caller's packets 20 ms apart from `real` to `tandem`, with a burst from `stray`
/// before the first and another after the tenth, and counts what comes back to `real` (for at most
/// 3 s after the last one).
fn talk_with_a_stray_around(
    real: &UdpSocket,
    stray: &UdpSocket,
    tandem: SocketAddr,
) -> Result<Echoes> {
    let stray_burst = |from: u16| -> Result<()> {
        for seq in from..from + STRAY_PACKETS / 2 {
            stray.send_to(&rtp_packet(0x5757, seq, STRAY_MARK), tandem)?;
        }
        Ok(())
    };
    let mut echoes = Echoes::default();
    let mut buffer = [0u8; 1500];
    stray_burst(0)?;
    for seq in 0..REAL_PACKETS {
        real.send_to(&rtp_packet(0x1234, seq, REAL_MARK), tandem)?;
        if seq == 10 {
            stray_burst(STRAY_PACKETS / 2)?;
        }
        // pace the packets by reading echoes for up to 20 ms
        let next = Instant::now() + Duration::from_millis(20);
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            real.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match real.recv(&mut buffer) {
                Ok(n) => echoes.record(&buffer[..n]),
                Err(_) => break,
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    real.set_read_timeout(Some(Duration::from_millis(100)))?;
    while echoes.real + echoes.stray < REAL_PACKETS && Instant::now() < deadline {
        if let Ok(n) = real.recv(&mut buffer) {
            echoes.record(&buffer[..n]);
        }
    }
    Ok(echoes)
}

/// The caller's SDP names one port but its RTP comes from another port of the same IP (as behind a
/// NAT): Tandem latches to the real source and the echo reaches it. A stray sender on 127.0.0.2
/// blasting at the caller-facing port, before and after the latch, gets nothing through: the
/// server receives exactly the caller's packets.
#[test]
fn tandem_latches_to_the_callers_real_port_and_drops_a_stray_sender() -> Result<()> {
    const TEST: &str = "media_latch";
    if !available(TEST) {
        return Ok(());
    }
    let dir = TestDir::new(TEST)?;
    let server = echo_server(Transport::Udp, &dir)?;
    let mut tandem = Tandem::start(
        TandemConfig::new(&[server.addr()], Transport::Udp),
        dir.path(),
    )?;
    let caller = Sipp::uac("caller", "uac_listen.xml", tandem.sip_addr())
        .arg("-d")
        .arg("5000")
        .timeout(Duration::from_secs(20));
    let signalled = SocketAddr::from(([127, 0, 0, 1], caller.media_port()));
    let real = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], free_port())))?;
    let stray = UdpSocket::bind("127.0.0.2:0")?;
    let server_media = SocketAddr::from(([127, 0, 0, 1], server.media_port()));
    let tandem_ports = tandem.media_ports();
    let capture = RtpCapture::start(
        dir.path(),
        "rtp",
        &[
            single(signalled.port()),
            single(real.local_addr()?.port()),
            tandem_ports.clone(),
            single(server_media.port()),
        ],
    )?;
    let mut caller = caller.spawn(dir.path())?;

    let mut failures = Vec::new();
    let answer = caller.wait_received_media("SIP/2.0 200", Instant::now() + Duration::from_secs(5));
    match answer {
        Some(tandem_side) if tandem_ports.contains(&tandem_side.port()) => {
            let echoes = talk_with_a_stray_around(&real, &stray, tandem_side)?;
            eprintln!(
                "{TEST}: the caller got {} of its {REAL_PACKETS} packets back and {} of the stray's",
                echoes.real, echoes.stray
            );
            if echoes.real != REAL_PACKETS || echoes.stray != 0 {
                failures.push(format!(
                    "the caller sent {REAL_PACKETS} packets from {} (its SDP said {signalled}) and got back \
                     {} of them and {} of the stray's",
                    real.local_addr()?,
                    echoes.real,
                    echoes.stray
                ));
            }
        }
        other => failures.push(format!(
            "the caller's 200 names media at {other:?}, not one of Tandem's relay ports {tandem_ports:?}"
        )),
    }
    let caller = caller.wait(Instant::now() + Duration::from_secs(15))?;
    let server = server.finish(Instant::now() + Duration::from_secs(10))?;
    failures.extend(caller.check_caller(1).err());
    failures.extend(server.check_server(Invites::Exactly(1)).err());

    let flows = capture.flows()?;
    let stray_sent = flows.sent_by(stray.local_addr()?);
    let at_server = flows.received_by(server_media);
    let to_signalled = flows.received_by(signalled);
    let to_stray = flows.received_by(stray.local_addr()?);
    eprintln!(
        "{TEST}: stray sent {stray_sent}, server received {at_server}, to the signalled port {to_signalled}, \
         to the stray {to_stray}"
    );
    if stray_sent != u64::from(STRAY_PACKETS)
        || at_server != u64::from(REAL_PACKETS)
        || to_signalled != 0
        || to_stray != 0
    {
        failures.push(format!(
            "the stray sent {stray_sent} packets (expected {STRAY_PACKETS}); the server received {at_server} \
             (expected the caller's {REAL_PACKETS}); {to_signalled} went to the caller's signalled port and \
             {to_stray} to the stray (expected none)\n    RTP captured:\n      {}",
            flows.to_string().trim_end().replace('\n', "\n      ")
        ));
    }
    verdict(dir, failures, Some(&mut tandem))
}
