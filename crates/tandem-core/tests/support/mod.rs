//! A caller, Tandem and two media servers on a virtual network with virtual time; the test plays
//! the caller and the servers with real SIP text.
#![allow(clippy::unwrap_used, dead_code)]

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tandem_core::transaction::Timers;
use tandem_core::{CallEvent, Core, CoreConfig, MediaServerConfig, Peer, ProbeConfig, Transport};
use tandem_sip::{HeaderName, Message, Method, ResponseBuilder};

pub const CALLER: &str = "127.0.0.1:5061";
pub const TANDEM: &str = "127.0.0.1:5060";
pub const MS1: &str = "127.0.0.1:5070";
pub const MS2: &str = "127.0.0.1:5071";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub struct Net {
    pub core: Core,
    pub now: Instant,
    /// Status lines of the 400/505 answers to requests the codec rejected: Tandem copies their
    /// (possibly broken) headers as received, so such an answer need not parse itself.
    pub raw_rejections: Vec<(SocketAddr, String)>,
}

impl Net {
    pub fn new() -> Net {
        Net::with_probe_interval(Duration::from_secs(3600))
    }

    pub fn with_probe_interval(interval: Duration) -> Net {
        Net::with_config(|config| config.probe.interval = interval)
    }

    /// A node whose configuration `edit` changed from the tests' usual one (probes hourly).
    pub fn with_config(edit: impl FnOnce(&mut CoreConfig)) -> Net {
        let now = Instant::now();
        let server = |name: &str, a: &str| MediaServerConfig {
            name: name.into(),
            addr: addr(a),
            transport: Transport::Udp,
            weight: 1,
        };
        let config = CoreConfig {
            advertised: addr(TANDEM),
            tcp: true,
            timers: Timers::default(),
            media_servers: vec![server("ms1", MS1), server("ms2", MS2)],
            probe: ProbeConfig {
                interval: Duration::from_secs(3600),
                timeout: Duration::from_millis(500),
                failures_to_down: 2,
                successes_to_up: 2,
            },
            server_invite_timeout: Duration::from_secs(2),
            max_calls: 100,
            max_call_duration: None,
            media: Some(tandem_core::media::MediaConfig {
                address: "127.0.0.1".parse().unwrap(),
                port_min: 30000,
                port_max: 30999,
            }),
        };
        let mut config = config;
        edit(&mut config);
        let mut core = Core::new(config, now);
        core.handle_timeout(now); // the first probes go out at start
        let mut net = Net {
            core,
            now,
            raw_rejections: Vec::new(),
        };
        net.drain();
        net
    }

    pub fn caller_sends(&mut self, text: &str) {
        self.core.handle_message(
            self.now,
            Bytes::from(text.to_owned()),
            Peer::udp(addr(CALLER)),
        );
    }

    pub fn server_sends(&mut self, server: &str, msg: Bytes) {
        self.core
            .handle_message(self.now, msg, Peer::udp(addr(server)));
    }

    /// Everything Tandem sent, parsed, with its destination.
    pub fn drain(&mut self) -> Vec<(SocketAddr, Message)> {
        let mut out = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            match Message::parse(t.payload.clone()) {
                Ok(msg) => out.push((t.dest.addr, msg)),
                Err(error) => {
                    let text = String::from_utf8_lossy(&t.payload).into_owned();
                    let status = text.lines().next().unwrap_or_default().to_owned();
                    assert!(
                        status.starts_with("SIP/2.0 400 ") || status.starts_with("SIP/2.0 505 "),
                        "Tandem sent an unparsable message ({error}): {text}"
                    );
                    self.raw_rejections.push((t.dest.addr, status));
                }
            }
        }
        out
    }

    pub fn drain_transports(&mut self) -> Vec<(Peer, Message)> {
        let mut out = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            out.push((t.dest, Message::parse(t.payload).unwrap()));
        }
        out
    }

    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(t) = self.core.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.core.handle_timeout(self.now);
        }
        self.now = end;
        self.core.handle_timeout(self.now);
    }

    pub fn events(&mut self) -> Vec<CallEvent> {
        std::iter::from_fn(|| self.core.poll_event()).collect()
    }
}

