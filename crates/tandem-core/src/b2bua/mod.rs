//! The B2BUA: one Tandem node's calls, driven sans-IO.
//!
//! * `setup`: a caller's INVITE → a server leg toward a media server chosen from the pool, its
//!   responses relayed back, failover to the next server on 503 or silence, CANCEL.
//! * `dialog`: requests inside a call (re-INVITE, UPDATE, INFO, PRACK, BYE, unknown methods) and their
//!   responses relayed between the legs; ACKs mapped.
//! * `inspect`: read-only views of the calls for the admin endpoint.
//! * `media`: SDP bodies moved onto Tandem's relay ports; the data plane's reports.
//! * `probe`: SIP OPTIONS health probes of the media servers.
//! * `rewrite`: how a message is rewritten when it crosses from one leg to the other.

mod dialog;
mod inspect;
mod lifetime;
mod media;
mod probe;
mod replica;
pub mod rewrite;
mod setup;

use crate::call::{Call, CallKey, Leg, Side};
use crate::ids::IdGenerator;
use crate::pool::{Pool, ServerIndex};
use crate::transaction::{Incoming, TransactionLayer, TxEvent, TxId};
use crate::{ConnId, CoreConfig, Peer, Transmit};
use bytes::Bytes;
pub use inspect::CallOverview;
pub use replica::{
    CallSnapshot, CallView, ChangeView, Durability, ReplicaSnapshot, ReplicationChange,
};
use rewrite::SelfAddress;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;
use tandem_sip::{HeaderName, Message, Method, ResponseBuilder, Scheme};

/// A change of call state, in order; what the replication stream and the metrics consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A caller's INVITE created a call.
    CallCreated { call_id: String },
    /// A media server was chosen (or replaced) for the call.
    ServerChosen { call_id: String, server: String },
    /// The call was answered (2xx relayed to the caller).
    CallAnswered { call_id: String },
    /// The call ended; `reason` is a short token (bye-caller, bye-server, cancel, rejected-486, ...).
    CallEnded { call_id: String, reason: String },
    /// A media server changed health.
    ServerHealthChanged { server: String, up: bool },
}

/// Counters the shell exports as Prometheus metrics.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub calls_total: u64,
    pub calls_answered_total: u64,
    pub calls_failed_total: u64,
    /// Responses sent and received by class: index 1..=6 for 1xx..6xx (index 0 unused).
    pub responses_sent: [u64; 7],
    pub responses_received: [u64; 7],
    pub requests_received: u64,
    pub parse_errors: u64,
    /// Messages dropped for another reason (stray responses, loops, over capacity).
    pub dropped: u64,
    /// Relay ports the data plane could not bind.
    pub media_bind_failures: u64,
    /// Calls ended because the caller's media stopped.
    pub media_timeouts: u64,
    /// Calls whose media server went silent while the caller was still sending.
    pub server_media_silences: u64,
    /// Calls Tandem ended because their session timer (RFC 4028) ran out without a refresh.
    pub calls_session_expired: u64,
    /// Calls Tandem ended at their maximum duration.
    pub calls_max_duration: u64,
    /// Answers that went out without the standby's confirmation because it took too long (`sync`).
    pub replication_sync_timeouts: u64,
}

/// Health of one media server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealth {
    pub name: String,
    pub addr: std::net::SocketAddr,
    pub up: bool,
    pub active_calls: usize,
}

/// Timers the B2BUA keeps per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CallTimer {
    /// The current server has not answered the INVITE at all within `server_invite_timeout`.
    Failover,
    /// Timer C (RFC 3261 §16.6): the server leg rings without a final response for too long.
    SetupLimit,
}

/// What a client transaction Tandem started is for.
#[derive(Debug, Clone)]
enum TxRole {
    /// The caller's INVITE (a server transaction) of a call being set up.
    CallerInvite { call: CallKey },
    /// The INVITE toward the current media server of a call being set up.
    ServerInvite { call: CallKey },
    /// An INVITE Tandem gave up on (failover, cancel); a late 2xx is acknowledged and ended with BYE.
    Abandoned { leg: Box<Leg> },
    /// A request relayed from leg `from_side`, whose response goes back on server transaction `origin`.
    Relayed {
        call: CallKey,
        from_side: Side,
        origin: TxId,
    },
    /// A relayed request whose final response was already passed back; a 2xx retransmission on it
    /// gets the ACK Tandem sent on leg `side` again.
    Answered { call: CallKey, side: Side },
    /// A request Tandem sent on its own (BYE); its response needs nothing.
    Own,
    /// An OPTIONS health probe.
    Probe { server: ServerIndex },
}

