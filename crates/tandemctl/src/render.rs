//! Tandem's answers as text for operators and as JSON for scripts.

use serde_json::{json, Value};
use std::fmt::Write as _;
use tandem_proto::admin::v1 as api;

/// Width of the label column of `status`.
const LABEL_WIDTH: usize = 13;

/// The role's lower-case name (`active`, `standby`, `standalone`, `unspecified`).
pub fn role_name(role: i32) -> String {
    match api::Role::try_from(role) {
        Ok(api::Role::Active) => "active".to_owned(),
        Ok(api::Role::Standby) => "standby".to_owned(),
        Ok(api::Role::Standalone) => "standalone".to_owned(),
        Ok(api::Role::Unspecified) => "unspecified".to_owned(),
        Err(_) => format!("unknown({role})"),
    }
}

/// `status` as aligned `label value` lines, the last incident's timeline below.
pub fn status_text(status: &api::StatusReply) -> String {
    let standalone = status.role == api::Role::Standalone as i32;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut lines: Vec<(&str, String)> = vec![
        ("node", or_dash(&status.node)),
        ("role", role_name(status.role)),
        ("epoch", status.epoch.to_string()),
    ];
    if standalone {
        lines.push(("peer", "none (no [ha] configured)".to_owned()));
    } else {
        let link = if status.peer_connected {
            "connected"
        } else {
            "not connected"
        };
        lines.push(("peer", format!("{} ({link})", or_dash(&status.peer))));
        lines.push(("synced", yes_no(status.synced).to_owned()));
        lines.push((
            "replication",
            format!(
                "lag {} deltas, {} ms",
                status.replication_lag_deltas, status.replication_lag_ms
            ),
        ));
    }
    lines.push(("calls", status.active_calls.to_string()));
    lines.push(("draining", yes_no(status.draining).to_owned()));
    lines.push(("version", or_dash(&status.version)));
    let mut text = String::new();
    for (label, value) in lines {
        let _ = writeln!(text, "{label:<LABEL_WIDTH$} {value}");
    }
    match &status.last_incident {
        Some(incident) => {
            let _ = write!(
                text,
                "{:<LABEL_WIDTH$} {}",
                "last incident",
                incident_text(incident)
            );
        }
        None => {
            let _ = writeln!(text, "{:<LABEL_WIDTH$} none", "last incident");
        }
    }
    text
}

/// A role change's outcome, e.g. `promoted (role active, epoch 8)`.
pub fn role_text(reply: &api::RoleReply) -> String {
    let message = if reply.message.is_empty() {
        if reply.ok {
            "done"
        } else {
            "refused"
        }
    } else {
        &reply.message
    };
    format!(
        "{message} (role {}, epoch {})\n",
        role_name(reply.role),
        reply.epoch
    )
}

/// `draining on, 3 active calls`.
pub fn drain_text(reply: &api::DrainReply) -> String {
    let state = if reply.draining { "on" } else { "off" };
    format!("draining {state}, {} active calls\n", reply.active_calls)
}

