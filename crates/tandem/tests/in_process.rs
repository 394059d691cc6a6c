//! Tandem run in-process on port 0 (`BoundListeners::bind` + `run`) with the real core, against a
//! stand-in media server: a UDP task in the test that answers every request 200.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tandem::config::Config;
use tandem::transport::framing::{Frame, StreamFramer};
use tandem::BoundListeners;
use tandem_sip::{HeaderName, Message, Method, ResponseBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Longest wait for anything a test expects to happen.
const DEADLINE: Duration = Duration::from_secs(5);

/// A media server that answers every request but ACK with 200 (INVITE: with a Contact and SDP), and
/// reports the method of every request it gets.
async fn start_media_server() -> (SocketAddr, mpsc::UnboundedReceiver<Method>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(request) = Message::parse(Bytes::copy_from_slice(&buf[..len])) else {
                continue;
            };
            let Some(method) = request.method().cloned() else {
                continue;
            };
            let _ = seen_tx.send(method.clone());
            if method == Method::Ack {
                continue;
            }
            let mut response = ResponseBuilder::new(&request, 200, "OK");
            response.to_tag("media");
            if method == Method::Invite {
                response
                    .header(HeaderName::Contact, &format!("<sip:media@{addr}>"))
                    .body("application/sdp", b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n");
            }
            let _ = socket.send_to(&response.build(), from).await;
        }
    });
    (addr, seen)
}

