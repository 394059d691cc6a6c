//! SIP OPTIONS health probes of the media servers (hysteresis lives in the pool).

use super::{Core, TxRole};
use crate::pool::ServerIndex;
use crate::transaction::TxId;
use crate::Peer;
use std::time::Instant;
use tandem_sip::{HeaderName, Message, Method, RequestBuilder};

impl Core {
    /// Starts every probe that is due and fails every probe that outlived its timeout.
    pub(super) fn run_probes(&mut self, now: Instant) {
        let probe = self.pool.probe_config();
        for server in 0..self.pool.servers().len() {
            if let Some((tx, deadline)) = self.pool.server(server).probe_in_flight {
                if deadline <= now {
                    self.on_probe_failed(tx, server);
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

    pub(super) fn on_probe_failed(&mut self, tx: TxId, server: ServerIndex) {
        if self.pool.server(server).probe_in_flight.map(|(t, _)| t) != Some(tx) {
            return;
        }
        self.pool.server_mut(server).probe_in_flight = None;
        self.roles.remove(&tx);
        if let Some(up) = self.pool.record_failure(server) {
            self.health_changed(server, up);
        }
    }
}
