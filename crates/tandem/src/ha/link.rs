//! The replication link between the two nodes of a pair: a tonic `Replication` server on every
//! node and, on a standby, a client stream to the peer. It only moves messages; every decision is
//! the core task's (`super::HaNode`), which talks to the link through [`LinkHandle`] and
//! [`LinkEvent`]s.
//!
//! # Behaviour the core can rely on
//!
//! * Events are never dropped: the link's tasks wait (`send().await`) while the core's event
//!   channel is full, which also stops them reading from the network (HTTP/2 flow control then
//!   pushes back on the sender).
//! * Server side: every accepted stream gets a fresh [`StreamId`] (never reused by a handle) and
//!   exactly one `StandbyConnected` … `StandbyGone` bracket, also when the core ends it with
//!   [`LinkHandle::close_standby`]. Messages the core queued before closing still go out; then the
//!   stream ends cleanly and the peer sees `ActiveGone`.
//! * Client side: each [`LinkHandle::dial`] yields `ActiveConnected` (the peer answered the
//!   stream's headers) or `ActiveGone`, and after `ActiveConnected` exactly one `ActiveGone` when
//!   the stream ends for any reason the core did not ask for (peer closed it, connection lost,
//!   HTTP/2 keepalive expired). A stream the core ends itself — [`LinkHandle::hang_up`], or a new
//!   `dial` replacing it — ends silently: no `ActiveGone`. Events the old stream had already put in
//!   the channel before that call are still delivered, so a `FromActive` or `ActiveGone` seen right
//!   after `hang_up`/`dial` may belong to the old stream.
//! * `send_*` never wait: they return false when the per-stream queue (`LinkConfig::queue`) is full
//!   or the stream is not open; the core retries later (the peer's acks and heartbeats are natural
//!   moments to look again, see [`LinkHandle::standby_has_room`]).
//! * Dropping the handle stops every task it spawned, closes the listening socket and aborts every
//!   accepted connection, so the peer notices at once, as it would a crash.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tandem_core::ids::IdGenerator;
use tandem_ha::Outgoing;
use tandem_proto::replication::v1::replication_client::ReplicationClient;
use tandem_proto::replication::v1::{ActiveMessage, StandbyMessage};
use tandem_sip::{HeaderName, Method, RequestBuilder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::codegen::BoxFuture;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};

use super::route::{ReplicationRoute, StreamAcceptor};
use tracing::{debug, warn};

/// Identifies one accepted standby stream on the server side.
pub type StreamId = u64;

/// What happens on the link, for the core task.
#[derive(Debug)]
pub enum LinkEvent {
    /// Server side: a peer opened a stream; its first message follows as `FromStandby`.
    StandbyConnected { stream: StreamId, peer: SocketAddr },
    /// Server side: a message on an accepted stream.
    FromStandby {
        stream: StreamId,
        msg: Box<StandbyMessage>,
    },
    /// Server side: the stream closed or failed.
    StandbyGone { stream: StreamId },
    /// Client side: our stream to the peer is open (send Hello now).
    ActiveConnected,
    /// Client side: a message from the peer.
    FromActive(Box<ActiveMessage>),
    /// Client side: the stream closed, failed or could not be opened.
    ActiveGone,
    /// The second path's answer: whether the peer's SIP stack answered OPTIONS.
    PeerSipAlive(bool),
}

/// How the link runs.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Where this node's Replication server listens.
    pub listen: SocketAddr,
    /// The peer's Replication server.
    pub peer: SocketAddr,
    /// Where the peer's SIP answers, probed with OPTIONS as the second path (`ha.peer_sip`);
    /// `None` when keepalived decides the roles (nothing is probed then).
    pub peer_sip: Option<SocketAddr>,
    /// Messages that may wait per direction before `send_*` reports the stream full.
    pub queue: usize,
    /// Time to wait for a connection to the peer.
    pub connect_timeout: Duration,
}

