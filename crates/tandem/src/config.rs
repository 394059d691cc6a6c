//! Tandem's configuration file (TOML): reading, checking, and mapping onto the core's config.
//!
//! The keys and their defaults are documented on the tables in [`file`]; `default.toml` at the crate
//! root is the configuration used when no `--config` is given. Every problem is reported with the key
//! it concerns, e.g. `media_server[1].address: invalid socket address "x" (expected ip:port)`
//! (array indexes count from 0).

mod duration;
pub mod file;

pub use duration::{parse_duration, DurationError};

use file::{ConfigFile, MediaServerTable};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tandem_core::media::MediaConfig;
use tandem_core::transaction::Timers;
use tandem_core::{CoreConfig, MediaServerConfig, ProbeConfig, Transport};
use tandem_ha::AddressOwner;
use tandem_media::ports::PortAllocator;
use tandem_relay::RelayIo;

/// The configuration built into the binary, used when no `--config` is given: SIP on
/// 127.0.0.1:5060, admin on 127.0.0.1:9090, one media server on 127.0.0.1:5080.
pub const EMBEDDED_DEFAULT: &str = include_str!("../default.toml");

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML, or a key is unknown, missing, or of the wrong type.
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    /// A value is malformed, out of range or inconsistent with another; `key` names it.
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[sip]`
    pub sip: SipSettings,
    /// `admin.listen`: HTTP address of `/metrics` and `/health`.
    pub admin_listen: SocketAddr,
    /// `[pool]`
    pub probe: ProbeConfig,
    /// `[[media_server]]`, in file order.
    pub media_servers: Vec<MediaServerConfig>,
    /// `[media]`; `None` when `media.enabled = false`.
    pub media: Option<MediaSettings>,
    /// `admin.grpc_listen`: the gRPC admin API.
    pub admin_grpc_listen: SocketAddr,
    /// `[ha]`; `None` for a standalone node.
    pub ha: Option<HaSettings>,
    /// `shutdown.grace`: longest drain after the first SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// `log.level`: tracing filter directives.
    pub log_level: String,
}

/// The checked `[sip]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SipSettings {
    /// `sip.listen`: UDP (and TCP) listen address.
    pub listen: SocketAddr,
    /// `sip.advertised`: address written into messages; `None` means the bound listen address.
    pub advertised: Option<SocketAddr>,
    /// `sip.tcp`: whether TCP is served and used.
    pub tcp: bool,
    /// `sip.tcp_idle_timeout`: idle TCP connections are closed after it.
    pub tcp_idle_timeout: Duration,
    /// `sip.max_calls`: concurrent call limit.
    pub max_calls: usize,
    /// `sip.server_invite_timeout`: failover delay of an unanswered INVITE to a media server.
    pub server_invite_timeout: Duration,
    /// `sip.max_call_duration`; `None` when `0s`.
    pub max_call_duration: Option<Duration>,
    /// `[sip.timers]`
    pub timers: Timers,
}

/// The checked `[ha]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct HaSettings {
    pub node: String,
    pub peer: String,
    pub listen: SocketAddr,
    pub peer_address: SocketAddr,
    /// `ha.peer_sip`: where the second path probes the peer; `None` when keepalived owns the
    /// address (no probe then).
    pub peer_sip: Option<SocketAddr>,
    pub prefer_active: bool,
    /// `None`: async; `Some(wait)`: sync with that bounded wait.
    pub sync_wait: Option<Duration>,
    /// `ha.batch_window`: longest a change waits to be sent with others (zero: never).
    pub batch_window: Duration,
    pub heartbeat_interval: Duration,
    pub misses: u32,
    pub confirm_timeout: Duration,
    pub state_dir: PathBuf,
    /// `[ha.vip]`.
    pub vip: Option<VipSettings>,
}

impl HaSettings {
    /// Who moves the service address: keepalived with `ha.vip.owner = "keepalived"`, else Tandem
    /// (which moves none without `[ha.vip]`).
    pub fn address_owner(&self) -> AddressOwner {
        match self.vip.as_ref().map(|vip| &vip.owner) {
            Some(VipOwner::Keepalived) => AddressOwner::Keepalived,
            Some(VipOwner::Tandem { .. }) | None => AddressOwner::Tandem,
        }
    }
}

/// The checked `[ha.vip]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipSettings {
    /// `ha.vip.address`.
    pub ip: IpAddr,
    /// Its prefix length (the full length when keepalived's address is given without one).
    pub prefix: u8,
    /// `ha.vip.owner`.
    pub owner: VipOwner,
}

