//! The server side of the `tandem.replication.v1.Replication/Stream` method, routed by hand
//! instead of through the generated `ReplicationServer`: the generated route encodes every
//! `ActiveMessage` with prost, while the active's deltas are already encoded once, in the outbox
//! ring ([`Outgoing::Encoded`]). This route's codec writes those bytes as they are and encodes
//! anything else ([`Outgoing::Message`]) with prost; what reaches the wire is the same gRPC
//! stream either way (the standby's generated client decodes it unchanged).

use std::sync::Arc;

use tandem_ha::Outgoing;
use tandem_proto::replication::v1::{ActiveMessage, StandbyMessage};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The gRPC path of the replication stream.
const STREAM_PATH: &str = "/tandem.replication.v1.Replication/Stream";

/// What answers a standby's stream: the link's accept logic.
pub(super) trait StreamAcceptor: Send + Sync + 'static {
    /// Registers a new stream and returns the messages to send on it.
    fn accept(
        &self,
        request: Request<Streaming<StandbyMessage>>,
    ) -> BoxFuture<Response<ReceiverStream<Result<Outgoing, Status>>>, Status>;
}

/// The `Replication` service with the pass-through codec.
pub(super) struct ReplicationRoute<A> {
    acceptor: Arc<A>,
    max_message_bytes: usize,
}

impl<A> ReplicationRoute<A> {
    pub(super) fn new(acceptor: A, max_message_bytes: usize) -> Self {
        ReplicationRoute {
            acceptor: Arc::new(acceptor),
            max_message_bytes,
        }
    }
}

impl<A> Clone for ReplicationRoute<A> {
    fn clone(&self) -> Self {
        ReplicationRoute {
            acceptor: self.acceptor.clone(),
            max_message_bytes: self.max_message_bytes,
        }
    }
}

impl<A> NamedService for ReplicationRoute<A> {
    const NAME: &'static str = tandem_proto::replication::v1::replication_server::SERVICE_NAME;
}

impl<A, B> Service<http::Request<B>> for ReplicationRoute<A>
where
    A: StreamAcceptor,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != STREAM_PATH {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let method = StreamMethod(self.acceptor.clone());
        let limit = Some(self.max_message_bytes);
        Box::pin(async move {
            let mut grpc =
                Grpc::new(PassThroughCodec::default()).apply_max_message_size_config(limit, limit);
            Ok(grpc.streaming(method, request).await)
        })
    }
}

/// The one streaming method.
struct StreamMethod<A>(Arc<A>);

impl<A: StreamAcceptor> StreamingService<StandbyMessage> for StreamMethod<A> {
    type Response = Outgoing;
    type ResponseStream = ReceiverStream<Result<Outgoing, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<StandbyMessage>>) -> Self::Future {
        self.0.accept(request)
    }
}

/// Encodes [`Outgoing`] (encoded bytes pass through), decodes `StandbyMessage` with prost.
#[derive(Debug, Default)]
struct PassThroughCodec {
    prost: ProstCodec<ActiveMessage, StandbyMessage>,
}

impl Codec for PassThroughCodec {
    type Encode = Outgoing;
    type Decode = StandbyMessage;
    type Encoder = PassThroughEncoder;
    type Decoder = <ProstCodec<ActiveMessage, StandbyMessage> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        PassThroughEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.prost.decoder()
    }
}

/// Writes an [`Outgoing`] into tonic's frame buffer.
#[derive(Debug, Default)]
struct PassThroughEncoder;

impl Encoder for PassThroughEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // EncodeBuf grows on demand; reserving keeps it to one allocation per message at most.
        buf.reserve(item.encoded_len());
        item.write_to(buf)
            .map_err(|error| Status::internal(format!("replication message not encoded: {error}")))
    }
}