/// HTTP/2 PING interval and the time to wait for its answer, on both sides: a peer that vanished
/// without closing its sockets is noticed within about twice this.
pub const KEEPALIVE: Duration = Duration::from_secs(1);

/// Largest encoded message either side accepts (snapshot chunks must stay below it).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The peer address reported when the transport did not give one (not expected over TCP).
const UNKNOWN_PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// The core task's handle on the link.
#[derive(Debug)]
pub struct LinkHandle {
    config: LinkConfig,
    local_addr: SocketAddr,
    endpoint: Endpoint,
    shared: Arc<Shared>,
    /// Signalled on drop: every accepted connection aborts.
    kill: watch::Sender<()>,
}

impl LinkHandle {
    /// Starts the server and the link's background tasks; events arrive on `events`.
    pub async fn start(
        config: LinkConfig,
        events: mpsc::Sender<LinkEvent>,
    ) -> anyhow::Result<LinkHandle> {
        let endpoint = Endpoint::from_shared(format!("http://{}", config.peer))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .keep_alive_while_idle(true);
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            events,
            queue: config.queue.max(1),
            next_stream: AtomicU64::new(1),
            standbys: Mutex::new(HashMap::new()),
            client: Mutex::new(ClientSlot::default()),
            tasks: Tasks::default(),
        });
        let (kill, killed) = watch::channel(());
        let service = ReplicationRoute::new(
            ReplicationService {
                shared: shared.clone(),
            },
            MAX_MESSAGE_BYTES,
        );
        let serve = Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE))
            .http2_keepalive_timeout(Some(KEEPALIVE))
            .add_service(service)
            .serve_with_incoming(Incoming::new(listener, killed));
        shared.tasks.spawn(async move {
            if let Err(error) = serve.await {
                warn!(%error, "replication server stopped");
            }
        });
        debug!(listen = %local_addr, peer = %config.peer, "replication link started");
        Ok(LinkHandle {
            config,
            local_addr,
            endpoint,
            shared,
            kill,
        })
    }

    /// The bound Replication server address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Server side: sends on an accepted stream; false when it is full or gone.
    pub fn send_to_standby(&self, stream: StreamId, msg: impl Into<Outgoing>) -> bool {
        let standbys = lock(&self.shared.standbys);
        standbys
            .get(&stream)
            .is_some_and(|accepted| accepted.outbound.try_send(Ok(msg.into())).is_ok())
    }

    /// Whether an accepted stream can take another message now.
    pub fn standby_has_room(&self, stream: StreamId) -> bool {
        let standbys = lock(&self.shared.standbys);
        standbys.get(&stream).is_some_and(|accepted| {
            !accepted.outbound.is_closed() && accepted.outbound.capacity() > 0
        })
    }

    /// Server side: closes an accepted stream.
    ///
    /// What is already queued still goes out, then the stream ends cleanly; `StandbyGone` follows.
    pub fn close_standby(&self, stream: StreamId) {
        // Dropping the entry drops the response sender (the stream ends once drained) and the
        // reader's stop signal.
        let removed = lock(&self.shared.standbys).remove(&stream);
        if removed.is_some() {
            debug!(stream, "closing standby stream");
        }
    }

    /// Client side: (re)opens the stream to the peer; `ActiveConnected` or `ActiveGone` follows.
    ///
    /// A stream already open (or being opened) is dropped silently first. `connect_timeout`
    /// bounds the TCP connect and the wait for the peer's answer to the stream's headers.
    pub fn dial(&self) {
        let mut client = lock(&self.shared.client);
        client.end();
        client.generation += 1;
        let task = run_client(
            self.shared.clone(),
            self.endpoint.clone(),
            client.generation,
            self.config.connect_timeout,
        );
        client.task = Some(self.shared.tasks.spawn(task));
        debug!(peer = %self.config.peer, generation = client.generation, "dialling the peer");
    }

    /// Client side: sends to the peer; false when the stream is full or not open.
    pub fn send_to_active(&self, msg: StandbyMessage) -> bool {
        let client = lock(&self.shared.client);
        client
            .outbound
            .as_ref()
            .is_some_and(|outbound| outbound.try_send(msg).is_ok())
    }

    /// Client side: closes the stream to the peer (silently: no `ActiveGone` follows).
    pub fn hang_up(&self) {
        let mut client = lock(&self.shared.client);
        if client.task.is_some() {
            debug!(peer = %self.config.peer, "hanging up on the peer");
        }
        client.end();
        client.generation += 1;
    }

    /// Sends one SIP OPTIONS to the peer's own address; `PeerSipAlive` follows within `timeout`.
    ///
    /// Any SIP response from the peer counts as alive; the request is sent again once at half
    /// the timeout. Each call yields its own `PeerSipAlive` (none without a `peer_sip`).
    pub fn probe_peer_sip(&self, timeout: Duration) {
        let Some(peer) = self.config.peer_sip else {
            warn!("no ha.peer_sip to probe the peer on");
            return;
        };
        let events = self.shared.events.clone();
        self.shared.tasks.spawn(async move {
            let alive = match probe_sip(peer, timeout).await {
                Ok(alive) => alive,
                Err(error) => {
                    warn!(%error, %peer, "SIP probe of the peer failed");
                    false
                }
            };
            debug!(%peer, alive, "SIP probe of the peer answered");
            let _ = events.send(LinkEvent::PeerSipAlive(alive)).await;
        });
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        self.shared.tasks.abort_all();
        self.kill.send_replace(());
        lock(&self.shared.standbys).clear();
        lock(&self.shared.client).end();
    }
}