/// The whole sans-IO Tandem node.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    me: SelfAddress,
    layer: TransactionLayer,
    ids: IdGenerator,
    pool: Pool,
    /// Media anchoring (relay port range, commands for the data plane); `None` when off.
    media: Option<crate::media::MediaAnchor>,
    calls: FxHashMap<CallKey, Call>,
    next_call_key: CallKey,
    /// Tandem's local tag of each leg → the call and side it belongs to.
    /// Keys are tags Tandem minted itself, so a fast non-keyed hash is safe here.
    dialogs: FxHashMap<String, (CallKey, Side)>,
    roles: FxHashMap<TxId, TxRole>,
    /// Call timers: (when, call, generation, kind). One with an older generation than its call's is stale.
    call_timers: BinaryHeap<Reverse<(Instant, CallKey, u64, CallTimer)>>,
    /// Session expiry and maximum duration of the answered calls.
    deadlines: lifetime::CallDeadlines,
    events: VecDeque<CallEvent>,
    replication: replica::Replication,
    metrics: Metrics,
    draining: bool,
    /// Whether this node probes the media servers itself ([`Core::set_probing`]).
    probing: bool,
}

impl Core {
    pub fn new(config: CoreConfig, now: Instant) -> Core {
        Core {
            me: SelfAddress::new(config.advertised),
            layer: TransactionLayer::new(config.timers),
            ids: IdGenerator::default(),
            pool: Pool::new(&config.media_servers, config.probe, now),
            media: config.media.and_then(|m| {
                crate::media::MediaAnchor::new(m)
                    .map_err(|error| tracing::error!(%error, "media anchoring off: bad port range"))
                    .ok()
            }),
            calls: FxHashMap::default(),
            next_call_key: 1,
            dialogs: FxHashMap::default(),
            roles: FxHashMap::default(),
            call_timers: BinaryHeap::new(),
            deadlines: lifetime::CallDeadlines::default(),
            events: VecDeque::new(),
            replication: replica::Replication::new(),
            metrics: Metrics::default(),
            draining: false,
            probing: true,
            config,
        }
    }

    /// One message from the network: a UDP datagram, or one frame cut from a TCP stream by
    /// `tandem_sip::frame_stream`. Parse errors are answered 400 (requests) or dropped (responses) and
    /// counted; nothing here panics on bad input.
    pub fn handle_message(&mut self, now: Instant, payload: Bytes, from: Peer) {
        if tandem_sip::is_keepalive(&payload) {
            return;
        }
        let msg = match Message::parse(payload.clone()) {
            Ok(msg) => msg,
            Err(error) => {
                self.metrics.parse_errors += 1;
                tracing::debug!(peer = %from.addr, %error, "unparsable message");
                if let Some(answer) = bad_request_answer(&payload, &error.to_string()) {
                    self.count_response_sent(400);
                    self.layer.send_stateless(from, answer);
                }
                return;
            }
        };
        let msg = match msg.status() {
            Some(code) => {
                self.metrics.responses_received[class(code)] += 1;
                msg
            }
            None => {
                self.metrics.requests_received += 1;
                msg
            }
        };
        match self.layer.handle_incoming(now, msg, from) {
            Incoming::Request { tx, msg, from } => self.on_request(now, tx, msg, from),
            Incoming::Cancel {
                tx,
                invite,
                msg,
                from,
            } => self.on_cancel(now, tx, invite, &msg, from),
            Incoming::Ack { msg, .. } => self.on_ack(now, &msg),
            Incoming::Response { tx, msg } => self.on_response(now, tx, msg),
            Incoming::StrayResponse { msg, from } => {
                tracing::debug!(call_id = %msg.call_id(), peer = %from.addr, "stray response dropped");
                self.metrics.dropped += 1;
            }
            Incoming::Absorbed => {}
        }
        self.drain_layer_events(now);
    }

    /// A send to `dest` failed (ICMP unreachable, refused or broken TCP connection).
    pub fn handle_transport_error(&mut self, now: Instant, dest: Peer) {
        self.layer.handle_transport_error(now, dest);
        self.drain_layer_events(now);
    }

    /// A TCP connection closed. Nothing to forget: a leg keeps the id of the connection it last used,
    /// and the shell sends through a new connection to the same address when that id is gone
    /// (connection ids are never reused), so no scan over the calls is needed per closed connection.
    pub fn handle_connection_closed(&mut self, _now: Instant, _conn: ConnId) {}

