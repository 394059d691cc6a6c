//! Properties: no panic on any input; an identity plan leaves the body byte-identical; a relay
//! plan lands where it says.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use bytes::Bytes;
use proptest::prelude::*;
use tandem_sdp::{rewrite, MediaPorts, Plan, Sdp};

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

fn any_plan() -> impl Strategy<Value = Plan> {
    (
        proptest::option::of(any_ip()),
        proptest::collection::vec(
            proptest::option::of((any::<u16>(), proptest::option::of(any::<u16>()))),
            0..4,
        ),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(connection, media, origin_version)| Plan {
            connection,
            media: media
                .into_iter()
                .map(|m| m.map(|(rtp, rtcp)| MediaPorts { rtp, rtcp }))
                .collect(),
            origin_version,
        })
}

/// Lines that look like SDP, to get past the first checks more often than random bytes do.
fn sdp_like_body() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just("o=- 1 2 IN IP4 10.0.0.1".to_string()),
        "o=[ -~]{0,30}",
        "m=(audio|video) [0-9/]{0,8} [ -~]{0,12}",
        "c=IN IP[46]{1} [0-9a-f.:/]{0,20}",
        "c=[ -~]{0,20}",
        "a=rtcp:[0-9]{0,6}( IN IP4 [0-9.]{0,15})?",
        "a=(rtcp-mux|sendonly|recvonly|inactive|sendrecv)",
        "[a-z]=[ -~]{0,20}",
        "[ -~]{0,10}",
    ];
    (
        proptest::collection::vec(line, 0..16),
        prop_oneof![Just("\r\n"), Just("\n")],
    )
        .prop_map(|(lines, eol)| lines.join(eol).into_bytes())
}

/// A well-formed body in Tandem's canonical spelling, and the plan that restates it.
fn canonical_body() -> impl Strategy<Value = (Vec<u8>, Plan)> {
    let section = (
        prop_oneof![Just("audio"), Just("video")],
        1u16..,
        proptest::option::of((any::<u16>(), any::<bool>())),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec("x-[a-z]{1,8}(:[ -~]{0,20})?", 0..3),
    );
    (
        any_ip(),
        0u64..u64::MAX,
        any::<bool>(),
        proptest::collection::vec(section, 0..4),
        prop_oneof![Just("\r\n"), Just("\n")],
    )
        .prop_map(|(ip, version, session_c, sections, eol)| {
            let kind = if ip.is_ipv4() { "IP4" } else { "IP6" };
            let mut lines = vec![
                "v=0".to_string(),
                format!("o=- 42 {version} IN {kind} {ip}"),
                "s=-".to_string(),
            ];
            if session_c {
                lines.push(format!("c=IN {kind} {ip}"));
            }
            lines.push("t=0 0".to_string());
            let mut plan = Plan {
                connection: Some(ip),
                media: Vec::new(),
                origin_version: None,
            };
            for (media, port, rtcp, mux, media_c, extra) in sections {
                lines.push(format!("m={media} {port} RTP/AVP 0 8"));
                if media_c || !session_c {
                    lines.push(format!("c=IN {kind} {ip}"));
                }
                if let Some((rtcp_port, with_address)) = rtcp {
                    if with_address {
                        lines.push(format!("a=rtcp:{rtcp_port} IN {kind} {ip}"));
                    } else {
                        lines.push(format!("a=rtcp:{rtcp_port}"));
                    }
                }
                if mux {
                    lines.push("a=rtcp-mux".to_string());
                }
                lines.extend(extra.into_iter().map(|attribute| format!("a={attribute}")));
                plan.media.push(Some(MediaPorts {
                    rtp: port,
                    rtcp: rtcp.map(|(p, _)| p),
                }));
            }
            let mut body = lines.join(eol);
            body.push_str(eol);
            (body.into_bytes(), plan)
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), plan in any_plan()) {
        let body = Bytes::from(body);
        let _ = Sdp::parse(&body);
        let _ = rewrite(&body, &plan);
    }

    #[test]
    fn sdp_like_bytes_never_panic(body in sdp_like_body(), plan in any_plan()) {
        let body = Bytes::from(body);
        if let Ok(sdp) = Sdp::parse(&body) {
            let _ = sdp.rewrite(&plan);
        }
        let _ = rewrite(&body, &plan);
    }

    #[test]
    fn restating_plan_leaves_body_identical((body, plan) in canonical_body()) {
        let body = Bytes::from(body);
        let before = Sdp::parse(&body).unwrap().origin_version();
        let out = rewrite(&body, &plan).unwrap();
        prop_assert_eq!(&out.body, &body);
        prop_assert!(!out.changed);
        prop_assert_eq!(out.version, before);
    }

    #[test]
    fn relay_plan_lands_where_it_says(
        (body, original) in canonical_body(),
        relay in any_ip(),
        base in 1u16..60000,
    ) {
        prop_assume!(original.connection.is_some_and(|ip| !ip.is_unspecified()), "hold is kept");
        let body = Bytes::from(body);
        let plan = Plan {
            connection: Some(relay),
            media: (0..original.media.len())
                .map(|i| Some(MediaPorts { rtp: base + 2 * i as u16, rtcp: None }))
                .collect(),
            origin_version: None,
        };
        let out = rewrite(&body, &plan).unwrap();
        let before = Sdp::parse(&body).unwrap();
        let after = Sdp::parse(&out.body).unwrap();
        let expected_version = if out.changed { before.origin_version() + 1 } else { before.origin_version() };
        prop_assert_eq!(after.origin_version(), expected_version);
        prop_assert_eq!(out.version, expected_version);
        prop_assert_eq!(after.lines().len(), before.lines().len());
        for (i, media) in after.media().iter().enumerate() {
            prop_assert_eq!(media.port, base + 2 * i as u16);
            prop_assert_eq!(after.effective_connection(i).unwrap().ip, Some(relay));
            if let Some(rtcp) = &media.rtcp {
                if let Some(address) = &rtcp.address {
                    prop_assert_eq!(address.ip, Some(relay));
                }
            }
        }
    }
}