/// State shared by the handle, the server's stream handlers and the tasks they spawn.
#[derive(Debug)]
struct Shared {
    events: mpsc::Sender<LinkEvent>,
    /// Per-stream queue length, at least 1.
    queue: usize,
    next_stream: AtomicU64,
    /// Accepted streams the core may still send on.
    standbys: Mutex<HashMap<StreamId, Accepted>>,
    client: Mutex<ClientSlot>,
    tasks: Tasks,
}

impl Shared {
    async fn emit(&self, event: LinkEvent) -> bool {
        self.events.send(event).await.is_ok()
    }
}

/// One accepted standby stream, as the core sees it.
#[derive(Debug)]
struct Accepted {
    /// Feeds the response stream; dropping it ends the stream once what is queued went out.
    outbound: mpsc::Sender<Result<Outgoing, Status>>,
    /// Dropping it stops the stream's reader.
    _stop_reader: oneshot::Sender<()>,
}

/// The client stream to the peer.
#[derive(Debug, Default)]
struct ClientSlot {
    /// Bumped by every dial and hang-up; a client task only touches the slot while its own
    /// generation is current.
    generation: u64,
    task: Option<AbortHandle>,
    /// Present while the stream is open.
    outbound: Option<mpsc::Sender<StandbyMessage>>,
}

impl ClientSlot {
    /// Stops the current client task, if any, without an event.
    fn end(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.outbound = None;
    }
}

/// Every task the link spawned, so dropping the handle stops them all.
#[derive(Debug, Default)]
struct Tasks(Mutex<TaskList>);

#[derive(Debug, Default)]
struct TaskList {
    /// Set by `abort_all`: later tasks are stopped as soon as they are spawned.
    closed: bool,
    handles: Vec<AbortHandle>,
}

impl Tasks {
    fn spawn<F>(&self, task: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task).abort_handle();
        let mut list = lock(&self.0);
        if list.closed {
            handle.abort();
        } else {
            list.handles.retain(|h| !h.is_finished());
            list.handles.push(handle.clone());
        }
        handle
    }

    fn abort_all(&self) {
        let mut list = lock(&self.0);
        list.closed = true;
        for handle in list.handles.drain(..) {
            handle.abort();
        }
    }
}

