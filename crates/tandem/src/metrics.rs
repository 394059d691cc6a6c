//! What `GET /metrics` exports: a [`Snapshot`] the core task takes on request, rendered in the
//! Prometheus text exposition format (version 0.0.4).

use std::fmt::{Display, Write};
use tandem_core::media::AnchorMetrics;
use tandem_core::{Metrics, ServerHealth};
use tandem_ha::outbox::AckLatency;
use tandem_relay::RelayTotals;

/// Content-Type of [`render_prometheus`]'s output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The state of the node at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The core's counters.
    pub core: Metrics,
    /// Calls in progress.
    pub active_calls: usize,
    /// Live SIP transactions.
    pub transactions: usize,
    /// Health of each media server.
    pub servers: Vec<ServerHealth>,
    /// Whether a graceful shutdown is under way.
    pub draining: bool,
    /// What the I/O shell itself counts.
    pub shell: ShellCounters,
    /// Media anchoring; `None` when it is off.
    pub media: Option<MediaSnapshot>,
    /// How long the standby took to acknowledge each change, since this node became active;
    /// `None` on a node that is not active.
    pub replication_ack_latency: Option<AckLatency>,
}

/// The media relay's and the anchoring's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaSnapshot {
    /// The data plane's totals.
    pub relay: RelayTotals,
    /// SDP anchoring by the core.
    pub anchor: AnchorMetrics,
    /// Relay port pairs (in use, free).
    pub pairs: (usize, usize),
}

/// Counters of the I/O shell (not seen by the core).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShellCounters {
    /// Open or opening TCP connections.
    pub tcp_connections: usize,
    /// TCP connections closed because their byte stream could not be framed into SIP messages.
    pub tcp_framing_errors: u64,
    /// Sends that failed (reported to the core as transport errors).
    pub send_errors: u64,
}

/// Renders every metric, with `# HELP` and `# TYPE` lines.
pub fn render_prometheus(s: &Snapshot) -> String {
    let mut out = Exposition::default();
    let m = &s.core;
    out.single(
        "tandem_calls_active",
        "gauge",
        "Calls in progress.",
        s.active_calls,
    );
    out.single(
        "tandem_calls_total",
        "counter",
        "Calls created by a caller's INVITE.",
        m.calls_total,
    );
    out.single(
        "tandem_calls_answered_total",
        "counter",
        "Calls answered (2xx relayed to the caller).",
        m.calls_answered_total,
    );
    out.single(
        "tandem_calls_failed_total",
        "counter",
        "Calls that ended without being answered.",
        m.calls_failed_total,
    );
    out.by_class(
        "tandem_sip_responses_sent_total",
        "SIP responses sent, by status class.",
        &m.responses_sent,
    );
    out.by_class(
        "tandem_sip_responses_received_total",
        "SIP responses received, by status class.",
        &m.responses_received,
    );
    out.single(
        "tandem_sip_requests_received_total",
        "counter",
        "SIP requests received.",
        m.requests_received,
    );
    out.single(
        "tandem_sip_transactions",
        "gauge",
        "Live SIP transactions.",
        s.transactions,
    );
    out.single(
        "tandem_sip_parse_errors_total",
        "counter",
        "Messages that could not be parsed.",
        m.parse_errors,
    );
    out.single(
        "tandem_sip_dropped_total",
        "counter",
        "Messages dropped (stray responses, loops, over capacity).",
        m.dropped,
    );
    out.per_server(
        "tandem_media_server_up",
        "1 when the media server passes its health probes.",
        &s.servers,
        |h| u8::from(h.up),
    );
    out.per_server(
        "tandem_media_server_active_calls",
        "Calls in progress on the media server.",
        &s.servers,
        |h| h.active_calls,
    );
    out.single(
        "tandem_tcp_connections",
        "gauge",
        "Open or opening SIP TCP connections.",
        s.shell.tcp_connections,
    );
    out.single(
        "tandem_tcp_framing_errors_total",
        "counter",
        "TCP connections closed because their stream was not valid SIP.",
        s.shell.tcp_framing_errors,
    );
    out.single(
        "tandem_send_errors_total",
        "counter",
        "Sends that failed (ICMP errors, refused or broken connections).",
        s.shell.send_errors,
    );
    out.single(
        "tandem_replication_sync_timeouts_total",
        "counter",
        "Answers sent without the standby's confirmation because it took longer than the sync wait.",
        m.replication_sync_timeouts,
    );
    if let Some(latency) = &s.replication_ack_latency {
        out.histogram(
            "tandem_replication_ack_latency_seconds",
            "Time from a change being queued for the standby to the standby's cumulative ack \
             covering it, since this node became active.",
            latency,
        );
    }
    if let Some(media) = &s.media {
        render_media(&mut out, m, media);
    }
    out.single(
        "tandem_draining",
        "gauge",
        "1 while a graceful shutdown is under way.",
        u8::from(s.draining),
    );
    out.text
}

