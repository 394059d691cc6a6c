//! The config file as written: TOML tables mapped one to one, every key documented here. Values stay
//! text where the file writes text (addresses, durations); `super::Config::from_file` checks them and
//! names the key of any bad value. Unknown keys are rejected at every level.

use serde::Deserialize;

/// The whole file. Every table may be left out and takes its defaults, except that at least one
/// `[[media_server]]` is required.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// `[sip]`: the SIP service.
    pub sip: SipTable,
    /// `[admin]`: the HTTP endpoint for `/metrics` and `/health`.
    pub admin: AdminTable,
    /// `[pool]`: health probing of the media servers.
    pub pool: PoolTable,
    /// `[media]`: RTP/RTCP anchoring on Tandem's relay ports.
    pub media: MediaTable,
    /// `[ha]`: hot standby with a peer node; absent: a standalone node.
    pub ha: Option<HaTable>,
    /// `[[media_server]]`: the Asterisk servers calls are spread over, in order.
    #[serde(rename = "media_server")]
    pub media_servers: Vec<MediaServerTable>,
    /// `[shutdown]`: graceful shutdown.
    pub shutdown: ShutdownTable,
    /// `[log]`: logging to stderr.
    pub log: LogTable,
}

/// `[sip]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipTable {
    /// Service address `ip:port`: Tandem listens on it for UDP and (with `tcp`) TCP. Default
    /// `127.0.0.1:5060`. Port 0 picks a free port (the same one for UDP and TCP).
    pub listen: String,
    /// Address written in Via, Contact and Record-Route, for a VIP or NAT. Default: `listen`.
    /// Required when `listen` is an unspecified address (`0.0.0.0`, `::`).
    pub advertised: Option<String>,
    /// Whether to accept and open TCP connections too. Default true.
    pub tcp: bool,
    /// An idle TCP connection (nothing read or written) is closed after this long. Default `10m`.
    pub tcp_idle_timeout: String,
    /// Largest number of concurrent calls; more INVITEs get 503. Default 10000.
    pub max_calls: usize,
    /// How long an INVITE to one media server may go unanswered (no provisional response) before
    /// Tandem tries the next server. Default `2s`.
    pub server_invite_timeout: String,
    /// An answered call is ended (BYE to both sides) this long after its answer, whatever it
    /// does: the guard against calls nobody hangs up. `0s`: no limit. Default `12h`.
    pub max_call_duration: String,
    /// `[sip.timers]`: RFC 3261 timer bases.
    pub timers: TimersTable,
}

impl Default for SipTable {
    fn default() -> Self {
        SipTable {
            listen: "127.0.0.1:5060".into(),
            advertised: None,
            tcp: true,
            tcp_idle_timeout: "10m".into(),
            max_calls: 10_000,
            server_invite_timeout: "2s".into(),
            max_call_duration: "12h".into(),
            timers: TimersTable::default(),
        }
    }
}

/// `[sip.timers]` (RFC 3261 §17.1.1.1).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersTable {
    /// T1, the round-trip estimate that retransmissions start from. Default `500ms`.
    pub t1: String,
    /// T2, the longest retransmit interval of non-INVITE requests and INVITE responses; at least T1.
    /// Default `4s`.
    pub t2: String,
    /// T4, the longest time a message stays in the network. Default `5s`.
    pub t4: String,
}

impl Default for TimersTable {
    fn default() -> Self {
        TimersTable {
            t1: "500ms".into(),
            t2: "4s".into(),
            t4: "5s".into(),
        }
    }
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminTable {
    /// HTTP listen address `ip:port` for `GET /metrics` and `GET /health`. Default `127.0.0.1:9090`.
    pub listen: String,
    /// gRPC listen address of the admin API (`tandem.admin.v1`, what `tandemctl` speaks). Default
    /// `127.0.0.1:9091`.
    pub grpc_listen: String,
}

impl Default for AdminTable {
    fn default() -> Self {
        AdminTable {
            listen: "127.0.0.1:9090".into(),
            grpc_listen: "127.0.0.1:9091".into(),
        }
    }
}

/// `[pool]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolTable {
    /// Time between two OPTIONS probes of one media server. Default `1s`.
    pub probe_interval: String,
    /// A probe without a final response within this time fails; shorter than `probe_interval`.
    /// Default `500ms`.
    pub probe_timeout: String,
    /// Consecutive failed probes after which an up server is marked down. Default 2.
    pub failures_to_down: u32,
    /// Consecutive successful probes after which a down server is marked up. Default 2.
    pub successes_to_up: u32,
}

