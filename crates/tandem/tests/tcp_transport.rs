//! TCP without the core: a byte stream cut into SIP messages however it is split or merged, and
//! connection tasks that hand frames to a stand-in for the core task and write what it queues.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tandem::transport::framing::{Frame, FramingError, StreamFramer};
use tandem::transport::tcp::{accept_loop, ConnectionContext, TcpConnections};
use tandem::transport::{CloseReason, Inbound};
use tandem_core::{Peer, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Longest wait for anything a test expects to happen.
const DEADLINE: Duration = Duration::from_secs(5);

fn options(call_id: &str) -> String {
    format!(
        "OPTIONS sip:tandem@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-{call_id}\r\n\
         From: <sip:probe@127.0.0.1>;tag=1\r\n\
         To: <sip:tandem@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn message_with_body(call_id: &str, body: &str) -> String {
    format!(
        "MESSAGE sip:tandem@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-{call_id}\r\n\
         From: <sip:a@127.0.0.1>;tag=2\r\n\
         To: <sip:tandem@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\n\
         l: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Feeds `chunks` one after another and collects every frame.
fn frames_of(chunks: &[&[u8]]) -> Vec<Frame> {
    let mut framer = StreamFramer::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        framer.extend_from_slice(chunk);
        while let Some(frame) = framer.next_frame().unwrap() {
            frames.push(frame);
        }
    }
    assert_eq!(framer.buffered(), 0, "bytes left over");
    frames
}

fn message(text: &str) -> Frame {
    Frame::Message(Bytes::copy_from_slice(text.as_bytes()))
}

#[test]
fn merged_messages_come_out_one_by_one() {
    let (a, b, c) = (
        options("a"),
        message_with_body("b", "hello\r\nworld"),
        options("c"),
    );
    let stream = format!("{a}{b}{c}");
    assert_eq!(
        frames_of(&[stream.as_bytes()]),
        vec![message(&a), message(&b), message(&c)]
    );
}

#[test]
fn a_message_split_byte_by_byte_comes_out_whole() {
    let (a, b) = (message_with_body("a", "0123456789"), options("b"));
    let stream = format!("{a}{b}");
    let bytes: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
    assert_eq!(frames_of(&bytes), vec![message(&a), message(&b)]);
}

#[test]
fn splits_at_every_position_give_the_same_frames() {
    let (a, b) = (message_with_body("a", "body"), options("b"));
    let stream = format!("{a}{b}");
    for cut in 1..stream.len() {
        let (head, tail) = stream.as_bytes().split_at(cut);
        assert_eq!(
            frames_of(&[head, tail]),
            vec![message(&a), message(&b)],
            "cut at {cut}"
        );
    }
}

#[test]
fn keepalives_are_skipped_and_double_crlf_is_a_ping() {
    let a = options("a");
    assert_eq!(frames_of(&[b"\r\n\r\n"]), vec![Frame::Ping]);
    assert_eq!(frames_of(&[b"\r\n"]), vec![]);
    // CRLFs before a message are dropped from the frame (RFC 3261 §7.5).
    let stream = format!("\r\n{a}\r\n");
    assert_eq!(frames_of(&[stream.as_bytes()]), vec![message(&a)]);
}

#[test]
fn an_invalid_stream_is_an_error_not_a_wait() {
    let no_length = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: x\r\n\r\n";
    let mut framer = StreamFramer::new();
    framer.extend_from_slice(no_length.as_bytes());
    assert!(matches!(framer.next_frame(), Err(FramingError::Invalid(_))));

    let mut framer = StreamFramer::new();
    framer.extend_from_slice(&vec![b'A'; tandem::transport::framing::MAX_BUFFERED + 1]);
    assert!(framer.next_frame().is_err());
}

#[test]
fn an_incomplete_message_waits() {
    let a = message_with_body("a", "0123456789");
    let mut framer = StreamFramer::new();
    framer.extend_from_slice(&a.as_bytes()[..a.len() - 1]);
    assert_eq!(framer.next_frame(), Ok(None));
    framer.extend_from_slice(&a.as_bytes()[a.len() - 1..]);
    assert_eq!(framer.next_frame(), Ok(Some(message(&a))));
}

/// A listener on port 0 whose connection tasks report to the returned channel.
async fn start_listener(
    idle: Duration,
) -> (SocketAddr, ConnectionContext, mpsc::Receiver<Inbound>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (inbound_tx, inbound) = mpsc::channel(64);
    let ctx = ConnectionContext::new(inbound_tx, idle);
    tokio::spawn(accept_loop(listener, ctx.clone()));
    (addr, ctx, inbound)
}

async fn next(inbound: &mut mpsc::Receiver<Inbound>) -> Inbound {
    timeout(DEADLINE, inbound.recv())
        .await
        .expect("nothing reported in time")
        .unwrap()
}

#[tokio::test]
async fn accepted_connection_delivers_frames_and_carries_answers_back() {
    let (addr, ctx, mut inbound) = start_listener(Duration::from_secs(60)).await;
    let mut connections = TcpConnections::new(ctx);
    let mut client = TcpStream::connect(addr).await.unwrap();
    let client_addr = client.local_addr().unwrap();

    let Inbound::Accepted {
        conn,
        addr: peer,
        writer,
    } = next(&mut inbound).await
    else {
        panic!("expected Accepted")
    };
    assert_eq!(peer, client_addr);
    connections.accepted(conn, peer, writer);

    let (a, b) = (options("a"), message_with_body("b", "hi"));
    let stream = format!("{a}{b}");
    let (first, second) = stream.as_bytes().split_at(a.len() + 10);
    client.write_all(first).await.unwrap();
    client.write_all(second).await.unwrap();
    for expected in [&a, &b] {
        let Inbound::Message { payload, from } = next(&mut inbound).await else {
            panic!("expected Message")
        };
        assert_eq!(payload, expected.as_bytes());
        assert_eq!(from, Peer::tcp(client_addr, Some(conn)));
    }

    // A double-CRLF ping is answered with a CRLF pong, and never reaches the core task.
    client.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    timeout(DEADLINE, client.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");

    let answer = Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        connections.send(Peer::tcp(client_addr, Some(conn)), answer.clone()),
        Ok(conn)
    );
    let mut received = vec![0u8; answer.len()];
    timeout(DEADLINE, client.read_exact(&mut received))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received, answer);

    drop(client);
    let Inbound::Closed {
        conn: closed,
        reason,
        ..
    } = next(&mut inbound).await
    else {
        panic!("expected Closed")
    };
    assert_eq!((closed, reason), (conn, CloseReason::PeerClosed));
    assert!(connections.closed(conn).is_some());
    assert!(connections.is_empty());
}

#[tokio::test]
async fn garbage_closes_the_connection_as_an_invalid_stream() {
    let (addr, _ctx, mut inbound) = start_listener(Duration::from_secs(60)).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let Inbound::Accepted {
        conn,
        writer: _writer,
        ..
    } = next(&mut inbound).await
    else {
        panic!("expected Accepted")
    };
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let Inbound::Closed {
        conn: closed,
        reason,
        ..
    } = next(&mut inbound).await
    else {
        panic!("expected Closed")
    };
    assert_eq!((closed, reason), (conn, CloseReason::InvalidStream));
    let mut rest = Vec::new();
    let read = timeout(DEADLINE, client.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(
        read.is_err() || rest.is_empty(),
        "the connection is closed without an answer"
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_when_idle() {
    let (addr, _ctx, mut inbound) = start_listener(Duration::from_millis(100)).await;
    let _client = TcpStream::connect(addr).await.unwrap();
    let Inbound::Accepted {
        conn,
        writer: _writer,
        ..
    } = next(&mut inbound).await
    else {
        panic!("expected Accepted")
    };
    let Inbound::Closed {
        conn: closed,
        reason,
        ..
    } = next(&mut inbound).await
    else {
        panic!("expected Closed")
    };
    assert_eq!((closed, reason), (conn, CloseReason::Idle));
}

#[tokio::test]
async fn sends_open_one_outbound_connection_per_address_and_reuse_it() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap();
    let (inbound_tx, mut inbound) = mpsc::channel(64);
    let mut connections =
        TcpConnections::new(ConnectionContext::new(inbound_tx, Duration::from_secs(60)));

    let dest = Peer::tcp(server_addr, None);
    let first = connections.send(dest, Bytes::from(options("a"))).unwrap();
    let second = connections.send(dest, Bytes::from(options("b"))).unwrap();
    assert_eq!(first, second, "the connection is reused");
    assert_eq!(connections.len(), 1);

    let (mut accepted, _) = timeout(DEADLINE, server.accept()).await.unwrap().unwrap();
    let expected = format!("{}{}", options("a"), options("b"));
    let mut received = vec![0u8; expected.len()];
    timeout(DEADLINE, accepted.read_exact(&mut received))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received, expected.as_bytes());

    // What the server answers on that connection reaches the core task tagged with it.
    let answer = "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    accepted.write_all(answer.as_bytes()).await.unwrap();
    let Inbound::Message { payload, from } = next(&mut inbound).await else {
        panic!("expected Message")
    };
    assert_eq!(payload, answer.as_bytes());
    assert_eq!(
        (from.transport, from.addr, from.conn),
        (Transport::Tcp, server_addr, Some(first))
    );
}

#[tokio::test]
async fn a_refused_connect_is_reported_as_lost_messages() {
    // A port that was just free: bind, note it, close.
    let closed_addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (inbound_tx, mut inbound) = mpsc::channel(64);
    let mut connections =
        TcpConnections::new(ConnectionContext::new(inbound_tx, Duration::from_secs(60)));
    let dest = Peer::tcp(closed_addr, None);
    let conn = connections.send(dest, Bytes::from(options("a"))).unwrap();
    let Inbound::Closed {
        conn: closed,
        reason,
        ..
    } = next(&mut inbound).await
    else {
        panic!("expected Closed")
    };
    assert_eq!((closed, reason), (conn, CloseReason::ConnectFailed));
    assert!(reason.lost_messages());
    assert_eq!(
        connections.closed(conn),
        Some(dest),
        "the core hears of the destination it used"
    );
}
