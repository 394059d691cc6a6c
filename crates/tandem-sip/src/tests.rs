//! Unit tests of parsing, accessors, edits and builders on hand-written messages.
#![allow(clippy::unwrap_used)]

use crate::*;
use bytes::Bytes;
use std::borrow::Cow;

pub(crate) const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn parse(s: &str) -> Result<Message, ParseError> {
    Message::parse(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn parses_typical_invite() {
    let m = parse(INVITE).unwrap();
    assert!(m.is_request());
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.request_uri(), Some("sip:bob@biloxi.example.com"));
    assert_eq!(m.status(), None);
    assert_eq!(m.call_id(), "a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(
        m.cseq(),
        CSeq {
            seq: 314159,
            method: Method::Invite
        }
    );
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.header_count(), 9);
    let via = m.top_via();
    assert_eq!(via.transport, TransportKind::Udp);
    assert_eq!(via.host, Host::Name("pc33.atlanta.example.com"));
    assert_eq!(via.branch, Some("z9hG4bK776asdhds"));
    assert_eq!(m.from_hdr().tag(), Some("1928301774"));
    assert_eq!(m.from_hdr().display, Some("Alice"));
    assert_eq!(m.to_hdr().tag(), None);
    assert_eq!(m.contacts().len(), 1);
    assert_eq!(m.content_type().as_deref(), Some("application/sdp"));
    assert_eq!(&m.body()[..], b"v=0\n");
    assert!(matches!(
        m.header(HeaderName::CallId),
        Some(Cow::Borrowed(_))
    ));
    assert_eq!(
        m.header(HeaderName::Other("call-id")).as_deref(),
        Some(m.call_id())
    );
    assert_eq!(m.header(HeaderName::Other("X-None")), None);
    let span = m.header_span(0).unwrap();
    assert!(m.as_bytes()[span].starts_with(b"Via: "));
}

#[test]
fn parses_response_and_compact_forms() {
    let r = "SIP/2.0 180 Ringing\r\nv: SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/TCP b.example:5070;branch=z9hG4bK2\r\n\
v: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK3;rport=7;received=192.0.2.1\r\n\
f: <sip:a@a.example>;tag=1\r\nt: <sip:b@b.example>;tag=2\r\ni: cid\r\nCSeq: 1 INVITE\r\nm: <sip:b@192.0.2.2>, <sip:c@192.0.2.3>\r\nl: 0\r\n\r\n";
    let m = parse(r).unwrap();
    assert_eq!(m.status(), Some(180));
    assert_eq!(m.reason(), Some("Ringing"));
    assert_eq!(
        m.start_line(),
        StartLine::Response {
            code: 180,
            reason: "Ringing"
        }
    );
    let vias = m.vias();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].port, Some(5070));
    assert_eq!(vias[2].host, Host::Ip("2001:db8::1".parse().unwrap()));
    assert_eq!(vias[2].rport, Some(Some(7)));
    assert_eq!(m.headers(HeaderName::Via).count(), 2);
    assert_eq!(m.header_values(HeaderName::Via).count(), 3);
    assert_eq!(m.contacts().len(), 2);
    assert_eq!(m.call_id(), "cid");
    assert!(m.body().is_empty());
    assert_eq!(m.top_via(), vias[0]);
    assert_eq!((m.from_tag(), m.to_tag()), (Some("1"), Some("2")));
}

