//! Requests inside a call, relayed from one leg to the other, and their responses and ACKs.

use super::media::Anchored;
use super::rewrite;
use super::{Core, TxRole};
use crate::call::{CallKey, CallState, InviteMapping, SentAck, Side};
use crate::transaction::TxId;
use crate::{Peer, Transport};
use std::time::Instant;
use tandem_sip::{HeaderName, Message, Method, TransportKind};

impl Core {
    /// A request carrying a To tag: it belongs to the leg whose local tag it names.
    pub(super) fn on_in_dialog_request(
        &mut self,
        now: Instant,
        tx: TxId,
        msg: Message,
        from: Peer,
    ) {
        let Some(&(key, side)) = msg.to_tag().and_then(|tag| self.dialogs.get(tag)) else {
            self.respond_simple(now, tx, &msg, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let cseq = msg.cseq().seq;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let leg = call.leg_mut(side);
        if leg.call_id != msg.call_id() {
            self.respond_simple(now, tx, &msg, 481, "Call/Transaction Does Not Exist");
            return;
        }
        if leg.remote_cseq.is_some_and(|last| cseq <= last) {
            // §12.2.2: lower CSeq than the last one in the dialog
            self.respond_simple(now, tx, &msg, 500, "CSeq Out Of Order");
            return;
        }
        leg.remote_cseq = Some(cseq);
        if from.transport == Transport::Tcp && from.conn.is_some() {
            leg.peer.conn = from.conn;
        }
        if method == Method::Invite {
            self.respond_simple(now, tx, &msg, 100, "Trying");
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let other = side.other();
        if call.leg(other).remote_tag.is_none() {
            if method == Method::Bye && side == Side::Caller {
                // A BYE in the caller's early dialog (§15): ends the attempt like a CANCEL.
                self.respond_simple(now, tx, &msg, 200, "OK");
                self.stop_setup(now, key, 487, "Request Terminated", "bye-caller");
            } else {
                self.respond_simple(now, tx, &msg, 481, "Call/Transaction Does Not Exist");
            }
            return;
        }
        let body = self.anchor_body(now, key, side, &msg);
        if let Anchored::Exhausted = body {
            self.respond_simple(now, tx, &msg, 503, "Service Unavailable");
            return;
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if method == Method::Bye {
            call.state = CallState::Terminating;
        }
        let rack = if method == Method::Prack {
            rewrite_rack(
                &msg,
                call.invite_mapping
                    .filter(|m| m.from_side == side)
                    .map(|m| m.to_cseq),
            )
        } else {
            None
        };
        let oleg = call.leg_mut(other);
        oleg.local_cseq += 1;
        let ocseq = oleg.local_cseq;
        if method == Method::Invite {
            call.invite_mapping = Some(InviteMapping {
                from_side: side,
                from_cseq: cseq,
                to_cseq: ocseq,
            });
        }
        let branch = self.ids.branch();
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let oleg = call.leg(other);
        let request = rewrite::relay_request(
            &self.me,
            &msg,
            oleg,
            &method,
            ocseq,
            &branch,
            rack.as_deref(),
            body.body(),
        );
        let dest = oleg.peer;
        tracing::debug!(call_id = %call.caller.call_id, method = method.as_str(), from_side = ?side, "relaying in-dialog request");
        self.send_request(
            now,
            request,
            dest,
            TxRole::Relayed {
                call: key,
                from_side: side,
                origin: tx,
            },
        );
        // Both legs' CSeq moved (and the media, for an offer): the standby follows. Not for a BYE:
        // its 2xx removes the call from the standby anyway, and a standby promoted before that
        // holds the call as confirmed, one CSeq behind, so the peer's retransmitted BYE is relayed
        // with the number the lost one had (a repeat, never an out-of-order request). That spares
        // a full call record per call on the hot path.
        if method != Method::Bye {
            self.replicate_call(now, key);
        }
    }

    /// A response to a request Tandem relayed from leg `from_side`.
    pub(super) fn on_relayed_response(
        &mut self,
        now: Instant,
        tx: TxId,
        key: CallKey,
        from_side: Side,
        origin: TxId,
        msg: Message,
    ) {
        let Some(code) = msg.status() else { return };
        if code == 100 {
            return;
        }
        let to_side = from_side.other();
        let cseq = msg.cseq();
        if let Some(call) = self.calls.get_mut(&key) {
            if (200..300).contains(&code) && matches!(cseq.method, Method::Invite | Method::Update)
            {
                if let Some(contact) = msg.contacts().first() {
                    call.leg_mut(to_side).remote_target = contact.uri.raw.to_owned();
                }
            }
        }
        let Some(origin_request) = self.layer.request(origin).cloned() else {
            return;
        };
        let transport = match origin_request.top_via().transport {
            TransportKind::Tcp | TransportKind::Tls => Transport::Tcp,
            _ => Transport::Udp,
        };
        let body = if code < 300 {
            self.anchor_body(now, key, to_side, &msg)
        } else {
            Anchored::Keep
        };
        let vias = super::response_vias(&origin_request, self.layer.peer(origin));
        let answer = rewrite::relay_response(
            &self.me,
            &msg,
            &origin_request,
            &vias,
            "",
            transport,
            body.body(),
        );
        if code >= 200 {
            // Later 2xx retransmissions of this transaction only need our ACK again.
            self.roles.insert(
                tx,
                TxRole::Answered {
                    call: key,
                    side: to_side,
                },
            );
        }
        self.respond(now, origin, answer);
        if (200..300).contains(&code) && matches!(cseq.method, Method::Invite | Method::Update) {
            self.refresh_session(now, key, &msg);
        }
        if (200..300).contains(&code) && cseq.method != Method::Bye {
            self.replicate_call(now, key);
        }
        if code >= 200 && cseq.method == Method::Bye {
            let reason = match from_side {
                Side::Caller => "bye-caller",
                Side::Server => "bye-server",
            };
            self.end_call(key, reason);
        }
    }

    /// The leg a request was relayed to never answered: 408 to the sender (a BYE still ends the call).
    pub(super) fn on_relayed_timeout(
        &mut self,
        now: Instant,
        key: CallKey,
        from_side: Side,
        origin: TxId,
    ) {
        let Some(origin_request) = self.layer.request(origin).cloned() else {
            return;
        };
        self.respond_simple(now, origin, &origin_request, 408, "Request Timeout");
        if origin_request.method() == Some(&Method::Bye) {
            let reason = match from_side {
                Side::Caller => "bye-caller",
                Side::Server => "bye-server",
            };
            self.end_call(key, reason);
        }
    }

    /// An ACK for a 2xx: mapped onto the other leg as the ACK of the INVITE relayed there.
    pub(super) fn on_ack(&mut self, now: Instant, msg: &Message) {
        let Some(&(key, side)) = msg.to_tag().and_then(|tag| self.dialogs.get(tag)) else {
            self.metrics.dropped += 1;
            return;
        };
        let cseq = msg.cseq().seq;
        let branch = self.ids.branch();
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let Some(mapping) = call
            .invite_mapping
            .filter(|m| m.from_side == side && m.from_cseq == cseq)
        else {
            self.metrics.dropped += 1;
            return;
        };
        // A late offer's answer rides on the ACK.
        let anchored = self.anchor_body(now, key, side, msg);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if side == Side::Caller {
            call.caller_invite_tx = None;
        }
        let other = side.other();
        let body = match anchored {
            Anchored::Replace(body) => body,
            Anchored::Keep | Anchored::Exhausted => msg.body(),
        };
        let content_type = msg.header(HeaderName::ContentType).map(|c| c.into_owned());
        let body_part = match (&content_type, body.is_empty()) {
            (Some(ct), false) => Some((ct.as_str(), &body[..])),
            _ => None,
        };
        let ack = rewrite::leg_request(
            &self.me,
            call.leg(other),
            &Method::Ack,
            mapping.to_cseq,
            &branch,
            body_part,
        );
        let peer = call.leg(other).peer;
        *call.sent_ack_mut(other) = Some(SentAck {
            cseq: mapping.to_cseq,
            payload: ack.clone(),
        });
        self.layer.send_stateless(peer, ack);
        if msg.body().is_empty() {
            return;
        }
        // A late offer's answer changed the media.
        self.replicate_call(now, key);
    }

    /// A 2xx arrived again on `side`: re-send the ACK Tandem sent for it, if any.
    pub(super) fn resend_ack(&mut self, key: CallKey, side: Side, cseq: u32) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let peer = call.leg(side).peer;
        if let Some(sent) = call.sent_ack_mut(side).as_ref().filter(|a| a.cseq == cseq) {
            let payload = sent.payload.clone();
            self.layer.send_stateless(peer, payload);
        }
    }
}

/// RAck (RFC 3262 §7.2) names the INVITE by its CSeq on the leg it crosses to.
fn rewrite_rack(msg: &Message, invite_cseq_on_other_leg: Option<u32>) -> Option<String> {
    let rack = msg.header(HeaderName::RAck)?;
    let mut parts = rack.split_whitespace();
    let rseq = parts.next()?;
    let _their_cseq = parts.next()?;
    let method = parts.next()?;
    Some(format!("{rseq} {} {method}", invite_cseq_on_other_leg?))
}
