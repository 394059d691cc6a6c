//! The media-server pool: choice by load, health with hysteresis (sans-IO; the Core sends the probes).

use crate::config::{MediaServerConfig, ProbeConfig};
use crate::transaction::TxId;
use std::net::SocketAddr;
use std::time::Instant;

/// Index of a server in the pool (stable for the life of the process).
pub type ServerIndex = usize;

/// What the pool knows of one media server.
#[derive(Debug)]
pub struct ServerState {
    pub config: MediaServerConfig,
    pub up: bool,
    consecutive_successes: u32,
    consecutive_failures: u32,
    pub active_calls: usize,
    /// When the next OPTIONS probe is due.
    pub next_probe: Instant,
    /// The probe under way: its transaction and the moment it counts as failed.
    pub probe_in_flight: Option<(TxId, Instant)>,
}

/// All media servers.
#[derive(Debug)]
pub struct Pool {
    servers: Vec<ServerState>,
    probe: ProbeConfig,
    /// Rotates among equally loaded servers so ties do not all land on the first one.
    tie_cursor: usize,
}

impl Pool {
    /// Every server starts up (calls flow at once); probes correct that within the probe window.
    pub fn new(configs: &[MediaServerConfig], probe: ProbeConfig, now: Instant) -> Pool {
        let servers = configs
            .iter()
            .map(|config| ServerState {
                config: config.clone(),
                up: true,
                consecutive_successes: 0,
                consecutive_failures: 0,
                active_calls: 0,
                next_probe: now,
                probe_in_flight: None,
            })
            .collect();
        Pool {
            servers,
            probe,
            tie_cursor: 0,
        }
    }

    pub fn probe_config(&self) -> ProbeConfig {
        self.probe
    }

    pub fn servers(&self) -> &[ServerState] {
        &self.servers
    }

    pub fn server(&self, index: ServerIndex) -> &ServerState {
        &self.servers[index]
    }

    pub fn server_mut(&mut self, index: ServerIndex) -> &mut ServerState {
        &mut self.servers[index]
    }

    pub fn index_of(&self, addr: SocketAddr) -> Option<ServerIndex> {
        self.servers.iter().position(|s| s.config.addr == addr)
    }

    pub fn index_of_name(&self, name: &str) -> Option<ServerIndex> {
        self.servers.iter().position(|s| s.config.name == name)
    }

    /// Takes a health verdict from elsewhere (the active node's, on promotion); probes go on
    /// correcting it from here.
    pub fn set_up(&mut self, index: ServerIndex, up: bool) {
        let s = &mut self.servers[index];
        s.up = up;
        s.consecutive_successes = 0;
        s.consecutive_failures = 0;
    }

    /// The up server with the fewest active calls per unit of weight, skipping `exclude`.
    pub fn select(&mut self, exclude: &[ServerIndex]) -> Option<ServerIndex> {
        let n = self.servers.len();
        let mut best: Option<ServerIndex> = None;
        for offset in 0..n {
            let i = (self.tie_cursor + offset) % n;
            let s = &self.servers[i];
            if !s.up || exclude.contains(&i) {
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) => {
                    let bs = &self.servers[b];
                    // a/wa < b/wb  ⇔  a·wb < b·wa (weights ≥ 1)
                    let lhs = s.active_calls as u64 * u64::from(bs.config.weight.max(1));
                    let rhs = bs.active_calls as u64 * u64::from(s.config.weight.max(1));
                    if lhs < rhs {
                        Some(i)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        if let Some(i) = best {
            self.tie_cursor = (i + 1) % n.max(1);
        }
        best
    }

    pub fn call_started(&mut self, index: ServerIndex) {
        self.servers[index].active_calls += 1;
    }

    pub fn call_ended(&mut self, index: ServerIndex) {
        let s = &mut self.servers[index];
        s.active_calls = s.active_calls.saturating_sub(1);
    }

    /// A probe answered, or a call attempt got a response: returns `Some(true)` when the server just
    /// came up.
    pub fn record_success(&mut self, index: ServerIndex) -> Option<bool> {
        let threshold = self.probe.successes_to_up.max(1);
        let s = &mut self.servers[index];
        s.consecutive_failures = 0;
        s.consecutive_successes = s.consecutive_successes.saturating_add(1);
        if !s.up && s.consecutive_successes >= threshold {
            s.up = true;
            return Some(true);
        }
        None
    }

    /// A probe or a call attempt failed: returns `Some(false)` when the server just went down.
    pub fn record_failure(&mut self, index: ServerIndex) -> Option<bool> {
        let threshold = self.probe.failures_to_down.max(1);
        let s = &mut self.servers[index];
        s.consecutive_successes = 0;
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        if s.up && s.consecutive_failures >= threshold {
            s.up = false;
            return Some(false);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Transport;
    use std::time::Duration;

    fn server(name: &str, port: u16, weight: u32) -> MediaServerConfig {
        MediaServerConfig {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            transport: Transport::Udp,
            weight,
        }
    }

    fn pool(configs: &[MediaServerConfig]) -> Pool {
        let probe = ProbeConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            failures_to_down: 2,
            successes_to_up: 3,
        };
        Pool::new(configs, probe, Instant::now())
    }

    #[test]
    fn fewest_active_calls_wins_and_ties_rotate() {
        let mut p = pool(&[server("a", 1, 1), server("b", 2, 1)]);
        let first = p.select(&[]).unwrap();
        p.call_started(first);
        let second = p.select(&[]).unwrap();
        assert_ne!(first, second);
        p.call_started(second);
        p.call_ended(first);
        assert_eq!(p.select(&[]), Some(first));
    }

    #[test]
    fn weight_scales_the_share() {
        let mut p = pool(&[server("a", 1, 1), server("b", 2, 3)]);
        for _ in 0..8 {
            let i = p.select(&[]).unwrap();
            p.call_started(i);
        }
        assert_eq!(p.server(0).active_calls, 2);
        assert_eq!(p.server(1).active_calls, 6);
    }

    #[test]
    fn hysteresis_needs_consecutive_results() {
        let mut p = pool(&[server("a", 1, 1)]);
        assert_eq!(p.record_failure(0), None);
        assert_eq!(p.record_success(0), None); // resets the failure run
        assert_eq!(p.record_failure(0), None);
        assert_eq!(p.record_failure(0), Some(false));
        assert_eq!(p.select(&[]), None, "a down server gets no calls");
        assert_eq!(p.record_success(0), None);
        assert_eq!(p.record_success(0), None);
        assert_eq!(p.record_success(0), Some(true));
        assert_eq!(p.select(&[]), Some(0));
    }

    #[test]
    fn excluded_servers_are_skipped() {
        let mut p = pool(&[server("a", 1, 1), server("b", 2, 1)]);
        assert_eq!(p.select(&[0]), Some(1));
        assert_eq!(p.select(&[0, 1]), None);
        assert_eq!(p.index_of(SocketAddr::from(([127, 0, 0, 1], 2))), Some(1));
    }
}
