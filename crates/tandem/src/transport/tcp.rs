//! TCP: the accept loop, one task per connection (read → frame → core task; core task → write),
//! and the core task's table of connections, which reuses a connection per peer address and opens new
//! ones on demand.

use super::framing::{Frame, StreamFramer};
use super::{CloseReason, Inbound};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tandem_core::{ConnId, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, warn};

/// Messages queued per connection before sends to it fail (a peer that stopped reading).
pub const WRITE_QUEUE: usize = 256;
/// Longest wait for an outbound connection to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one write to complete.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every connection task needs: where to send what it reads, and when to give up on silence.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    inbound: mpsc::Sender<Inbound>,
    idle_timeout: Duration,
    next_id: Arc<AtomicU64>,
}

impl ConnectionContext {
    pub fn new(inbound: mpsc::Sender<Inbound>, idle_timeout: Duration) -> ConnectionContext {
        ConnectionContext {
            inbound,
            idle_timeout,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    fn allocate_id(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Accepts connections for ever (until the task is aborted or the core task is gone).
pub async fn accept_loop(listener: TcpListener, ctx: ConnectionContext) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "TCP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let conn = ctx.allocate_id();
        let (writer, outgoing) = mpsc::channel(WRITE_QUEUE);
        if ctx
            .inbound
            .send(Inbound::Accepted { conn, addr, writer })
            .await
            .is_err()
        {
            return;
        }
        debug!(conn, peer = %addr, "TCP connection accepted");
        tokio::spawn(serve_connection(stream, conn, addr, outgoing, ctx.clone()));
    }
}

/// Runs an established connection to its end, then reports it closed to the core task.
async fn serve_connection(
    stream: TcpStream,
    conn: ConnId,
    addr: SocketAddr,
    mut outgoing: mpsc::Receiver<Bytes>,
    ctx: ConnectionContext,
) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(conn, %error, "cannot set TCP_NODELAY");
    }
    let mut reason = run_connection(stream, conn, addr, &mut outgoing, &ctx).await;
    outgoing.close();
    if reason != CloseReason::Shutdown && outgoing.try_recv().is_ok() {
        reason = CloseReason::WriteFailed;
    }
    debug!(conn, peer = %addr, reason = reason.as_str(), "TCP connection closed");
    let _ = ctx
        .inbound
        .send(Inbound::Closed { conn, addr, reason })
        .await;
}

async fn run_connection(
    mut stream: TcpStream,
    conn: ConnId,
    addr: SocketAddr,
    outgoing: &mut mpsc::Receiver<Bytes>,
    ctx: &ConnectionContext,
) -> CloseReason {
    let (mut reader, mut writer) = stream.split();
    let mut framer = StreamFramer::new();
    let from = Peer::tcp(addr, Some(conn));
    let idle = sleep_until(idle_deadline(ctx));
    tokio::pin!(idle);
    loop {
        tokio::select! {
            read = reader.read_buf(framer.read_buffer()) => {
                match read {
                    Ok(0) => return CloseReason::PeerClosed,
                    Ok(_) => idle.as_mut().reset(idle_deadline(ctx)),
                    Err(error) => {
                        debug!(conn, %error, "TCP read failed");
                        return CloseReason::ReadFailed;
                    }
                }
                loop {
                    match framer.next_frame() {
                        Ok(None) => break,
                        Ok(Some(Frame::Message(payload))) => {
                            if ctx.inbound.send(Inbound::Message { payload, from }).await.is_err() {
                                return CloseReason::Shutdown;
                            }
                        }
                        Ok(Some(Frame::Ping)) => {
                            if !write_with_timeout(&mut writer, b"\r\n").await {
                                return CloseReason::WriteFailed;
                            }
                        }
                        Err(error) => {
                            warn!(conn, peer = %addr, %error, "closing TCP connection");
                            return CloseReason::InvalidStream;
                        }
                    }
                }
            }
            next = outgoing.recv() => {
                let Some(payload) = next else { return CloseReason::Shutdown };
                if !write_with_timeout(&mut writer, &payload).await {
                    return CloseReason::WriteFailed;
                }
                idle.as_mut().reset(idle_deadline(ctx));
            }
            () = &mut idle => return CloseReason::Idle,
        }
    }
}

fn idle_deadline(ctx: &ConnectionContext) -> Instant {
    Instant::from_std(crate::now()) + ctx.idle_timeout
}

