//! The JSON the admin endpoint serves about calls: `/calls` lists them with their relay ports,
//! `/calls/<Call-ID>` adds what the data plane measured on each stream.

use serde_json::{json, Value};
use std::net::SocketAddr;
use tandem_core::CallOverview;
use tandem_media::session::{EndpointPlan, StreamPlan};
use tandem_relay::{CallMediaStats, StreamReport};

/// `/calls`: every call, oldest first.
pub fn calls_json(calls: &[CallOverview]) -> String {
    Value::Array(calls.iter().map(call_value).collect()).to_string()
}

/// `/calls/<Call-ID>`: the call and, when the data plane knows it, each stream side's statistics.
pub fn call_json(call: &CallOverview, stats: Option<&CallMediaStats>) -> String {
    let mut value = call_value(call);
    let reports: Vec<Value> = stats
        .map(|s| s.streams.iter().map(report_value).collect())
        .unwrap_or_default();
    value["media_stats"] = Value::Array(reports);
    value.to_string()
}

fn call_value(call: &CallOverview) -> Value {
    json!({
        "call_id": call.call_id,
        "state": call.state.as_str(),
        "server": call.server,
        "age_seconds": call.age.as_secs_f64(),
        "talk_seconds": call.talk_time().map(|t| t.as_secs_f64()),
        "ends_in_seconds": call.ends_in().map(|(left, _)| left.as_secs_f64()),
        "ends_by": call.ends_in().map(|(_, why)| why),
        "media": call.media.iter().map(stream_value).collect::<Vec<_>>(),
    })
}

fn stream_value(stream: &StreamPlan) -> Value {
    json!({
        "index": stream.index,
        "clock_rate": stream.clock_rate,
        "caller": endpoint_value(&stream.caller),
        "server": endpoint_value(&stream.server),
    })
}

fn endpoint_value(endpoint: &EndpointPlan) -> Value {
    json!({
        "relay_rtp_port": endpoint.local.rtp(),
        "relay_rtcp_port": endpoint.local.rtcp(),
        "remote_rtp": addr(endpoint.remote_rtp),
        "remote_rtcp": addr(endpoint.remote_rtcp),
        "rtcp_mux": endpoint.rtcp_mux,
    })
}

fn report_value(report: &StreamReport) -> Value {
    json!({
        "index": report.index,
        "side": report.side.as_str(),
        "relay_rtp_port": report.local_rtp_port,
        "signalled": addr(report.signalled),
        "latched": addr(report.latched),
        "packets_received": report.packets_received,
        "bytes_received": report.bytes_received,
        "packets_sent": report.packets_sent,
        "rtcp_received": report.rtcp_received,
        "lost": report.lost,
        "jitter_ms": report.jitter_ms,
        "last_packet_age_seconds": report.last_packet_age.map(|d| d.as_secs_f64()),
        "stray_dropped": report.stray_dropped,
    })
}

fn addr(addr: Option<SocketAddr>) -> Value {
    addr.map_or(Value::Null, |a| Value::String(a.to_string()))
}
