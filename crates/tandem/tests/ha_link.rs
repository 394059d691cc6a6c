//! The replication link between two nodes over loopback: node A serves, node B dials A (as a
//! standby does). Every wait has a deadline; nothing sleeps.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tandem::ha::link::{LinkConfig, LinkEvent, LinkHandle, StreamId};
use tandem_proto::replication::v1::{
    active_message, standby_message, ActiveMessage, CallRecord, Delta, Hello, StandbyMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(5);

struct Node {
    link: LinkHandle,
    events: mpsc::Receiver<LinkEvent>,
}

impl Node {
    /// A node listening on a free loopback port, dialling `peer` when asked.
    async fn start(peer: SocketAddr, peer_sip: SocketAddr, queue: usize, events: usize) -> Node {
        let (tx, rx) = mpsc::channel(events);
        let config = LinkConfig {
            listen: loopback(0),
            peer,
            peer_sip: Some(peer_sip),
            queue,
            connect_timeout: CONNECT_TIMEOUT,
        };
        Node {
            link: LinkHandle::start(config, tx).await.unwrap(),
            events: rx,
        }
    }

    async fn next(&mut self) -> LinkEvent {
        self.next_within(WAIT).await
    }

    async fn next_within(&mut self, within: Duration) -> LinkEvent {
        timeout(within, self.events.recv())
            .await
            .unwrap_or_else(|_| panic!("no link event within {within:?}"))
            .expect("event channel open")
    }
}

fn loopback(port: u16) -> SocketAddr {
    (Ipv4Addr::LOCALHOST, port).into()
}

/// A loopback port where nothing listens.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind(loopback(0)).await.unwrap();
    listener.local_addr().unwrap()
}

/// A server node A and a standby node B that dials it.
async fn pair(queue: usize, b_events: usize) -> (Node, Node) {
    let nowhere = closed_port().await;
    let a = Node::start(nowhere, nowhere, queue, 64).await;
    let b = Node::start(a.link.local_addr(), nowhere, queue, b_events).await;
    (a, b)
}

fn hello() -> StandbyMessage {
    StandbyMessage {
        kind: Some(standby_message::Kind::Hello(Hello {
            node: "b".into(),
            epoch: 3,
            applied_seq: 0,
            schema_version: 1,
        })),
    }
}

fn delta(seq: u64, padding: usize) -> ActiveMessage {
    let call = CallRecord {
        key: seq,
        caller_sdp: vec![b'x'; padding],
        ..CallRecord::default()
    };
    ActiveMessage {
        kind: Some(active_message::Kind::Delta(Delta {
            epoch: 3,
            seq,
            change: Some(tandem_proto::replication::v1::delta::Change::Call(call)),
        })),
    }
}

fn delta_seq(event: LinkEvent) -> u64 {
    match event {
        LinkEvent::FromActive(msg) => match msg.kind {
            Some(active_message::Kind::Delta(delta)) => delta.seq,
            other => panic!("expected a delta, got {other:?}"),
        },
        other => panic!("expected FromActive, got {other:?}"),
    }
}

/// B dials A and says Hello; returns A's stream id.
async fn connect(a: &mut Node, b: &mut Node) -> StreamId {
    b.link.dial();
    assert!(matches!(b.next().await, LinkEvent::ActiveConnected));
    assert!(b.link.send_to_active(hello()));
    let stream = match a.next().await {
        LinkEvent::StandbyConnected { stream, peer } => {
            assert_eq!(peer.ip(), loopback(0).ip());
            stream
        }
        other => panic!("expected StandbyConnected, got {other:?}"),
    };
    match a.next().await {
        LinkEvent::FromStandby { stream: s, msg } => {
            assert_eq!(s, stream);
            assert_eq!(*msg, hello());
        }
        other => panic!("expected FromStandby(Hello), got {other:?}"),
    }
    stream
}

