//! RFC 4475 (§3) and RFC 5118 (§4) torture messages: one test per message with its expected
//! outcome. "Invalid" means the B2BUA answers 400: `Message::parse` returns `Err`, or — where the
//! RFC blames a header `parse` does not validate — the typed accessor does (noted per case).
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use std::net::IpAddr;
use tandem_sip::{
    frame_stream, HeaderName, Host, Message, Method, ParseError, Scheme, TransportKind,
};

fn bytes_of(raw: &'static [u8]) -> Bytes {
    Bytes::from_static(raw)
}

fn ip(s: &str) -> Host<'static> {
    Host::Ip(s.parse::<IpAddr>().unwrap())
}

/// Checks shared by every valid message: the fuzz entry point, an identity edit that re-parses to
/// the same key fields, and stream framing when the message carries Content-Length.
fn common_checks(raw: &'static [u8], m: &Message) {
    tandem_sip::fuzz::fuzz_parse(raw);
    let again = Message::parse(m.edit().finish()).unwrap();
    assert_eq!(again.call_id(), m.call_id());
    assert_eq!(again.cseq(), m.cseq());
    assert_eq!(again.vias(), m.vias());
    assert_eq!(again.body(), m.body());
    assert_eq!(again.start_line(), m.start_line());
    if m.header(HeaderName::ContentLength).is_some() {
        let len = frame_stream(raw).unwrap().unwrap();
        assert!(Message::parse(bytes_of(raw).slice(..len)).is_ok());
    }
}

macro_rules! valid {
    ($name:ident, $file:literal, |$m:ident| $body:block) => {
        #[test]
        fn $name() {
            let raw: &'static [u8] = include_bytes!(concat!("torture/", $file));
            let $m = Message::parse(bytes_of(raw)).unwrap();
            common_checks(raw, &$m);
            $body
        }
    };
}

macro_rules! invalid {
    ($name:ident, $file:literal, $err:pat) => {
        #[test]
        fn $name() {
            let raw: &'static [u8] = include_bytes!(concat!("torture/", $file));
            tandem_sip::fuzz::fuzz_parse(raw);
            let got = Message::parse(bytes_of(raw));
            assert!(matches!(got, Err($err)), "{}: {:?}", $file, got.map(|_| ()));
        }
    };
}

// ---------------------------------------------------------------- RFC 4475 §3.1.1 valid messages

// 3.1.1.1 A Short Tortuous INVITE: folding everywhere, LWS around separators, compact and long
// forms, odd case, leading zeros, empty Subject, unknown headers and parameters.
valid!(s3_1_1_1_wsinv, "wsinv.dat", |m| {
    assert_eq!(m.method(), Some(&Method::Invite));
    let ruri = m.request_uri_parsed().unwrap();
    assert_eq!(ruri.user, Some("vivekg"));
    assert_eq!(ruri.param("unknownparam"), Some(""));
    let to = m.to_hdr();
    assert_eq!(to.display, None);
    assert_eq!(to.uri.raw, "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = m.from_hdr();
    assert_eq!(from.display, Some(r#"J Rosenberg \\\""#));
    assert_eq!(from.uri.user, Some("jdrosen"));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.call_id(), "wsinv.ndaksdj@192.0.2.1");
    assert_eq!(m.cseq().seq, 9);
    assert_eq!(m.cseq().method, Method::Invite);
    let vias = m.vias();
    assert_eq!(vias.len(), 3);
    assert_eq!(
        (vias[0].transport, &vias[0].host),
        (TransportKind::Udp, &ip("192.0.2.2"))
    );
    assert_eq!(vias[0].branch, Some("390skdjuw"));
    assert!(!vias[0].is_rfc3261());
    assert_eq!(
        (vias[1].transport, &vias[1].host),
        (TransportKind::Tcp, &Host::Name("spindle.example.com"))
    );
    assert_eq!(vias[1].branch, Some("z9hG4bK9ikj8"));
    assert_eq!(
        (vias[2].transport, &vias[2].host),
        (TransportKind::Udp, &ip("192.168.255.111"))
    );
    assert_eq!(vias[2].branch, Some("z9hG4bK30239"));
    assert_eq!(m.header(HeaderName::Subject).as_deref(), Some(""));
    assert_eq!(
        m.header(HeaderName::Other("newfangledheader")).as_deref(),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        m.header(HeaderName::Other("UnknownHeaderWithUnusualValue"))
            .as_deref(),
        Some(";;,,;;,;")
    );
    assert_eq!(m.content_type().as_deref(), Some("application/sdp"));
    assert_eq!(m.body().len(), 150);
    let routes = m.routes();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].uri.param("lr"), Some(""));
    assert_eq!(routes[0].uri.param("unknownwith"), Some("value"));
    assert_eq!(routes[0].uri.param("unknown-no-value"), Some(""));
    let contacts = m.contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].display, Some(r#"Quoted string \"\""#));
    assert_eq!(contacts[0].param("newparam"), Some("newvalue"));
    assert_eq!(contacts[0].param("secondparam"), Some(""));
    assert_eq!(contacts[0].param("q"), Some("0.33"));
    assert_eq!(m.header_count(), 14);
});