pub fn invite(call_id: &str, branch: &str, max_forwards: u32) -> String {
    let sdp = "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 16000 RTP/AVP 8\r\n";
    format!(
        "INVITE sip:100@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\n\
         From: \"Caller\" <sip:caller@{CALLER}>;tag=c1\r\nTo: <sip:100@{TANDEM}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{CALLER}>\r\nMax-Forwards: {max_forwards}\r\n\
         X-Custom: kept as is\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

pub fn in_dialog(method: &str, call_id: &str, branch: &str, to_tag: &str, cseq: u32) -> String {
    format!(
        "{method} sip:tandem@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\n\
         From: \"Caller\" <sip:caller@{CALLER}>;tag=c1\r\nTo: <sip:100@{TANDEM}>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The server's response to a request Tandem sent it.
pub fn answer(req: &Message, code: u16, reason: &str, with_sdp: bool) -> Bytes {
    let mut b = ResponseBuilder::new(req, code, reason);
    if code > 100 {
        b.to_tag("srv1");
    }
    b.header(HeaderName::Contact, "<sip:100@127.0.0.1:5070>");
    if with_sdp {
        b.body("application/sdp", b"v=0\r\no=ms 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 8\r\n");
    }
    b.build()
}

pub fn only_to<'a>(sent: &'a [(SocketAddr, Message)], to: &str) -> Vec<&'a Message> {
    sent.iter()
        .filter(|(a, _)| *a == addr(to))
        .map(|(_, m)| m)
        .collect()
}

pub fn request_to<'a>(sent: &'a [(SocketAddr, Message)], to: &str, method: Method) -> &'a Message {
    only_to(sent, to)
        .into_iter()
        .find(|m| m.method() == Some(&method))
        .unwrap_or_else(|| panic!("no {method:?} sent to {to}"))
}

pub fn statuses(sent: &[(SocketAddr, Message)], to: &str) -> Vec<u16> {
    only_to(sent, to)
        .iter()
        .filter_map(|m| m.status())
        .collect()
}

/// Caller INVITE → server INVITE → 180 → 200 → ACK: returns the server-side INVITE and the caller's
/// To tag.
pub fn establish(net: &mut Net, call_id: &str) -> (Message, String) {
    establish_with(net, call_id, |invite| answer(invite, 200, "OK", true))
}

/// [`establish`], with the server's 2xx built by `ok` from its INVITE.
pub fn establish_with(
    net: &mut Net,
    call_id: &str,
    ok: impl FnOnce(&Message) -> Bytes,
) -> (Message, String) {
    net.caller_sends(&invite(call_id, "z9hG4bKc1", 70));
    let sent = net.drain();
    assert_eq!(statuses(&sent, CALLER), vec![100]);
    let srv_invite = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, answer(&srv_invite, 180, "Ringing", false));
    net.server_sends(MS1, ok(&srv_invite));
    let sent = net.drain();
    let to_caller = only_to(&sent, CALLER);
    assert_eq!(
        to_caller
            .iter()
            .filter_map(|m| m.status())
            .collect::<Vec<_>>(),
        vec![180, 200]
    );
    let ok = to_caller[1];
    let tag = ok.to_hdr().tag().unwrap().to_owned();
    assert_eq!(ok.call_id(), call_id, "the caller sees its own Call-ID");
    net.caller_sends(&in_dialog("ACK", call_id, "z9hG4bKc1ack", &tag, 1));
    let sent = net.drain();
    let ack = request_to(&sent, MS1, Method::Ack);
    assert_eq!(ack.call_id(), srv_invite.call_id());
    assert_eq!(ack.to_hdr().tag(), Some("srv1"));
    assert_eq!(ack.cseq().seq, srv_invite.cseq().seq);
    (srv_invite, tag)
}