fn render_media(out: &mut Exposition, m: &Metrics, media: &MediaSnapshot) {
    let r = &media.relay;
    let counters: [(&str, &str, u64); 16] = [
        (
            "tandem_media_packets_received_total",
            "Datagrams read from relay ports.",
            r.packets_received,
        ),
        (
            "tandem_media_packets_relayed_total",
            "RTP and RTCP packets relayed.",
            r.packets_relayed,
        ),
        (
            "tandem_media_bytes_relayed_total",
            "Bytes of relayed packets.",
            r.bytes_relayed,
        ),
        (
            "tandem_media_rtcp_relayed_total",
            "RTCP packets relayed.",
            r.rtcp_relayed,
        ),
        (
            "tandem_media_dropped_stray_total",
            "Packets refused by a latch (not from the signalled or latched source).",
            r.dropped_stray,
        ),
        (
            "tandem_media_dropped_no_destination_total",
            "Packets for a side with no known address (on hold).",
            r.dropped_no_destination,
        ),
        (
            "tandem_media_dropped_malformed_total",
            "Packets that are neither RTP nor RTCP.",
            r.dropped_malformed,
        ),
        (
            "tandem_media_dropped_stale_total",
            "Late packets from a source replaced by a switch.",
            r.dropped_stale,
        ),
        (
            "tandem_media_send_errors_total",
            "Packets the kernel refused to send.",
            r.send_errors,
        ),
        (
            "tandem_media_inactivity_reports_total",
            "Sides reported silent for the inactivity timeout.",
            r.inactivity_reports,
        ),
        (
            "tandem_calls_session_expired_total",
            "Calls Tandem ended because their session timer (RFC 4028) ran out without a refresh.",
            m.calls_session_expired,
        ),
        (
            "tandem_calls_max_duration_total",
            "Calls Tandem ended at sip.max_call_duration.",
            m.calls_max_duration,
        ),
        (
            "tandem_media_timeouts_total",
            "Calls ended because the caller's media stopped.",
            m.media_timeouts,
        ),
        (
            "tandem_media_server_silences_total",
            "Calls whose media server went silent while the caller talked.",
            m.server_media_silences,
        ),
        (
            "tandem_media_bind_failures_total",
            "Relay ports that could not be bound.",
            m.media_bind_failures,
        ),
        (
            "tandem_sdp_unanchored_total",
            "SDP bodies forwarded unchanged because they could not be read.",
            media.anchor.sdp_unanchored,
        ),
    ];
    for (name, help, value) in counters {
        out.single(name, "counter", help, value);
    }
    out.single(
        "tandem_sdp_rewritten_total",
        "counter",
        "SDP bodies moved onto relay ports.",
        media.anchor.sdp_rewritten,
    );
    out.single(
        "tandem_media_ports_exhausted_total",
        "counter",
        "Offers refused because no relay port pair was free.",
        media.anchor.ports_exhausted,
    );
    out.single(
        "tandem_media_sessions",
        "gauge",
        "Calls with relay sockets.",
        r.sessions,
    );
    out.single(
        "tandem_media_streams",
        "gauge",
        "Media streams with relay sockets.",
        r.streams,
    );
    out.single(
        "tandem_media_port_pairs_in_use",
        "gauge",
        "Relay port pairs allocated.",
        media.pairs.0,
    );
    out.single(
        "tandem_media_port_pairs_free",
        "gauge",
        "Relay port pairs free.",
        media.pairs.1,
    );
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        for (i, (label, label_value)) in labels.iter().enumerate() {
            self.text.push(if i == 0 { '{' } else { ',' });
            let _ = write!(self.text, "{label}=\"{}\"", escape_label(label_value));
        }
        if !labels.is_empty() {
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram in seconds: cumulative `_bucket` samples, `_sum`, `_count`.
    fn histogram(&mut self, name: &str, help: &str, latency: &AckLatency) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, count) in latency.cumulative() {
            let le = bound.map_or_else(|| "+Inf".to_owned(), |b| b.as_secs_f64().to_string());
            self.sample(&bucket, &[("le", &le)], count);
        }
        self.sample(&format!("{name}_sum"), &[], latency.sum().as_secs_f64());
        self.sample(&format!("{name}_count"), &[], latency.count());
    }

    /// A counter with one sample per status class 1xx..6xx (`counts[1..=6]`).
    fn by_class(&mut self, name: &str, help: &str, counts: &[u64; 7]) {
        self.family(name, "counter", help);
        for (class, count) in counts.iter().enumerate().skip(1) {
            self.sample(name, &[("class", &format!("{class}xx"))], count);
        }
    }

    fn per_server<V: Display>(
        &mut self,
        name: &str,
        help: &str,
        servers: &[ServerHealth],
        value: impl Fn(&ServerHealth) -> V,
    ) {
        self.family(name, "gauge", help);
        for server in servers {
            let address = server.addr.to_string();
            self.sample(
                name,
                &[("server", &server.name), ("address", &address)],
                value(server),
            );
        }
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}
