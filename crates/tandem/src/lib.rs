//! Tandem's I/O shell: sockets, timers, signals and the admin endpoint around the sans-IO
//! [`tandem_core::Core`]. `main.rs` only parses arguments and calls [`BoundListeners::bind`] and
//! [`run`]; tests call the same two functions in-process on port 0.

pub mod admin;
mod admin_answers;
pub mod admin_grpc;
mod calls_view;
pub mod cli;
pub mod config;
pub mod ha;
pub mod metrics;
mod shell;
pub mod signals;
pub mod transport;

use anyhow::Context as _;
use config::Config;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use tandem_core::Core;
use tandem_media::latch::LatchPolicy;
use tandem_relay::{Relay, RelayConfig};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::info;
use transport::tcp::{ConnectionContext, TcpConnections};

/// Messages from TCP tasks that may wait for the core task before readers are held back.
const INBOUND_QUEUE: usize = 4096;
/// Admin requests that may wait.
const ADMIN_QUEUE: usize = 16;
/// Replication link events that may wait for the core task.
const LINK_EVENT_QUEUE: usize = 4096;
/// Packets per recvmmsg/sendmmsg call of the media relay.
const RELAY_BATCH: usize = 32;
/// Tries to find a port free for both UDP and TCP when `sip.listen` has port 0.
const PORT_ZERO_TRIES: usize = 16;

/// The current time. The only clock read of the shell: tokio's clock, so tests can pause it.
pub fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The sockets Tandem serves on, bound before [`run`] so that tests (and a supervisor) know the
/// addresses, and so that bind errors surface before anything starts.
#[derive(Debug)]
pub struct BoundListeners {
    /// SIP over UDP on `sip.listen`.
    pub udp: UdpSocket,
    /// SIP over TCP on the same address and port (`None` when `sip.tcp = false`).
    pub tcp: Option<TcpListener>,
    /// HTTP admin endpoint on `admin.listen`.
    pub admin: TcpListener,
    /// gRPC admin API on `admin.grpc_listen`.
    pub admin_grpc: TcpListener,
}

impl BoundListeners {
    /// Binds the SIP and admin addresses of `config`. With port 0 in `sip.listen`, UDP and TCP get
    /// the same free port.
    pub async fn bind(config: &Config) -> anyhow::Result<BoundListeners> {
        let listen = config.sip.listen;
        // An HA node listens on the VIP from the start, whichever node holds it.
        let free_bind = config
            .ha
            .as_ref()
            .and_then(|ha| ha.vip.as_ref())
            .is_some_and(|vip| vip.ip == listen.ip());
        let (udp, tcp) = bind_sip(listen, config.sip.tcp, free_bind)
            .await
            .with_context(|| format!("cannot bind sip.listen {listen}"))?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("cannot bind admin.listen {}", config.admin_listen))?;
        let admin_grpc = TcpListener::bind(config.admin_grpc_listen)
            .await
            .with_context(|| {
                format!("cannot bind admin.grpc_listen {}", config.admin_grpc_listen)
            })?;
        Ok(BoundListeners {
            udp,
            tcp,
            admin,
            admin_grpc,
        })
    }

    /// The bound SIP address (UDP and TCP).
    pub fn sip_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> io::Result<SocketAddr> {
        self.admin.local_addr()
    }
}

async fn bind_sip(
    listen: SocketAddr,
    tcp: bool,
    free_bind: bool,
) -> io::Result<(UdpSocket, Option<TcpListener>)> {
    if !tcp {
        return Ok((transport::udp::bind_udp(listen, free_bind)?, None));
    }
    if listen.port() != 0 {
        let udp = transport::udp::bind_udp(listen, free_bind)?;
        return Ok((udp, Some(transport::bind_tcp(listen, free_bind)?)));
    }
    let mut last_error = None;
    for _ in 0..PORT_ZERO_TRIES {
        let udp = transport::udp::bind_udp(listen, free_bind)?;
        match transport::bind_tcp(udp.local_addr()?, free_bind) {
            Ok(listener) => return Ok((udp, Some(listener))),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// Serves until `shutdown` completes and the drain that follows ends (no active call left, or
/// `shutdown.grace` expired). Returns once every task it started is stopped.
pub async fn run(
    bound: BoundListeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let sip_addr = bound
        .sip_addr()
        .context("SIP socket has no local address")?;
    let admin_addr = bound
        .admin_addr()
        .context("admin socket has no local address")?;
    let advertised = config.advertised(sip_addr);
    let mut core = Core::new(config.core_config(advertised), now());
    let (media_events_tx, media_events) = mpsc::unbounded_channel();
    let relay = match (&config.media, config.media_address(advertised)) {
        (Some(media), Some(address)) => {
            let relay_config = RelayConfig {
                address,
                shards: media.shards,
                caller_latch: LatchPolicy {
                    accept_any_ip: media.latch_any_ip,
                    ..LatchPolicy::default()
                },
                server_latch: LatchPolicy::default(),
                inactivity_timeout: media.inactivity_timeout,
                batch: RELAY_BATCH,
                io: media.io,
                batch_wait: media.batch_wait,
            };
            let sink = move |event| {
                let _ = media_events_tx.send(event);
            };
            Some(Relay::start(relay_config, sink).context("cannot start the media relay")?)
        }
        _ => None,
    };

    let (link_events_tx, link_events) = mpsc::channel(LINK_EVENT_QUEUE);
    let ha = match &config.ha {
        Some(settings) => Some(
            ha::HaNode::start(settings.clone(), link_events_tx, &mut core)
                .await
                .context("cannot start the replication link")?,
        ),
        None => None,
    };

    let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
    let (admin_tx, admin_requests) = mpsc::channel(ADMIN_QUEUE);
    let ctx = ConnectionContext::new(inbound_tx, config.sip.tcp_idle_timeout);
    let mut background = JoinSet::new();
    let admin_grpc_addr = bound
        .admin_grpc
        .local_addr()
        .context("admin gRPC socket has no local address")?;
    background.spawn(admin_grpc::serve(bound.admin_grpc, admin_tx.clone()));
    background.spawn(admin::serve(bound.admin, admin_tx));
    if let Some(listener) = bound.tcp {
        background.spawn(transport::tcp::accept_loop(listener, ctx.clone()));
    }
    let tcp = config.sip.tcp.then(|| TcpConnections::new(ctx));

    info!(
        sip = %sip_addr,
        %advertised,
        admin = %admin_addr,
        admin_grpc = %admin_grpc_addr,
        tcp = config.sip.tcp,
        media_servers = config.media_servers.len(),
        media = ?config.media_address(advertised),
        "tandem running"
    );
    let task = shell::CoreTask {
        core,
        udp: bound.udp,
        tcp,
        inbound,
        admin: admin_requests,
        relay,
        media_events,
        ha,
        link_events,
    };
    task.run(shutdown, config.shutdown_grace).await;
    background.shutdown().await;
    info!("tandem stopped");
    Ok(())
}

/// Logs to stderr. `RUST_LOG`, when set and valid, overrides `filter` (`log.level`).
pub fn init_logging(filter: &str) {
    use tracing_subscriber::EnvFilter;
    let env_filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .unwrap_or_else(|error| {
                eprintln!("tandem: ignoring RUST_LOG ({error}), using log.level {filter:?}");
                EnvFilter::new(filter)
            }),
        _ => EnvFilter::new(filter),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