/// Locks a mutex; a panic elsewhere while it was held leaves consistent data here (every
/// critical section is a single map or slot update), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

/// The `Replication` service: registers each stream and hands its messages to the core.
#[derive(Debug)]
struct ReplicationService {
    shared: Arc<Shared>,
}

impl StreamAcceptor for ReplicationService {
    fn accept(
        &self,
        request: Request<Streaming<StandbyMessage>>,
    ) -> BoxFuture<Response<ReceiverStream<Result<Outgoing, Status>>>, Status> {
        Box::pin(accept_standby(self.shared.clone(), request))
    }
}

/// Registers an accepted standby stream and starts its reader.
async fn accept_standby(
    shared: Arc<Shared>,
    request: Request<Streaming<StandbyMessage>>,
) -> Result<Response<ReceiverStream<Result<Outgoing, Status>>>, Status> {
    let peer = request.remote_addr().unwrap_or(UNKNOWN_PEER);
    let inbound = request.into_inner();
    let stream = shared.next_stream.fetch_add(1, Ordering::Relaxed);
    let (outbound, outbound_rx) = mpsc::channel(shared.queue);
    let (stop_reader, stopped) = oneshot::channel();
    lock(&shared.standbys).insert(
        stream,
        Accepted {
            outbound,
            _stop_reader: stop_reader,
        },
    );
    debug!(stream, %peer, "standby stream accepted");
    if !shared
        .emit(LinkEvent::StandbyConnected { stream, peer })
        .await
    {
        lock(&shared.standbys).remove(&stream);
        return Err(Status::unavailable("node shutting down"));
    }
    shared
        .tasks
        .spawn(read_standby(shared.clone(), stream, inbound, stopped));
    Ok(Response::new(ReceiverStream::new(outbound_rx)))
}

/// Forwards one accepted stream's messages until the peer ends it, it fails, or the core closes
/// it; then reports `StandbyGone` once.
async fn read_standby(
    shared: Arc<Shared>,
    stream: StreamId,
    mut inbound: Streaming<StandbyMessage>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stopped => {
                debug!(stream, "standby stream closed by this node");
                break;
            }
            next = inbound.message() => match next {
                Ok(Some(msg)) => {
                    let event = LinkEvent::FromStandby { stream, msg: Box::new(msg) };
                    if !shared.emit(event).await {
                        return;
                    }
                }
                Ok(None) => {
                    debug!(stream, "standby ended its stream");
                    break;
                }
                Err(status) => {
                    debug!(stream, code = ?status.code(), message = status.message(), "standby stream failed");
                    break;
                }
            },
        }
    }
    lock(&shared.standbys).remove(&stream);
    shared.emit(LinkEvent::StandbyGone { stream }).await;
}

/// Accepted TCP connections, each tied to the handle's kill signal.
struct Incoming {
    listener: TcpListener,
    killed: watch::Receiver<()>,
    /// Pause after an accept error (e.g. out of file descriptors), so the loop does not spin.
    backoff: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    /// Time to wait after a failed accept.
    const BACKOFF: Duration = Duration::from_millis(50);