    pub fn handle_timeout(&mut self, now: Instant) {
        self.layer.handle_timeout(now);
        self.drain_layer_events(now);
        while let Some(Reverse((when, call, generation, kind))) = self.call_timers.peek().copied() {
            if when > now {
                break;
            }
            self.call_timers.pop();
            match kind {
                CallTimer::Failover => self.on_failover_timer(now, call, generation),
                CallTimer::SetupLimit => self.on_setup_limit(now, call, generation),
            }
        }
        self.end_overdue_calls(now);
        self.run_probes(now);
        self.release_overdue_answers(now);
        self.drain_layer_events(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let failover = self.call_timers.peek().map(|Reverse((when, ..))| *when);
        [
            self.layer.poll_timeout(),
            failover,
            self.next_probe_deadline(),
            self.next_parked_deadline(),
            self.deadlines.next(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.layer.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// Graceful shutdown: from now on new calls get 503; established calls go on.
    pub fn begin_drain(&mut self, _now: Instant) {
        self.draining = true;
    }

    /// Maintenance over: new calls are accepted again.
    pub fn end_drain(&mut self, _now: Instant) {
        self.draining = false;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Live transactions.
    pub fn transactions(&self) -> usize {
        self.layer.len()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn server_health(&self) -> Vec<ServerHealth> {
        self.pool
            .servers()
            .iter()
            .map(|s| ServerHealth {
                name: s.config.name.clone(),
                addr: s.config.addr,
                up: s.up,
                active_calls: s.active_calls,
            })
            .collect()
    }

    fn drain_layer_events(&mut self, now: Instant) {
        while let Some(event) = self.layer.poll_event() {
            match event {
                TxEvent::Timeout { tx } => self.on_client_timeout(now, tx),
                TxEvent::NoAck { tx } => self.on_no_ack(now, tx),
                TxEvent::Terminated { tx } => {
                    self.roles.remove(&tx);
                }
            }
        }
    }

    /// A request that created a server transaction.
    fn on_request(&mut self, now: Instant, tx: TxId, msg: Message, from: Peer) {
        if msg.max_forwards() == Some(0) && msg.method() != Some(&Method::Options) {
            self.respond_simple(now, tx, &msg, 483, "Too Many Hops");
            return;
        }
        let scheme = msg.request_uri_parsed().map(|uri| uri.scheme);
        if !matches!(scheme, Some(Scheme::Sip | Scheme::Sips | Scheme::Tel)) {
            // RFC 3261 §8.2.2.1 (RFC 4475 unkscm, novelsc)
            self.respond_simple(now, tx, &msg, 416, "Unsupported URI Scheme");
            return;
        }
        match (msg.to_tag().is_some(), msg.method()) {
            (true, _) => self.on_in_dialog_request(now, tx, msg, from),
            (false, Some(Method::Invite)) => self.on_new_invite(now, tx, msg, from),
            (false, Some(Method::Options)) if !unsupported_required(&msg).is_empty() => {
                // Tandem answers this one itself: §8.2.2.3 (RFC 4475 bext01)
                let unsupported = unsupported_required(&msg);
                let mut b = self.response_to(tx, &msg, 420, "Bad Extension");
                b.to_tag(&self.ids.tag())
                    .header(HeaderName::Unsupported, &unsupported);
                let answer = b.build();
                self.respond(now, tx, answer);
            }
            (false, Some(Method::Options)) => {
                let mut b = self.response_to(tx, &msg, 200, "OK");
                b.to_tag(&self.ids.tag())
                    .header(HeaderName::Allow, ALLOW)
                    .header(HeaderName::Other("Accept"), "application/sdp")
                    .header(HeaderName::Supported, SUPPORTED);
                let answer = b.build();
                self.respond(now, tx, answer);
            }
            (
                false,
                Some(Method::Bye | Method::Prack | Method::Update | Method::Info | Method::Notify),
            ) => {
                self.respond_simple(now, tx, &msg, 481, "Call/Transaction Does Not Exist");
            }
            (false, _) => {
                let mut b = self.response_to(tx, &msg, 501, "Not Implemented");
                b.to_tag(&self.ids.tag()).header(HeaderName::Allow, ALLOW);
                let answer = b.build();
                self.respond(now, tx, answer);
            }
        }
    }

    fn on_response(&mut self, now: Instant, tx: TxId, msg: Message) {
        let Some(role) = self.roles.get(&tx).cloned() else {
            self.metrics.dropped += 1;
            return;
        };
        match role {
            TxRole::ServerInvite { call } => self.on_server_invite_response(now, tx, call, msg),
            TxRole::Abandoned { leg } => self.on_abandoned_response(now, &msg, &leg),
            TxRole::Relayed {
                call,
                from_side,
                origin,
            } => self.on_relayed_response(now, tx, call, from_side, origin, msg),
            TxRole::Probe { server } => self.on_probe_response(tx, server, &msg),
            TxRole::Answered { call, side } => {
                if msg.status().is_some_and(|c| (200..300).contains(&c)) {
                    self.resend_ack(call, side, msg.cseq().seq);
                }
            }
            TxRole::CallerInvite { .. } | TxRole::Own => {}
        }
    }

    fn on_client_timeout(&mut self, now: Instant, tx: TxId) {
        let Some(role) = self.roles.get(&tx).cloned() else {
            return;
        };
        match role {
            TxRole::ServerInvite { call } => self.on_server_invite_failed(now, call, "timeout"),
            TxRole::Relayed {
                call,
                from_side,
                origin,
            } => self.on_relayed_timeout(now, call, from_side, origin),
            TxRole::Probe { server } => self.on_probe_failed(now, tx, server),
            TxRole::Abandoned { .. }
            | TxRole::Answered { .. }
            | TxRole::Own
            | TxRole::CallerInvite { .. } => {}
        }
    }

    /// A final response Tandem sent on server transaction `tx` was never acknowledged.
    fn on_no_ack(&mut self, now: Instant, tx: TxId) {
        let Some((call, call_id)) = self
            .calls
            .values()
            .find(|c| c.caller_invite_tx == Some(tx))
            .map(|c| (c.key, c.caller.call_id.clone()))
        else {
            return;
        };
        tracing::warn!(%call_id, "caller never acknowledged the answer; ending the call");
        self.hang_up_both(now, call, "no-ack");
    }

    /// Sends `answer` on server transaction `tx` (the layer reads its status code; it is not parsed
    /// again).
    fn respond(&mut self, now: Instant, tx: TxId, answer: Bytes) {
        match tandem_sip::peek_status(&answer) {
            Some(code) => {
                self.count_response_sent(code);
                self.layer.respond(now, tx, answer);
            }
            None => tracing::error!("Tandem built a response without a readable Status-Line"),
        }
    }

    fn respond_simple(&mut self, now: Instant, tx: TxId, req: &Message, code: u16, reason: &str) {
        let mut b = self.response_to(tx, req, code, reason);
        if req.to_tag().is_none() && code > 100 {
            b.to_tag(&self.ids.tag());
        }
        let answer = b.build();
        self.respond(now, tx, answer);
    }

    /// A response to `req`, the request of server transaction `tx`, with its Via set stamped.
    fn response_to<'m>(
        &self,
        tx: TxId,
        req: &'m Message,
        code: u16,
        reason: &str,
    ) -> ResponseBuilder<'m> {
        let mut b = ResponseBuilder::new(req, code, reason);
        b.vias(&response_vias(req, self.layer.peer(tx)));
        b
    }

    /// Starts a client transaction with a request Tandem built.
    fn send_request(
        &mut self,
        now: Instant,
        request: Bytes,
        dest: Peer,
        role: TxRole,
    ) -> Option<TxId> {
        // The layer reads the method and top-Via branch; the request is not parsed again.
        let tx = self.layer.start_client(now, request, dest);
        self.roles.insert(tx, role);
        Some(tx)
    }

    fn count_response_sent(&mut self, code: u16) {
        self.metrics.responses_sent[class(code)] += 1;
    }

    fn emit(&mut self, event: CallEvent) {
        self.replicate_health(&event);
        self.events.push_back(event);
    }

    /// The configured name of the call's media server, once one is chosen.
    fn server_name(&self, c: &Call) -> Option<&str> {
        c.server_index
            .map(|s| self.pool.server(s).config.name.as_str())
    }

    /// Removes a call and everything that points at it.
    fn end_call(&mut self, call: CallKey, reason: &str) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        self.dialogs.remove(&c.caller.local_tag);
        self.dialogs.remove(&c.server.local_tag);
        self.deadlines.forget(&c);
        if let Some(server) = c.server_index {
            self.pool.call_ended(server);
        }
        self.release_media(call, &c.media);
        self.replicate_removal(&c, reason);
        self.emit(CallEvent::CallEnded {
            call_id: c.caller.call_id,
            reason: reason.to_owned(),
        });
    }

    /// Ends a call from Tandem's side: BYE on every leg that has a confirmed dialog.
    fn hang_up_both(&mut self, now: Instant, call: CallKey, reason: &str) {
        for side in [Side::Caller, Side::Server] {
            self.send_own_bye(now, call, side);
        }
        self.end_call(call, reason);
    }

    fn send_own_bye(&mut self, now: Instant, call: CallKey, side: Side) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let leg = c.leg_mut(side);
        if leg.remote_tag.is_none() {
            return;
        }
        leg.local_cseq += 1;
        let (cseq, peer) = (leg.local_cseq, leg.peer);
        let branch = self.ids.branch();
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let bye = rewrite::leg_request(&self.me, c.leg(side), &Method::Bye, cseq, &branch, None);
        self.send_request(now, bye, peer, TxRole::Own);
    }
}

/// Option tags Tandem understands (it relays what they govern between the legs).
const SUPPORTED: &str = "100rel, replaces, timer";

/// The option tags of the Require header that Tandem does not support, comma-joined.
fn unsupported_required(msg: &Message) -> String {
    let mut out = String::new();
    for tag in msg.header_values(HeaderName::Require) {
        let tag = tag.trim();
        if !SUPPORTED.split(", ").any(|s| s.eq_ignore_ascii_case(tag)) {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(tag);
        }
    }
    out
}

/// Methods Tandem relays.
const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, NOTIFY, REFER, MESSAGE";

fn class(code: u16) -> usize {
    usize::from((code / 100).clamp(1, 6))
}

/// The answer to a request the codec rejected, built from its raw header lines: 505 for a SIP
/// version other than 2.0, else 400 (RFC 3261 §8.2.6 needs Via, From, To, Call-ID and CSeq copied;
/// without them no answer can be matched by the sender, so none is sent). Lines are copied as
/// received, even when they are what made the request invalid.
fn bad_request_answer(raw: &[u8], why: &str) -> Option<Bytes> {
    let head_end = memchr_crlfcrlf(raw).unwrap_or(raw.len());
    let text = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = text.split("\r\n");
    let first = lines.next()?.trim_end();
    let version = first.rsplit(' ').next()?;
    if first.starts_with("SIP/") || !version.starts_with("SIP/") {
        return None; // a response, or not SIP at all: dropped
    }
    let mut out = String::with_capacity(256);
    out.push_str(if version == "SIP/2.0" {
        "SIP/2.0 400 Bad Request\r\n"
    } else {
        "SIP/2.0 505 Version Not Supported\r\n"
    });
    let mut found = [false; 5];
    for line in lines {
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        let idx = match HeaderName::parse(name.trim()) {
            HeaderName::Via => 0,
            HeaderName::From => 1,
            HeaderName::To => 2,
            HeaderName::CallId => 3,
            HeaderName::CSeq => 4,
            _ => continue,
        };
        found[idx] = true;
        out.push_str(line);
        out.push_str("\r\n");
    }
    if found.iter().any(|f| !f) {
        return None;
    }
    let reason = why.replace(['\r', '\n', '"'], " ");
    out.push_str("Warning: 399 tandem \"");
    out.push_str(&reason);
    out.push_str("\"\r\nContent-Length: 0\r\n\r\n");
    Some(Bytes::from(out))
}

/// Where the header section ends (the first empty line), if anywhere.
fn memchr_crlfcrlf(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The Via set of a response to `req`, which arrived from `from`: the request's Via values with the
/// top one recording where the request really came from (RFC 3261 §18.2.1 `received`, RFC 3581 §4
/// `rport` filled in when the sender asked for it).
pub(super) fn response_vias(req: &Message, from: Option<Peer>) -> String {
    let mut values = req.header_values(HeaderName::Via);
    let Some(top) = values.next() else {
        return String::new();
    };
    let mut out = String::with_capacity(top.len() + 64);
    let via = req.top_via();
    let stamp = from.filter(|from| {
        let same_host = matches!(via.host, tandem_sip::Host::Ip(h) if h == from.addr.ip());
        via.rport == Some(None) || !same_host
    });
    match stamp {
        None => out.push_str(&top),
        Some(from) => {
            let mut params = top.split(';');
            out.push_str(params.next().unwrap_or_default().trim_end());
            for param in params {
                let name = param.split('=').next().unwrap_or_default().trim();
                if !name.eq_ignore_ascii_case("rport") && !name.eq_ignore_ascii_case("received") {
                    out.push(';');
                    out.push_str(param.trim());
                }
            }
            use std::fmt::Write;
            let _ = write!(out, ";received={}", from.addr.ip());
            if via.rport.is_some() {
                let _ = write!(out, ";rport={}", from.addr.port());
            }
        }
    }
    for value in values {
        out.push_str(", ");
        out.push_str(&value);
    }
    out
}
