//! Golden rewrites: `tests/golden/<case>.in.sdp` rewritten with the case's plan must equal
//! `tests/golden/<case>.out.sdp` byte for byte.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::PathBuf;

use bytes::Bytes;
use tandem_sdp::{rewrite, Direction, MediaPorts, Plan, Sdp};

const RELAY_V4: &str = "192.0.2.10";
const RELAY_V6: &str = "2001:db8::10";

fn read(name: &str) -> Bytes {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn ports(rtp: u16) -> Option<MediaPorts> {
    Some(MediaPorts { rtp, rtcp: None })
}

/// Relay address plus 40000, 40002, ... for the sections.
fn relay_plan(relay: &str, sections: usize) -> Plan {
    Plan {
        connection: Some(relay.parse::<IpAddr>().unwrap()),
        media: (0..sections).map(|i| ports(40000 + 2 * i as u16)).collect(),
        origin_version: None,
    }
}

fn check(case: &str, plan: &Plan) {
    let input = read(&format!("{case}.in.sdp"));
    let expected = read(&format!("{case}.out.sdp"));
    let out = rewrite(&input, plan).unwrap();
    assert!(
        out.body == expected,
        "{case}: got\n{}\nexpected\n{}",
        String::from_utf8_lossy(&out.body),
        String::from_utf8_lossy(&expected)
    );
    assert!(out.changed, "{case}");
    let before = Sdp::parse(&input).unwrap().origin_version();
    assert_eq!(out.version, before + 1, "{case}: o= version bumped by one");
    assert_eq!(
        Sdp::parse(&out.body).unwrap().origin_version(),
        out.version,
        "{case}"
    );
}

#[test]
fn plain_audio_offer() {
    check("audio_offer", &relay_plan(RELAY_V4, 1));
}

#[test]
fn audio_and_video() {
    check("audio_video", &relay_plan(RELAY_V4, 2));
}

#[test]
fn rejected_mline_keeps_port_zero_and_its_lines() {
    check("rejected_mline", &relay_plan(RELAY_V4, 2));
    let input = read("rejected_mline.in.sdp");
    let sdp = Sdp::parse(&input).unwrap();
    assert!(sdp.media()[1].is_rejected());
}

#[test]
fn hold_with_sendonly_passes_direction_through() {
    check("hold_sendonly", &relay_plan(RELAY_V4, 1));
    let input = read("hold_sendonly.in.sdp");
    let sdp = Sdp::parse(&input).unwrap();
    assert_eq!(sdp.session_direction(), Some(Direction::SendOnly));
    assert_eq!(sdp.effective_direction(0), Some(Direction::SendOnly));
}

#[test]
fn hold_with_zero_address_keeps_zero_address() {
    check("hold_zero_address", &relay_plan(RELAY_V4, 1));
    let input = read("hold_zero_address.in.sdp");
    let sdp = Sdp::parse(&input).unwrap();
    assert!(sdp.effective_connection(0).unwrap().is_hold());
    assert_eq!(sdp.media()[0].direction, Some(Direction::Inactive));
}

#[test]
fn rtcp_mux_follows_the_rtp_port() {
    check("rtcp_mux", &relay_plan(RELAY_V4, 1));
    let input = read("rtcp_mux.in.sdp");
    assert!(Sdp::parse(&input).unwrap().media()[0].rtcp_mux);
}

#[test]
fn explicit_rtcp_port_without_address() {
    check("rtcp_port_only", &relay_plan(RELAY_V4, 1));
}

#[test]
fn explicit_rtcp_port_with_address() {
    let mut plan = relay_plan(RELAY_V4, 1);
    plan.media[0] = Some(MediaPorts {
        rtp: 40000,
        rtcp: Some(40005),
    });
    check("rtcp_with_address", &plan);
    let input = read("rtcp_with_address.in.sdp");
    let sdp = Sdp::parse(&input).unwrap();
    let rtcp = sdp.media()[0].rtcp.as_ref().unwrap();
    assert_eq!(rtcp.port, 53020);
    assert_eq!(rtcp.address.as_ref().unwrap().address, b"126.16.64.4");
}

#[test]
fn ipv6() {
    check("ipv6", &relay_plan(RELAY_V6, 1));
}

#[test]
fn ipv4_body_onto_an_ipv6_relay() {
    check("ipv4_to_ipv6", &relay_plan(RELAY_V6, 1));
}

#[test]
fn media_level_connection_only() {
    check("media_level_connection", &relay_plan(RELAY_V4, 2));
    let input = read("media_level_connection.in.sdp");
    let sdp = Sdp::parse(&input).unwrap();
    assert!(sdp.session_connection().is_none());
    assert_eq!(sdp.effective_connection(1).unwrap().address, b"10.1.1.6");
}

#[test]
fn session_and_media_level_connection() {
    check("session_and_media_connection", &relay_plan(RELAY_V4, 2));
}

#[test]
fn unknown_lines_and_attributes_preserved_byte_for_byte() {
    check("unknown_attributes", &relay_plan(RELAY_V4, 1));
    let input = read("unknown_attributes.in.sdp");
    let sdp = Sdp::parse(&input).unwrap();
    let audio = &sdp.media()[0];
    assert_eq!((audio.port, audio.port_count), (49170, Some(2)));
    assert_eq!(audio.proto, b"RTP/SAVP");
    assert_eq!(audio.formats, b"0 101");
    assert!(audio.rtcp.is_none(), "a=rtcp-fb is not a=rtcp");
}

#[test]
fn lf_only_line_ends_are_kept() {
    check("lf_only", &relay_plan(RELAY_V4, 1));
}

#[test]
fn unchanged_body_keeps_version_and_buffer() {
    let input = read("audio_offer.in.sdp");
    let plan = Plan {
        connection: Some("10.1.1.5".parse().unwrap()),
        media: vec![ports(49170)],
        origin_version: None,
    };
    let out = rewrite(&input, &plan).unwrap();
    assert!(!out.changed);
    assert_eq!(out.version, 2890844526);
    assert_eq!(
        out.body.as_ptr(),
        input.as_ptr(),
        "no copy when nothing changes"
    );
}

#[test]
fn caller_chosen_version_is_written() {
    let input = read("audio_offer.in.sdp");
    let mut plan = relay_plan(RELAY_V4, 1);
    plan.origin_version = Some(17);
    let out = rewrite(&input, &plan).unwrap();
    assert_eq!(out.version, 17);
    let text = String::from_utf8(out.body.to_vec()).unwrap();
    assert!(
        text.contains("\r\no=alice 2890844526 17 IN IP4 10.1.1.5\r\n"),
        "{text}"
    );
}

#[test]
fn malformed_bodies_are_errors() {
    use tandem_sdp::SdpError;
    let cases: [(&[u8], SdpError); 7] = [
        (b"v=0\r\ns=-\r\n", SdpError::MissingOrigin),
        (
            b"v=0\r\no=- 1 x IN IP4 1.2.3.4\r\n",
            SdpError::MalformedOrigin { line: 2 },
        ),
        (b"v=0\r\no=- 1\r\n", SdpError::MalformedOrigin { line: 2 }),
        (b"v=0\r\nnonsense\r\n", SdpError::MalformedLine { line: 2 }),
        (
            b"o=- 1 1 IN IP4 a\r\nm=audio 70000 RTP/AVP 0\r\n",
            SdpError::MalformedMedia { line: 2 },
        ),
        (
            b"o=- 1 1 IN IP4 a\r\nc=IN IP4\r\n",
            SdpError::MalformedConnection { line: 2 },
        ),
        (
            b"o=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtcp:x\r\n",
            SdpError::MalformedRtcp { line: 3 },
        ),
    ];
    for (body, error) in cases {
        assert_eq!(
            Sdp::parse(body).unwrap_err(),
            error,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let input = read("audio_offer.in.sdp");
    let plan = relay_plan(RELAY_V4, 2);
    assert_eq!(
        rewrite(&input, &plan).unwrap_err(),
        SdpError::PlanMediaCount {
            planned: 2,
            present: 1
        }
    );
}
