//! What a parse + serialize round trip through the `sdp-types` crate (0.3) changes in a body,
//! against tandem-sdp's relay rewrite, which changes only the address and port tokens.
//!
//! Each test body below is one that real user agents send. `sdp_types_round_trip` parses and
//! writes it back with no field changed; `relay` runs tandem-sdp's rewrite with a relay plan. The
//! expected outputs are what was observed; they back the "Choice" section of the crate doc.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use bytes::Bytes;
use tandem_sdp::{rewrite, MediaPorts, Plan, Sdp};

/// Parse with sdp-types and write back, no field changed.
fn sdp_types_round_trip(body: &[u8]) -> Result<String, sdp_types::ParserError> {
    let session = sdp_types::Session::parse(body)?;
    let mut out = Vec::new();
    session.write(&mut out).unwrap();
    Ok(String::from_utf8(out).unwrap())
}

/// tandem-sdp with a relay plan: `c=` to 198.51.100.1, the first `m=` port to 30000, the `o=`
/// version kept (so the `o=` line stays as it was).
fn relay(body: &[u8]) -> Vec<u8> {
    let sdp = Sdp::parse(body).unwrap();
    let plan = Plan {
        connection: Some("198.51.100.1".parse::<IpAddr>().unwrap()),
        media: vec![Some(MediaPorts {
            rtp: 30000,
            rtcp: None,
        })],
        origin_version: Some(sdp.origin_version()),
    };
    rewrite(&Bytes::copy_from_slice(body), &plan)
        .unwrap()
        .body
        .to_vec()
}

/// What the relay rewrite must give: `body` with the `c=` address (10.0.0.1; `o=` uses
/// 10.0.0.9) and the `m=audio` port (4000) replaced, every other byte as it was.
fn relayed_by_hand(body: &str) -> String {
    body.replace(" 10.0.0.1", " 198.51.100.1")
        .replace("m=audio 4000 ", "m=audio 30000 ")
}

/// sdp-types round-trips `body` into `expected`; tandem-sdp changes only the relay tokens.
fn check(body: &str, expected_by_sdp_types: &str) {
    assert_eq!(
        sdp_types_round_trip(body.as_bytes()).unwrap(),
        expected_by_sdp_types
    );
    assert_eq!(relay(body.as_bytes()), relayed_by_hand(body).into_bytes());
}

#[test]
fn line_ends_lf_only_become_crlf() {
    check(
        "v=0\no=- 1 2 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\na=sendrecv\n",
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n",
    );
}

#[test]
fn missing_final_line_end_is_added() {
    check(
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv",
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n",
    );
}

#[test]
fn trailing_blank_line_is_dropped() {
    check(
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n\r\n",
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n",
    );
}

#[test]
fn unknown_line_types_are_dropped() {
    check(
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\ny=0123456789\r\nm=audio 4000 RTP/AVP 0\r\nx=vendor\r\na=sendrecv\r\n",
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n",
    );
}

#[test]
fn runs_of_spaces_in_origin_connection_and_time_are_collapsed() {
    check(
        "v=0\r\no=-  1 2  IN IP4 10.0.0.9\r\ns=-\r\nc=IN  IP4 10.0.0.1\r\nt=0  0\r\nm=audio 4000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
    );
}

#[test]
fn line_order_is_normalised() {
    // Session level: b= written after c=; media level: c= moved before a=, b= after c=.
    check(
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nb=AS:64\r\nt=0 0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nb=TIAS:64000\r\nc=IN IP4 10.0.0.1\r\n",
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nb=AS:64\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.1\r\nb=TIAS:64000\r\na=rtpmap:0 PCMU/8000\r\n",
    );
}

#[test]
fn repeat_times_are_rewritten_in_units() {
    check(
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=3034423619 3042462419\r\nr=604800 3600 0 90000\r\nm=audio 4000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=3034423619 3042462419\r\nr=7d 1h 0 25h\r\nm=audio 4000 RTP/AVP 0\r\n",
    );
}

#[test]
fn missing_session_name_and_time_are_added() {
    check(
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
    );
}

#[test]
fn lowercase_network_and_address_types_are_uppercased() {
    let body = "v=0\r\no=- 1 2 in ip4 10.0.0.9\r\ns=-\r\nc=in ip4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    assert_eq!(
        sdp_types_round_trip(body.as_bytes()).unwrap(),
        "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    );
    // tandem-sdp keeps the o= line; the address type it writes with the relay address is its own.
    assert_eq!(
        relay(body.as_bytes()),
        b"v=0\r\no=- 1 2 in ip4 10.0.0.9\r\ns=-\r\nc=in IP4 198.51.100.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n"
    );
}

#[test]
fn bodies_sdp_types_rejects_are_relayed_by_tandem() {
    // A Latin-1 session name (not UTF-8), and a double space after the media type.
    let latin1 = b"v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=Caf\xe9\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    assert_eq!(
        sdp_types_round_trip(latin1),
        Err(sdp_types::ParserError::InvalidFieldEncoding(
            3,
            "Session Name"
        ))
    );
    assert_eq!(
        relay(latin1),
        b"v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=Caf\xe9\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n"
    );
    let spaced_media = b"v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio  4000 RTP/AVP 0\r\n";
    assert_eq!(
        sdp_types_round_trip(spaced_media),
        Err(sdp_types::ParserError::InvalidFieldFormat(6, "Media port"))
    );
    assert_eq!(
        relay(spaced_media),
        b"v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio  30000 RTP/AVP 0\r\n"
    );
}

#[test]
fn attribute_values_and_canonical_bodies_survive_both() {
    // sdp-types keeps attribute values as written, spaces included, and a canonical CRLF body
    // comes back identical: the three benchmark bodies.
    let spaced = "v=0\r\no=- 1 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=fmtp:101 0-16 \r\na=rtpmap:0  PCMU/8000\r\na=msid-semantic: WMS s\r\n";
    check(spaced, spaced);
    for body in [
        &include_bytes!("../benches/bodies/asterisk_answer.sdp")[..],
        &include_bytes!("../benches/bodies/webrtc_offer.sdp")[..],
        &include_bytes!("../benches/bodies/hold_reinvite.sdp")[..],
    ] {
        let body = std::str::from_utf8(body).unwrap();
        assert_eq!(sdp_types_round_trip(body.as_bytes()).unwrap(), body);
    }
}
