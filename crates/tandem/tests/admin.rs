//! The admin endpoint: Prometheus rendering of a given snapshot, and /metrics and /health served
//! over HTTP by `admin::serve` with a stand-in for the core task answering snapshot requests.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;
use tandem::admin::{self, AdminRequest};
use tandem::metrics::{render_prometheus, MediaSnapshot, ShellCounters, Snapshot};
use tandem_core::media::AnchorMetrics;
use tandem_core::{Metrics, ServerHealth};
use tandem_ha::outbox::AckLatency;
use tandem_relay::RelayTotals;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

fn sample_snapshot() -> Snapshot {
    Snapshot {
        core: Metrics {
            calls_total: 12,
            calls_answered_total: 10,
            calls_failed_total: 2,
            responses_sent: [0, 12, 10, 0, 1, 1, 0],
            responses_received: [0, 20, 11, 0, 0, 3, 0],
            requests_received: 40,
            parse_errors: 4,
            dropped: 5,
            media_bind_failures: 1,
            media_timeouts: 2,
            server_media_silences: 3,
            calls_session_expired: 1,
            calls_max_duration: 4,
            replication_sync_timeouts: 0,
        },
        active_calls: 3,
        transactions: 7,
        servers: vec![
            ServerHealth {
                name: "asterisk-1".into(),
                addr: "127.0.0.1:5080".parse().unwrap(),
                up: true,
                active_calls: 2,
            },
            ServerHealth {
                name: "odd \"name\"\\".into(),
                addr: "[::1]:5090".parse().unwrap(),
                up: false,
                active_calls: 0,
            },
        ],
        draining: false,
        media: Some(MediaSnapshot {
            relay: RelayTotals {
                sessions: 3,
                streams: 3,
                packets_received: 1000,
                packets_relayed: 990,
                bytes_relayed: 170_280,
                ..RelayTotals::default()
            },
            anchor: AnchorMetrics {
                sdp_rewritten: 6,
                sdp_unanchored: 0,
                ports_exhausted: 0,
            },
            pairs: (6, 100),
        }),
        shell: ShellCounters {
            tcp_connections: 6,
            tcp_framing_errors: 1,
            send_errors: 9,
        },
        replication_ack_latency: None,
    }
}

#[test]
fn prometheus_text_has_every_metric_with_help_and_type() {
    let text = render_prometheus(&sample_snapshot());
    let expected_samples = [
        "tandem_calls_active 3",
        "tandem_calls_total 12",
        "tandem_calls_answered_total 10",
        "tandem_calls_failed_total 2",
        "tandem_sip_responses_sent_total{class=\"1xx\"} 12",
        "tandem_sip_responses_sent_total{class=\"2xx\"} 10",
        "tandem_sip_responses_sent_total{class=\"6xx\"} 0",
        "tandem_sip_responses_received_total{class=\"5xx\"} 3",
        "tandem_sip_requests_received_total 40",
        "tandem_sip_transactions 7",
        "tandem_sip_parse_errors_total 4",
        "tandem_sip_dropped_total 5",
        "tandem_media_server_up{server=\"asterisk-1\",address=\"127.0.0.1:5080\"} 1",
        "tandem_media_server_up{server=\"odd \\\"name\\\"\\\\\",address=\"[::1]:5090\"} 0",
        "tandem_media_server_active_calls{server=\"asterisk-1\",address=\"127.0.0.1:5080\"} 2",
        "tandem_tcp_connections 6",
        "tandem_tcp_framing_errors_total 1",
        "tandem_send_errors_total 9",
        "tandem_draining 0",
    ];
    let lines: Vec<&str> = text.lines().collect();
    for sample in expected_samples {
        assert!(lines.contains(&sample), "missing {sample:?} in\n{text}");
    }
    // Every sample's family is announced by HELP and TYPE lines before it.
    for (i, line) in lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#'))
    {
        let family = line.split(['{', ' ']).next().unwrap();
        let help = lines
            .iter()
            .position(|l| l.starts_with(&format!("# HELP {family} ")))
            .unwrap();
        let kind = lines
            .iter()
            .position(|l| l.starts_with(&format!("# TYPE {family} ")))
            .unwrap();
        assert!(
            help < kind && kind < i,
            "{family}: HELP/TYPE must precede samples"
        );
    }
    assert!(text.contains("# TYPE tandem_calls_active gauge\n"));
    assert!(text.contains("# TYPE tandem_calls_total counter\n"));
    assert!(text.ends_with('\n'));
}