/// `ha.vip.owner`: who moves the service address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VipOwner {
    /// Tandem adds and removes it on `ha.vip.interface`.
    Tandem {
        /// `ha.vip.interface`.
        interface: String,
    },
    /// keepalived moves it and promotes/demotes the node through the admin API.
    Keepalived,
}

/// The checked `[media]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSettings {
    /// `media.address`; `None`: the advertised SIP IP.
    pub address: Option<IpAddr>,
    /// `media.port_min`, `media.port_max`.
    pub port_min: u16,
    pub port_max: u16,
    /// `media.inactivity_timeout`; `None` when `0s`.
    pub inactivity_timeout: Option<Duration>,
    /// `media.shards`; 0 = one per core.
    pub shards: usize,
    /// `media.io`.
    pub io: RelayIo,
    /// `media.batch_wait`.
    pub batch_wait: Duration,
    /// `media.latch_any_ip`.
    pub latch_any_ip: bool,
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text)
    }

    /// Parses and checks config text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text)?;
        Config::from_file(file)
    }

    /// The configuration built into the binary ([`EMBEDDED_DEFAULT`]).
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::from_toml(EMBEDDED_DEFAULT)
    }

    /// Checks every value of a parsed file.
    pub fn from_file(file: ConfigFile) -> Result<Config, ConfigError> {
        let sip = check_sip(&file.sip)?;
        let admin_listen = socket_addr("admin.listen", &file.admin.listen)?;
        if sip.tcp && admin_listen == sip.listen && sip.listen.port() != 0 {
            return Err(ConfigError::invalid(
                "admin.listen",
                "must differ from sip.listen",
            ));
        }
        let probe = check_pool(&file.pool)?;
        let media_servers = check_media_servers(&file.media_servers, sip.tcp)?;
        let media = check_media(&file.media)?;
        let admin_grpc_listen = socket_addr("admin.grpc_listen", &file.admin.grpc_listen)?;
        let ha = file.ha.as_ref().map(check_ha).transpose()?;
        let shutdown_grace = duration("shutdown.grace", &file.shutdown.grace)?;
        let log_level = file.log.level.trim().to_owned();
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log_level) {
            return Err(ConfigError::invalid(
                "log.level",
                format!("invalid filter {log_level:?}: {e}"),
            ));
        }
        Ok(Config {
            sip,
            admin_listen,
            probe,
            media_servers,
            media,
            admin_grpc_listen,
            ha,
            shutdown_grace,
            log_level,
        })
    }

    /// The address Tandem advertises, given the address its SIP socket actually bound (which differs
    /// from `sip.listen` when that has port 0).
    pub fn advertised(&self, bound_sip: SocketAddr) -> SocketAddr {
        self.sip.advertised.unwrap_or(bound_sip)
    }

    /// The sans-IO core's configuration.
    pub fn core_config(&self, advertised: SocketAddr) -> CoreConfig {
        CoreConfig {
            advertised,
            tcp: self.sip.tcp,
            timers: self.sip.timers,
            media_servers: self.media_servers.clone(),
            probe: self.probe,
            server_invite_timeout: self.sip.server_invite_timeout,
            max_calls: self.sip.max_calls,
            max_call_duration: self.sip.max_call_duration,
            media: self.media.as_ref().map(|m| MediaConfig {
                address: self.media_address(advertised).unwrap_or(advertised.ip()),
                port_min: m.port_min,
                port_max: m.port_max,
            }),
        }
    }

    /// The IP relay ports bind to and SDP names, when media anchoring is on.
    pub fn media_address(&self, advertised: SocketAddr) -> Option<IpAddr> {
        let media = self.media.as_ref()?;
        Some(media.address.unwrap_or(advertised.ip()))
    }
}

fn check_ha(ha: &file::HaTable) -> Result<HaSettings, ConfigError> {
    for (key, value) in [("ha.node", &ha.node), ("ha.peer", &ha.peer)] {
        if value.trim().is_empty() {
            return Err(ConfigError::invalid(key, "must not be empty"));
        }
    }
    if ha.node.trim() == ha.peer.trim() {
        return Err(ConfigError::invalid("ha.peer", "must differ from ha.node"));
    }
    let sync_wait = match ha.durability.as_str() {
        "sync" => Some(positive_duration("ha.sync_wait", &ha.sync_wait)?),
        "async" => None,
        other => {
            return Err(ConfigError::invalid(
                "ha.durability",
                format!("expected \"sync\" or \"async\", got {other:?}"),
            ))
        }
    };
    let vip = ha.vip.as_ref().map(check_vip).transpose()?;
    let keepalived = matches!(
        &vip,
        Some(VipSettings {
            owner: VipOwner::Keepalived,
            ..
        })
    );
    let peer_sip =
        match &ha.peer_sip {
            Some(text) => Some(reachable_addr("ha.peer_sip", text)?),
            None if keepalived => None,
            None => return Err(ConfigError::invalid(
                "ha.peer_sip",
                "required: the second path a standby asks before it takes over (may be left out \
                 only with ha.vip.owner = \"keepalived\")",
            )),
        };
    Ok(HaSettings {
        node: ha.node.trim().to_owned(),
        peer: ha.peer.trim().to_owned(),
        listen: socket_addr("ha.listen", &ha.listen)?,
        peer_address: reachable_addr("ha.peer_address", &ha.peer_address)?,
        peer_sip,
        prefer_active: ha.prefer_active,
        sync_wait,
        batch_window: duration("ha.batch_window", &ha.batch_window)?,
        heartbeat_interval: positive_duration("ha.heartbeat_interval", &ha.heartbeat_interval)?,
        misses: at_least_one("ha.misses", ha.misses)?,
        confirm_timeout: positive_duration("ha.confirm_timeout", &ha.confirm_timeout)?,
        state_dir: PathBuf::from(&ha.state_dir),
        vip,
    })
}

