//! Call set-up: caller INVITE → server leg → answer, with failover across the pool and CANCEL.

use super::media::Anchored;
use super::rewrite::{self, party, RouteOrder};
use super::{CallEvent, CallTimer, Core, TxRole};
use crate::call::{Call, CallKey, CallState, CallTimes, InviteMapping, Leg, Side};
use crate::pool::ServerIndex;
use crate::transaction::TxId;
use crate::{Peer, Transport};

/// RFC 3261 §18.1.1: requests larger than this are not sent over UDP when TCP is available.
const UDP_SIZE_LIMIT: usize = 1300;

/// RFC 3261 §16.6 step 11: how long a ringing server leg may go without a final response.
const TIMER_C: std::time::Duration = std::time::Duration::from_secs(181);
use std::cmp::Reverse;
use std::time::Instant;
use tandem_sip::{HeaderName, Message, Method, Uri};

impl Core {
    /// A dialog-creating INVITE from a caller.
    pub(super) fn on_new_invite(&mut self, now: Instant, tx: TxId, msg: Message, from: Peer) {
        if self.draining || self.calls.len() >= self.config.max_calls {
            self.metrics.calls_failed_total += 1;
            let mut b = self.response_to(tx, &msg, 503, "Service Unavailable");
            b.to_tag(&self.ids.tag())
                .header(HeaderName::Other("Retry-After"), "5");
            let answer = b.build();
            self.respond(now, tx, answer);
            return;
        }
        self.respond_simple(now, tx, &msg, 100, "Trying");
        let Some(caller) = self.caller_leg(&msg, from) else {
            self.respond_simple(now, tx, &msg, 400, "Bad Request");
            return;
        };
        let key = self.next_call_key;
        self.next_call_key += 1;
        let cseq = msg.cseq().seq;
        self.metrics.calls_total += 1;
        tracing::debug!(call_id = %caller.call_id, peer = %from.addr, "new call");
        self.emit(CallEvent::CallCreated {
            call_id: caller.call_id.clone(),
        });
        self.dialogs
            .insert(caller.local_tag.clone(), (key, Side::Caller));
        let placeholder = caller.clone();
        self.calls.insert(
            key,
            Call {
                key,
                state: CallState::Trying,
                caller,
                server: placeholder,
                server_index: None,
                tried: Vec::new(),
                caller_invite_tx: Some(tx),
                server_invite_tx: None,
                server_responded: false,
                initial_invite: Some(msg),
                invite_mapping: Some(InviteMapping {
                    from_side: Side::Caller,
                    from_cseq: cseq,
                    to_cseq: 0,
                }),
                server_ack: None,
                caller_ack: None,
                failover_generation: 0,
                tcp_for_size: false,
                setup_deadline: None,
                created: now,
                times: CallTimes::default(),
                media: Default::default(),
                server_offer: None,
                replicated: false,
            },
        );
        self.roles.insert(tx, TxRole::CallerInvite { call: key });
        let offer = self
            .calls
            .get(&key)
            .and_then(|c| c.initial_invite.clone())
            .map(|invite| self.anchor_body(now, key, Side::Caller, &invite));
        match offer {
            Some(Anchored::Exhausted) => {
                self.reject_caller(now, key, 503, "Service Unavailable", "media-ports");
                return;
            }
            Some(Anchored::Replace(body)) => {
                if let Some(call) = self.calls.get_mut(&key) {
                    call.server_offer = Some(body);
                }
            }
            Some(Anchored::Keep) | None => {}
        }
        self.try_next_server(now, key);
    }