impl Default for PoolTable {
    fn default() -> Self {
        PoolTable {
            probe_interval: "1s".into(),
            probe_timeout: "500ms".into(),
            failures_to_down: 2,
            successes_to_up: 2,
        }
    }
}

/// `[media]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaTable {
    /// Anchor every call's RTP/RTCP on Tandem's relay ports (SDP rewritten). With `false`, SDP
    /// passes unchanged and media flows directly between caller and media server. Default true.
    pub enabled: bool,
    /// IP the relay ports bind to and SDP bodies name: the service address (VIP). Default: the IP
    /// of `sip.advertised`, else of `sip.listen`.
    pub address: Option<String>,
    /// First port of the relay range (even). Each call uses two pairs (RTP even + RTCP odd) per
    /// media stream, one facing each side. Keep the range clear of the kernel's ephemeral ports
    /// (`net.ipv4.ip_local_port_range`, 32768–60999 by default) and of other RTP users on the same
    /// address. Default 20000.
    pub port_min: u16,
    /// Last port of the relay range. Default 32767 (6384 pairs: 3192 audio calls).
    pub port_max: u16,
    /// A call whose caller sends no RTP or RTCP for this long is ended (BYE on both legs); a media
    /// server silent for this long while the caller talks is probed at once. `"0s"` turns it off.
    /// Sides on hold are not expected to send. Default `60s`.
    pub inactivity_timeout: String,
    /// Data-plane threads; 0 = one per CPU core. Default 0.
    pub shards: usize,
    /// How the data-plane threads move packets: `"epoll"` (readiness, then batched system calls
    /// per socket) or `"io_uring"` (a multishot receive per socket, sends queued in the same ring;
    /// Linux 6.0 or later, falls back to epoll where refused). Default `"io_uring"`.
    pub io: String,
    /// With `io = "io_uring"`: a data-plane thread relaying more than 10,000 packets a second
    /// waits up to this long to gather several before relaying them (about 10 % less CPU per
    /// packet at 50,000 packets a second; each packet waits this much more at most); a quieter
    /// thread relays each packet at once. `"0ms"`: never wait. Default `1ms`.
    pub batch_wait: String,
    /// Latch the caller side onto the first source from any IP, not only the IP its SDP names
    /// (callers behind NAT that signal private addresses). Media servers are always latched on
    /// their signalled IP only. Default false.
    pub latch_any_ip: bool,
}

impl Default for MediaTable {
    fn default() -> Self {
        MediaTable {
            enabled: true,
            address: None,
            port_min: 20000,
            port_max: 32767,
            inactivity_timeout: "60s".into(),
            shards: 0,
            io: "io_uring".into(),
            batch_wait: "1ms".into(),
            latch_any_ip: false,
        }
    }
}