#[test]
fn replication_ack_latency_is_a_histogram_in_seconds() {
    let mut latency = AckLatency::default();
    for us in [200, 900, 1_000, 40_000, 2_000_000] {
        latency.record(Duration::from_micros(us));
    }
    let snapshot = Snapshot {
        replication_ack_latency: Some(latency),
        ..sample_snapshot()
    };
    let text = render_prometheus(&snapshot);
    let name = "tandem_replication_ack_latency_seconds";
    for line in [
        format!("# TYPE {name} histogram"),
        format!("{name}_bucket{{le=\"0.00025\"}} 1"),
        format!("{name}_bucket{{le=\"0.00075\"}} 1"),
        format!("{name}_bucket{{le=\"0.001\"}} 3"),
        format!("{name}_bucket{{le=\"0.05\"}} 4"),
        format!("{name}_bucket{{le=\"1\"}} 4"),
        format!("{name}_bucket{{le=\"+Inf\"}} 5"),
        format!("{name}_sum 2.0421"),
        format!("{name}_count 5"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        !render_prometheus(&sample_snapshot()).contains(name),
        "no histogram on a node that is not active"
    );
}

/// Serves the admin endpoint on port 0; a stand-in core task answers with `sample_snapshot`
/// whose `draining` follows the returned watch sender.
async fn start_admin() -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (requests_tx, mut requests) = mpsc::channel::<AdminRequest>(4);
    let (draining_tx, draining) = watch::channel(false);
    tokio::spawn(admin::serve(listener, requests_tx));
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            match request {
                AdminRequest::Snapshot(reply) => {
                    let snapshot = Snapshot {
                        draining: *draining.borrow(),
                        ..sample_snapshot()
                    };
                    let _ = reply.send(snapshot);
                }
                AdminRequest::Calls(reply) => {
                    let _ = reply.send("[]".to_owned());
                }
                AdminRequest::Grpc(_) => {}
                AdminRequest::Call { call_id, reply } => {
                    let known = call_id == "a/b@c d";
                    let _ = reply.send(known.then(|| format!("{{\"call_id\":{call_id:?}}}")));
                }
            }
        }
    });
    (addr, draining_tx)
}

/// Sends `request` and returns (status code, headers, body) of the response.
async fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text() {
    let (addr, _draining) = start_admin().await;
    let (status, head, body) = http(addr, &get("/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert_eq!(body, render_prometheus(&sample_snapshot()));
}

#[tokio::test]
async fn health_is_ok_until_draining() {
    let (addr, draining) = start_admin().await;
    let (status, _, body) = http(addr, &get("/health")).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    draining.send(true).unwrap();
    let (status, _, body) = http(addr, &get("/health?verbose=1")).await;
    assert_eq!((status, body.as_str()), (503, "draining\n"));
}

#[tokio::test]
async fn other_requests_are_refused() {
    let (addr, _draining) = start_admin().await;
    assert_eq!(http(addr, &get("/")).await.0, 404);
    assert_eq!(
        http(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .await
            .0,
        405
    );
    assert_eq!(http(addr, "hello\r\n\r\n").await.0, 400);
    let (status, head, body) = http(addr, "HEAD /health HTTP/1.1\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(head.contains("Content-Length: 3"), "{head}");
}

#[tokio::test]
async fn calls_are_served_as_json_with_percent_decoded_call_ids() {
    let (addr, _draining) = start_admin().await;
    let (status, head, body) = http(addr, &get("/calls")).await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let (status, _, body) = http(addr, &get("/calls/a%2Fb@c%20d")).await;
    assert_eq!((status, body.as_str()), (200, "{\"call_id\":\"a/b@c d\"}"));
    assert_eq!(http(addr, &get("/calls/unknown")).await.0, 404);
}

#[tokio::test]
async fn a_stopped_core_task_makes_health_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (requests_tx, requests) = mpsc::channel::<AdminRequest>(4);
    drop(requests);
    tokio::spawn(admin::serve(listener, requests_tx));
    let (status, _, body) = http(addr, &get("/health")).await;
    assert_eq!((status, body.as_str()), (503, "stopping\n"));
}
