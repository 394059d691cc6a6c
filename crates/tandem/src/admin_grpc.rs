//! The gRPC admin API (`tandem.admin.v1.Admin`, what `tandemctl` speaks): each call is handed to
//! the core task as an [`AdminRequest::Grpc`] and answered with the proto reply it sends back, so
//! nothing is shared with the packet path.

use crate::admin::{AdminRequest, GrpcAdminRequest};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tandem_proto::admin::v1 as api;
use tandem_proto::admin::v1::admin_server::{Admin, AdminServer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::{debug, error, warn};

/// Longest wait for the core task's answer (queueing included) before `DEADLINE_EXCEEDED`.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the admin API on `listener` for ever (until the task is aborted), asking the core task
/// through `requests`.
pub async fn serve(listener: TcpListener, requests: mpsc::Sender<AdminRequest>) {
    let local = listener.local_addr().ok();
    let served = tonic::transport::Server::builder()
        .add_service(AdminServer::new(AdminService::new(requests)))
        .serve_with_incoming(Accepted::new(listener))
        .await;
    if let Err(error) = served {
        error!(%error, addr = ?local, "admin gRPC server stopped");
    }
}

/// The `Admin` service: a go-between for gRPC callers and the core task.
#[derive(Debug, Clone)]
pub struct AdminService {
    requests: mpsc::Sender<AdminRequest>,
    answer_timeout: Duration,
}

impl AdminService {
    /// A service asking the core task through `requests`, waiting [`ANSWER_TIMEOUT`] at most.
    pub fn new(requests: mpsc::Sender<AdminRequest>) -> AdminService {
        AdminService {
            requests,
            answer_timeout: ANSWER_TIMEOUT,
        }
    }

    /// The same service with another bound on the wait for an answer.
    pub fn with_answer_timeout(self, answer_timeout: Duration) -> AdminService {
        AdminService {
            answer_timeout,
            ..self
        }
    }

    /// Sends the request `make` builds around a fresh reply channel and waits for the answer:
    /// `UNAVAILABLE` when the core task is gone (stopping), `DEADLINE_EXCEEDED` when it does not
    /// answer in time.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> GrpcAdminRequest,
    ) -> Result<Response<T>, Status> {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            self.requests
                .send(AdminRequest::Grpc(make(reply)))
                .await
                .map_err(|_| stopping())?;
            answer.await.map_err(|_| stopping())
        };
        match tokio::time::timeout(self.answer_timeout, exchange).await {
            Ok(answer) => answer.map(Response::new),
            Err(_) => {
                warn!(timeout = ?self.answer_timeout, "admin gRPC request not answered in time");
                Err(Status::deadline_exceeded(
                    "the core task did not answer in time",
                ))
            }
        }
    }
}

fn stopping() -> Status {
    Status::unavailable("stopping")
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _request: Request<api::StatusRequest>,
    ) -> Result<Response<api::StatusReply>, Status> {
        self.ask(GrpcAdminRequest::Status).await
    }

    async fn promote(
        &self,
        request: Request<api::PromoteRequest>,
    ) -> Result<Response<api::RoleReply>, Status> {
        let api::PromoteRequest { force, reason } = request.into_inner();
        self.ask(|reply| GrpcAdminRequest::Promote {
            force,
            reason,
            reply,
        })
        .await
    }

    async fn demote(
        &self,
        request: Request<api::DemoteRequest>,
    ) -> Result<Response<api::RoleReply>, Status> {
        let reason = request.into_inner().reason;
        self.ask(|reply| GrpcAdminRequest::Demote { reason, reply })
            .await
    }

    async fn switchover(
        &self,
        _request: Request<api::SwitchoverRequest>,
    ) -> Result<Response<api::RoleReply>, Status> {
        self.ask(GrpcAdminRequest::Switchover).await
    }

    async fn drain(
        &self,
        request: Request<api::DrainRequest>,
    ) -> Result<Response<api::DrainReply>, Status> {
        let enable = request.into_inner().enable;
        self.ask(|reply| GrpcAdminRequest::Drain { enable, reply })
            .await
    }

    async fn list_calls(
        &self,
        request: Request<api::ListCallsRequest>,
    ) -> Result<Response<api::ListCallsReply>, Status> {
        let limit = request.into_inner().limit;
        self.ask(|reply| GrpcAdminRequest::ListCalls { limit, reply })
            .await
    }

    async fn list_incidents(
        &self,
        request: Request<api::ListIncidentsRequest>,
    ) -> Result<Response<api::ListIncidentsReply>, Status> {
        let limit = request.into_inner().limit;
        self.ask(|reply| GrpcAdminRequest::ListIncidents { limit, reply })
            .await
    }
}

/// Connections accepted on the admin listener. A failed accept is logged and retried after
/// [`ACCEPT_BACKOFF`] instead of ending the stream (which would stop the server).
struct Accepted {
    listener: TcpListener,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl Accepted {
    fn new(listener: TcpListener) -> Accepted {
        Accepted {
            listener,
            backoff: None,
        }
    }
}

impl Stream for Accepted {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(backoff) = this.backoff.as_mut() {
                ready!(backoff.as_mut().poll(cx));
                this.backoff = None;
            }
            match ready!(this.listener.poll_accept(cx)) {
                Ok((stream, peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(%error, %peer, "admin gRPC: TCP_NODELAY not set");
                    }
                    return Poll::Ready(Some(Ok(stream)));
                }
                Err(error) => {
                    warn!(%error, "admin gRPC accept failed");
                    this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_core_task_that_never_answers_gives_deadline_exceeded() {
        let (requests, mut core) = mpsc::channel(1);
        let service = AdminService::new(requests).with_answer_timeout(Duration::from_secs(2));
        // Holds each request (and its reply sender) without answering.
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(request) = core.recv().await {
                held.push(request);
            }
            held
        });
        let status = service
            .status(Request::new(api::StatusRequest {}))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        drop(service);
        assert_eq!(held.await.unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_counts_against_the_deadline() {
        let (requests, _core) = mpsc::channel(1);
        requests
            .try_send(AdminRequest::Calls(oneshot::channel().0))
            .unwrap();
        let service = AdminService::new(requests);
        let status = service
            .drain(Request::new(api::DrainRequest { enable: true }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    }

    #[tokio::test]
    async fn a_dropped_reply_is_unavailable() {
        let (requests, mut core) = mpsc::channel(1);
        let service = AdminService::new(requests);
        tokio::spawn(async move {
            // Takes the request and drops it unanswered, as a core task stopping would.
            while core.recv().await.is_some() {}
        });
        let status = service
            .demote(Request::new(api::DemoteRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "stopping");
    }
}
