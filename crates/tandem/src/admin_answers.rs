//! The core task's answers to the gRPC admin API (`tandem.admin.v1`): built from the `Core` and,
//! on a node of an HA pair, its role machine.

use crate::admin::GrpcAdminRequest;
use crate::ha::HaNode;
use crate::now;
use tandem_core::{CallOverview, Core};
use tandem_proto::admin::v1 as api;

/// Answers `request` for a node without a peer (`[ha]` not configured).
pub fn answer_standalone(core: &mut Core, draining: &mut bool, request: GrpcAdminRequest) {
    match request {
        GrpcAdminRequest::Status(reply) => {
            let _ = reply.send(api::StatusReply {
                node: "standalone".to_owned(),
                role: api::Role::Standalone as i32,
                active_calls: core.active_calls() as u64,
                draining: *draining,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..api::StatusReply::default()
            });
        }
        GrpcAdminRequest::Promote { reply, .. }
        | GrpcAdminRequest::Demote { reply, .. }
        | GrpcAdminRequest::Switchover(reply) => {
            let _ = reply.send(no_peer());
        }
        GrpcAdminRequest::Drain { enable, reply } => {
            let _ = reply.send(drain(core, draining, enable));
        }
        GrpcAdminRequest::ListCalls { limit, reply } => {
            let _ = reply.send(list_calls(core, limit));
        }
        GrpcAdminRequest::ListIncidents { reply, .. } => {
            let _ = reply.send(api::ListIncidentsReply::default());
        }
    }
}

fn no_peer() -> api::RoleReply {
    api::RoleReply {
        ok: false,
        message: "this node has no peer ([ha] is not configured)".to_owned(),
        role: api::Role::Standalone as i32,
        epoch: 0,
    }
}

/// Maintenance drain: new calls get 503 while established ones go on.
pub fn drain(core: &mut Core, draining: &mut bool, enable: bool) -> api::DrainReply {
    if enable {
        core.begin_drain(now());
    } else {
        core.end_drain(now());
    }
    *draining = enable;
    api::DrainReply {
        draining: enable,
        active_calls: core.active_calls() as u64,
    }
}

/// Every call (oldest first), at most `limit` of them when it is not 0.
pub fn list_calls(core: &Core, limit: u32) -> api::ListCallsReply {
    let mut calls = core.calls_overview(now());
    if limit > 0 {
        calls.truncate(limit as usize);
    }
    api::ListCallsReply {
        calls: calls.iter().map(call_summary).collect(),
    }
}

fn call_summary(call: &CallOverview) -> api::CallSummary {
    api::CallSummary {
        call_id: call.call_id.clone(),
        state: call.state.as_str().to_owned(),
        server: call.server.clone().unwrap_or_default(),
        age_seconds: call.age.as_secs_f64(),
        agent: String::new(),
        caller_ports: call
            .media
            .iter()
            .map(|s| u32::from(s.caller.local.rtp()))
            .collect(),
        server_ports: call
            .media
            .iter()
            .map(|s| u32::from(s.server.local.rtp()))
            .collect(),
        talk_seconds: call.talk_time().map(|t| t.as_secs_f64()),
        ends_in_seconds: call.ends_in().map(|(left, _)| left.as_secs_f64()),
        ends_by: call
            .ends_in()
            .map(|(_, why)| why.to_owned())
            .unwrap_or_default(),
    }
}

/// Answers `request` for a node of an HA pair.
pub fn answer_ha(core: &mut Core, ha: &mut HaNode, draining: &mut bool, request: GrpcAdminRequest) {
    let at = now();
    match request {
        GrpcAdminRequest::Status(reply) => {
            let _ = reply.send(ha_status(core, ha, *draining, at));
        }
        GrpcAdminRequest::Promote {
            force,
            reason,
            reply,
        } => {
            let result = ha.role_mut().promote_because(at, force, &reason);
            let _ = reply.send(role_reply(ha, result, "promotion under way"));
        }
        GrpcAdminRequest::Demote { reason, reply } => {
            let result = ha.role_mut().demote_because(at, &reason);
            let _ = reply.send(role_reply(
                ha,
                result,
                "handing the active role to the peer",
            ));
        }
        GrpcAdminRequest::Switchover(reply) => {
            let result = ha.role_mut().switchover(at);
            let _ = reply.send(role_reply(ha, result, "switchover under way"));
        }
        GrpcAdminRequest::Drain { enable, reply } => {
            let _ = reply.send(drain(core, draining, enable));
        }
        GrpcAdminRequest::ListCalls { limit, reply } => {
            let _ = reply.send(list_calls(core, limit));
        }
        GrpcAdminRequest::ListIncidents { limit, reply } => {
            let limit = if limit == 0 {
                usize::MAX
            } else {
                limit as usize
            };
            let _ = reply.send(api::ListIncidentsReply {
                incidents: ha.role().incidents().to_proto(limit),
            });
        }
    }
}

fn ha_status(core: &Core, ha: &HaNode, draining: bool, at: std::time::Instant) -> api::StatusReply {
    let status = ha.role().status();
    let (synced, lag_deltas, lag_ms) = match ha.outbox() {
        Some(outbox) => {
            let lag = outbox.lag(at);
            (
                outbox.synced(),
                lag.deltas,
                u64::try_from(lag.oldest.as_millis()).unwrap_or(u64::MAX),
            )
        }
        // A standby cut off from the active may be missing changes: not synced then.
        None => (ha.mirror().synced() && status.peer_connected, 0, 0),
    };
    api::StatusReply {
        node: ha.settings().node.clone(),
        role: status.role.to_admin() as i32,
        epoch: status.epoch,
        peer: ha.settings().peer.clone(),
        peer_connected: status.peer_connected,
        synced,
        replication_lag_deltas: lag_deltas,
        replication_lag_ms: lag_ms,
        // A standby serves no call: it reports the calls it mirrors.
        active_calls: match ha.outbox() {
            Some(_) => core.active_calls() as u64,
            None => ha.mirror().calls() as u64,
        },
        draining,
        last_incident: ha.role().incidents().latest().map(|i| i.to_proto()),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

fn role_reply(
    ha: &HaNode,
    result: Result<(), tandem_ha::RoleError>,
    accepted: &str,
) -> api::RoleReply {
    let status = ha.role().status();
    api::RoleReply {
        ok: result.is_ok(),
        message: match result {
            Ok(()) => accepted.to_owned(),
            Err(error) => error.to_string(),
        },
        role: status.role.to_admin() as i32,
        epoch: status.epoch,
    }
}
