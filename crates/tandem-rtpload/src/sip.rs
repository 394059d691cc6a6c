//! Tandem through plain SIP over UDP. The generator plays both ends of every call:
//!
//! - the caller (UAC, an ephemeral port): INVITE with side A's SDP to Tandem, ACK, BYE at the end;
//!   the SDP of the 200 it receives names Tandem's caller-facing port (where side A sends);
//! - the media server (UAS on `--uas`, Tandem's only `[[media_server]]`): 200 to OPTIONS probes and
//!   to BYE, 200 with side B's SDP to INVITEs; the SDP of the INVITE Tandem forwards names the
//!   server-facing port (where side B sends).
//!
//! Streams are recognised by the `o=` session id of their SDP (see [`crate::sdp`]) on the server
//! side, where the B2BUA may have changed the Call-ID, and by the Call-ID on the caller side.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tandem_sip::{HeaderName, Message, Method, RequestBuilder, ResponseBuilder};

use crate::backend::{Backend, Endpoints, Pacer, Session, SetupOutcome, TeardownOutcome};
use crate::sdp;

/// First retransmission interval of INVITE and BYE (RFC 3261 T1); doubles per resend.
const T1: Duration = Duration::from_millis(500);
/// Sends of one INVITE or BYE before the call counts as failed.
const MAX_SENDS: u32 = 6;
/// INVITE attempts per call when Tandem answers 503 (no server up yet) or 408/500.
const MAX_ATTEMPTS: u32 = 5;
/// Wait before retrying a call that got 503.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// OPTIONS probes to answer before placing calls (Tandem marks a server up after a few), and the
/// longest wait for them.
const PROBES_BEFORE_CALLS: u64 = 2;
const PROBE_WAIT: Duration = Duration::from_secs(6);
/// Sleep of the setup loop when nothing arrived.
const IDLE: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not started yet.
    Pending,
    /// INVITE sent, no response yet (retransmitting).
    Inviting,
    /// A provisional response arrived: no more retransmissions, waiting for the final one.
    Proceeding,
    /// 200 received and ACKed.
    Established,
    /// Rejected with a retryable status: a new attempt at this time.
    RetryAt(Instant),
    /// Setup failed for good.
    Failed,
    /// BYE sent, waiting for its 200.
    Closing,
    /// BYE answered.
    Closed,
}

#[derive(Debug)]
struct Call {
    state: State,
    attempt: u32,
    /// The request in flight (INVITE or BYE) for retransmission, when it was last sent, and sends.
    request: Option<Bytes>,
    sent_at: Instant,
    sends: u32,
    to_tag: Option<String>,
    /// Contact of the 200: the Request-URI of ACK and BYE.
    target: Option<String>,
    /// Record-Route of the 200, reversed: the Route set.
    routes: Vec<String>,
    a_sends_to: Option<SocketAddrV4>,
    b_sends_to: Option<SocketAddrV4>,
    bye_ok: bool,
}

/// The Tandem backend.
#[derive(Debug)]
pub struct Tandem {
    uac: UdpSocket,
    uas: UdpSocket,
    proxy: SocketAddr,
    uac_addr: SocketAddr,
    uas_addr: SocketAddr,
    run: String,
    calls: Vec<Call>,
    endpoints: Vec<Endpoints>,
    probes_answered: u64,
    retransmits: u64,
    next_branch: u64,
    buf: Vec<u8>,
}

impl Tandem {
    /// Binds the media-server socket on `uas` and the caller socket on an ephemeral port of the
    /// same address; `proxy` is Tandem's SIP address.
    pub fn bind(proxy: SocketAddr, uas: SocketAddr) -> anyhow::Result<Tandem> {
        let uas_socket =
            UdpSocket::bind(uas).with_context(|| format!("binding the UAS on {uas}"))?;
        let uac_socket =
            UdpSocket::bind(SocketAddr::new(uas.ip(), 0)).context("binding the UAC")?;
        uas_socket.set_nonblocking(true)?;
        uac_socket.set_nonblocking(true)?;
        Ok(Tandem {
            uac_addr: uac_socket.local_addr()?,
            uas_addr: uas_socket.local_addr()?,
            uac: uac_socket,
            uas: uas_socket,
            proxy,
            run: format!("{:x}", std::process::id()),
            calls: Vec::new(),
            endpoints: Vec::new(),
            probes_answered: 0,
            retransmits: 0,
            next_branch: 0,
            buf: vec![0; 65_536],
        })
    }

    fn branch(&mut self) -> String {
        self.next_branch += 1;
        format!("z9hG4bK-rtpload-{}-{}", self.run, self.next_branch)
    }