fn check_vip(vip: &file::VipTable) -> Result<VipSettings, ConfigError> {
    let keepalived = match vip.owner.trim() {
        "tandem" => false,
        "keepalived" => true,
        other => {
            return Err(ConfigError::invalid(
                "ha.vip.owner",
                format!("expected \"tandem\" or \"keepalived\", got {other:?}"),
            ))
        }
    };
    let (ip, prefix) = match vip.address.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None if keepalived => (vip.address.as_str(), None),
        None => {
            return Err(ConfigError::invalid(
                "ha.vip.address",
                "expected address/prefix, e.g. 10.0.0.100/24",
            ))
        }
    };
    let ip: IpAddr = ip.trim().parse().map_err(|_| {
        ConfigError::invalid("ha.vip.address", format!("invalid IP address {ip:?}"))
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(prefix) => prefix
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| ConfigError::invalid("ha.vip.address", "invalid prefix length"))?,
    };
    let interface = vip.interface.as_deref().map(str::trim);
    let owner = match (keepalived, interface) {
        (false, Some(interface)) if !interface.is_empty() => VipOwner::Tandem {
            interface: interface.to_owned(),
        },
        (false, _) => {
            return Err(ConfigError::invalid(
                "ha.vip.interface",
                "required when Tandem moves the address (ha.vip.owner = \"tandem\")",
            ))
        }
        (true, None) => VipOwner::Keepalived,
        (true, Some(_)) => {
            return Err(ConfigError::invalid(
                "ha.vip.interface",
                "keepalived moves the address: name the interface in keepalived.conf \
                 (virtual_ipaddress), not here",
            ))
        }
    };
    Ok(VipSettings { ip, prefix, owner })
}

fn check_media(media: &file::MediaTable) -> Result<Option<MediaSettings>, ConfigError> {
    if !media.enabled {
        return Ok(None);
    }
    let address = match &media.address {
        None => None,
        Some(text) => {
            let ip: IpAddr = text.trim().parse().map_err(|_| {
                ConfigError::invalid("media.address", format!("invalid IP address {text:?}"))
            })?;
            if ip.is_unspecified() {
                return Err(ConfigError::invalid(
                    "media.address",
                    "must be the address peers send media to, not an unspecified address",
                ));
            }
            Some(ip)
        }
    };
    if let Err(error) = PortAllocator::new(media.port_min, media.port_max) {
        return Err(ConfigError::invalid("media.port_min", error.to_string()));
    }
    let timeout = duration("media.inactivity_timeout", &media.inactivity_timeout)?;
    let io = match media.io.as_str() {
        "epoll" => RelayIo::Epoll,
        "io_uring" => RelayIo::IoUring,
        _ => {
            return Err(ConfigError::invalid(
                "media.io",
                "must be \"epoll\" or \"io_uring\"",
            ))
        }
    };
    Ok(Some(MediaSettings {
        address,
        port_min: media.port_min,
        port_max: media.port_max,
        inactivity_timeout: (!timeout.is_zero()).then_some(timeout),
        shards: media.shards,
        io,
        batch_wait: duration("media.batch_wait", &media.batch_wait)?,
        latch_any_ip: media.latch_any_ip,
    }))
}

