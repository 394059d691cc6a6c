//! Server transactions: INVITE (§17.2.1, Figure 7 as modified by RFC 6026) and non-INVITE
//! (§17.2.2, Figure 8).

use super::state::{Kind, Output, State, Transaction};
use super::timer::Slot;
use super::{Timers, TxEvent};
use bytes::Bytes;
use std::time::Instant;

/// What an ACK that reached a server INVITE transaction means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckVerdict {
    /// The ACK for a non-2xx final (or a stray one): consumed.
    Absorb,
    /// The ACK for the 2xx of this Accepted transaction: goes to the TU.
    Accepted,
}

impl Transaction {
    /// The peer retransmitted the request: re-send the last response, if any.
    pub(super) fn on_request_retransmission(&self, out: &mut Output) {
        if self.state != State::Confirmed {
            self.resend_last(out);
        }
    }

    /// The TU's response with status `code`. Returns false (nothing sent) when the state does not
    /// accept it.
    pub(super) fn respond(
        &mut self,
        now: Instant,
        code: u16,
        response: Bytes,
        timers: &Timers,
        out: &mut Output,
    ) -> bool {
        let unreliable = !self.reliable();
        match (self.kind, self.state, code) {
            (Kind::ServerInvite, State::Proceeding, 100..=199) => {}
            (Kind::ServerNonInvite, State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding
            }
            (Kind::ServerInvite, State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                if unreliable {
                    self.arm_retransmit(now, timers.t1, out); // §13.3.1.4
                }
                self.arm(Slot::Deadline, now, 64 * timers.t1, out); // Timer L
            }
            // A 2xx sent again by the TU replaces the one being retransmitted; timers keep running.
            (Kind::ServerInvite, State::Accepted, 200..=299) => {}
            (Kind::ServerInvite, State::Proceeding, _) => {
                self.state = State::Completed;
                if unreliable {
                    self.arm_retransmit(now, timers.t1, out); // Timer G
                }
                self.arm(Slot::Deadline, now, 64 * timers.t1, out); // Timer H
            }
            (Kind::ServerNonInvite, State::Trying | State::Proceeding, _) => {
                self.state = State::Completed;
                let j = self.absorb_wait(64 * timers.t1);
                self.arm(Slot::Deadline, now, j, out); // Timer J
            }
            _ => return false,
        }
        self.resend = Some(response);
        self.resend_last(out);
        true
    }

    /// An ACK matched this server INVITE transaction (by branch, or for a 2xx by Call-ID/CSeq/From tag).
    pub(super) fn on_ack(&mut self, now: Instant, timers: &Timers, out: &mut Output) -> AckVerdict {
        match self.state {
            State::Completed => {
                self.disarm(Slot::Retransmit);
                self.state = State::Confirmed;
                let i = self.absorb_wait(timers.t4);
                self.arm(Slot::Deadline, now, i, out); // Timer I
                AckVerdict::Absorb
            }
            State::Accepted => {
                self.acked = true;
                self.disarm(Slot::Retransmit);
                // The peer has the 2xx: nothing is sent again, so its bytes need not wait for Timer L.
                self.resend = None;
                AckVerdict::Accepted
            }
            _ => AckVerdict::Absorb,
        }
    }

    /// Timer G/H/I/L, the 2xx retransmission, or J fired; the slot is already disarmed.
    pub(super) fn on_server_timer(
        &mut self,
        slot: Slot,
        now: Instant,
        timers: &Timers,
        out: &mut Output,
    ) {
        match (slot, self.state) {
            (Slot::Retransmit, State::Accepted | State::Completed) => {
                self.resend_last(out);
                self.arm_retransmit(now, (2 * self.interval).min(timers.t2), out);
            }
            (Slot::Retransmit, _) => {}
            (Slot::Deadline, State::Accepted) if !self.acked => self.no_ack(out),
            (Slot::Deadline, State::Completed) if self.kind == Kind::ServerInvite => {
                self.no_ack(out)
            }
            (Slot::Deadline, _) => self.terminate(),
        }
    }

    fn no_ack(&mut self, out: &mut Output) {
        tracing::debug!(tx = self.id.0, peer = %self.peer.addr, "final response never acknowledged");
        out.events.push_back(TxEvent::NoAck { tx: self.id });
        self.terminate();
    }
}
