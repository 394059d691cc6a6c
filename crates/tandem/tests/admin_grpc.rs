//! The gRPC admin API (`tandem.admin.v1`) served by `admin_grpc::serve` on port 0, with a stand-in
//! for the core task that answers every call, asked through the generated client.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use tandem::admin::{AdminRequest, GrpcAdminRequest};
use tandem::admin_grpc;
use tandem_proto::admin::v1 as api;
use tandem_proto::admin::v1::admin_client::AdminClient;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// Answers like a standby node holding three calls; replies echo what was asked (force, enable,
/// limit) so the tests see that the request reached the core task intact.
fn answer(request: GrpcAdminRequest) {
    match request {
        GrpcAdminRequest::Status(reply) => {
            let _ = reply.send(api::StatusReply {
                node: "tandem-b".into(),
                role: api::Role::Standby as i32,
                epoch: 7,
                peer: "tandem-a".into(),
                peer_connected: true,
                synced: true,
                replication_lag_deltas: 2,
                replication_lag_ms: 4,
                active_calls: 3,
                draining: false,
                last_incident: Some(incident(1)),
                version: "0.1.0".into(),
            });
        }
        GrpcAdminRequest::Promote {
            force,
            reason,
            reply,
        } => {
            let _ = reply.send(role_reply(
                force,
                format!("promote force={force} reason={reason:?}"),
            ));
        }
        GrpcAdminRequest::Demote { reason, reply } => {
            let _ = reply.send(role_reply(true, format!("demoted reason={reason:?}")));
        }
        GrpcAdminRequest::Switchover(reply) => {
            let _ = reply.send(role_reply(false, "peer is not synced".into()));
        }
        GrpcAdminRequest::Drain { enable, reply } => {
            let _ = reply.send(api::DrainReply {
                draining: enable,
                active_calls: 3,
            });
        }
        GrpcAdminRequest::ListCalls { limit, reply } => {
            let count = if limit == 0 { 3 } else { limit.min(3) };
            let calls = (0..count)
                .map(|i| api::CallSummary {
                    call_id: format!("call-{i}@caller"),
                    state: "confirmed".into(),
                    server: "asterisk-1".into(),
                    age_seconds: f64::from(i) + 0.5,
                    agent: String::new(),
                    caller_ports: vec![20000 + 2 * i],
                    server_ports: vec![30000 + 2 * i],
                    ..api::CallSummary::default()
                })
                .collect();
            let _ = reply.send(api::ListCallsReply { calls });
        }
        GrpcAdminRequest::ListIncidents { limit, reply } => {
            let incidents = (1..=u64::from(limit)).rev().map(incident).collect();
            let _ = reply.send(api::ListIncidentsReply { incidents });
        }
    }
}

fn role_reply(ok: bool, message: String) -> api::RoleReply {
    api::RoleReply {
        ok,
        message,
        role: api::Role::Active as i32,
        epoch: 8,
    }
}

fn incident(id: u64) -> api::Incident {
    let step = |name: &str, after_ms: u64, calls: u64| api::IncidentStep {
        name: name.into(),
        at_unix_ms: 1_700_000_000_000 + after_ms,
        after_ms,
        detail: String::new(),
        calls,
    };
    api::Incident {
        id,
        kind: "takeover".into(),
        summary: format!("incident {id}"),
        steps: vec![
            step("detected", 0, 0),
            step("promoted", 120, 0),
            step("calls-resumed", 180, 3),
        ],
    }
}

/// Serves the admin API on port 0; with `core_answers` a stand-in core task answers, without it
/// the core task is already gone.
async fn start(core_answers: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (requests_tx, mut requests) = mpsc::channel(4);
    tokio::spawn(admin_grpc::serve(listener, requests_tx));
    if core_answers {
        tokio::spawn(async move {
            while let Some(request) = requests.recv().await {
                match request {
                    AdminRequest::Grpc(request) => answer(request),
                    other => panic!("unexpected admin request {other:?}"),
                }
            }
        });
    } else {
        drop(requests);
    }
    addr
}

async fn client(addr: SocketAddr) -> AdminClient<Channel> {
    AdminClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

#[tokio::test]
async fn status_is_the_core_tasks_answer() {
    let mut admin = client(start(true).await).await;
    let status = admin
        .status(api::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.node, "tandem-b");
    assert_eq!(status.role(), api::Role::Standby);
    assert_eq!((status.epoch, status.peer.as_str()), (7, "tandem-a"));
    assert!(status.peer_connected && status.synced && !status.draining);
    assert_eq!(
        (status.replication_lag_deltas, status.replication_lag_ms),
        (2, 4)
    );
    assert_eq!(status.active_calls, 3);
    let last = status.last_incident.unwrap();
    assert_eq!(last.steps.len(), 3);
    assert_eq!(last.steps[2].calls, 3);
}

#[tokio::test]
async fn role_changes_carry_their_arguments_and_refusals() {
    let mut admin = client(start(true).await).await;
    let forced = admin
        .promote(api::PromoteRequest {
            force: true,
            reason: "keepalived: MASTER of tandem".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(forced.ok);
    assert_eq!(
        forced.message,
        "promote force=true reason=\"keepalived: MASTER of tandem\""
    );
    assert_eq!((forced.role(), forced.epoch), (api::Role::Active, 8));

    let unforced = admin
        .promote(api::PromoteRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!unforced.ok);
    assert_eq!(unforced.message, "promote force=false reason=\"\"");

    let demoted = admin
        .demote(api::DemoteRequest {
            reason: "keepalived: BACKUP of tandem".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(demoted.ok);
    assert_eq!(
        demoted.message,
        "demoted reason=\"keepalived: BACKUP of tandem\""
    );

    let switchover = admin
        .switchover(api::SwitchoverRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!switchover.ok);
    assert_eq!(switchover.message, "peer is not synced");
}

#[tokio::test]
async fn drain_turns_on_and_off() {
    let mut admin = client(start(true).await).await;
    for enable in [true, false] {
        let reply = admin
            .drain(api::DrainRequest { enable })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            reply,
            api::DrainReply {
                draining: enable,
                active_calls: 3
            }
        );
    }
}

#[tokio::test]
async fn calls_and_incidents_are_listed_within_the_limit() {
    let mut admin = client(start(true).await).await;
    let all = admin
        .list_calls(api::ListCallsRequest { limit: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.calls.len(), 3);
    assert_eq!(all.calls[1].call_id, "call-1@caller");
    assert_eq!(all.calls[1].caller_ports, [20002]);
    let two = admin
        .list_calls(api::ListCallsRequest { limit: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(two.calls.len(), 2);

    let incidents = admin
        .list_incidents(api::ListIncidentsRequest { limit: 2 })
        .await
        .unwrap()
        .into_inner()
        .incidents;
    let ids: Vec<u64> = incidents.iter().map(|i| i.id).collect();
    assert_eq!(ids, [2, 1], "newest first");
}

#[tokio::test]
async fn a_stopped_core_task_makes_every_call_unavailable() {
    let mut admin = client(start(false).await).await;
    let status = admin.status(api::StatusRequest {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "stopping");
    let promote = admin
        .promote(api::PromoteRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(promote.code(), tonic::Code::Unavailable);
    let calls = admin
        .list_calls(api::ListCallsRequest { limit: 0 })
        .await
        .unwrap_err();
    assert_eq!(calls.code(), tonic::Code::Unavailable);
}
