//! Relay rewrite of realistic bodies: tandem-sdp's byte-preserving splice against the
//! `sdp-types` crate (parse into owned structs, change the same fields, serialize).
//!
//! Run: `cargo bench -p tandem-sdp` (criterion; append `-- --warm-up-time 1 --measurement-time 3`
//! or `-- --quick` for a shorter run). Before the timings it prints, per body and per
//! implementation, the heap allocations of one rewrite, counted with a counting global allocator,
//! and checks that both implementations wrote the same bytes.
//!
//! Both sides do the same work: rewrite every session- and media-level `c=` (hold addresses
//! kept), the `m=` ports, the `a=rtcp` port and address, and bump the `o=` session version. The
//! figures and the choice they led to are in the crate doc (`src/lib.rs`, "Choice").

use std::alloc::System;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tandem_sdp::{rewrite, MediaPorts, Plan, Sdp};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The relay address written into every rewritten body.
const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));

/// (name, body): an Asterisk G.711 answer, a WebRTC-style audio+video offer, a hold re-INVITE.
const BODIES: [(&str, &[u8]); 3] = [
    (
        "asterisk_answer",
        include_bytes!("bodies/asterisk_answer.sdp"),
    ),
    ("webrtc_offer", include_bytes!("bodies/webrtc_offer.sdp")),
    ("hold_reinvite", include_bytes!("bodies/hold_reinvite.sdp")),
];

/// The relay plan: [`RELAY`] and ports 30000, 30002, ... for the sections; `o=` version + 1.
fn relay_plan(body: &[u8]) -> Plan {
    let sections = Sdp::parse(body).expect("bench body parses").media().len();
    Plan {
        connection: Some(RELAY),
        media: (0..sections)
            .map(|i| {
                Some(MediaPorts {
                    rtp: 30000 + 2 * i as u16,
                    rtcp: None,
                })
            })
            .collect(),
        origin_version: None,
    }
}

/// (a) tandem-sdp: index the body, splice the changed tokens.
fn with_tandem(body: &Bytes, plan: &Plan) -> Bytes {
    rewrite(body, plan).expect("tandem-sdp rewrites").body
}

/// (b) sdp-types: parse into a `Session`, change the same fields, serialize.
fn with_sdp_types(body: &[u8], plan: &Plan) -> Vec<u8> {
    let mut session = sdp_types::Session::parse(body).expect("sdp-types parses");
    session.origin.sess_version = match plan.origin_version {
        Some(version) => version,
        None => session.origin.sess_version + 1,
    };
    if let (Some(ip), Some(connection)) = (plan.connection, session.connection.as_mut()) {
        relay_connection(connection, ip);
    }
    for (media, ports) in session.medias.iter_mut().zip(&plan.media) {
        if media.port == 0 {
            continue;
        }
        if let Some(ip) = plan.connection {
            media
                .connections
                .iter_mut()
                .for_each(|connection| relay_connection(connection, ip));
        }
        let Some(ports) = ports else { continue };
        let old_port = media.port;
        media.port = ports.rtp;
        for attribute in &mut media.attributes {
            if attribute.attribute == "rtcp" {
                if let Some(value) = &attribute.value {
                    attribute.value = Some(relay_rtcp(value, old_port, ports, plan.connection));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    session.write(&mut out).expect("writing to a Vec");
    out
}

/// The relay address in a `c=` line, unless it is a hold address.
fn relay_connection(connection: &mut sdp_types::Connection, ip: IpAddr) {
    let hold = connection
        .try_address()
        .is_ok_and(|address| address.ip.is_unspecified());
    if !hold {
        connection.set_connection_ip_address(ip);
    }
}

/// `a=rtcp:<port> [IN IP4 <addr>]` with the relay port (RTP port when it was multiplexed on the
/// `m=` port, else RTP + 1) and the relay address.
fn relay_rtcp(value: &str, old_rtp: u16, ports: &MediaPorts, ip: Option<IpAddr>) -> String {
    let (port, address) = value.split_once(' ').unwrap_or((value, ""));
    let rtcp = ports.rtcp.unwrap_or(if port.parse() == Ok(old_rtp) {
        ports.rtp
    } else {
        ports.rtp.saturating_add(1)
    });
    let hold = address
        .rsplit(' ')
        .next()
        .and_then(|address| address.parse::<IpAddr>().ok())
        .is_some_and(|address| address.is_unspecified());
    match ip {
        Some(IpAddr::V4(v4)) if !address.is_empty() && !hold => format!("{rtcp} IN IP4 {v4}"),
        Some(IpAddr::V6(v6)) if !address.is_empty() && !hold => format!("{rtcp} IN IP6 {v6}"),
        _ if address.is_empty() => rtcp.to_string(),
        _ => format!("{rtcp} {address}"),
    }
}

fn allocations(label: &str, f: impl Fn()) {
    f(); // warm any lazily initialised state
    let region = Region::new(GLOBAL);
    f();
    let stats = region.change();
    println!(
        "allocations: {label}: {} (+{} reallocations, {} bytes)",
        stats.allocations, stats.reallocations, stats.bytes_allocated
    );
}

fn bench(c: &mut Criterion) {
    let cases: Vec<(&str, Bytes, Plan)> = BODIES
        .iter()
        .map(|&(name, body)| (name, Bytes::from_static(body), relay_plan(body)))
        .collect();

    for (name, body, plan) in &cases {
        let ours = with_tandem(body, plan);
        let theirs = with_sdp_types(body, plan);
        println!(
            "{name} ({} bytes): both implementations write the same bytes: {}",
            body.len(),
            ours[..] == theirs[..]
        );
        allocations(&format!("tandem-sdp {name}"), || {
            drop(black_box(with_tandem(body, plan)))
        });
        allocations(&format!("sdp-types {name}"), || {
            drop(black_box(with_sdp_types(body, plan)))
        });
    }

    let mut group = c.benchmark_group("relay rewrite");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, body, plan) in &cases {
        group.bench_with_input(BenchmarkId::new("tandem-sdp", name), body, |b, body| {
            b.iter(|| with_tandem(black_box(body), plan))
        });
        group.bench_with_input(BenchmarkId::new("sdp-types", name), body, |b, body| {
            b.iter(|| with_sdp_types(black_box(body), plan))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
