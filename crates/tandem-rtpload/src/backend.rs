//! How calls get their relay ports: through Tandem (SIP), rtpengine (ng), or no relay at all (the
//! generator's self-test, sending side A straight to side B).

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// The generator's two RTP sockets for one stream: the caller side (A) and the media-server side
/// (B). Several streams may share a socket; packets name their stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// Caller side: offered in the INVITE / ng offer.
    pub a: SocketAddrV4,
    /// Media-server side: answered in the 200 / ng answer.
    pub b: SocketAddrV4,
}

/// One established call's media path as the generator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Where side A sends (the relay's caller-facing port); the relay forwards to side B.
    pub a_sends_to: SocketAddrV4,
    /// Where side B sends (the relay's server-facing port); the relay forwards to side A.
    pub b_sends_to: SocketAddrV4,
}

impl Session {
    /// Whether the relay left the SDP naming the generator's own sockets, i.e. it does not anchor
    /// media (packets would go straight from A to B).
    pub fn is_direct(&self, endpoints: &Endpoints) -> bool {
        self.a_sends_to == endpoints.b || self.b_sends_to == endpoints.a
    }
}

/// What a call setup phase achieved.
#[derive(Debug, Default)]
pub struct SetupOutcome {
    /// Per stream: its session, or `None` when setup failed.
    pub sessions: Vec<Option<Session>>,
    /// Signalling retransmissions sent (INVITE, ng request).
    pub retransmits: u64,
}

/// Calls torn down, and how many ended cleanly.
#[derive(Debug, Default, Clone, Copy)]
pub struct TeardownOutcome {
    /// Calls whose teardown was answered with success.
    pub ok: usize,
    /// Calls whose teardown failed or went unanswered.
    pub failed: usize,
}

/// A way to set calls up and tear them down.
pub trait Backend {
    /// Short name for the result lines.
    fn name(&self) -> &'static str;

    /// Sets up one call per entry of `endpoints`, at most `rate` new calls per second; gives up on
    /// what is not done by `deadline`.
    fn setup(
        &mut self,
        endpoints: &[Endpoints],
        rate: u32,
        deadline: Instant,
    ) -> anyhow::Result<SetupOutcome>;

    /// Answers whatever signalling arrived meanwhile (health probes, in-dialog requests); called
    /// every few milliseconds while media runs, must not block.
    fn service(&mut self);

    /// Tears down every call set up, at most `rate` per second, giving up at `deadline`.
    fn teardown(&mut self, rate: u32, deadline: Instant) -> TeardownOutcome;
}

/// No relay: side A sends to side B's socket and back. Measures the generator itself and the bare
/// loopback path.
#[derive(Debug, Default)]
pub struct Direct {
    calls: usize,
}

impl Backend for Direct {
    fn name(&self) -> &'static str {
        "none"
    }

    fn setup(
        &mut self,
        endpoints: &[Endpoints],
        _rate: u32,
        _deadline: Instant,
    ) -> anyhow::Result<SetupOutcome> {
        self.calls = endpoints.len();
        Ok(SetupOutcome {
            sessions: endpoints
                .iter()
                .map(|e| {
                    Some(Session {
                        a_sends_to: e.b,
                        b_sends_to: e.a,
                    })
                })
                .collect(),
            retransmits: 0,
        })
    }

    fn service(&mut self) {}

    fn teardown(&mut self, _rate: u32, _deadline: Instant) -> TeardownOutcome {
        TeardownOutcome {
            ok: std::mem::take(&mut self.calls),
            failed: 0,
        }
    }
}

/// Paces a sequence of actions at `rate` per second from `start`.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start: Instant,
    rate: f64,
}

impl Pacer {
    /// A pacer starting now; a rate of 0 counts as 1 per second.
    pub fn new(rate: u32) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate: f64::from(rate.max(1)),
        }
    }

    /// How many actions are due by `now`.
    pub fn due(&self, now: Instant) -> usize {
        (now.duration_since(self.start).as_secs_f64() * self.rate) as usize + 1
    }

    /// Time until action number `done` (0-based) is due; zero when it already is.
    pub fn wait_for(&self, done: usize, now: Instant) -> Duration {
        let at = self.start + Duration::from_secs_f64(done as f64 / self.rate);
        at.saturating_duration_since(now)
    }
}