/// Sends `msg`, retrying while the stream is full, until `deadline`.
async fn send_when_room(a: &Node, stream: StreamId, msg: ActiveMessage, deadline: Instant) {
    while !a.link.send_to_standby(stream, msg.clone()) {
        assert!(Instant::now() < deadline, "stream stayed full");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn standby_connects_says_hello_and_receives_a_thousand_messages_in_order() {
    let (mut a, mut b) = pair(64, 64).await;
    assert!(
        !b.link.send_to_active(hello()),
        "nothing to send on before the dial"
    );
    let stream = connect(&mut a, &mut b).await;

    let deadline = Instant::now() + WAIT;
    let sender = async {
        for seq in 1..=1000 {
            send_when_room(&a, stream, delta(seq, 100), deadline).await;
        }
    };
    let receiver = async {
        for seq in 1..=1000 {
            assert_eq!(delta_seq(b.next().await), seq);
        }
    };
    tokio::join!(sender, receiver);
}

#[tokio::test]
async fn a_standby_that_does_not_read_fills_the_queue_without_blocking_the_sender() {
    // B's event channel holds one event: once the test stops reading it, B stops reading the
    // stream and HTTP/2 flow control pushes back on A.
    let (mut a, mut b) = pair(4, 1).await;
    let stream = connect(&mut a, &mut b).await;

    let mut sent = 0u64;
    for seq in 1..=5_000 {
        if !a.link.send_to_standby(stream, delta(seq, 64 * 1024)) {
            break;
        }
        sent = seq;
        tokio::task::yield_now().await;
    }
    assert!(sent < 5_000, "the queue never filled");
    assert!(!a.link.standby_has_room(stream));

    // Reading again drains everything, in order, and frees the queue.
    for seq in 1..=sent {
        assert_eq!(delta_seq(b.next().await), seq);
    }
    assert!(a.link.standby_has_room(stream));
    assert!(a.link.send_to_standby(stream, delta(sent + 1, 10)));
    assert_eq!(delta_seq(b.next().await), sent + 1);
}

#[tokio::test]
async fn closing_the_stream_delivers_what_was_queued_then_the_standby_redials() {
    let (mut a, mut b) = pair(64, 64).await;
    let first = connect(&mut a, &mut b).await;

    for seq in 1..=3 {
        assert!(a.link.send_to_standby(first, delta(seq, 10)));
    }
    a.link.close_standby(first);
    assert!(!a.link.send_to_standby(first, delta(4, 10)));
    assert!(!a.link.standby_has_room(first));
    for seq in 1..=3 {
        assert_eq!(delta_seq(b.next().await), seq);
    }
    assert!(matches!(b.next().await, LinkEvent::ActiveGone));
    assert!(matches!(a.next().await, LinkEvent::StandbyGone { stream } if stream == first));
    assert!(!b.link.send_to_active(hello()));

    let second = connect(&mut a, &mut b).await;
    assert_ne!(second, first);
    assert!(a.link.send_to_standby(second, delta(1, 10)));
    assert_eq!(delta_seq(b.next().await), 1);
}

#[tokio::test]
async fn hanging_up_ends_the_stream_on_both_sides_without_active_gone() {
    let (mut a, mut b) = pair(64, 64).await;
    let stream = connect(&mut a, &mut b).await;

    b.link.hang_up();
    assert!(!b.link.send_to_active(hello()));
    assert!(matches!(a.next().await, LinkEvent::StandbyGone { stream: s } if s == stream));
    assert!(!a.link.send_to_standby(stream, delta(1, 10)));
    assert!(b.events.try_recv().is_err(), "hang-up is silent");
}

#[tokio::test]
async fn a_new_dial_replaces_the_open_stream_silently() {
    let (mut a, mut b) = pair(64, 64).await;
    let first = connect(&mut a, &mut b).await;

    b.link.dial();
    assert!(matches!(b.next().await, LinkEvent::ActiveConnected));
    assert!(b.link.send_to_active(hello()));
    // The old stream's end and the new one's start may come in either order.
    let (mut first_gone, mut second, mut second_hello) = (false, None, false);
    while !(first_gone && second_hello) {
        match a.next().await {
            LinkEvent::StandbyGone { stream } if stream == first => first_gone = true,
            LinkEvent::StandbyConnected { stream, .. } if second.is_none() => {
                assert_ne!(stream, first);
                second = Some(stream);
            }
            LinkEvent::FromStandby { stream, msg } if Some(stream) == second => {
                assert_eq!(*msg, hello());
                second_hello = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(a.link.send_to_standby(second.unwrap(), delta(7, 10)));
    assert_eq!(delta_seq(b.next().await), 7);
    assert!(
        b.events.try_recv().is_err(),
        "the replaced stream ends silently"
    );
}

#[tokio::test]
async fn the_standby_notices_within_a_second_when_the_server_node_goes_away() {
    let (mut a, mut b) = pair(64, 64).await;
    connect(&mut a, &mut b).await;

    drop(a);
    let started = Instant::now();
    assert!(matches!(
        b.next_within(Duration::from_secs(1)).await,
        LinkEvent::ActiveGone
    ));
    assert!(!b.link.send_to_active(hello()));

    // Nothing listens there any more.
    b.link.dial();
    assert!(matches!(
        b.next_within(CONNECT_TIMEOUT + Duration::from_millis(500))
            .await,
        LinkEvent::ActiveGone
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A TCP relay to `target` that, once `freeze` is set, stops forwarding but keeps every
/// connection open: a peer whose host froze or whose network vanished, without FIN or RST.
async fn freezable_relay(target: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind(loopback(0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (freeze, frozen) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let outbound = TcpStream::connect(target).await.unwrap();
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::spawn(forward(in_read, out_write, frozen.clone()));
            tokio::spawn(forward(out_read, in_write, frozen.clone()));
        }
    });
    (addr, freeze)
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(len) => {
                    if to.write_all(&buf[..len]).await.is_err() {
                        return;
                    }
                }
            },
            _ = frozen.changed() => break,
        }
    }
    // Frozen: hold both sockets open, forward nothing.
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn both_sides_notice_a_peer_that_goes_silent_without_closing() {
    let nowhere = closed_port().await;
    let mut a = Node::start(nowhere, nowhere, 64, 64).await;
    let (relay, freeze) = freezable_relay(a.link.local_addr()).await;
    let mut b = Node::start(relay, nowhere, 64, 64).await;
    let stream = connect(&mut a, &mut b).await;

    freeze.send_replace(true);
    // HTTP/2 keepalive: a PING unanswered within `KEEPALIVE`, sent after `KEEPALIVE` of silence.
    let within = tandem::ha::link::KEEPALIVE * 4;
    assert!(matches!(b.next_within(within).await, LinkEvent::ActiveGone));
    assert!(
        matches!(a.next_within(within).await, LinkEvent::StandbyGone { stream: s } if s == stream)
    );
}

#[tokio::test]
async fn dialling_a_port_where_nothing_listens_fails_within_the_connect_timeout() {
    let nowhere = closed_port().await;
    let mut b = Node::start(nowhere, nowhere, 8, 8).await;
    b.link.dial();
    assert!(matches!(
        b.next_within(CONNECT_TIMEOUT + Duration::from_millis(500))
            .await,
        LinkEvent::ActiveGone
    ));
    assert!(!b.link.send_to_active(hello()));
}

#[tokio::test]
async fn sip_probe_reports_a_peer_that_answers_options() {
    let sip = UdpSocket::bind(loopback(0)).await.unwrap();
    let nowhere = closed_port().await;
    let mut node = Node::start(nowhere, sip.local_addr().unwrap(), 8, 8).await;

    node.link.probe_peer_sip(Duration::from_secs(2));
    let mut buf = vec![0u8; 4096];
    let (len, from) = timeout(WAIT, sip.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let request = tandem_sip::Message::parse(bytes::Bytes::copy_from_slice(&buf[..len])).unwrap();
    assert_eq!(request.method(), Some(&tandem_sip::Method::Options));
    let via = request.header(tandem_sip::HeaderName::Via).unwrap();
    assert!(via.contains("branch=z9hG4bK"), "{via}");
    assert!(
        via.contains(&from.to_string()),
        "Via names the sending socket: {via}"
    );
    let answer = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nCall-ID: {}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        request.call_id()
    );
    sip.send_to(answer.as_bytes(), from).await.unwrap();

    assert!(matches!(node.next().await, LinkEvent::PeerSipAlive(true)));
}

#[tokio::test]
async fn sip_probe_reports_a_silent_peer_after_the_timeout_having_asked_twice() {
    let sip = UdpSocket::bind(loopback(0)).await.unwrap();
    let nowhere = closed_port().await;
    let mut node = Node::start(nowhere, sip.local_addr().unwrap(), 8, 8).await;

    let probe_timeout = Duration::from_millis(400);
    let started = Instant::now();
    node.link.probe_peer_sip(probe_timeout);
    assert!(matches!(node.next().await, LinkEvent::PeerSipAlive(false)));
    let elapsed = started.elapsed();
    assert!(elapsed >= probe_timeout, "answered after {elapsed:?}");
    assert!(elapsed < probe_timeout + Duration::from_secs(1));

    let mut buf = vec![0u8; 4096];
    let first = sip
        .try_recv_from(&mut buf)
        .map(|(len, _)| buf[..len].to_vec());
    let second = sip
        .try_recv_from(&mut buf)
        .map(|(len, _)| buf[..len].to_vec());
    assert_eq!(
        first.unwrap(),
        second.unwrap(),
        "one retransmission of the same request"
    );
}

#[tokio::test]
async fn sip_probe_reports_a_refusing_peer_without_waiting_for_the_timeout() {
    // A UDP port nobody holds: the kernel answers ICMP port unreachable (a killed peer whose host
    // is still up), twice, and the probe reports the peer gone well before its timeout.
    let socket = std::net::UdpSocket::bind(loopback(0)).unwrap();
    let refusing = socket.local_addr().unwrap();
    drop(socket);
    let nowhere = closed_port().await;
    let mut node = Node::start(nowhere, refusing, 8, 8).await;

    let probe_timeout = Duration::from_secs(5);
    let started = Instant::now();
    node.link.probe_peer_sip(probe_timeout);
    assert!(matches!(
        node.next_within(probe_timeout).await,
        LinkEvent::PeerSipAlive(false)
    ));
    assert!(
        started.elapsed() < probe_timeout / 2,
        "{:?}",
        started.elapsed()
    );
}