    /// The caller leg of a new call, from its INVITE.
    fn caller_leg(&mut self, msg: &Message, from: Peer) -> Option<Leg> {
        let from_hdr = msg.header(HeaderName::From)?.into_owned();
        let to_hdr = msg.header(HeaderName::To)?.into_owned();
        // RFC 2543 allowed an INVITE without Contact: the From URI is then the remote target.
        let remote_target = msg.contacts().first().map_or_else(
            || msg.from_hdr().uri.raw.to_owned(),
            |c| c.uri.raw.to_owned(),
        );
        let local_tag = self.ids.tag();
        Some(Leg {
            call_id: msg.call_id().to_owned(),
            local_party: format!("{to_hdr};tag={local_tag}"),
            local_tag,
            remote_tag: msg.from_tag().map(str::to_owned),
            remote_party: from_hdr,
            local_cseq: 0,
            remote_cseq: Some(msg.cseq().seq),
            remote_target,
            route_set: rewrite::route_set(msg, RouteOrder::AsReceived),
            peer: from,
        })
    }

    /// Sends the call's INVITE to the next untried server that is up; 503 to the caller when none is.
    fn try_next_server(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let tried = call.tried.clone();
        let Some(server) = self.pool.select(&tried) else {
            self.reject_caller(now, key, 503, "Service Unavailable", "no-server");
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let previous = call.server_index.replace(server);
        call.tried.push(server);
        if let Some(previous) = previous {
            self.pool.call_ended(previous);
        }
        self.pool.call_started(server);
        let leg = self.server_leg(key, server);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let old_tag = std::mem::replace(&mut call.server, leg).local_tag;
        if previous.is_some() {
            self.dialogs.remove(&old_tag);
            self.forget_server_media(key);
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.server_responded = false;
        call.failover_generation += 1;
        let generation = call.failover_generation;
        let server_tag = call.server.local_tag.clone();
        let caller_call_id = call.caller.call_id.clone();
        self.dialogs.insert(server_tag, (key, Side::Server));
        let name = self.pool.server(server).config.name.clone();
        self.emit(CallEvent::ServerChosen {
            call_id: caller_call_id,
            server: name,
        });
        self.send_server_invite(now, key, generation, true);
    }

    /// Sends the call's INVITE on its current server leg. RFC 3261 §18.1.1: a request larger than
    /// 1300 bytes bound for UDP goes over TCP instead (when `size_rule` and TCP is enabled); should that
    /// attempt fail, the INVITE is sent again over UDP to the same server.
    fn send_server_invite(&mut self, now: Instant, key: CallKey, generation: u64, size_rule: bool) {
        let branch = self.ids.branch();
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.server.local_cseq = 1;
        if let Some(m) = call.invite_mapping.as_mut() {
            m.to_cseq = 1;
        }
        let me = &self.me;
        let build = |call: &Call| {
            let invite = call.initial_invite.as_ref()?;
            let body = call.server_offer.as_deref();
            Some(rewrite::relay_request(
                me,
                invite,
                &call.server,
                &Method::Invite,
                1,
                &branch,
                None,
                body,
            ))
        };
        let Some(mut invite) = build(call) else {
            return; // a restored call is past set-up
        };
        call.tcp_for_size = false;
        if size_rule
            && self.config.tcp
            && call.server.peer.transport == Transport::Udp
            && invite.len() > UDP_SIZE_LIMIT
        {
            call.server.peer.transport = Transport::Tcp;
            call.tcp_for_size = true;
            invite = build(call).unwrap_or(invite);
        }
        let dest = call.server.peer;
        if let Some(stx) = self.send_request(now, invite, dest, TxRole::ServerInvite { call: key })
        {
            if let Some(call) = self.calls.get_mut(&key) {
                call.server_invite_tx = Some(stx);
            }
            let deadline = now + self.config.server_invite_timeout;
            self.call_timers
                .push(Reverse((deadline, key, generation, CallTimer::Failover)));
        }
    }

    /// A fresh server leg toward `server` for call `key`.
    fn server_leg(&mut self, key: CallKey, server: ServerIndex) -> Leg {
        let config = &self.pool.server(server).config;
        let peer = Peer {
            transport: config.transport,
            addr: config.addr,
            conn: None,
        };
        let (user, display, from_uri) =
            match self.calls.get(&key).and_then(|c| c.initial_invite.as_ref()) {
                Some(invite) => {
                    let user = invite
                        .request_uri()
                        .and_then(|u| Uri::parse(u).ok())
                        .and_then(|u| u.user);
                    let from = invite.from_hdr();
                    (
                        user.map(str::to_owned),
                        from.display.map(str::to_owned),
                        from.uri.raw.to_owned(),
                    )
                }
                None => (None, None, String::new()),
            };
        let transport_param = match peer.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        let target = match user {
            Some(user) => format!("sip:{user}@{}{transport_param}", peer.addr),
            None => format!("sip:{}{transport_param}", peer.addr),
        };
        let local_tag = self.ids.tag();
        Leg {
            call_id: self.ids.call_id(),
            local_party: party(display.as_deref(), &from_uri, Some(&local_tag)),
            local_tag,
            remote_tag: None,
            remote_party: party(None, &target, None),
            local_cseq: 0,
            remote_cseq: None,
            remote_target: target,
            route_set: Vec::new(),
            peer,
        }
    }

    /// A response to the INVITE toward the current server.
    pub(super) fn on_server_invite_response(
        &mut self,
        now: Instant,
        tx: TxId,
        key: CallKey,
        msg: Message,
    ) {
        let Some(code) = msg.status() else { return };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.server_invite_tx != Some(tx) {
            // A 2xx retransmission after the transaction completed: re-send our ACK.
            if (200..300).contains(&code) {
                self.resend_ack(key, Side::Server, msg.cseq().seq);
            }
            return;
        }
        call.server_responded = true;
        if let Some(server) = call.server_index.filter(|_| code != 503) {
            if let Some(true) = self.pool.record_success(server) {
                self.health_changed(server, true);
            }
        }
        if code == 100 {
            return;
        }
        if code < 200 {
            // Every provisional restarts Timer C.
            let Some(call) = self.calls.get_mut(&key) else {
                return;
            };
            let deadline = now + TIMER_C;
            call.setup_deadline = Some(deadline);
            let generation = call.failover_generation;
            self.call_timers
                .push(Reverse((deadline, key, generation, CallTimer::SetupLimit)));
        }
        if code == 503 {
            self.on_server_invite_failed(now, key, "503");
            return;
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        // The server's tag, target and route set (RFC 3261 §12.1.2) from every dialog-creating response.
        if code < 300 {
            if let Some(tag) = msg.to_tag() {
                if call.server.remote_tag.as_deref() != Some(tag) {
                    call.server.remote_tag = Some(tag.to_owned());
                    call.server.remote_party = msg
                        .header(HeaderName::To)
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                }
            }
            if let Some(contact) = msg.contacts().first() {
                call.server.remote_target = contact.uri.raw.to_owned();
            }
            let route_set = rewrite::route_set(&msg, RouteOrder::Reversed);
            if !route_set.is_empty() {
                call.server.route_set = route_set;
            }
        }
        let Some(caller_tx) = call.caller_invite_tx else {
            // The caller is gone (cancelled): a 2xx is acknowledged and ended at once.
            if (200..300).contains(&code) {
                call.server_invite_tx = None;
                self.ack_server_2xx(key, &msg);
                self.send_own_bye(now, key, Side::Server);
                self.end_call(key, "cancel");
            } else if code >= 300 {
                call.server_invite_tx = None;
                self.end_call(key, "cancel");
            }
            return;
        };
        let Some(origin) = self.layer.request(caller_tx).cloned() else {
            return;
        };
        let body = if code < 300 {
            self.anchor_body(now, key, Side::Server, &msg)
        } else {
            Anchored::Keep
        };
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let vias = super::response_vias(&origin, self.layer.peer(caller_tx));
        let answer = rewrite::relay_response(
            &self.me,
            &msg,
            &origin,
            &vias,
            &call.caller.local_party,
            call.caller.peer.transport,
            body.body(),
        );
        if code >= 200 {
            let call_id = call.caller.call_id.clone();
            if let Some(call) = self.calls.get_mut(&key) {
                call.server_invite_tx = None;
                call.failover_generation += 1;
                if code < 300 {
                    call.state = CallState::Confirmed;
                    // Stays set for the CANCEL-vs-2xx race and the NoAck check until the ACK arrives.
                } else {
                    call.caller_invite_tx = None;
                }
            }
            if code < 300 {
                self.metrics.calls_answered_total += 1;
                self.start_call_times(now, key, &msg);
                self.emit(CallEvent::CallAnswered { call_id });
            }
        }
        if (200..300).contains(&code) {
            // `sync` durability: the caller hears the answer once the standby has the call.
            let seq = self.replicate_call(now, key);
            self.answer_when_replicated(now, caller_tx, answer, seq);
        } else {
            self.respond(now, caller_tx, answer);
        }
        if code >= 300 {
            self.metrics.calls_failed_total += 1;
            self.end_call(key, &format!("rejected-{code}"));
        }
    }

    /// The current server failed the INVITE (503, timeout, silence): try the next server.
    pub(super) fn on_server_invite_failed(&mut self, now: Instant, key: CallKey, why: &str) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let server = call.server_index;
        if let Some(stx) = call.server_invite_tx.take() {
            let leg = Box::new(call.server.clone());
            self.roles.insert(stx, TxRole::Abandoned { leg });
        }
        if call.caller_invite_tx.is_none() {
            self.end_call(key, "cancel");
            return;
        }
        if call.tcp_for_size && !call.server_responded {
            // TCP was only chosen for the size rule and did not work: same server over UDP.
            call.server.peer.transport = Transport::Udp;
            call.failover_generation += 1;
            let generation = call.failover_generation;
            self.send_server_invite(now, key, generation, false);
            return;
        }
        if let Some(server) = server {
            let name = self.pool.server(server).config.name.clone();
            tracing::warn!(call_id = %call.caller.call_id, server = %name, why, "server failed the call; trying the next one");
            if let Some(false) = self.pool.record_failure(server) {
                self.health_changed(server, false);
            }
        }
        self.try_next_server(now, key);
    }

    pub(super) fn on_failover_timer(&mut self, now: Instant, key: CallKey, generation: u64) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.failover_generation != generation
            || call.server_responded
            || call.server_invite_tx.is_none()
        {
            return;
        }
        self.on_server_invite_failed(now, key, "no-response");
    }

    /// Tells the caller no call could be set up, and forgets the call.
    fn reject_caller(&mut self, now: Instant, key: CallKey, code: u16, reason: &str, why: &str) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let (Some(caller_tx), Some(origin)) =
            (call.caller_invite_tx.take(), call.initial_invite.clone())
        {
            let tag = call.caller.local_tag.clone();
            let mut b = self.response_to(caller_tx, &origin, code, reason);
            b.to_tag(&tag);
            let answer = b.build();
            self.respond(now, caller_tx, answer);
        }
        self.metrics.calls_failed_total += 1;
        self.end_call(key, why);
    }