/// `[ha]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaTable {
    /// This node's name. Required.
    pub node: String,
    /// The peer node's name. Required.
    pub peer: String,
    /// Where this node's replication gRPC server listens (`ip:port`, on the replication network).
    /// Required.
    pub listen: String,
    /// The peer's replication gRPC address. Required.
    pub peer_address: String,
    /// Where the second path probes the peer with SIP OPTIONS before a takeover (only a silent
    /// probe lets the standby promote itself). It must be an address the peer's SIP service answers
    /// on over the service network: with `sip.listen` on the service address (VIP), the VIP itself
    /// — the live active answers there, a dead one does not. Required, except when keepalived owns
    /// the address (`ha.vip.owner = "keepalived"`: no takeover of its own, so no probe).
    #[serde(default)]
    pub peer_sip: Option<String>,
    /// This node wins when both start together. Default false.
    #[serde(default)]
    pub prefer_active: bool,
    /// `"sync"`: a call's 2xx reaches the caller once the standby has the call (bounded by
    /// `sync_wait`); `"async"`: never wait. Default `"sync"`.
    #[serde(default = "default_durability")]
    pub durability: String,
    /// Longest wait of an answer for the standby in `sync`; then it goes on and is counted.
    /// Default `50ms`.
    #[serde(default = "default_sync_wait")]
    pub sync_wait: String,
    /// Longest a replication change waits to be sent together with others. A change an answer
    /// waits for (`sync`) goes at once and takes the waiting ones along; `0ms` sends every change
    /// at once. Default `1ms`.
    #[serde(default = "default_batch_window")]
    pub batch_window: String,
    /// Heartbeats are sent this often. Default `50ms`.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval: String,
    /// Heartbeat intervals missed before the peer is suspected. Default 4.
    #[serde(default = "default_misses")]
    pub misses: u32,
    /// Longest wait for the second path's answer; none counts as dead. Default `100ms`.
    #[serde(default = "default_confirm")]
    pub confirm_timeout: String,
    /// Folder of the node's persistent state (the epoch file). Default `/var/lib/tandem`.
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// The service address (VIP) and who moves it. Absent: Tandem moves no address, but a standby
    /// still takes over a dead active by itself.
    pub vip: Option<VipTable>,
}

/// `[ha.vip]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipTable {
    /// Who moves the address and so decides which node is active. `"tandem"`: Tandem adds it on
    /// `interface` when the node becomes active (`ip addr` + gratuitous ARP) and removes it when
    /// it steps down; a standby takes over a dead active by itself. `"keepalived"`: keepalived's
    /// VRRP moves it and its notify script (`scripts/keepalived-notify.sh`) promotes and demotes
    /// the node through the admin API; Tandem never touches the address and never promotes itself,
    /// but still replicates and fences by epoch. Default `"tandem"`.
    #[serde(default = "default_vip_owner")]
    pub owner: String,
    /// The address: with a prefix length for `"tandem"` (e.g. `"10.0.0.100/24"`); for
    /// `"keepalived"` the prefix may be left out (keepalived.conf's `virtual_ipaddress` has it).
    pub address: String,
    /// Interface the address goes on, e.g. `"eth0"`. Required for `"tandem"`; not allowed with
    /// `"keepalived"` (keepalived.conf names it).
    pub interface: Option<String>,
}

fn default_vip_owner() -> String {
    "tandem".into()
}

fn default_durability() -> String {
    "sync".into()
}
fn default_sync_wait() -> String {
    "50ms".into()
}
fn default_batch_window() -> String {
    "1ms".into()
}
fn default_heartbeat() -> String {
    "50ms".into()
}
fn default_misses() -> u32 {
    4
}
fn default_confirm() -> String {
    "100ms".into()
}
fn default_state_dir() -> String {
    "/var/lib/tandem".into()
}

/// One `[[media_server]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaServerTable {
    /// Name used in logs and metrics labels; unique. Required.
    pub name: String,
    /// SIP address `ip:port` of the server. Required.
    pub address: String,
    /// Transport toward the server: `"udp"` or `"tcp"`. Default `"udp"`.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// Relative share of calls (fewest active calls per unit of weight wins); at least 1. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_transport() -> String {
    "udp".into()
}

fn default_weight() -> u32 {
    1
}

/// `[shutdown]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownTable {
    /// After SIGTERM/SIGINT, how long established calls may go on (new calls get 503) before Tandem
    /// exits anyway. Default `30s`.
    pub grace: String,
}

impl Default for ShutdownTable {
    fn default() -> Self {
        ShutdownTable {
            grace: "30s".into(),
        }
    }
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogTable {
    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or a tracing directive list
    /// such as `"info,tandem=debug"`. `RUST_LOG`, when set, takes precedence. Default `info`.
    pub level: String,
}

impl Default for LogTable {
    fn default() -> Self {
        LogTable {
            level: "info".into(),
        }
    }
}
