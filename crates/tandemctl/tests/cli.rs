//! The built `tandemctl` against a stand-in Tandem (the generated `AdminServer` around a small fake
//! node) served on port 0 from a background thread: every command, text and `--json` output, and
//! the exit codes (0 done, 1 refused, 2 unreachable, 64 usage).
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Command, Output};
use tandem_proto::admin::v1 as api;
use tandem_proto::admin::v1::admin_server::{Admin, AdminServer};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// A standby node holding three calls. Promotion is refused unless forced; `stopping` makes every
/// call fail as a node shutting down does.
struct FakeNode {
    stopping: bool,
}

fn takeover(id: u64) -> api::Incident {
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
        summary: format!("takeover {id}"),
        steps: vec![
            step("detected", 0, 0),
            step("promoted", 95, 0),
            step("calls-resumed", 140, 3),
        ],
    }
}

impl FakeNode {
    fn answer<T>(&self, reply: T) -> Result<Response<T>, Status> {
        if self.stopping {
            Err(Status::unavailable("stopping"))
        } else {
            Ok(Response::new(reply))
        }
    }
}

fn role_reply(ok: bool, message: &str) -> api::RoleReply {
    api::RoleReply {
        ok,
        message: message.into(),
        role: if ok {
            api::Role::Active
        } else {
            api::Role::Standby
        } as i32,
        epoch: if ok { 8 } else { 7 },
    }
}

#[tonic::async_trait]
impl Admin for FakeNode {
    async fn status(
        &self,
        _: Request<api::StatusRequest>,
    ) -> Result<Response<api::StatusReply>, Status> {
        self.answer(api::StatusReply {
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
            last_incident: Some(takeover(2)),
            version: "0.1.0".into(),
        })
    }

    async fn promote(
        &self,
        request: Request<api::PromoteRequest>,
    ) -> Result<Response<api::RoleReply>, Status> {
        self.answer(if request.into_inner().force {
            role_reply(true, "promoted (forced)")
        } else {
            role_reply(false, "the mirror is not synced; use --force")
        })
    }

    async fn demote(
        &self,
        _: Request<api::DemoteRequest>,
    ) -> Result<Response<api::RoleReply>, Status> {
        self.answer(role_reply(false, "already standby"))
    }

    async fn switchover(
        &self,
        _: Request<api::SwitchoverRequest>,
    ) -> Result<Response<api::RoleReply>, Status> {
        self.answer(role_reply(true, "switched over"))
    }

    async fn drain(
        &self,
        request: Request<api::DrainRequest>,
    ) -> Result<Response<api::DrainReply>, Status> {
        self.answer(api::DrainReply {
            draining: request.into_inner().enable,
            active_calls: 3,
        })
    }

    async fn list_calls(
        &self,
        request: Request<api::ListCallsRequest>,
    ) -> Result<Response<api::ListCallsReply>, Status> {
        let limit = request.into_inner().limit;
        let count = if limit == 0 { 3 } else { limit.min(3) };
        let calls = (0..count)
            .map(|i| api::CallSummary {
                call_id: format!("call-{i}@caller"),
                state: "confirmed".into(),
                server: "asterisk-1".into(),
                age_seconds: 61.0 + f64::from(i),
                agent: "agent-7".into(),
                caller_ports: vec![20000 + 2 * i],
                server_ports: vec![30000 + 2 * i],
                talk_seconds: Some(60.0 + f64::from(i)),
                ends_in_seconds: Some(3600.0),
                ends_by: "max-duration".into(),
            })
            .collect();
        self.answer(api::ListCallsReply { calls })
    }

    async fn list_incidents(
        &self,
        request: Request<api::ListIncidentsRequest>,
    ) -> Result<Response<api::ListIncidentsReply>, Status> {
        let limit = u64::from(request.into_inner().limit);
        let newest = 2;
        let count = if limit == 0 {
            newest
        } else {
            limit.min(newest)
        };
        let incidents = (0..count).map(|i| takeover(newest - i)).collect();
        self.answer(api::ListIncidentsReply { incidents })
    }
}

/// Serves a fake node on a loopback port from a thread of its own (it lives as long as the test
/// process).
fn serve(node: FakeNode) -> SocketAddr {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            tonic::transport::Server::builder()
                .add_service(AdminServer::new(node))
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .unwrap();
        });
    });
    addr_rx.recv().unwrap()
}

fn node() -> SocketAddr {
    serve(FakeNode { stopping: false })
}

/// Runs tandemctl with `args` (and no `TANDEM_ADMIN` from the caller's environment).
fn tandemctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandemctl"))
        .args(args)
        .env_remove("TANDEM_ADMIN")
        .output()
        .unwrap()
}

