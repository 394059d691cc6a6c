//! The admin endpoint: a minimal HTTP/1.1 server (one request per connection) serving
//! `GET /metrics` (Prometheus text), `GET /health` (200 `ok` while running, 503 `draining`
//! during a graceful shutdown), `GET /calls` (JSON: every call with its relay ports) and
//! `GET /calls/<Call-ID>` (JSON: one call with per-stream media statistics). Each request asks the
//! core task through a channel, so nothing is shared with the packet path.

use crate::metrics::{render_prometheus, Snapshot, PROMETHEUS_CONTENT_TYPE};
use std::time::Duration;
use tandem_proto::admin::v1 as admin_v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// A question for the core task; it answers on the oneshot.
#[derive(Debug)]
pub enum AdminRequest {
    /// The counters and health behind `/metrics` and `/health`.
    Snapshot(oneshot::Sender<Snapshot>),
    /// `/calls`: a JSON array of every call.
    Calls(oneshot::Sender<String>),
    /// `/calls/<Call-ID>`: a JSON object for the call, `None` when there is no such call.
    Call {
        /// The caller leg's Call-ID.
        call_id: String,
        reply: oneshot::Sender<Option<String>>,
    },
    /// A call of the gRPC admin API (`tandem.admin.v1.Admin`, what `tandemctl` speaks).
    Grpc(GrpcAdminRequest),
}

/// The gRPC admin API's calls, each answered with its proto reply by the core task.
#[derive(Debug)]
pub enum GrpcAdminRequest {
    Status(oneshot::Sender<admin_v1::StatusReply>),
    Promote {
        force: bool,
        /// Who asks and why (empty: an operator), for the incident.
        reason: String,
        reply: oneshot::Sender<admin_v1::RoleReply>,
    },
    Demote {
        /// Who asks and why (empty: an operator), for the incident.
        reason: String,
        reply: oneshot::Sender<admin_v1::RoleReply>,
    },
    Switchover(oneshot::Sender<admin_v1::RoleReply>),
    Drain {
        enable: bool,
        reply: oneshot::Sender<admin_v1::DrainReply>,
    },
    ListCalls {
        limit: u32,
        reply: oneshot::Sender<admin_v1::ListCallsReply>,
    },
    ListIncidents {
        limit: u32,
        reply: oneshot::Sender<admin_v1::ListIncidentsReply>,
    },
}

const JSON_CONTENT_TYPE: &str = "application/json";

/// Largest request head accepted.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Longest time a client may take to send its request or read the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves admin requests for ever (until the task is aborted).
pub async fn serve(listener: TcpListener, requests: mpsc::Sender<AdminRequest>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle_connection(stream, requests.clone()));
            }
            Err(error) => {
                warn!(%error, "admin accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn handle_connection(mut stream: TcpStream, requests: mpsc::Sender<AdminRequest>) {
    let response = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => respond(&head, &requests).await,
        Ok(Ok(None)) => Response::text(400, "Bad Request", "bad request\n"),
        Ok(Err(error)) => {
            debug!(%error, "admin read failed");
            return;
        }
        Err(_) => return,
    };
    let write = async {
        stream.write_all(&response.encode()).await?;
        stream.shutdown().await
    };
    if let Ok(Err(error)) = tokio::time::timeout(IO_TIMEOUT, write).await {
        debug!(%error, "admin write failed");
    }
}

/// Reads up to the blank line ending the request head; `None` if the head is too large or the
/// client closed first.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD_BYTES {
            return Ok(None);
        }
    }
}

async fn respond(head: &[u8], requests: &mpsc::Sender<AdminRequest>) -> Response {
    let Some((method, path)) = request_line(head) else {
        return Response::text(400, "Bad Request", "bad request\n");
    };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Response::text(405, "Method Not Allowed", "only GET and HEAD\n"),
    };
    let response = match path {
        "/calls" => match ask(requests, AdminRequest::Calls).await {
            Some(json) => Response::ok(JSON_CONTENT_TYPE, json),
            None => Response::text(503, "Service Unavailable", "stopping\n"),
        },
        _ if path.starts_with("/calls/") => {
            let call_id = percent_decode(&path["/calls/".len()..]);
            let asked = ask(requests, |reply| AdminRequest::Call { call_id, reply }).await;
            match asked {
                Some(Some(json)) => Response::ok(JSON_CONTENT_TYPE, json),
                Some(None) => Response::text(404, "Not Found", "no such call\n"),
                None => Response::text(503, "Service Unavailable", "stopping\n"),
            }
        }
        "/metrics" | "/health" => match ask(requests, AdminRequest::Snapshot).await {
            None => Response::text(503, "Service Unavailable", "stopping\n"),
            Some(s) if path == "/metrics" => {
                Response::ok(PROMETHEUS_CONTENT_TYPE, render_prometheus(&s))
            }
            Some(s) if s.draining => Response::text(503, "Service Unavailable", "draining\n"),
            Some(_) => Response::text(200, "OK", "ok\n"),
        },
        _ => Response::text(404, "Not Found", "not found\n"),
    };
    if head_only {
        Response {
            body: String::new(),
            content_length: response.body.len(),
            ..response
        }
    } else {
        response
    }
}

/// Method and path (without query) of `METHOD SP target SP HTTP/1.x`.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some((method, path))
}

/// Sends the request `make` builds around a fresh reply channel and waits for the answer; `None`
/// when the core task is gone.
async fn ask<T>(
    requests: &mpsc::Sender<AdminRequest>,
    make: impl FnOnce(oneshot::Sender<T>) -> AdminRequest,
) -> Option<T> {
    let (reply, answer) = oneshot::channel();
    requests.send(make(reply)).await.ok()?;
    answer.await.ok()
}

/// `%XX` escapes of a path segment decoded (a Call-ID may hold `@`, `%`, `/`...); anything that is
/// not a valid escape is kept as written.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    content_length: usize,
}

impl Response {
    fn ok(content_type: &'static str, body: String) -> Response {
        Response {
            status: 200,
            reason: "OK",
            content_type,
            content_length: body.len(),
            body,
        }
    }

    fn text(status: u16, reason: &'static str, body: &str) -> Response {
        let content_type = "text/plain; charset=utf-8";
        Response {
            status,
            reason,
            content_type,
            content_length: body.len(),
            body: body.to_owned(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status, self.reason, self.content_type, self.content_length
        );
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}