    /// CANCEL from the caller (§9.2): 200 for the CANCEL, 487 for the INVITE, CANCEL toward the server.
    pub(super) fn on_cancel(
        &mut self,
        now: Instant,
        tx: TxId,
        invite: Option<TxId>,
        msg: &Message,
        _from: Peer,
    ) {
        let call = invite.and_then(|itx| match self.roles.get(&itx) {
            Some(TxRole::CallerInvite { call }) => Some(*call),
            _ => None,
        });
        let Some(key) = call else {
            let code = if invite.is_some() { 200 } else { 481 };
            let reason = if code == 200 {
                "OK"
            } else {
                "Call/Transaction Does Not Exist"
            };
            self.respond_simple(now, tx, msg, code, reason);
            return;
        };
        self.respond_simple(now, tx, msg, 200, "OK");
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.state != CallState::Trying {
            return; // already answered: the CANCEL has no effect (§9.2)
        }
        self.stop_setup(now, key, 487, "Request Terminated", "cancel");
    }

    /// Gives up setting up call `key`: the caller gets `code`, the server leg's INVITE is cancelled
    /// (the call ends when its final response arrives), or the call ends at once when none is pending.
    pub(super) fn stop_setup(
        &mut self,
        now: Instant,
        key: CallKey,
        code: u16,
        reason: &str,
        why: &str,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.state = CallState::Cancelling;
        call.failover_generation += 1;
        let caller_tx = call.caller_invite_tx.take();
        let origin = call.initial_invite.clone();
        let tag = call.caller.local_tag.clone();
        let server_tx = call.server_invite_tx;
        if let (Some(caller_tx), Some(origin)) = (caller_tx, origin) {
            let mut b = self.response_to(caller_tx, &origin, code, reason);
            b.to_tag(&tag);
            let answer = b.build();
            self.respond(now, caller_tx, answer);
        }
        match server_tx.and_then(|stx| self.layer.cancel(now, stx)) {
            Some(ctx) => {
                self.roles.insert(ctx, TxRole::Own);
            }
            None => self.end_call(key, why),
        }
    }

