//! Configuration of the sans-IO core (the shell maps its TOML file onto these).

use crate::transaction::Timers;
use crate::Transport;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything the core needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Address Tandem advertises in Via, Contact and Record-Route (the service address / VIP): what
    /// callers and media servers send to. The shell listens on it for UDP and (if `tcp`) TCP.
    pub advertised: SocketAddr,
    /// Whether a TCP listener is on `advertised` too.
    pub tcp: bool,
    /// RFC 3261 timer bases.
    pub timers: Timers,
    /// The media servers (Asterisk) calls are spread over.
    pub media_servers: Vec<MediaServerConfig>,
    /// Health probing of the media servers.
    pub probe: ProbeConfig,
    /// How long an INVITE to one media server may go without a provisional response before Tandem
    /// tries the next server (the caller sees nothing of it).
    pub server_invite_timeout: Duration,
    /// Largest number of concurrent calls; new INVITEs beyond it get 503.
    pub max_calls: usize,
    /// An answered call is ended (BYE on both legs) this long after its answer; `None`: no limit.
    pub max_call_duration: Option<Duration>,
    /// Media anchoring: relay ports every call's RTP/RTCP is moved through. `None`: SDP passes
    /// unchanged and media flows directly between the caller and the media server.
    pub media: Option<crate::media::MediaConfig>,
}

/// One media server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaServerConfig {
    /// Name used in logs and metrics.
    pub name: String,
    /// SIP address of the server.
    pub addr: SocketAddr,
    /// Transport Tandem uses toward it.
    pub transport: Transport,
    /// Relative share of calls (fewest active calls per unit of weight wins). Default 1.
    pub weight: u32,
}

/// SIP OPTIONS health probes with hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Time between two probes of one server.
    pub interval: Duration,
    /// A probe with no final response within this time counts as a failure.
    pub timeout: Duration,
    /// Consecutive failures after which an up server is marked down.
    pub failures_to_down: u32,
    /// Consecutive successes after which a down server is marked up.
    pub successes_to_up: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(500),
            failures_to_down: 2,
            successes_to_up: 2,
        }
    }
}