#[test]
fn cached_top_via_and_tags_after_leading_crlf() {
    // Offsets are kept relative to the start line: leading CRLFs must not shift them.
    let r = format!(
        "\r\n\r\n{}",
        INVITE.replace(
            "pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
            "[2001:db8::9]:5062 ; branch = z9hG4bKx ;received=192.0.2.7;rport=9, SIP/2.0/TCP second"
        )
    );
    let m = parse(&r).unwrap();
    let via = m.top_via();
    assert_eq!(
        via,
        Via::parse(m.raw_values(HeaderName::Via).next().unwrap()).unwrap()
    );
    assert_eq!(via.host, Host::Ip("2001:db8::9".parse().unwrap()));
    assert_eq!(via.branch, Some("z9hG4bKx"));
    assert_eq!(via.received, Some("192.0.2.7"));
    assert_eq!(via.rport, Some(Some(9)));
    assert_eq!(
        via.params,
        "; branch = z9hG4bKx ;received=192.0.2.7;rport=9"
    );
    assert_eq!(m.from_tag(), Some("1928301774"));
    assert_eq!(m.to_tag(), None);
    let flag = parse(&INVITE.replace("Bob <sip:bob@biloxi.example.com>", "<sip:b@c>;tag")).unwrap();
    assert_eq!(flag.to_tag(), Some(""));
    assert_eq!(flag.request_uri(), Some("sip:bob@biloxi.example.com"));
}

#[test]
fn folded_values_are_unfolded_on_read() {
    let r = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>\r\n ;tag=x\r\nTo: <sip:a@b>\r\n\
Call-ID: c\r\nCSeq: 1\r\n OPTIONS\r\nSubject: one\r\n\ttwo  \r\n   three\r\nRoute: <sip:p1;lr>,\r\n <sip:p2;lr>\r\n\r\n";
    let m = parse(r).unwrap();
    assert_eq!(
        m.header(HeaderName::Subject).as_deref(),
        Some("one two three")
    );
    assert!(matches!(m.header(HeaderName::Subject), Some(Cow::Owned(_))));
    assert_eq!(m.from_hdr().tag(), Some("x"));
    let routes: Vec<_> = m.header_values(HeaderName::Route).collect();
    assert_eq!(routes, vec!["<sip:p1;lr>", "<sip:p2;lr>"]);
    assert_eq!(m.routes().len(), 2);
    assert_eq!(m.routes()[1].uri.param("lr"), Some(""));
}

#[test]
fn datagram_body_rules() {
    let base = "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n";
    let m = parse(&format!("{base}\r\nhello")).unwrap();
    assert_eq!(&m.body()[..], b"hello");
    let m = parse(&format!("{base}Content-Length: 2\r\n\r\nhello")).unwrap();
    assert_eq!(&m.body()[..], b"he");
    assert_eq!(
        parse(&format!("{base}Content-Length: 9\r\n\r\nhello")).unwrap_err(),
        ParseError::ContentLength
    );
    assert_eq!(
        parse(&format!("{base}Content-Length: -1\r\n\r\n")).unwrap_err(),
        ParseError::ContentLength
    );
    assert_eq!(
        parse(&format!("{base}Content-Length: 1\r\nl: 1\r\n\r\nh")).unwrap_err(),
        ParseError::ContentLength
    );
    // A datagram ending right after a header line (no empty line) has an empty body.
    assert!(parse(base).unwrap().body().is_empty());
    assert_eq!(
        parse(&format!("{base}l: 1\r\n")).unwrap_err(),
        ParseError::ContentLength
    );
    // Leading CRLFs are ignored.
    assert!(parse(&format!("\r\n\r\n{base}\r\n")).is_ok());
}

