//! SIP OPTIONS health probes of the media servers (hysteresis lives in the pool).

use super::{Core, TxRole};
use crate::pool::ServerIndex;
use crate::transaction::TxId;
use crate::Peer;
use std::time::Instant;
use tandem_sip::{HeaderName, Message, Method, RequestBuilder};

impl Core {
    /// Starts or stops the OPTIONS probes of the media servers. A standby stops them: they would
    /// leave from the service address, whose answers reach the active node, so every server would
    /// look down to the standby; it takes the active node's verdicts instead
    /// ([`Core::adopt_server_health`]). A node that starts probing again probes every server at
    /// once. A probe under way when they stop ends at once and counts for nothing.
    pub fn set_probing(&mut self, now: Instant, on: bool) {
        if self.probing == on {
            return;
        }
        self.probing = on;
        for server in 0..self.pool.servers().len() {
            let state = self.pool.server_mut(server);
            if on {
                state.next_probe = now;
            } else if let Some((tx, _)) = state.probe_in_flight.take() {
                self.roles.remove(&tx);
                self.layer.abandon_client(now, tx);
            }
        }
    }

    /// Takes another node's health verdicts (by server name; unknown names are ignored) as this
    /// node's: a standby shows the media servers as its active node sees them.
    pub fn adopt_server_health(&mut self, servers: &[(String, bool)]) {
        for (name, up) in servers {
            if let Some(server) = self.pool.index_of_name(name) {
                self.pool.set_up(server, *up);
            }
        }
    }

    /// Starts every probe that is due and fails every probe that outlived its timeout.
    pub(super) fn run_probes(&mut self, now: Instant) {
        if !self.probing {
            return;
        }
        let probe = self.pool.probe_config();
        for server in 0..self.pool.servers().len() {
            if let Some((tx, deadline)) = self.pool.server(server).probe_in_flight {
                if deadline <= now {
                    self.on_probe_failed(now, tx, server);
                }
            }
            let state = self.pool.server(server);
            if state.probe_in_flight.is_some() || state.next_probe > now {
                continue;
            }
            let config = state.config.clone();
            let uri = format!("sip:{}", config.addr);
            let peer = Peer {
                transport: config.transport,
                addr: config.addr,
                conn: None,
            };
            let mut b = RequestBuilder::new(&Method::Options, &uri);
            b.header(
                HeaderName::Via,
                &self.me.via(config.transport, &self.ids.branch()),
            )
            .header(HeaderName::MaxForwards, "70")
            .header(
                HeaderName::From,
                &format!("<sip:tandem@{}>;tag={}", self.me.advertised, self.ids.tag()),
            )
            .header(HeaderName::To, &format!("<{uri}>"))
            .header(HeaderName::CallId, &self.ids.call_id())
            .header(HeaderName::CSeq, "1 OPTIONS");
            let request = b.build();
            let tx = self.send_request(now, request, peer, TxRole::Probe { server });
            let s = self.pool.server_mut(server);
            s.next_probe = now + probe.interval;
            s.probe_in_flight = tx.map(|tx| (tx, now + probe.timeout));
        }
    }

    /// When `handle_timeout` must run for the probes next.
    pub(super) fn next_probe_deadline(&self) -> Option<Instant> {
        if !self.probing {
            return None;
        }
        self.pool
            .servers()
            .iter()
            .map(|s| match s.probe_in_flight {
                Some((_, deadline)) => deadline,
                None => s.next_probe,
            })
            .min()
    }

    pub(super) fn on_probe_response(&mut self, tx: TxId, server: ServerIndex, msg: &Message) {
        let Some(code) = msg.status() else { return };
        if code < 200 || self.pool.server(server).probe_in_flight.map(|(t, _)| t) != Some(tx) {
            return;
        }
        self.pool.server_mut(server).probe_in_flight = None;
        // Any answer below 500 proves the server's SIP stack is alive; 5xx means it refuses work.
        let changed = if code < 500 {
            self.pool.record_success(server)
        } else {
            self.pool.record_failure(server)
        };
        if let Some(up) = changed {
            self.health_changed(server, up);
        }
    }

    /// Probe `tx` got no answer within the probe timeout (or its transaction timed out): its
    /// transaction ends too, instead of retransmitting to a server already counted as silent
    /// until Timer F (32 s).
    pub(super) fn on_probe_failed(&mut self, now: Instant, tx: TxId, server: ServerIndex) {
        if self.pool.server(server).probe_in_flight.map(|(t, _)| t) != Some(tx) {
            return;
        }
        self.pool.server_mut(server).probe_in_flight = None;
        self.roles.remove(&tx);
        self.layer.abandon_client(now, tx);
        if let Some(up) = self.pool.record_failure(server) {
            self.health_changed(server, up);
        }
    }
}
