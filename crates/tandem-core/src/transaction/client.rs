//! Client transactions: INVITE (§17.1.1, Figure 5, RFC 6026 Accepted) and non-INVITE (§17.1.2,
//! Figure 6), plus the two requests the layer builds from an INVITE: the ACK for a non-2xx final
//! (§17.1.1.3) and the CANCEL (§9.1).

use super::state::{Kind, Output, State, Transaction, Verdict};
use super::timer::Slot;
use super::{Timers, TxEvent};
use bytes::Bytes;
use std::time::{Duration, Instant};
use tandem_sip::{HeaderName, Message, Method, RequestBuilder};

/// Timer D for unreliable transports: at least 32 s, and never shorter than the server's Timer H.
fn timer_d(timers: &Timers) -> Duration {
    Duration::from_secs(32).max(64 * timers.t1)
}

impl Transaction {
    /// Sends the request for the first time; arms A/E (unreliable only) at T1 and B/F at 64·T1.
    pub(super) fn launch(&mut self, now: Instant, timers: &Timers, out: &mut Output) {
        self.send_request(out);
        if !self.reliable() {
            self.arm_retransmit(now, timers.t1, out);
        }
        self.arm(Slot::Deadline, now, 64 * timers.t1, out);
    }

    /// A response whose top-Via branch and CSeq method matched this client transaction.
    pub(super) fn on_response(
        &mut self,
        now: Instant,
        msg: &Message,
        timers: &Timers,
        out: &mut Output,
    ) -> Verdict {
        let Some(code) = msg.status() else {
            return Verdict::Stray;
        };
        match self.kind {
            Kind::ClientInvite => self.invite_response(now, code, msg, timers, out),
            Kind::ClientNonInvite => self.non_invite_response(now, code, timers, out),
            Kind::ServerInvite | Kind::ServerNonInvite => Verdict::Stray,
        }
    }

    fn invite_response(
        &mut self,
        now: Instant,
        code: u16,
        msg: &Message,
        timers: &Timers,
        out: &mut Output,
    ) -> Verdict {
        match (self.state, code) {
            (State::Calling | State::Proceeding, 100..=199) => {
                if self.state == State::Calling {
                    // Timers A and B stop; a cancel guard armed later lives in the same slot.
                    self.disarm(Slot::Retransmit);
                    self.disarm(Slot::Deadline);
                    self.state = State::Proceeding;
                }
                Verdict::PassUp
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.disarm(Slot::Retransmit);
                self.state = State::Accepted;
                self.arm(Slot::Deadline, now, 64 * timers.t1, out); // Timer M
                Verdict::PassUp
            }
            (State::Calling | State::Proceeding, _) => {
                self.disarm(Slot::Retransmit);
                self.state = State::Completed;
                match self.request_message().map(|invite| build_ack(invite, msg)) {
                    Some(ack) => {
                        self.resend = Some(ack);
                        self.resend_last(out);
                    }
                    None => tracing::warn!(
                        tx = self.id.0,
                        "could not build ACK for non-2xx final: the INVITE does not parse"
                    ),
                }
                let d = self.absorb_wait(timer_d(timers));
                self.arm(Slot::Deadline, now, d, out);
                Verdict::PassUp
            }
            // RFC 6026: every 2xx in Accepted goes up, the TU ACKs it at dialog level.
            (State::Accepted, 200..=299) => Verdict::PassUp,
            // A final retransmission: ACK again, hop by hop.
            (State::Completed, 300..) => {
                self.resend_last(out);
                Verdict::Absorb
            }
            // A 2xx after a non-2xx final can only come from another branch: the TU must know.
            (State::Completed, 200..=299) => Verdict::PassUp,
            _ => Verdict::Absorb,
        }
    }

    fn non_invite_response(
        &mut self,
        now: Instant,
        code: u16,
        timers: &Timers,
        out: &mut Output,
    ) -> Verdict {
        match (self.state, code) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                Verdict::PassUp
            }
            (State::Trying | State::Proceeding, _) => {
                self.disarm(Slot::Retransmit);
                self.state = State::Completed;
                let k = self.absorb_wait(timers.t4);
                self.arm(Slot::Deadline, now, k, out); // Timer K
                Verdict::PassUp
            }
            (State::Held, _) => Verdict::Stray,
            _ => Verdict::Absorb,
        }
    }

    /// Timer A/B/D/M (INVITE) or E/F/K (non-INVITE) fired; the slot is already disarmed.
    pub(super) fn on_client_timer(
        &mut self,
        slot: Slot,
        now: Instant,
        timers: &Timers,
        out: &mut Output,
    ) {
        match (slot, self.state) {
            (Slot::Retransmit, State::Calling) => {
                self.send_request(out);
                self.arm_retransmit(now, 2 * self.interval, out);
            }
            (Slot::Retransmit, State::Trying) => {
                self.send_request(out);
                self.arm_retransmit(now, (2 * self.interval).min(timers.t2), out);
            }
            (Slot::Retransmit, State::Proceeding) if self.kind == Kind::ClientNonInvite => {
                self.send_request(out);
                self.arm_retransmit(now, timers.t2, out);
            }
            (Slot::Retransmit, _) => {}
            (Slot::Deadline, state) => {
                if state.awaits_final() {
                    tracing::debug!(tx = self.id.0, peer = %self.peer.addr, "client transaction timed out");
                    out.events.push_back(TxEvent::Timeout { tx: self.id });
                }
                self.terminate();
            }
        }
    }
}

/// The ACK for a non-2xx final (§17.1.1.3): the INVITE's Request-URI, top Via, From, Call-ID and
/// Route headers, the response's To (with its tag), CSeq number with method ACK.
pub(super) fn build_ack(invite: &Message, response: &Message) -> Bytes {
    let to = response.header(HeaderName::To).unwrap_or_default();
    hop_by_hop_request(&Method::Ack, invite, &to)
}

/// The CANCEL for an INVITE (§9.1): like the ACK, but with the INVITE's own To.
pub(super) fn build_cancel(invite: &Message) -> Bytes {
    let to = invite.header(HeaderName::To).unwrap_or_default();
    hop_by_hop_request(&Method::Cancel, invite, &to)
}

fn hop_by_hop_request(method: &Method, invite: &Message, to: &str) -> Bytes {
    let mut builder = RequestBuilder::new(method, invite.request_uri().unwrap_or_default());
    if let Some(via) = invite.header_values(HeaderName::Via).next() {
        builder.header(HeaderName::Via, &via);
    }
    builder.header(HeaderName::MaxForwards, "70");
    for route in invite.headers(HeaderName::Route) {
        builder.header(HeaderName::Route, &route);
    }
    builder.header(
        HeaderName::From,
        &invite.header(HeaderName::From).unwrap_or_default(),
    );
    builder.header(HeaderName::To, to);
    builder.header(HeaderName::CallId, invite.call_id());
    builder.header(
        HeaderName::CSeq,
        &format!("{} {}", invite.cseq().seq, method.as_str()),
    );
    builder.build()
}