    fn new(listener: TcpListener, killed: watch::Receiver<()>) -> Incoming {
        Incoming {
            listener,
            killed,
            backoff: None,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<PeerConnection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(backoff) = self.backoff.as_mut() {
            if backoff.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.backoff = None;
        }
        match self.listener.poll_accept(cx) {
            Poll::Ready(Ok((tcp, peer))) => {
                if let Err(error) = tcp.set_nodelay(true) {
                    debug!(%error, %peer, "TCP_NODELAY not set");
                }
                let killed = self.killed.clone();
                Poll::Ready(Some(Ok(PeerConnection::new(tcp, killed))))
            }
            Poll::Ready(Err(error)) => {
                warn!(%error, "replication accept failed");
                self.backoff = Some(Box::pin(tokio::time::sleep(Incoming::BACKOFF)));
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// An accepted connection that fails every read and write once the handle is dropped, so the
/// connection task (spawned by the server, out of our reach) ends and closes the socket.
struct PeerConnection {
    tcp: TcpStream,
    killed: Pin<Box<dyn Future<Output = ()> + Send>>,
    dead: bool,
}

impl PeerConnection {
    fn new(tcp: TcpStream, mut killed: watch::Receiver<()>) -> PeerConnection {
        PeerConnection {
            tcp,
            killed: Box::pin(async move {
                // Resolves on the kill signal or when the handle (the sender) is gone.
                let _ = killed.changed().await;
            }),
            dead: false,
        }
    }

    /// Whether the handle is gone; registers the task for the signal otherwise.
    fn poll_dead(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.dead && self.killed.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        self.dead
    }
}

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "replication link stopped")
}

impl AsyncRead for PeerConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.poll_dead(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.poll_dead(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.poll_dead(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.poll_dead(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl Connected for PeerConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
    }
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

/// Why the client stream could not be opened.
#[derive(Debug, thiserror::Error)]
enum DialError {
    /// The TCP/HTTP/2 connection to the peer failed.
    #[error("connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The peer refused or failed the `Stream` call.
    #[error("open stream: {0}")]
    Open(#[from] Status),
    /// The peer did not answer within the connect timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// The standby's stream to the peer, from dial to `ActiveGone`.
async fn run_client(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    generation: u64,
    connect_timeout: Duration,
) {
    let (outbound, outbound_rx) = mpsc::channel(shared.queue);
    let opened = tokio::time::timeout(connect_timeout, open_stream(&endpoint, outbound_rx))
        .await
        .unwrap_or(Err(DialError::Timeout(connect_timeout)));
    // `_client` keeps the channel (and its connection) for as long as the stream lives.
    let (_client, mut inbound) = match opened {
        Ok(open) => open,
        Err(error) => {
            debug!(%error, peer = %endpoint.uri(), "replication stream not opened");
            client_gone(&shared, generation).await;
            return;
        }
    };
    {
        let mut client = lock(&shared.client);
        if client.generation != generation {
            return;
        }
        client.outbound = Some(outbound);
    }
    debug!(peer = %endpoint.uri(), "replication stream open");
    if !shared.emit(LinkEvent::ActiveConnected).await {
        return;
    }
    loop {
        match inbound.message().await {
            Ok(Some(msg)) => {
                if !shared.emit(LinkEvent::FromActive(Box::new(msg))).await {
                    return;
                }
            }
            Ok(None) => {
                debug!(peer = %endpoint.uri(), "peer ended the replication stream");
                break;
            }
            Err(status) => {
                debug!(code = ?status.code(), message = status.message(), "replication stream failed");
                break;
            }
        }
    }
    client_gone(&shared, generation).await;
}

/// Connects and opens the bidirectional stream; done once the peer's response headers arrived.
async fn open_stream(
    endpoint: &Endpoint,
    outbound: mpsc::Receiver<StandbyMessage>,
) -> Result<(ReplicationClient<Channel>, Streaming<ActiveMessage>), DialError> {
    let channel = endpoint.connect().await?;
    let mut client = ReplicationClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let response = client.stream(ReceiverStream::new(outbound)).await?;
    Ok((client, response.into_inner()))
}

/// Clears the slot (when still current) and reports `ActiveGone`.
async fn client_gone(shared: &Shared, generation: u64) {
    {
        let mut client = lock(&shared.client);
        if client.generation != generation {
            return;
        }
        client.outbound = None;
        client.task = None;
    }
    shared.emit(LinkEvent::ActiveGone).await;
}

// ---------------------------------------------------------------------------------------------
// Second path: SIP OPTIONS to the peer's own address
// ---------------------------------------------------------------------------------------------

/// Sends OPTIONS to `peer` (again at half the timeout) and waits up to `timeout` for any SIP
/// response from it.
async fn probe_sip(peer: SocketAddr, timeout: Duration) -> io::Result<bool> {
    let start = Instant::now();
    let deadline = start + timeout;
    let retransmit_at = start + timeout / 2;
    let any: SocketAddr = if peer.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).await?;
    // Connected: the kernel picks the source address for Via and drops other senders' datagrams.
    socket.connect(peer).await?;
    let request = options_request(peer, socket.local_addr()?);
    socket.send(&request).await?;
    let mut retransmitted = false;
    let mut buf = vec![0u8; 4096];
    loop {
        let wake = if retransmitted {
            deadline
        } else {
            retransmit_at
        };
        match tokio::time::timeout_at(wake, socket.recv(&mut buf)).await {
            Ok(Ok(len)) => {
                if is_sip_response(&buf[..len]) {
                    return Ok(true);
                }
            }
            // ICMP port unreachable: the peer's host is up but nothing takes SIP there (a killed
            // process). Asked again at once; refused twice, the peer is gone without waiting for
            // the timeout (a powered-off host answers nothing and still takes the timeout).
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => {
                debug!(%peer, retransmitted, "SIP probe refused");
                if retransmitted {
                    return Ok(false);
                }
                socket.send(&request).await?;
                retransmitted = true;
            }
            Ok(Err(error)) => return Err(error),
            Err(_) if retransmitted => return Ok(false),
            Err(_) => {
                socket.send(&request).await?;
                retransmitted = true;
            }
        }
    }
}

/// An RFC 3261 OPTIONS request from `local` to `peer`.
fn options_request(peer: SocketAddr, local: SocketAddr) -> Bytes {
    let mut ids = IdGenerator::default();
    let target = format!("sip:{peer}");
    RequestBuilder::new(&Method::Options, &target)
        .header(
            HeaderName::Via,
            &format!("SIP/2.0/UDP {local};branch={};rport", ids.branch()),
        )
        .header(HeaderName::MaxForwards, "70")
        .header(
            HeaderName::From,
            &format!("<sip:tandem@{local}>;tag={}", ids.tag()),
        )
        .header(HeaderName::To, &format!("<{target}>"))
        .header(HeaderName::CallId, &ids.call_id())
        .header(HeaderName::CSeq, "1 OPTIONS")
        .build()
}

/// Whether a datagram starts with a SIP status line (`SIP/2.0 xxx`).
fn is_sip_response(datagram: &[u8]) -> bool {
    datagram.len() >= 11
        && datagram[..8].eq_ignore_ascii_case(b"SIP/2.0 ")
        && datagram[8..11].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn options_request_is_valid_sip() {
        let peer: SocketAddr = "[::1]:5080".parse().unwrap();
        let local: SocketAddr = "[::1]:40000".parse().unwrap();
        let request = tandem_sip::Message::parse(options_request(peer, local)).unwrap();
        assert_eq!(request.method(), Some(&Method::Options));
        let via = request.header(HeaderName::Via).unwrap();
        assert!(via.contains(";branch=z9hG4bK"), "{via}");
        assert!(via.starts_with("SIP/2.0/UDP [::1]:40000"), "{via}");
        assert!(request.header(HeaderName::MaxForwards).is_some());
        assert!(request.header(HeaderName::From).unwrap().contains(";tag="));
        assert_eq!(request.header(HeaderName::CSeq).unwrap(), "1 OPTIONS");
        assert!(!request.call_id().is_empty());
    }

    #[test]
    fn sip_responses_are_told_from_other_datagrams() {
        assert!(is_sip_response(b"SIP/2.0 200 OK\r\n\r\n"));
        assert!(is_sip_response(b"sip/2.0 503 Service Unavailable\r\n"));
        assert!(!is_sip_response(b"OPTIONS sip:x SIP/2.0\r\n"));
        assert!(!is_sip_response(b"SIP/2.0 2"));
        assert!(!is_sip_response(b"\r\n\r\n"));
    }
}