#[test]
fn rejects_invalid() {
    let good = parse(INVITE).unwrap();
    let _ = good;
    let cases: &[(&str, &str, ParseError)] = &[
        (
            "INVITE sip:bob@biloxi.example.com SIP/2.0",
            "INVITE sip:bob@biloxi.example.com SIP/3.0",
            ParseError::Version,
        ),
        (
            "INVITE sip:bob@biloxi.example.com SIP/2.0",
            "INVITE  sip:bob@biloxi.example.com SIP/2.0",
            ParseError::StartLine,
        ),
        (
            "INVITE sip:bob@biloxi.example.com SIP/2.0",
            "INVITE sip:bob@biloxi.example.com",
            ParseError::StartLine,
        ),
        (
            "INVITE sip:bob@biloxi.example.com SIP/2.0",
            "INVITE <sip:bob@biloxi.example.com> SIP/2.0",
            ParseError::Uri,
        ),
        (
            "CSeq: 314159 INVITE",
            "CSeq: 314159 BYE",
            ParseError::Header("CSeq"),
        ),
        (
            "CSeq: 314159 INVITE",
            "CSeq: 2147483648 INVITE",
            ParseError::Header("CSeq"),
        ),
        (
            "CSeq: 314159 INVITE",
            "CSeq: 314159INVITE",
            ParseError::Header("CSeq"),
        ),
        (
            "Max-Forwards: 70",
            "Max-Forwards: seventy",
            ParseError::Header("Max-Forwards"),
        ),
        (
            "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
            "Call-ID: a b",
            ParseError::Header("Call-ID"),
        ),
        (
            "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n",
            "",
            ParseError::Header("Call-ID"),
        ),
        (
            "To: Bob <sip:bob@biloxi.example.com>\r\n",
            "",
            ParseError::Header("To"),
        ),
        (
            "To: Bob <sip:bob@biloxi.example.com>",
            "To: Bob <sip:bob@biloxi.example.com>\r\nt: <sip:x@y>",
            ParseError::Header("To"),
        ),
        (
            "To: Bob <sip:bob@biloxi.example.com>",
            "To: Bob <sip:bob@@biloxi>",
            ParseError::Uri,
        ),
        (
            "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
            "",
            ParseError::Header("Via"),
        ),
        (
            "Via: SIP/2.0/UDP pc33",
            "Via: SIP/2.0/UDP pc33 junk",
            ParseError::Header("Via"),
        ),
        (
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\n\rX: y\r\n",
            ParseError::HeaderLine,
        ),
        (
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\nX: y\r\n",
            ParseError::HeaderLine,
        ),
        (
            "Max-Forwards: 70\r\n",
            "Max-Forwards 70\r\n",
            ParseError::HeaderLine,
        ),
        (
            "Max-Forwards: 70\r\n",
            "Max Forwards: 70\r\n",
            ParseError::HeaderLine,
        ),
        (
            "Content-Length: 4\r\n\r\n",
            "Content-Length: 4\r\n",
            ParseError::HeaderLine,
        ),
        (
            "Content-Length: 4\r\n\r\n",
            "Content-Length: 4\r\nX: y",
            ParseError::HeaderLine,
        ),
        (
            "sip:bob@biloxi.example.com SIP/2.0",
            "sip:bob@biloxi.example.com?Subject=x SIP/2.0",
            ParseError::Uri,
        ),
    ];
    for (from, to, err) in cases {
        assert!(INVITE.contains(from), "{from}");
        let bad = INVITE.replacen(from, to, 1);
        assert_eq!(parse(&bad).unwrap_err(), *err, "{bad}");
    }
    assert_eq!(parse("").unwrap_err(), ParseError::StartLine);
    assert_eq!(parse("\r\n").unwrap_err(), ParseError::StartLine);
    assert_eq!(
        parse(" INVITE x SIP/2.0\r\n\r\n").unwrap_err(),
        ParseError::StartLine
    );
    let continuation_first = INVITE.replacen("Via:", " Via:", 1);
    assert_eq!(
        parse(&continuation_first).unwrap_err(),
        ParseError::HeaderLine
    );
    let mut big = INVITE.replacen("Max-Forwards: 70\r\n", "", 1);
    big.insert_str(
        big.find("\r\n").unwrap() + 2,
        &"X-Pad: 0123456789\r\n".repeat(4000),
    );
    assert_eq!(parse(&big).unwrap_err(), ParseError::TooLarge);
    let mut many = INVITE.to_string();
    many.insert_str(
        many.find("\r\n").unwrap() + 2,
        &"a:\r\n".repeat(MAX_HEADERS),
    );
    assert_eq!(parse(&many).unwrap_err(), ParseError::TooLarge);
    let non_utf8 = [
        INVITE
            .replacen("Max-Forwards: 70", "X: \u{1}", 1)
            .as_bytes(),
        &[],
    ]
    .concat();
    assert!(Message::parse(Bytes::from(non_utf8)).is_ok());
    let mut raw = INVITE.as_bytes().to_vec();
    let at = INVITE.find("Max-Forwards").unwrap();
    raw[at + 14] = 0xff;
    assert_eq!(
        Message::parse(Bytes::from(raw)).unwrap_err(),
        ParseError::HeaderLine
    );
}

