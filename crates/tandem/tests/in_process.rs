//! Tandem run in-process on port 0 (`BoundListeners::bind` + `run`) with the real core, against a
//! stand-in media server: a UDP task in the test that answers every request 200.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::{request, start_media_server, Caller, DEADLINE};
use tandem::config::Config;
use tandem::transport::framing::{Frame, StreamFramer};
use tandem::BoundListeners;
use tandem_sip::{Message, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

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
        grpc_listen = "127.0.0.1:0"
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