/// A running Tandem: its addresses, the trigger of its graceful shutdown, and its task.
struct Tandem {
    sip: SocketAddr,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start_tandem(media: SocketAddr, grace: &str) -> Tandem {
    let config = Config::from_toml(&format!(
        r#"
        [sip]
        listen = "127.0.0.1:0"
        [admin]
        listen = "127.0.0.1:0"
        [pool]
        probe_interval = "200ms"
        probe_timeout = "100ms"
        [[media_server]]
        name = "media-1"
        address = "{media}"
        [shutdown]
        grace = "{grace}"
        "#
    ))
    .unwrap();
    let bound = BoundListeners::bind(&config).await.unwrap();
    let (sip, admin) = (bound.sip_addr().unwrap(), bound.admin_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(tandem::run(bound, config, async {
        let _ = stopped.await;
    }));
    Tandem {
        sip,
        admin,
        stop: Some(stop),
        task,
    }
}

impl Tandem {
    fn begin_shutdown(&mut self) {
        let _ = self.stop.take().unwrap().send(());
    }

    async fn stopped(self) {
        timeout(DEADLINE, self.task)
            .await
            .expect("tandem did not stop in time")
            .unwrap()
            .unwrap();
    }
}

/// A request from `from` over `transport` ("UDP"/"TCP") with this To header value.
fn request(
    method: &str,
    uri: &str,
    from: SocketAddr,
    transport: &str,
    call_id: &str,
    cseq: u32,
    to: &str,
) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {from};branch=z9hG4bK-{call_id}-{cseq}-{method};rport\r\n\
         From: <sip:caller@{from}>;tag=caller\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Max-Forwards: 70\r\n\
         Contact: <sip:caller@{from}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// An answered call as the caller sees it.
struct Dialog {
    call_id: String,
    /// Contact of the 200: the Request-URI of in-dialog requests.
    contact: String,
    /// To of the 200, with Tandem's tag.
    to: String,
}

/// A caller on UDP.
struct Caller {
    socket: UdpSocket,
    tandem: SocketAddr,
}

impl Caller {
    async fn new(tandem: SocketAddr) -> Caller {
        Caller {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            tandem,
        }
    }

    fn request(&self, method: &str, uri: &str, call_id: &str, cseq: u32, to: &str) -> String {
        request(
            method,
            uri,
            self.socket.local_addr().unwrap(),
            "UDP",
            call_id,
            cseq,
            to,
        )
    }

    /// Sends `text` and returns the final response.
    async fn exchange(&self, text: &str) -> Message {
        self.socket
            .send_to(text.as_bytes(), self.tandem)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_535];
        loop {
            let received = timeout(DEADLINE, self.socket.recv_from(&mut buf)).await;
            let (len, _) = received.expect("no response in time").unwrap();
            let msg = Message::parse(Bytes::copy_from_slice(&buf[..len])).unwrap();
            if msg.status().is_some_and(|code| code >= 200) {
                return msg;
            }
        }
    }

    /// Sends an INVITE and returns its final status.
    async fn invite(&self, call_id: &str) -> (Option<u16>, Message) {
        let answer = self
            .exchange(&self.request("INVITE", "sip:100@tandem", call_id, 1, "<sip:100@tandem>"))
            .await;
        (answer.status(), answer)
    }

    /// INVITE, 200, ACK.
    async fn call(&self, call_id: &str) -> Dialog {
        let (status, answer) = self.invite(call_id).await;
        assert_eq!(status, Some(200));
        let dialog = Dialog {
            call_id: call_id.to_owned(),
            contact: answer
                .contacts()
                .first()
                .map(|c| c.uri.raw.to_owned())
                .unwrap(),
            to: answer.header(HeaderName::To).unwrap().into_owned(),
        };
        let ack = self.request("ACK", &dialog.contact, call_id, 1, &dialog.to);
        self.socket
            .send_to(ack.as_bytes(), self.tandem)
            .await
            .unwrap();
        dialog
    }

    /// BYE; returns its final status.
    async fn hang_up(&self, dialog: &Dialog) -> Option<u16> {
        let bye = self.request("BYE", &dialog.contact, &dialog.call_id, 2, &dialog.to);
        self.exchange(&bye).await.status()
    }
}

async fn http_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

#[tokio::test]
async fn options_is_answered_200_over_udp_and_tcp() {
    let (media, _seen) = start_media_server().await;
    let mut tandem = start_tandem(media, "1s").await;

    let caller = Caller::new(tandem.sip).await;
    let answer = caller
        .exchange(&caller.request(
            "OPTIONS",
            "sip:tandem@127.0.0.1",
            "opt-udp",
            1,
            "<sip:tandem@127.0.0.1>",
        ))
        .await;
    assert_eq!((answer.status(), answer.call_id()), (Some(200), "opt-udp"));

    let mut tcp = TcpStream::connect(tandem.sip).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let options = request(
        "OPTIONS",
        "sip:tandem@127.0.0.1",
        me,
        "TCP",
        "opt-tcp",
        1,
        "<sip:tandem@127.0.0.1>",
    );
    tcp.write_all(options.as_bytes()).await.unwrap();
    let mut framer = StreamFramer::new();
    let frame = loop {
        if let Some(frame) = framer.next_frame().unwrap() {
            break frame;
        }
        let read = timeout(DEADLINE, tcp.read_buf(framer.read_buffer()))
            .await
            .expect("no TCP answer in time");
        assert!(read.unwrap() > 0, "connection closed without an answer");
    };
    let Frame::Message(bytes) = frame else {
        panic!("expected a message")
    };
    let answer = Message::parse(bytes).unwrap();
    assert_eq!((answer.status(), answer.call_id()), (Some(200), "opt-tcp"));

    let (status, metrics) = http_get(tandem.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tandem_sip_responses_sent_total{class=\"2xx\"} "),
        "{metrics}"
    );
    assert!(metrics.contains("tandem_tcp_connections 1\n"), "{metrics}");
    let server_up = format!("tandem_media_server_up{{server=\"media-1\",address=\"{media}\"}} 1\n");
    assert!(metrics.contains(&server_up), "{metrics}");
    assert_eq!(
        http_get(tandem.admin, "/health").await,
        (200, "ok\n".to_owned())
    );

    tandem.begin_shutdown();
    tandem.stopped().await;
}

#[tokio::test]
async fn draining_refuses_new_calls_and_waits_for_the_last_one() {
    let (media, mut seen) = start_media_server().await;
    let mut tandem = start_tandem(media, "30s").await;
    let caller = Caller::new(tandem.sip).await;
    let call = caller.call("call-1").await;

    tandem.begin_shutdown();
    let health = async {
        while http_get(tandem.admin, "/health").await.0 != 503 {
            tokio::task::yield_now().await;
        }
    };
    timeout(DEADLINE, health)
        .await
        .expect("/health never turned 503");
    assert_eq!(caller.invite("call-2").await.0, Some(503));
    assert!(
        !tandem.task.is_finished(),
        "the answered call keeps Tandem running"
    );

    assert_eq!(caller.hang_up(&call).await, Some(200));
    let mut media_methods = Vec::new();
    while let Ok(method) = seen.try_recv() {
        media_methods.push(method);
    }
    assert!(
        media_methods.contains(&Method::Bye),
        "media server saw {media_methods:?}"
    );
    tandem.stopped().await;
}

/// With the clock paused, tokio jumps to the next timer whenever every task waits: the five
/// minutes of grace pass at once, which only works because the shell reads time from tokio's clock.
#[tokio::test(start_paused = true)]
async fn grace_expiry_stops_tandem_with_calls_still_up() {
    let (media, _seen) = start_media_server().await;
    let mut tandem = start_tandem(media, "5m").await;
    let caller = Caller::new(tandem.sip).await;
    let _call = caller.call("call-1").await;
    let begun = tokio::time::Instant::now();
    tandem.begin_shutdown();
    let stopped = timeout(Duration::from_secs(600), tandem.task).await;
    stopped.expect("tandem did not stop").unwrap().unwrap();
    assert!(
        begun.elapsed() >= Duration::from_secs(300),
        "stopped before the grace expired"
    );
}