#[test]
fn status_line_variants() {
    let rest = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
    assert_eq!(
        parse(&format!("SIP/2.0 200\r\n{rest}")).unwrap().reason(),
        Some("")
    );
    assert_eq!(
        parse(&format!("SIP/2.0 200 \r\n{rest}")).unwrap().reason(),
        Some("")
    );
    assert_eq!(
        parse(&format!("sip/2.0 200 OK\r\n{rest}"))
            .unwrap()
            .status(),
        Some(200)
    );
    assert_eq!(
        parse(&format!("SIP/2.0 099 Low\r\n{rest}")).unwrap_err(),
        ParseError::StartLine
    );
    assert_eq!(
        parse(&format!("SIP/2.0 2000 OK\r\n{rest}")).unwrap_err(),
        ParseError::StartLine
    );
    assert_eq!(
        parse(&format!("SIP/1.0 200 OK\r\n{rest}")).unwrap_err(),
        ParseError::Version
    );
    // A response's CSeq method is not compared with anything.
    assert!(parse(&format!(
        "SIP/2.0 487 Terminated\r\n{}",
        rest.replace("INVITE", "BYE")
    ))
    .is_ok());
}

#[test]
fn editor_proxy_hop() {
    let m = parse(INVITE).unwrap();
    let out = m
        .edit()
        .set_start_line("INVITE sip:bob@10.0.0.5:5080 SIP/2.0")
        .push_front(
            HeaderName::Via,
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew",
        )
        .decrement_max_forwards()
        .set(HeaderName::Contact, "<sip:b2bua@10.0.0.1>")
        .finish();
    let text = std::str::from_utf8(&out).unwrap();
    let expected = INVITE
        .replace(
            "INVITE sip:bob@biloxi.example.com SIP/2.0",
            "INVITE sip:bob@10.0.0.5:5080 SIP/2.0",
        )
        .replace(
            "Via: SIP",
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew\r\nVia: SIP",
        )
        .replace("Max-Forwards: 70", "Max-Forwards: 69")
        .replace(
            "Contact: <sip:alice@pc33.atlanta.example.com>",
            "Contact: <sip:b2bua@10.0.0.1>",
        );
    assert_eq!(text, expected);
    let again = Message::parse(out).unwrap();
    assert_eq!(again.vias().len(), 2);
    assert_eq!(again.top_via().branch, Some("z9hG4bKnew"));
    assert_eq!(again.max_forwards(), Some(69));
}

#[test]
fn editor_pop_values_and_lines() {
    let r = "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/UDP b;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP c;branch=z9hG4bK3\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";
    let m = parse(r).unwrap();
    let out = m.edit().pop_first_value(HeaderName::Via).finish();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(
        text.contains("\r\nv: SIP/2.0/UDP b;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP c"),
        "{text}"
    );
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
    let out = m
        .edit()
        .pop_first_value(HeaderName::Via)
        .pop_first_value(HeaderName::Via)
        .finish();
    let again = Message::parse(out).unwrap();
    assert_eq!(again.vias().len(), 1);
    assert_eq!(again.top_via().branch, Some("z9hG4bK3"));
    // Pushing then popping is a no-op on the wire.
    let out = m
        .edit()
        .push_front(HeaderName::Via, "SIP/2.0/UDP x;branch=z9hG4bKx")
        .pop_first_value(HeaderName::Via)
        .finish();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r.replace("l: 0", "Content-Length: 0")
    );
}