    fn call_id(&self, stream: usize) -> String {
        format!(
            "{stream}.{}.{}@rtpload",
            self.calls[stream].attempt, self.run
        )
    }

    fn caller_from(&self, stream: usize) -> String {
        format!(
            "<sip:caller@{}>;tag=a{stream}.{}",
            self.uac_addr, self.calls[stream].attempt
        )
    }

    fn request_uri(&self) -> String {
        format!("sip:bench@{}", self.proxy)
    }

    /// Sends a fresh INVITE for `stream` (a new attempt: new Call-ID and tags).
    fn invite(&mut self, stream: usize, now: Instant) {
        self.calls[stream].attempt += 1;
        let branch = self.branch();
        let body = sdp::body(stream as u32, self.endpoints[stream].a);
        let msg = RequestBuilder::new(&Method::Invite, &self.request_uri())
            .header(
                HeaderName::Via,
                &format!("SIP/2.0/UDP {};branch={branch};rport", self.uac_addr),
            )
            .header(HeaderName::MaxForwards, "70")
            .header(HeaderName::From, &self.caller_from(stream))
            .header(HeaderName::To, &format!("<{}>", self.request_uri()))
            .header(HeaderName::CallId, &self.call_id(stream))
            .header(HeaderName::CSeq, "1 INVITE")
            .header(
                HeaderName::Contact,
                &format!("<sip:caller@{}>", self.uac_addr),
            )
            .body("application/sdp", body.as_bytes())
            .build();
        self.send_uac(&msg);
        let call = &mut self.calls[stream];
        call.state = State::Inviting;
        call.request = Some(msg);
        call.sent_at = now;
        call.sends = 1;
        call.to_tag = None;
        call.a_sends_to = None;
        call.b_sends_to = None;
    }

    fn send_uac(&self, msg: &[u8]) {
        // A lost send is recovered by retransmission; nothing else to do with the error.
        let _ = self.uac.send_to(msg, self.proxy);
    }

    /// An in-dialog request from the caller: ACK (for a 2xx) or BYE.
    fn dialog_request(&mut self, stream: usize, method: &Method, cseq: u32) -> Bytes {
        let branch = self.branch();
        let call = &self.calls[stream];
        let target = call.target.clone().unwrap_or_else(|| self.request_uri());
        let mut b = RequestBuilder::new(method, &target);
        b.header(
            HeaderName::Via,
            &format!("SIP/2.0/UDP {};branch={branch};rport", self.uac_addr),
        );
        for route in &call.routes {
            b.header(HeaderName::Route, route);
        }
        let to_tag = call.to_tag.as_deref().unwrap_or("");
        b.header(HeaderName::MaxForwards, "70")
            .header(HeaderName::From, &self.caller_from(stream))
            .header(
                HeaderName::To,
                &format!("<{}>;tag={to_tag}", self.request_uri()),
            )
            .header(HeaderName::CallId, &self.call_id(stream))
            .header(HeaderName::CSeq, &format!("{cseq} {method}"));
        b.build()
    }

    /// ACK for a non-2xx final response: same Via branch as the INVITE (RFC 3261 §17.1.1.3).
    fn ack_failure(&self, response: &Message) {
        let Some(invite) = self.calls_request_for(response) else {
            return;
        };
        let Ok(invite) = Message::parse(invite) else {
            return;
        };
        let via = invite.header(HeaderName::Via).unwrap_or_default();
        let to = response.header(HeaderName::To).unwrap_or_default();
        let from = invite.header(HeaderName::From).unwrap_or_default();
        let msg = RequestBuilder::new(&Method::Ack, invite.request_uri().unwrap_or_default())
            .header(HeaderName::Via, &via)
            .header(HeaderName::MaxForwards, "70")
            .header(HeaderName::From, &from)
            .header(HeaderName::To, &to)
            .header(HeaderName::CallId, invite.call_id())
            .header(HeaderName::CSeq, "1 ACK")
            .build();
        self.send_uac(&msg);
    }

    fn calls_request_for(&self, response: &Message) -> Option<Bytes> {
        let stream = self.stream_of_call_id(response.call_id())?;
        self.calls[stream].request.clone()
    }

    /// The stream of a Call-ID of the current attempt; `None` for other or stale Call-IDs.
    fn stream_of_call_id(&self, call_id: &str) -> Option<usize> {
        let mut parts = call_id.split('.');
        let stream: usize = parts.next()?.parse().ok()?;
        let attempt: u32 = parts.next()?.parse().ok()?;
        let call = self.calls.get(stream)?;
        (call.attempt == attempt).then_some(stream)
    }