fn at(addr: SocketAddr, args: &[&str]) -> Output {
    let addr = addr.to_string();
    let mut all = vec!["--addr", addr.as_str()];
    all.extend_from_slice(args);
    tandemctl(&all)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Asserts the exit code, showing both streams when it differs.
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

#[test]
fn status_shows_role_peer_replication_and_the_last_incident() {
    let out = at(node(), &["status"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    for line in [
        "node          tandem-b",
        "role          standby",
        "epoch         7",
        "peer          tandem-a (connected)",
        "synced        yes",
        "replication   lag 2 deltas, 4 ms",
        "calls         3",
        "draining      no",
        "last incident #2 takeover  2023-11-14 22:13:20.000 UTC  takeover 2",
        "    +0 ms  detected",
        "   +95 ms  promoted",
        "  +140 ms  calls-resumed  3 calls",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing in\n{text}"
        );
    }
}

#[test]
fn status_as_json() {
    let out = at(node(), &["status", "--json"]);
    assert_exit(&out, 0);
    let status = json(&out);
    assert_eq!(status["role"], "standby");
    assert_eq!(status["epoch"], 7);
    assert_eq!(status["peer_connected"], true);
    assert_eq!(status["replication_lag_ms"], 4);
    assert_eq!(status["last_incident"]["steps"][2]["after_ms"], 140);
}

#[test]
fn the_address_may_come_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_tandemctl"))
        .args(["status", "--json"])
        .env("TANDEM_ADMIN", node().to_string())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(json(&out)["node"], "tandem-b");
}

#[test]
fn a_refused_promotion_exits_1_with_the_reason() {
    let addr = node();
    let out = at(addr, &["promote"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("refused: the mirror is not synced; use --force"),
        "{}",
        stderr(&out)
    );
    let out = at(addr, &["--json", "promote"]);
    assert_exit(&out, 1);
    assert_eq!(json(&out)["ok"], false);

    let out = at(addr, &["promote", "--force"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "promoted (forced) (role active, epoch 8)\n");
}

#[test]
fn demote_and_switchover() {
    let addr = node();
    let out = at(addr, &["demote"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("already standby"), "{}", stderr(&out));

    let out = at(addr, &["switchover"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "switched over (role active, epoch 8)\n");
    let out = at(addr, &["switchover", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(
        json(&out),
        serde_json::json!({"ok": true, "message": "switched over", "role": "active", "epoch": 8})
    );
}

#[test]
fn drain_on_and_off() {
    let addr = node();
    let out = at(addr, &["drain", "on"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "draining on, 3 active calls\n");
    let out = at(addr, &["drain", "off", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(
        json(&out),
        serde_json::json!({"draining": false, "active_calls": 3})
    );
}

#[test]
fn calls_as_a_table_and_as_json() {
    let addr = node();
    let out = at(addr, &["calls"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("CALL-ID"), "{text}");
    assert_eq!(
        lines[2],
        "call-1@caller  confirmed  asterisk-1  1m02s  1m01s  1h00m00s  agent-7  20002         30002"
    );

    let out = at(addr, &["calls", "--limit", "1", "--json"]);
    assert_exit(&out, 0);
    let calls = json(&out);
    assert_eq!(calls["calls"].as_array().unwrap().len(), 1);
    assert_eq!(calls["calls"][0]["call_id"], "call-0@caller");
    assert_eq!(calls["calls"][0]["server_ports"][0], 30000);
    assert_eq!(calls["calls"][0]["talk_seconds"], 60.0);
    assert_eq!(calls["calls"][0]["ends_by"], "max-duration");
}

#[test]
fn incidents_as_timelines_and_as_json() {
    let addr = node();
    let out = at(addr, &["incidents"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let headings: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(headings.len(), 2, "{text}");
    assert!(
        headings[0].starts_with("#2 takeover"),
        "newest first:\n{text}"
    );

    let out = at(addr, &["incidents", "--limit=1", "--json"]);
    assert_exit(&out, 0);
    let incidents = json(&out);
    assert_eq!(incidents["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(incidents["incidents"][0]["steps"][0]["name"], "detected");
}

#[test]
fn an_unreachable_node_exits_2() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = at(closed, &["status"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(&format!("cannot reach Tandem at {closed}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_node_that_never_answers_exits_2_after_the_timeout() {
    // Accepts TCP connections (the kernel's backlog) but never speaks HTTP/2.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let started = std::time::Instant::now();
    let out = at(
        silent.local_addr().unwrap(),
        &["--timeout", "300ms", "status"],
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("no answer within 300ms"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "--timeout not honoured"
    );
}

#[test]
fn a_stopping_node_exits_2() {
    let out = at(serve(FakeNode { stopping: true }), &["drain", "on"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("stopping"), "{}", stderr(&out));
}

#[test]
fn bad_usage_exits_64_with_the_usage() {
    for args in [
        &[][..],
        &["reboot"],
        &["drain", "maybe"],
        &["calls", "--limit", "many"],
        &["demote", "--force"],
        &["--timeout", "0", "status"],
        &["--addr", "nowhere", "status"],
    ] {
        let out = tandemctl(args);
        assert_exit(&out, 64);
        assert!(
            stderr(&out).contains("Usage:"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_exits_0() {
    for args in [&["help"][..], &["--help"], &["status", "-h"]] {
        let out = tandemctl(args);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("tandemctl [--addr HOST:PORT]"));
    }
}