#[test]
fn editor_body_and_headers() {
    let m = parse(INVITE).unwrap();
    let out = m
        .edit()
        .set_body(Some("application/sdp"), b"v=0\r\no=x\r\n")
        .finish();
    let again = Message::parse(out).unwrap();
    assert_eq!(&again.body()[..], b"v=0\r\no=x\r\n");
    assert_eq!(
        again.header(HeaderName::ContentLength).as_deref(),
        Some("10")
    );
    let out = m.edit().set_body(None, b"").finish();
    let again = Message::parse(out).unwrap();
    assert!(again.body().is_empty());
    assert_eq!(again.content_type(), None);
    let out = m
        .edit()
        .remove_all(HeaderName::Contact)
        .append(HeaderName::Other("X-Tandem"), "1")
        .set(HeaderName::Other("x-other"), "2")
        .finish();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(!text.contains("Contact"));
    assert!(
        text.contains("X-Tandem: 1\r\nx-other: 2\r\nContent-Length: 4\r\n\r\nv=0\n"),
        "{text}"
    );
    // No Max-Forwards: 70 is appended.
    let no_mf = parse(&INVITE.replace("Max-Forwards: 70\r\n", "")).unwrap();
    let again = Message::parse(no_mf.edit().decrement_max_forwards().finish()).unwrap();
    assert_eq!(again.max_forwards(), Some(70));
    // Max-Forwards: 0 stays 0 (the caller answers 483).
    let zero = parse(&INVITE.replace("Max-Forwards: 70", "Max-Forwards: 0")).unwrap();
    assert_eq!(
        Message::parse(zero.edit().decrement_max_forwards().finish())
            .unwrap()
            .max_forwards(),
        Some(0)
    );
}

#[test]
fn editor_untouched_is_identity() {
    let m = parse(INVITE).unwrap();
    assert_eq!(&m.edit().finish()[..], INVITE.as_bytes());
}

#[test]
fn response_builder_copies_dialog_headers() {
    let m = parse(INVITE).unwrap();
    let out = ResponseBuilder::new(&m, 180, "Ringing")
        .to_tag("abc")
        .header(HeaderName::Contact, "<sip:b@10.0.0.1>")
        .build();
    let r = Message::parse(out).unwrap();
    assert_eq!(r.status(), Some(180));
    assert_eq!(r.to_hdr().tag(), Some("abc"));
    assert_eq!(r.from_hdr().tag(), Some("1928301774"));
    assert_eq!(r.call_id(), m.call_id());
    assert_eq!(r.cseq(), m.cseq());
    assert_eq!(r.top_via(), m.top_via());
    assert!(r.body().is_empty());
    let out = ResponseBuilder::new(&r, 200, "OK")
        .to_tag("zzz")
        .body("application/sdp", b"v=0\r\n")
        .build();
    let ok = Message::parse(out).unwrap();
    assert_eq!(ok.to_hdr().tag(), Some("abc"), "existing tag kept");
    assert_eq!(&ok.body()[..], b"v=0\r\n");
    assert_eq!(ok.content_type().as_deref(), Some("application/sdp"));
}

#[test]
fn request_builder() {
    let out = RequestBuilder::new(&Method::Options, "sip:10.0.0.5:5080")
        .header(
            HeaderName::Via,
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKp1",
        )
        .header(HeaderName::MaxForwards, "70")
        .header(HeaderName::From, "<sip:tandem@10.0.0.1>;tag=t1")
        .header(HeaderName::To, "<sip:10.0.0.5:5080>")
        .header(HeaderName::CallId, "probe-1")
        .header(HeaderName::CSeq, "1 OPTIONS")
        .header(HeaderName::ContentLength, "99")
        .build();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.starts_with("OPTIONS sip:10.0.0.5:5080 SIP/2.0\r\nVia: "));
    assert!(text.ends_with("CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"));
    let m = Message::parse(out).unwrap();
    assert_eq!(m.method(), Some(&Method::Options));
    assert_eq!(m.call_id(), "probe-1");
}

#[test]
fn fuzz_entry_on_samples() {
    crate::fuzz::fuzz_parse(INVITE.as_bytes());
    crate::fuzz::fuzz_parse(b"\r\n\r\n");
    crate::fuzz::fuzz_parse(b"");
    crate::fuzz::fuzz_parse(&INVITE.as_bytes()[..100]);
}