// 3.1.1.2 Wide Range of Valid Characters: unknown method of odd token characters, odd URI user
// and password, quoted NUL/BEL/DEL, UTF-8 parameter and header values.
valid!(s3_1_1_2_intmeth, "intmeth.dat", |m| {
    let method = Method::Other("!interesting-Method0123456789_*+`.%indeed'~".into());
    assert_eq!(m.method(), Some(&method));
    assert_eq!(m.cseq().method, method);
    assert_eq!(m.cseq().seq, 139122385);
    let ruri = m.request_uri_parsed().unwrap();
    assert_eq!(
        ruri.user,
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(ruri.host, Some(Host::Name("example.com")));
    assert_eq!(
        m.to_hdr().display,
        Some("BEL:\\\u{7} NUL:\\\u{0} DEL:\\\u{7f}")
    );
    let from = m.from_hdr();
    assert_eq!(from.display, Some("token1~` token2'+_ token3*%!.-"));
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(from.param("fromParam''~+*_!.-%"), Some("\"работающий\""));
    assert_eq!(m.call_id(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(m.max_forwards(), Some(255));
    let via = m.top_via();
    assert_eq!(via.transport, TransportKind::Tcp);
    assert_eq!(via.branch, Some("z9hG4bK-.!%66*_+`'~"));
    assert!(via.is_rfc3261());
    assert_eq!(
        m.header(HeaderName::Other("extensionHeader-!.%*+_`'~"))
            .as_deref(),
        Some("\u{feff}大停電")
    );
    assert!(m.body().is_empty());
});

// 3.1.1.3 Valid Use of the % Escaping Mechanism: escapes are kept as written.
valid!(s3_1_1_3_esc01, "esc01.dat", |m| {
    let ruri = m.request_uri_parsed().unwrap();
    assert_eq!(ruri.user, Some("sips%3Auser%40example.com"));
    assert_eq!(ruri.host, Some(Host::Name("example.net")));
    assert_eq!(m.to_hdr().uri.user, Some("%75se%72"));
    assert_eq!(m.from_hdr().uri.user, Some("I%20have%20spaces"));
    assert_eq!(m.from_hdr().tag(), Some("938"));
    assert_eq!(m.call_id(), "esc01.239409asdfakjkn23onasd0-3234");
    assert_eq!(m.content_type().as_deref(), Some("application/sdp"));
    let c = &m.contacts()[0];
    assert_eq!(c.uri.user, Some("cal%6Cer"));
    assert_eq!(c.uri.param("%6C%72"), Some(""));
    assert_eq!(c.uri.param("n%61me"), Some("v%61lue%25%34%31"));
    assert_eq!(m.body().len(), 150);
});

// 3.1.1.4 Escaped Nulls in URIs.
valid!(s3_1_1_4_escnull, "escnull.dat", |m| {
    assert_eq!(m.method(), Some(&Method::Register));
    assert_eq!(m.to_hdr().uri.user, Some("null-%00-null"));
    let users: Vec<_> = m.contacts().iter().map(|c| c.uri.user).collect();
    assert_eq!(users, vec![Some("%00"), Some("%00%00")]);
    assert!(m.body().is_empty());
});

// 3.1.1.5 Use of % When It Is Not an Escape: method, display name, branch and header name.
valid!(s3_1_1_5_esc02, "esc02.dat", |m| {
    assert_eq!(m.method(), Some(&Method::Other("RE%47IST%45R".into())));
    assert_eq!(m.to_hdr().display, Some("%Z%45"));
    assert_eq!(m.top_via().branch, Some("z9hG4bK209%fzsnel234"));
    // `C%6Fntact` is an unknown header, not a Contact.
    assert_eq!(m.contacts().len(), 2);
    assert_eq!(
        m.header(HeaderName::Other("C%6Fntact")).as_deref(),
        Some("<sip:alias2@host2.example.com>")
    );
});

// 3.1.1.6 Message with No LWS between Display Name and <.
valid!(s3_1_1_6_lwsdisp, "lwsdisp.dat", |m| {
    assert_eq!(m.from_hdr().display, Some("caller"));
    assert_eq!(m.from_hdr().tag(), Some("323"));
});

// 3.1.1.7 Long Values in Header Fields: 34 Vias in every spelling of the name.
valid!(s3_1_1_7_longreq, "longreq.dat", |m| {
    let to = m.to_hdr();
    assert_eq!(
        to.display,
        Some(format!("I have a user name of {} proportion", "extreme".repeat(10)).as_str())
    );
    assert_eq!(to.uri.port, Some(6000));
    assert_eq!(
        to.uri.param("unknownparam1"),
        Some(format!("very{}value", "long".repeat(20)).as_str())
    );
    assert_eq!(
        m.from_hdr().tag(),
        Some(format!("12{}424", "982".repeat(50)).as_str())
    );
    assert_eq!(
        m.call_id(),
        format!("longreq.one{}longcallid", "really".repeat(20))
    );
    let vias = m.vias();
    assert_eq!(vias.len(), 34);
    assert_eq!(vias[0].host, Host::Name("sip33.example.com"));
    assert_eq!(vias[21].host, Host::Name("sip12.example.com"));
    assert_eq!(vias[33].received, Some("192.0.2.5"));
    assert_eq!(
        vias[33].branch,
        Some(format!("very{}branchvalue", "long".repeat(50)).as_str())
    );
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.contacts().len(), 1);
    assert_eq!(m.body().len(), 150);
});

// 3.1.1.8 Extra Trailing Octets in a UDP Datagram: Content-Length 0, the second request is ignored.
valid!(s3_1_1_8_dblreq, "dblreq.dat", |m| {
    assert_eq!(m.method(), Some(&Method::Register));
    assert_eq!(m.call_id(), "dblreq.0ha0isndaksdj99sdfafnl3lk233412");
    assert!(m.body().is_empty());
    // On a stream the same bytes are two messages.
    let raw = m.as_bytes().clone();
    let first = frame_stream(&raw).unwrap().unwrap();
    let second = Message::parse(raw.slice(first..)).unwrap();
    assert_eq!(second.method(), Some(&Method::Invite));
    // The second request's own Content-Length (150) ends 5 octets before the datagram does.
    assert_eq!(frame_stream(&raw[first..]), Ok(Some(raw.len() - first - 5)));
});

// 3.1.1.9 Semicolon-Separated Parameters in URI User Part.
valid!(s3_1_1_9_semiuri, "semiuri.dat", |m| {
    let ruri = m.request_uri_parsed().unwrap();
    assert_eq!(ruri.user, Some("user;par=u%40example.net"));
    assert_eq!(ruri.host, Some(Host::Name("example.com")));
    assert_eq!(ruri.params, "");
    assert_eq!(
        m.header(HeaderName::Other("Accept")).as_deref(),
        Some("application/sdp, application/pkcs7-mime, multipart/mixed, multipart/signed, message/sip, message/sipfrag")
    );
    assert_eq!(m.header_values(HeaderName::Other("accept")).count(), 6);
});

// 3.1.1.10 Varied and Unknown Transport Types.
valid!(s3_1_1_10_transports, "transports.dat", |m| {
    let kinds: Vec<_> = m.vias().iter().map(|v| v.transport).collect();
    use TransportKind::*;
    assert_eq!(kinds, vec![Udp, Sctp, Tls, Other, Tcp]);
    assert_eq!(m.call_id(), "transports.kijh4akdnaqjkwendsasfdj");
});

// 3.1.1.11 Multipart MIME Message with a binary body.
valid!(s3_1_1_11_mpart01, "mpart01.dat", |m| {
    assert_eq!(m.method(), Some(&Method::Message));
    assert_eq!(
        m.content_type().as_deref(),
        Some("multipart/mixed;boundary=7a9cbec02ceef655")
    );
    assert_eq!(m.body().len(), 553);
    assert!(m.body().ends_with(b"--7a9cbec02ceef655--\r\n"));
    assert_eq!(m.call_id(), "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..");
    assert_eq!(m.top_via().rport, Some(None));
    let route = &m.routes()[0];
    assert_eq!(
        (route.uri.host.clone(), route.uri.port),
        (Some(ip("127.0.0.1")), Some(5080))
    );
});

// 3.1.1.12 Unusual Reason Phrase (UTF-8).
valid!(s3_1_1_12_unreason, "unreason.dat", |m| {
    assert_eq!(m.status(), Some(200));
    assert_eq!(
        m.reason(),
        Some("= 2**3 * 5**2 но сто девяносто девять - простое")
    );
    assert_eq!(m.body().len(), 154);
});

// 3.1.1.13 Empty Reason Phrase (`SIP/2.0 100 ` with its trailing SP).
valid!(s3_1_1_13_noreason, "noreason.dat", |m| {
    assert_eq!(m.status(), Some(100));
    assert_eq!(m.reason(), Some(""));
});

// -------------------------------------------------------------- RFC 4475 §3.1.2 invalid messages

// 3.1.2.1 Extraneous Header Field Separators (`;;,;,,` in Via).
invalid!(s3_1_2_1_badinv01, "badinv01.dat", ParseError::Header("Via"));
// 3.1.2.2 Content Length Larger Than Message.
invalid!(s3_1_2_2_clerr, "clerr.dat", ParseError::ContentLength);
// 3.1.2.3 Negative Content-Length.
invalid!(s3_1_2_3_ncl, "ncl.dat", ParseError::ContentLength);
// 3.1.2.4 Request Scalar Fields with Overlarge Values (CSeq 2^65 is caught first).
invalid!(
    s3_1_2_4_scalar02,
    "scalar02.dat",
    ParseError::Header("CSeq")
);
// 3.1.2.5 Response Scalar Fields with Overlarge Values.
invalid!(
    s3_1_2_5_scalarlg,
    "scalarlg.dat",
    ParseError::Header("CSeq")
);
// 3.1.2.6 Unterminated Quoted String in Display Name.
invalid!(s3_1_2_6_quotbal, "quotbal.dat", ParseError::Header("To"));
// 3.1.2.7 <> Enclosing Request-URI.
invalid!(s3_1_2_7_ltgtruri, "ltgtruri.dat", ParseError::Uri);
// 3.1.2.8 Malformed SIP Request-URI (embedded LWS): the third token is no SIP-Version.
invalid!(s3_1_2_8_lwsruri, "lwsruri.dat", ParseError::StartLine);
// 3.1.2.9 Multiple SP Separating Request-Line Elements.
invalid!(s3_1_2_9_lwsstart, "lwsstart.dat", ParseError::StartLine);
// 3.1.2.10 SP Characters at End of Request-Line.
invalid!(s3_1_2_10_trws, "trws.dat", ParseError::StartLine);
// 3.1.2.11 Escaped Headers in SIP Request-URI: headers are not allowed there.
invalid!(s3_1_2_11_escruri, "escruri.dat", ParseError::Uri);

// 3.1.2.12 Invalid Time Zone in Date Header Field. The RFC lets an element that does not need the
// Date ignore it instead of answering 400; Tandem never reads Date, so the message is accepted.
valid!(s3_1_2_12_baddate, "baddate.dat", |m| {
    assert_eq!(
        m.header(HeaderName::Other("Date")).as_deref(),
        Some("Fri, 01 Jan 2010 16:00:00 EST")
    );
});

// 3.1.2.13 Failure to Enclose name-addr URI in <>: Contact is not validated by `parse`, so this is
// the typed-accessor case: `try_contacts` is Err (and `contacts` skips the value).
valid!(s3_1_2_13_regbadct, "regbadct.dat", |m| {
    assert!(m.try_contacts().is_err());
    assert!(m.contacts().is_empty());
});

// 3.1.2.14 Spaces within addr-spec (`< sip:t.watson@example.org >`).
invalid!(s3_1_2_14_badaspec, "badaspec.dat", ParseError::Uri);
// 3.1.2.15 Non-token Characters in Display Name (`Bell, Alexander` unquoted). The archived file
// also lacks the final empty line, which datagram parsing tolerates; the From is what fails.
invalid!(s3_1_2_15_baddn, "baddn.dat", ParseError::Header("From"));
// 3.1.2.16 Unknown Protocol Version (SIP/7.0): 505.
invalid!(s3_1_2_16_badvers, "badvers.dat", ParseError::Version);
// 3.1.2.17 Start Line and CSeq Method Mismatch.
invalid!(
    s3_1_2_17_mismatch01,
    "mismatch01.dat",
    ParseError::Header("CSeq")
);
// 3.1.2.18 Unknown Method with CSeq Method Mismatch.
invalid!(
    s3_1_2_18_mismatch02,
    "mismatch02.dat",
    ParseError::Header("CSeq")
);
// 3.1.2.19 Overlarge Response Code.
invalid!(s3_1_2_19_bigcode, "bigcode.dat", ParseError::StartLine);

// ------------------------------------------------------ RFC 4475 §3.2 transaction layer semantics

// 3.2.1 Missing Transaction Identifier: the branch is the bare magic cookie. Syntactically valid;
// the transaction layer must not treat the bare cookie as a unique RFC 3261 branch.
valid!(s3_2_1_badbranch, "badbranch.dat", |m| {
    assert_eq!(m.top_via().branch, Some("z9hG4bK"));
});

// ------------------------------------------------------ RFC 4475 §3.3 application layer semantics

// 3.3.1 Missing Required Header Fields (no To, From, Call-ID, Max-Forwards).
invalid!(s3_3_1_insuf, "insuf.dat", ParseError::Header(_));

// 3.3.2 Request-URI with Unknown Scheme: parses; the application answers 416.
valid!(s3_3_2_unkscm, "unkscm.dat", |m| {
    let ruri = m.request_uri_parsed().unwrap();
    assert_eq!(
        (ruri.scheme, ruri.raw),
        (Scheme::Other, "nobodyKnowsThisScheme:totallyopaquecontent")
    );
});

// 3.3.3 Request-URI with Known but Atypical Scheme.
valid!(s3_3_3_novelsc, "novelsc.dat", |m| {
    let ruri = m.request_uri_parsed().unwrap();
    assert_eq!(
        (ruri.scheme, ruri.raw),
        (Scheme::Other, "soap.beep://192.0.2.103:3002")
    );
});

// 3.3.4 Unknown URI Schemes in Header Fields: parses (a registrar would then answer 400).
valid!(s3_3_4_unksm2, "unksm2.dat", |m| {
    assert_eq!(
        (m.to_hdr().uri.scheme, m.to_hdr().uri.raw),
        (Scheme::Other, "isbn:2983792873")
    );
    assert_eq!(m.from_hdr().uri.raw, "http://www.example.com");
    assert_eq!(m.from_hdr().tag(), Some("3234233"));
    assert_eq!(m.contacts()[0].uri.raw, "name:John_Smith");
});

// 3.3.5 Proxy-Require and Require: parses; 420 is the application's answer.
valid!(s3_3_5_bext01, "bext01.dat", |m| {
    assert_eq!(
        m.header(HeaderName::Require).as_deref(),
        Some("nothingSupportsThis, nothingSupportsThisEither")
    );
    assert_eq!(m.header_values(HeaderName::ProxyRequire).count(), 2);
    assert_eq!(m.top_via().transport, TransportKind::Tls);
});

// 3.3.6 Unknown Content-Type: parses; 415 is the application's answer.
valid!(s3_3_6_invut, "invut.dat", |m| {
    assert_eq!(
        m.content_type().as_deref(),
        Some("application/unknownformat")
    );
    assert_eq!(
        &m.body()[..],
        b"<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n"
    );
});

// 3.3.7 Unknown Authorization Scheme.
valid!(s3_3_7_regaut01, "regaut01.dat", |m| {
    assert_eq!(
        m.header(HeaderName::Other("authorization")).as_deref(),
        Some("NoOneKnowsThisScheme opaque-data=here")
    );
    assert!(m.body().is_empty());
});

// 3.3.8 Multiple Values in Single Value Required Fields.
invalid!(s3_3_8_multi01, "multi01.dat", ParseError::Header(_));
// 3.3.9 Multiple Content-Length Values.
invalid!(s3_3_9_mcl01, "mcl01.dat", ParseError::ContentLength);

// 3.3.10 200 OK Response with Broadcast Via Header Field Value: parses; never sent to 255.255.255.255.
valid!(s3_3_10_bcast, "bcast.dat", |m| {
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.vias()[1].host, ip("255.255.255.255"));
});

// 3.3.11 Max-Forwards of Zero: parses; the proxy answers 483 (the editor never goes below 0).
valid!(s3_3_11_zeromf, "zeromf.dat", |m| {
    assert_eq!(m.max_forwards(), Some(0));
    let edited = Message::parse(m.edit().decrement_max_forwards().finish()).unwrap();
    assert_eq!(edited.max_forwards(), Some(0));
});

// 3.3.12 REGISTER with a Contact Header Parameter: in addr-spec form it is a header parameter.
valid!(s3_3_12_cparam01, "cparam01.dat", |m| {
    let c = &m.contacts()[0];
    assert_eq!((c.params, c.uri.params), (";unknownparam", ""));
});

// 3.3.13 REGISTER with a URI Parameter: inside <> it belongs to the URI.
valid!(s3_3_13_cparam02, "cparam02.dat", |m| {
    let c = &m.contacts()[0];
    assert_eq!((c.params, c.uri.params), ("", ";unknownparam"));
});

// 3.3.14 REGISTER with a URI Escaped Header (inside <>: legal).
valid!(s3_3_14_regescrt, "regescrt.dat", |m| {
    assert_eq!(
        m.contacts()[0].uri.headers,
        "Route=%3Csip:sip.example.com%3E"
    );
    assert!(m.body().is_empty());
});

// 3.3.15 Unacceptable Accept Offering: parses; 406 is the application's answer.
valid!(s3_3_15_sdp01, "sdp01.dat", |m| {
    assert_eq!(
        m.header(HeaderName::Other("Accept")).as_deref(),
        Some("text/nobodyKnowsThis")
    );
    assert_eq!(m.body().len(), 150);
});

// ---------------------------------------------------------- RFC 4475 §3.4 backward compatibility

// 3.4.1 INVITE with RFC 2543 Syntax: no Max-Forwards, no branch, no tag, no Content-Length.
valid!(s3_4_1_inv2543, "inv2543.dat", |m| {
    assert_eq!(m.max_forwards(), None);
    assert_eq!(m.top_via().branch, None);
    assert!(!m.top_via().is_rfc3261());
    assert_eq!(m.from_hdr().tag(), None);
    assert!(m.body().starts_with(b"v=0\r\n"));
    assert_eq!(
        m.record_routes()[0].uri.param("maddr"),
        Some("ss1.example.com")
    );
    // addr-spec form: `;user=phone` is a header parameter of the To.
    assert_eq!(m.to_hdr().param("user"), Some("phone"));
});

// --------------------------------------------------------------------- RFC 5118 §4 IPv6 messages

// 4.1 Valid SIP Message with an IPv6 Reference.
valid!(ipv6_4_1_good, "rfc5118/ipv6-good.dat", |m| {
    assert_eq!(
        m.request_uri_parsed().unwrap().host,
        Some(ip("2001:db8::10"))
    );
    assert_eq!(m.top_via().host, ip("2001:db8::9:1"));
    assert_eq!(m.contacts()[0].uri.host, Some(ip("2001:db8::1")));
});

// 4.2 Invalid SIP Message with an IPv6 Reference (no brackets in the Request-URI).
invalid!(ipv6_4_2_bad, "rfc5118/ipv6-bad.dat", ParseError::Uri);

// 4.3 Port Ambiguous in a SIP URI: `[2001:db8::10:5070]` is an address, no port.
valid!(ipv6_4_3_port_ambiguous, "rfc5118/port-ambiguous.dat", |m| {
    let ruri = m.request_uri_parsed().unwrap();
    assert_eq!(
        (ruri.host, ruri.port),
        (Some(ip("2001:db8::10:5070")), None)
    );
});

// 4.4 Port Unambiguous in a SIP URI.
valid!(
    ipv6_4_4_port_unambiguous,
    "rfc5118/port-unambiguous.dat",
    |m| {
        let ruri = m.request_uri_parsed().unwrap();
        assert_eq!(
            (ruri.host, ruri.port),
            (Some(ip("2001:db8::10")), Some(5070))
        );
    }
);

// 4.5 IPv6 Reference Delimiters in Via Header: `received` with and without brackets both parse.
valid!(
    ipv6_4_5_received_with_delim,
    "rfc5118/via-received-param-with-delim.dat",
    |m| {
        assert_eq!(m.top_via().received, Some("[2001:db8::9:255]"));
    }
);
valid!(
    ipv6_4_5_received_no_delim,
    "rfc5118/via-received-param-no-delim.dat",
    |m| {
        assert_eq!(m.top_via().received, Some("2001:db8::9:255"));
    }
);

// 4.6 IPv6 Addresses in an SDP Body. The archived message declares Content-Length 268 for a
// 251-octet body, so as a datagram it is rejected like §3.1.2.2 of RFC 4475; with the length
// corrected it parses and carries the IPv6 SDP.
#[test]
fn ipv6_4_6_in_sdp() {
    let raw: &'static [u8] = include_bytes!("torture/rfc5118/ipv6-in-sdp.dat");
    assert_eq!(
        Message::parse(bytes_of(raw)).unwrap_err(),
        ParseError::ContentLength
    );
    let text = std::str::from_utf8(raw).unwrap();
    let head_end = text.find("\r\n\r\n").unwrap() + 4;
    let fixed = text.replace(
        "Content-Length: 268",
        &format!("Content-Length: {}", raw.len() - head_end),
    );
    let m = Message::parse(Bytes::from(fixed)).unwrap();
    assert_eq!(m.top_via().host, ip("2001:db8::20"));
    assert!(std::str::from_utf8(&m.body())
        .unwrap()
        .contains("c=IN IP6 2001:db8::20\r\n"));
}

// 4.7 Multiple IP Addresses in SIP Headers.
valid!(
    ipv6_4_7_mult_ip_in_header,
    "rfc5118/mult-ip-in-header.dat",
    |m| {
        let vias = m.vias();
        assert_eq!(
            (vias[0].host.clone(), vias[0].port),
            (ip("2001:db8::9:1"), Some(6050))
        );
        assert_eq!(vias[1].host, ip("192.0.2.1"));
        assert_eq!(
            (vias[2].host.clone(), vias[2].received),
            (ip("2001:db8::9:255"), Some("192.0.2.200"))
        );
    }
);

// 4.8 Multiple IP Addresses in SDP (declared length shorter than the CRLF body: truncated).
valid!(ipv6_4_8_mult_ip_in_sdp, "rfc5118/mult-ip-in-sdp.dat", |m| {
    assert_eq!(m.body().len(), 181);
    assert!(std::str::from_utf8(&m.body())
        .unwrap()
        .contains("c=IN IP6 2001:db8::1"));
});

// 4.9 IPv4-Mapped IPv6 Addresses.
valid!(ipv6_4_9_ipv4_mapped, "rfc5118/ipv4-mapped-ipv6.dat", |m| {
    let via = m.top_via();
    assert_eq!((via.host, via.port), (ip("::ffff:192.0.2.10"), Some(19823)));
    assert_eq!(m.contacts()[0].uri.host, Some(ip("::ffff:192.0.2.2")));
});

// 4.10 IPv6 Reference Bug in RFC 3261 ABNF: three colons is not an IPv6 address; two is.
invalid!(
    ipv6_4_10_three_colons,
    "rfc5118/ipv6-bug-abnf-3-colons.dat",
    ParseError::Uri
);
valid!(
    ipv6_4_10_two_colons,
    "rfc5118/ipv6-correct-abnf-2-colons.dat",
    |m| {
        assert_eq!(
            m.request_uri_parsed().unwrap().host,
            Some(ip("2001:db8::192.0.2.1"))
        );
        assert_eq!(m.to_hdr().uri.host, Some(ip("2001:db8::192.0.2.1")));
    }
);

// ------------------------------------------------------------------------------- whole corpus

/// The fuzz entry point never panics on any corpus file, whole or cut anywhere, and stream framing
/// of every file either frames it or asks for more/refuses, never panics.
#[test]
fn fuzz_entry_point_over_corpus() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/torture");
    let mut files = 0;
    for sub in [dir.to_string(), format!("{dir}/rfc5118")] {
        for entry in std::fs::read_dir(sub).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "dat") {
                let raw = std::fs::read(&path).unwrap();
                for cut in (0..raw.len()).step_by(7).chain([raw.len()]) {
                    tandem_sip::fuzz::fuzz_parse(&raw[..cut]);
                }
                files += 1;
            }
        }
    }
    assert_eq!(files, 49 + 12);
}