async fn write_with_timeout(writer: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8]) -> bool {
    matches!(
        timeout(WRITE_TIMEOUT, writer.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Opens a connection to `addr` in a task of its own; messages queue until it is up.
fn spawn_outbound(
    conn: ConnId,
    addr: SocketAddr,
    outgoing: mpsc::Receiver<Bytes>,
    ctx: ConnectionContext,
) {
    tokio::spawn(async move {
        match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                debug!(conn, peer = %addr, "TCP connection opened");
                serve_connection(stream, conn, addr, outgoing, ctx).await;
            }
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "timed out".to_owned(),
                };
                debug!(conn, peer = %addr, %error, "TCP connect failed");
                let reason = CloseReason::ConnectFailed;
                let _ = ctx
                    .inbound
                    .send(Inbound::Closed { conn, addr, reason })
                    .await;
            }
        }
    });
}

/// A send that could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TcpSendError {
    /// The connection's write queue is full: the peer stopped reading.
    #[error("TCP write queue full")]
    QueueFull,
}

/// One open (or opening) connection, as the core task sees it.
#[derive(Debug)]
struct Connection {
    addr: SocketAddr,
    writer: mpsc::Sender<Bytes>,
    /// Destination of the last message queued on it: what the core is told when messages are lost.
    last_dest: Option<Peer>,
}

/// The core task's table of TCP connections.
#[derive(Debug)]
pub struct TcpConnections {
    ctx: ConnectionContext,
    by_id: HashMap<ConnId, Connection>,
    /// The connection reused for sends to an address without a usable `Peer.conn`.
    by_addr: HashMap<SocketAddr, ConnId>,
}

impl TcpConnections {
    pub fn new(ctx: ConnectionContext) -> TcpConnections {
        TcpConnections {
            ctx,
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
        }
    }

    /// Open or opening connections.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Registers a connection the accept loop took.
    pub fn accepted(&mut self, conn: ConnId, addr: SocketAddr, writer: mpsc::Sender<Bytes>) {
        self.insert(
            conn,
            Connection {
                addr,
                writer,
                last_dest: None,
            },
        );
    }

    /// Forgets a connection that ended. Returns the peer the core should hear a transport error
    /// for if messages were lost on it.
    pub fn closed(&mut self, conn: ConnId) -> Option<Peer> {
        let connection = self.by_id.remove(&conn)?;
        if self.by_addr.get(&connection.addr) == Some(&conn) {
            self.by_addr.remove(&connection.addr);
        }
        Some(
            connection
                .last_dest
                .unwrap_or(Peer::tcp(connection.addr, Some(conn))),
        )
    }

    /// Queues `payload` on `dest.conn` if it is still open, else on the connection reused for
    /// `dest.addr`, else on a new outbound connection. Returns the connection used.
    pub fn send(&mut self, dest: Peer, payload: Bytes) -> Result<ConnId, TcpSendError> {
        let existing = dest
            .conn
            .filter(|conn| self.by_id.contains_key(conn))
            .or_else(|| self.by_addr.get(&dest.addr).copied());
        let conn = match existing {
            Some(conn) => conn,
            None => self.connect(dest.addr),
        };
        let payload = match self.try_queue(conn, dest, payload) {
            Ok(()) => return Ok(conn),
            Err(TrySendError::Full(_)) => return Err(TcpSendError::QueueFull),
            // The task ended and its Closed report is still on the way: use a fresh connection.
            Err(TrySendError::Closed(payload)) => payload,
        };
        self.closed(conn);
        let conn = self.connect(dest.addr);
        self.try_queue(conn, dest, payload)
            .map(|()| conn)
            .map_err(|_| TcpSendError::QueueFull)
    }

    fn try_queue(
        &mut self,
        conn: ConnId,
        dest: Peer,
        payload: Bytes,
    ) -> Result<(), TrySendError<Bytes>> {
        let Some(connection) = self.by_id.get_mut(&conn) else {
            return Err(TrySendError::Closed(payload));
        };
        connection.writer.try_send(payload)?;
        connection.last_dest = Some(dest);
        Ok(())
    }

    fn connect(&mut self, addr: SocketAddr) -> ConnId {
        let conn = self.ctx.allocate_id();
        let (writer, outgoing) = mpsc::channel(WRITE_QUEUE);
        self.insert(
            conn,
            Connection {
                addr,
                writer,
                last_dest: None,
            },
        );
        spawn_outbound(conn, addr, outgoing, self.ctx.clone());
        conn
    }

    fn insert(&mut self, conn: ConnId, connection: Connection) {
        self.by_addr.insert(connection.addr, conn);
        self.by_id.insert(conn, connection);
    }
}