    /// Reads and handles everything waiting on both sockets.
    fn pump(&mut self, now: Instant) {
        for _ in 0..1024 {
            let mut progressed = false;
            if let Some((msg, _)) = recv_message(&self.uac, &mut self.buf) {
                self.on_uac_message(&msg, now);
                progressed = true;
            }
            if let Some((msg, from)) = recv_message(&self.uas, &mut self.buf) {
                self.on_uas_request(&msg, from);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_uac_message(&mut self, msg: &Message, now: Instant) {
        let Some(code) = msg.status() else {
            // A request to the caller (a BYE from Tandem): accept it.
            if msg.method() != Some(&Method::Ack) {
                let response = ResponseBuilder::new(msg, 200, "OK").build();
                let _ = self.uac.send_to(&response, self.proxy);
            }
            return;
        };
        let Some(stream) = self.stream_of_call_id(msg.call_id()) else {
            return;
        };
        let cseq = msg.cseq();
        let state = self.calls[stream].state;
        if cseq.method == Method::Bye {
            if code >= 200 && state == State::Closing {
                let call = &mut self.calls[stream];
                call.state = State::Closed;
                call.bye_ok = (200..300).contains(&code);
            }
            return;
        }
        if cseq.method != Method::Invite {
            return;
        }
        match code {
            100..=199 => {
                if state == State::Inviting {
                    self.calls[stream].state = State::Proceeding;
                }
            }
            200..=299 => self.on_invite_ok(stream, msg, state),
            _ => {
                self.ack_failure(msg);
                if matches!(state, State::Inviting | State::Proceeding) {
                    let retryable = matches!(code, 408 | 480 | 500 | 503);
                    self.calls[stream].state =
                        if retryable && self.calls[stream].attempt < MAX_ATTEMPTS {
                            State::RetryAt(now + RETRY_AFTER)
                        } else {
                            State::Failed
                        };
                }
            }
        }
    }

    fn on_invite_ok(&mut self, stream: usize, msg: &Message, state: State) {
        match state {
            State::Inviting | State::Proceeding => {
                let a_sends_to = sdp::media_target(&msg.body()).ok();
                let call = &mut self.calls[stream];
                call.to_tag = msg.to_tag().map(str::to_string);
                call.target = msg.contacts().first().map(|c| c.uri.to_string());
                call.routes = msg
                    .header_values(HeaderName::RecordRoute)
                    .map(|v| v.to_string())
                    .collect();
                call.routes.reverse();
                call.a_sends_to = a_sends_to;
                call.request = None;
                call.state = if a_sends_to.is_some() {
                    State::Established
                } else {
                    State::Failed
                };
                let ack = self.dialog_request(stream, &Method::Ack, 1);
                self.send_uac(&ack);
            }
            State::Established | State::Failed => {
                // A retransmitted 200: our ACK was lost.
                let ack = self.dialog_request(stream, &Method::Ack, 1);
                self.send_uac(&ack);
            }
            _ => {}
        }
    }

    fn on_uas_request(&mut self, msg: &Message, from: SocketAddr) {
        let Some(method) = msg.method() else {
            return; // responses to the UAS: none expected
        };
        let response = match method {
            Method::Ack => return,
            Method::Options => {
                self.probes_answered += 1;
                ResponseBuilder::new(msg, 200, "OK").build()
            }
            Method::Invite => self.answer_invite(msg),
            _ => ResponseBuilder::new(msg, 200, "OK").build(),
        };
        let _ = self.uas.send_to(&response, from);
    }

    /// 200 with side B's SDP, or 488 when the offer names no stream of ours.
    fn answer_invite(&mut self, msg: &Message) -> Bytes {
        let body = msg.body();
        let stream = sdp::stream_of(&body)
            .ok()
            .map(|s| s as usize)
            .filter(|&s| s < self.endpoints.len());
        let (Some(stream), Ok(target)) = (stream, sdp::media_target(&body)) else {
            return ResponseBuilder::new(msg, 488, "Not Acceptable Here").build();
        };
        self.calls[stream].b_sends_to = Some(target);
        let answer = sdp::body(stream as u32, self.endpoints[stream].b);
        ResponseBuilder::new(msg, 200, "OK")
            .to_tag(&format!("m{stream}"))
            .header(HeaderName::Contact, &format!("<sip:ms@{}>", self.uas_addr))
            .body("application/sdp", answer.as_bytes())
            .build()
    }

    /// Resends requests that went unanswered (doubling from T1); gives up after [`MAX_SENDS`].
    fn retransmit(&mut self, now: Instant) {
        for stream in 0..self.calls.len() {
            let call = &self.calls[stream];
            if !matches!(call.state, State::Inviting | State::Closing) {
                continue;
            }
            let interval = T1 * (1u32 << (call.sends - 1).min(3));
            if now.duration_since(call.sent_at) < interval {
                continue;
            }
            if call.sends >= MAX_SENDS {
                let call = &mut self.calls[stream];
                call.state = if call.state == State::Closing {
                    State::Closed
                } else {
                    State::Failed
                };
                continue;
            }
            if let Some(request) = call.request.clone() {
                self.send_uac(&request);
                self.retransmits += 1;
                let call = &mut self.calls[stream];
                call.sends += 1;
                call.sent_at = now;
            }
        }
    }

    /// Answers probes until Tandem has probed [`PROBES_BEFORE_CALLS`] times (or a few seconds).
    fn wait_for_probes(&mut self) {
        let until = Instant::now() + PROBE_WAIT;
        while self.probes_answered < PROBES_BEFORE_CALLS && Instant::now() < until {
            self.pump(Instant::now());
            std::thread::sleep(IDLE);
        }
    }
}

/// The next parsable SIP message waiting on `socket`, skipping garbage; `None` when none waits.
fn recv_message(socket: &UdpSocket, buf: &mut [u8]) -> Option<(Message, SocketAddr)> {
    for _ in 0..64 {
        let (n, from) = socket.recv_from(buf).ok()?;
        if let Ok(msg) = Message::parse(Bytes::copy_from_slice(&buf[..n])) {
            return Some((msg, from));
        }
    }
    None
}

impl Backend for Tandem {
    fn name(&self) -> &'static str {
        "tandem"
    }

    fn setup(
        &mut self,
        endpoints: &[Endpoints],
        rate: u32,
        deadline: Instant,
    ) -> anyhow::Result<SetupOutcome> {
        self.endpoints = endpoints.to_vec();
        let start = Instant::now();
        self.calls = (0..endpoints.len())
            .map(|_| Call {
                state: State::Pending,
                attempt: 0,
                request: None,
                sent_at: start,
                sends: 0,
                to_tag: None,
                target: None,
                routes: Vec::new(),
                a_sends_to: None,
                b_sends_to: None,
                bye_ok: false,
            })
            .collect();
        self.wait_for_probes();
        let pacer = Pacer::new(rate);
        let mut started = 0;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let due = pacer.due(now).min(self.calls.len());
            while started < due {
                self.invite(started, now);
                started += 1;
            }
            for stream in 0..self.calls.len() {
                if matches!(self.calls[stream].state, State::RetryAt(at) if at <= now) {
                    self.invite(stream, now);
                }
            }
            self.pump(now);
            self.retransmit(now);
            let settled = self.calls.iter().all(|c| {
                matches!(c.state, State::Established | State::Failed)
                    && (c.state == State::Failed || c.b_sends_to.is_some())
            });
            if started == self.calls.len() && settled {
                break;
            }
            std::thread::sleep(IDLE);
        }
        let sessions = self
            .calls
            .iter()
            .map(|c| match (c.state, c.a_sends_to, c.b_sends_to) {
                (State::Established, Some(a_sends_to), Some(b_sends_to)) => Some(Session {
                    a_sends_to,
                    b_sends_to,
                }),
                _ => None,
            })
            .collect();
        Ok(SetupOutcome {
            sessions,
            retransmits: self.retransmits,
        })
    }

    fn service(&mut self) {
        self.pump(Instant::now());
    }

    fn teardown(&mut self, rate: u32, deadline: Instant) -> TeardownOutcome {
        let to_close: Vec<usize> = (0..self.calls.len())
            .filter(|&s| self.calls[s].state == State::Established)
            .collect();
        let pacer = Pacer::new(rate);
        let mut started = 0;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let due = pacer.due(now).min(to_close.len());
            while started < due {
                let stream = to_close[started];
                let bye = self.dialog_request(stream, &Method::Bye, 2);
                self.send_uac(&bye);
                let call = &mut self.calls[stream];
                call.state = State::Closing;
                call.request = Some(bye);
                call.sent_at = now;
                call.sends = 1;
                started += 1;
            }
            self.pump(now);
            self.retransmit(now);
            if started == to_close.len()
                && to_close
                    .iter()
                    .all(|&s| self.calls[s].state == State::Closed)
            {
                break;
            }
            std::thread::sleep(IDLE);
        }
        let ok = to_close.iter().filter(|&&s| self.calls[s].bye_ok).count();
        TeardownOutcome {
            ok,
            failed: to_close.len() - ok,
        }
    }
}