fn check_sip(sip: &file::SipTable) -> Result<SipSettings, ConfigError> {
    let listen = socket_addr("sip.listen", &sip.listen)?;
    let advertised = match &sip.advertised {
        Some(text) => Some(reachable_addr("sip.advertised", text)?),
        None if listen.ip().is_unspecified() => {
            return Err(ConfigError::invalid(
                "sip.advertised",
                "required when sip.listen is an unspecified address (0.0.0.0 or ::)",
            ))
        }
        None => None,
    };
    let t1 = positive_duration("sip.timers.t1", &sip.timers.t1)?;
    let t2 = positive_duration("sip.timers.t2", &sip.timers.t2)?;
    let t4 = positive_duration("sip.timers.t4", &sip.timers.t4)?;
    if t2 < t1 {
        return Err(ConfigError::invalid(
            "sip.timers.t2",
            "must not be shorter than sip.timers.t1",
        ));
    }
    Ok(SipSettings {
        listen,
        advertised,
        tcp: sip.tcp,
        tcp_idle_timeout: positive_duration("sip.tcp_idle_timeout", &sip.tcp_idle_timeout)?,
        max_calls: at_least_one("sip.max_calls", sip.max_calls)?,
        server_invite_timeout: positive_duration(
            "sip.server_invite_timeout",
            &sip.server_invite_timeout,
        )?,
        max_call_duration: Some(duration("sip.max_call_duration", &sip.max_call_duration)?)
            .filter(|limit| !limit.is_zero()),
        timers: Timers { t1, t2, t4 },
    })
}

fn check_pool(pool: &file::PoolTable) -> Result<ProbeConfig, ConfigError> {
    let interval = positive_duration("pool.probe_interval", &pool.probe_interval)?;
    let timeout = positive_duration("pool.probe_timeout", &pool.probe_timeout)?;
    if timeout >= interval {
        return Err(ConfigError::invalid(
            "pool.probe_timeout",
            "must be shorter than pool.probe_interval",
        ));
    }
    Ok(ProbeConfig {
        interval,
        timeout,
        failures_to_down: at_least_one("pool.failures_to_down", pool.failures_to_down)?,
        successes_to_up: at_least_one("pool.successes_to_up", pool.successes_to_up)?,
    })
}

fn check_media_servers(
    tables: &[MediaServerTable],
    tcp_enabled: bool,
) -> Result<Vec<MediaServerConfig>, ConfigError> {
    if tables.is_empty() {
        return Err(ConfigError::invalid(
            "media_server",
            "at least one [[media_server]] is required",
        ));
    }
    let mut servers: Vec<MediaServerConfig> = Vec::with_capacity(tables.len());
    for (index, table) in tables.iter().enumerate() {
        let key = |field: &str| format!("media_server[{index}].{field}");
        let name = table.name.trim();
        if name.is_empty() {
            return Err(ConfigError::invalid(key("name"), "must not be empty"));
        }
        if let Some(other) = servers.iter().position(|s| s.name == name) {
            return Err(ConfigError::invalid(
                key("name"),
                format!("{name:?} is already used by media_server[{other}]"),
            ));
        }
        let addr = reachable_addr(&key("address"), &table.address)?;
        if let Some(other) = servers.iter().position(|s| s.addr == addr) {
            return Err(ConfigError::invalid(
                key("address"),
                format!("{addr} is already used by media_server[{other}]"),
            ));
        }
        let transport = match table.transport.as_str() {
            "udp" => Transport::Udp,
            "tcp" if tcp_enabled => Transport::Tcp,
            "tcp" => {
                return Err(ConfigError::invalid(
                    key("transport"),
                    "\"tcp\" needs sip.tcp = true",
                ))
            }
            other => {
                return Err(ConfigError::invalid(
                    key("transport"),
                    format!("expected \"udp\" or \"tcp\", got {other:?}"),
                ))
            }
        };
        let weight = at_least_one(&key("weight"), table.weight)?;
        servers.push(MediaServerConfig {
            name: name.to_owned(),
            addr,
            transport,
            weight,
        });
    }
    Ok(servers)
}

fn socket_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("invalid socket address {text:?} (expected ip:port)"),
        )
    })
}

/// An address others send to: a concrete IP and a non-zero port.
fn reachable_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    let addr = socket_addr(key, text)?;
    if addr.ip().is_unspecified() {
        return Err(ConfigError::invalid(
            key,
            format!("{addr} is not a reachable address"),
        ));
    }
    if addr.port() == 0 {
        return Err(ConfigError::invalid(key, "port must not be 0"));
    }
    Ok(addr)
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|e| ConfigError::invalid(key, e.to_string()))
}

fn positive_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let value = duration(key, text)?;
    if value.is_zero() {
        return Err(ConfigError::invalid(key, "must be longer than 0"));
    }
    Ok(value)
}

fn at_least_one<T: PartialOrd + From<u8>>(key: &str, value: T) -> Result<T, ConfigError> {
    if value < T::from(1) {
        return Err(ConfigError::invalid(key, "must be at least 1"));
    }
    Ok(value)
}