    /// Timer C fired: the server rang for too long without answering.
    pub(super) fn on_setup_limit(&mut self, now: Instant, key: CallKey, generation: u64) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let due = call.setup_deadline.is_some_and(|d| d <= now);
        if call.failover_generation != generation || call.state != CallState::Trying || !due {
            return;
        }
        tracing::warn!(call_id = %call.caller.call_id, "no final response from the server within Timer C");
        self.metrics.calls_failed_total += 1;
        self.stop_setup(now, key, 408, "Request Timeout", "setup-timeout");
    }

    /// A response to an INVITE Tandem gave up on: a 2xx gets ACK and BYE so no orphan call remains.
    pub(super) fn on_abandoned_response(&mut self, now: Instant, msg: &Message, leg: &Leg) {
        let Some(code) = msg.status() else { return };
        if !(200..300).contains(&code) {
            return;
        }
        let mut leg = leg.clone();
        leg.remote_tag = msg.to_tag().map(str::to_owned);
        if let Some(to) = msg.header(HeaderName::To) {
            leg.remote_party = to.into_owned();
        }
        if let Some(contact) = msg.contacts().first() {
            leg.remote_target = contact.uri.raw.to_owned();
        }
        leg.route_set = rewrite::route_set(msg, RouteOrder::Reversed);
        let cseq = msg.cseq().seq;
        let ack =
            rewrite::leg_request(&self.me, &leg, &Method::Ack, cseq, &self.ids.branch(), None);
        self.layer.send_stateless(leg.peer, ack);
        let bye = rewrite::leg_request(
            &self.me,
            &leg,
            &Method::Bye,
            cseq + 1,
            &self.ids.branch(),
            None,
        );
        self.send_request(now, bye, leg.peer, TxRole::Own);
    }

    /// ACK for the server's 2xx when the caller will never send one (the caller cancelled).
    fn ack_server_2xx(&mut self, key: CallKey, _response: &Message) {
        let branch = self.ids.branch();
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let cseq = call.server.local_cseq;
        let ack = rewrite::leg_request(&self.me, &call.server, &Method::Ack, cseq, &branch, None);
        let peer = call.server.peer;
        call.server_ack = Some(crate::call::SentAck {
            cseq,
            payload: ack.clone(),
        });
        self.layer.send_stateless(peer, ack);
    }

    pub(super) fn health_changed(&mut self, server: ServerIndex, up: bool) {
        let name = self.pool.server(server).config.name.clone();
        self.emit(CallEvent::ServerHealthChanged { server: name, up });
    }
}