/// Calls as a table with a header line, or `(no calls)`.
pub fn calls_text(reply: &api::ListCallsReply) -> String {
    if reply.calls.is_empty() {
        return "(no calls)\n".to_owned();
    }
    let header = [
        "CALL-ID",
        "STATE",
        "SERVER",
        "AGE",
        "TALK",
        "ENDS-IN",
        "AGENT",
        "CALLER-PORTS",
        "SERVER-PORTS",
    ];
    let rows: Vec<[String; 9]> = reply
        .calls
        .iter()
        .map(|call| {
            [
                call.call_id.clone(),
                or_dash(&call.state),
                or_dash(&call.server),
                age(call.age_seconds),
                call.talk_seconds.map_or_else(|| "-".to_owned(), age),
                call.ends_in_seconds.map_or_else(|| "-".to_owned(), age),
                or_dash(&call.agent),
                ports(&call.caller_ports),
                ports(&call.server_ports),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Incidents newest first, each as a timeline, or `(no incidents)`.
pub fn incidents_text(reply: &api::ListIncidentsReply) -> String {
    if reply.incidents.is_empty() {
        return "(no incidents)\n".to_owned();
    }
    let timelines: Vec<String> = reply.incidents.iter().map(incident_text).collect();
    timelines.join("\n")
}

/// `#3 takeover  2023-11-14 22:13:20.000 UTC  summary`, then one line per step with its offset
/// from the first step.
fn incident_text(incident: &api::Incident) -> String {
    let mut heading = format!("#{} {}", incident.id, or_dash(&incident.kind));
    if let Some(first) = incident.steps.first().filter(|s| s.at_unix_ms > 0) {
        let _ = write!(heading, "  {}", utc(first.at_unix_ms));
    }
    if !incident.summary.is_empty() {
        let _ = write!(heading, "  {}", incident.summary);
    }
    let offsets: Vec<String> = incident
        .steps
        .iter()
        .map(|s| format!("+{} ms", s.after_ms))
        .collect();
    let offset_width = offsets.iter().map(String::len).max().unwrap_or(0);
    let name_width = incident
        .steps
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = heading + "\n";
    for (step, offset) in incident.steps.iter().zip(offsets) {
        let mut line = format!("  {offset:>offset_width$}  {:<name_width$}", step.name);
        if step.calls > 0 {
            let _ = write!(line, "  {} calls", step.calls);
        }
        if !step.detail.is_empty() {
            let _ = write!(line, "  {}", step.detail);
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

pub fn status_json(status: &api::StatusReply) -> Value {
    json!({
        "node": status.node,
        "role": role_name(status.role),
        "epoch": status.epoch,
        "peer": status.peer,
        "peer_connected": status.peer_connected,
        "synced": status.synced,
        "replication_lag_deltas": status.replication_lag_deltas,
        "replication_lag_ms": status.replication_lag_ms,
        "active_calls": status.active_calls,
        "draining": status.draining,
        "last_incident": status.last_incident.as_ref().map(incident_json),
        "version": status.version,
    })
}

pub fn role_json(reply: &api::RoleReply) -> Value {
    json!({
        "ok": reply.ok,
        "message": reply.message,
        "role": role_name(reply.role),
        "epoch": reply.epoch,
    })
}

pub fn drain_json(reply: &api::DrainReply) -> Value {
    json!({ "draining": reply.draining, "active_calls": reply.active_calls })
}

pub fn calls_json(reply: &api::ListCallsReply) -> Value {
    let calls: Vec<Value> = reply
        .calls
        .iter()
        .map(|call| {
            json!({
                "call_id": call.call_id,
                "state": call.state,
                "server": call.server,
                "age_seconds": call.age_seconds,
                "talk_seconds": call.talk_seconds,
                "ends_in_seconds": call.ends_in_seconds,
                "ends_by": (!call.ends_by.is_empty()).then_some(&call.ends_by),
                "agent": call.agent,
                "caller_ports": call.caller_ports,
                "server_ports": call.server_ports,
            })
        })
        .collect();
    json!({ "calls": calls })
}

pub fn incidents_json(reply: &api::ListIncidentsReply) -> Value {
    let incidents: Vec<Value> = reply.incidents.iter().map(incident_json).collect();
    json!({ "incidents": incidents })
}

fn incident_json(incident: &api::Incident) -> Value {
    let steps: Vec<Value> = incident
        .steps
        .iter()
        .map(|step| {
            json!({
                "name": step.name,
                "at_unix_ms": step.at_unix_ms,
                "after_ms": step.after_ms,
                "detail": step.detail,
                "calls": step.calls,
            })
        })
        .collect();
    json!({
        "id": incident.id,
        "kind": incident.kind,
        "summary": incident.summary,
        "steps": steps,
    })
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

fn ports(ports: &[u32]) -> String {
    if ports.is_empty() {
        return "-".to_owned();
    }
    let ports: Vec<String> = ports.iter().map(u32::to_string).collect();
    ports.join(",")
}

/// `12.5s` under a minute, else `4m05s` or `1h02m03s`.
fn age(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".to_owned();
    }
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let whole = seconds as u64;
    let (hours, minutes, secs) = (whole / 3600, whole % 3600 / 60, whole % 60);
    if hours > 0 {
        format!("{hours}h{minutes:02}m{secs:02}s")
    } else {
        format!("{minutes}m{secs:02}s")
    }
}

/// `2023-11-14 22:13:20.000 UTC` for a Unix time in milliseconds.
fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        unix_ms % 1000
    )
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian calendar; Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn takeover() -> api::Incident {
        let step = |name: &str, after_ms: u64, calls: u64, detail: &str| api::IncidentStep {
            name: name.into(),
            at_unix_ms: 1_700_000_000_000 + after_ms,
            after_ms,
            detail: detail.into(),
            calls,
        };
        api::Incident {
            id: 3,
            kind: "takeover".into(),
            summary: "tandem-a stopped answering".into(),
            steps: vec![
                step("detected", 0, 0, "3 heartbeats missed"),
                step("promoted", 95, 0, "epoch 8"),
                step("calls-resumed", 1180, 412, ""),
            ],
        }
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20.123 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(4.25), "4.2s");
        assert_eq!(age(245.0), "4m05s");
        assert_eq!(age(3723.9), "1h02m03s");
        assert_eq!(age(f64::NAN), "-");
    }

    #[test]
    fn an_incident_is_a_timeline_with_offsets() {
        assert_eq!(
            incident_text(&takeover()),
            "#3 takeover  2023-11-14 22:13:20.000 UTC  tandem-a stopped answering\n\
             \x20    +0 ms  detected       3 heartbeats missed\n\
             \x20   +95 ms  promoted       epoch 8\n\
             \x20 +1180 ms  calls-resumed  412 calls\n"
        );
    }

    #[test]
    fn status_of_an_ha_node() {
        let status = api::StatusReply {
            node: "tandem-b".into(),
            role: api::Role::Active as i32,
            epoch: 8,
            peer: "tandem-a".into(),
            peer_connected: false,
            synced: false,
            replication_lag_deltas: 0,
            replication_lag_ms: 0,
            active_calls: 412,
            draining: false,
            last_incident: Some(takeover()),
            version: "0.1.0".into(),
        };
        let text = status_text(&status);
        assert!(
            text.starts_with("node          tandem-b\nrole          active\n"),
            "{text}"
        );
        assert!(
            text.contains("peer          tandem-a (not connected)\n"),
            "{text}"
        );
        assert!(
            text.contains("replication   lag 0 deltas, 0 ms\n"),
            "{text}"
        );
        assert!(text.contains("last incident #3 takeover"), "{text}");
        assert!(
            text.ends_with("+1180 ms  calls-resumed  412 calls\n"),
            "{text}"
        );
        let json = status_json(&status);
        assert_eq!(json["role"], "active");
        assert_eq!(json["last_incident"]["steps"][2]["calls"], 412);
    }

    #[test]
    fn status_of_a_standalone_node_has_no_replication() {
        let status = api::StatusReply {
            role: api::Role::Standalone as i32,
            ..api::StatusReply::default()
        };
        let text = status_text(&status);
        assert!(text.contains("peer          none"), "{text}");
        assert!(!text.contains("replication"), "{text}");
        assert!(text.ends_with("last incident none\n"), "{text}");
        assert_eq!(status_json(&status)["last_incident"], Value::Null);
    }

    #[test]
    fn calls_are_an_aligned_table() {
        let call = |id: &str, ports: Vec<u32>| api::CallSummary {
            call_id: id.into(),
            state: "confirmed".into(),
            server: "asterisk-1".into(),
            age_seconds: 75.0,
            agent: String::new(),
            caller_ports: ports.clone(),
            server_ports: ports.iter().map(|p| p + 10_000).collect(),
            talk_seconds: Some(71.5),
            ends_in_seconds: Some(1728.5),
            ends_by: "session-expires".into(),
        };
        let ringing = api::CallSummary {
            state: "trying".into(),
            talk_seconds: None,
            ends_in_seconds: None,
            ends_by: String::new(),
            ..call("b@x", vec![20006])
        };
        let reply = api::ListCallsReply {
            calls: vec![
                call("a@x", vec![20000]),
                call("long-call-id@x", vec![20002, 20004]),
                ringing,
            ],
        };
        assert_eq!(
            calls_text(&reply),
            "CALL-ID         STATE      SERVER      AGE    TALK   ENDS-IN  AGENT  CALLER-PORTS  SERVER-PORTS\n\
             a@x             confirmed  asterisk-1  1m15s  1m11s  28m48s   -      20000         30000\n\
             long-call-id@x  confirmed  asterisk-1  1m15s  1m11s  28m48s   -      20002,20004   30002,30004\n\
             b@x             trying     asterisk-1  1m15s  -      -        -      20006         30006\n"
        );
        assert_eq!(calls_text(&api::ListCallsReply::default()), "(no calls)\n");
        let json = calls_json(&reply);
        assert_eq!(json["calls"][1]["caller_ports"][1], 20004);
        assert_eq!(json["calls"][0]["ends_by"], "session-expires");
        assert_eq!(json["calls"][2]["talk_seconds"], Value::Null);
        assert_eq!(json["calls"][2]["ends_by"], Value::Null);
    }

    #[test]
    fn role_and_drain_lines() {
        let reply = api::RoleReply {
            ok: false,
            message: String::new(),
            role: 9,
            epoch: 2,
        };
        assert_eq!(role_text(&reply), "refused (role unknown(9), epoch 2)\n");
        assert_eq!(role_json(&reply)["ok"], false);
        let drain = api::DrainReply {
            draining: true,
            active_calls: 4,
        };
        assert_eq!(drain_text(&drain), "draining on, 4 active calls\n");
    }
}
