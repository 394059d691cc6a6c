//! Property tests: messages generated from structured parts parse back to those parts; edits
//! change exactly what they say; stream framing is split-independent; parsing never panics.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use proptest::prelude::*;
use tandem_sip::{frame_stream, is_keepalive, HeaderName, Host, Message, Method, TransportKind};

/// One Via value and how it is written.
#[derive(Debug, Clone)]
struct ViaSpec {
    transport: &'static str,
    host: String,
    port: Option<u16>,
    branch: String,
    /// Separator between sent-protocol and sent-by: a space, several, or a fold.
    sep: &'static str,
}

impl ViaSpec {
    fn text(&self) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "SIP/2.0/{}{}{}{};branch={}",
            self.transport, self.sep, self.host, port, self.branch
        )
    }
}

#[derive(Debug, Clone)]
struct MsgSpec {
    method: Method,
    ruri_user: String,
    ruri_host: String,
    /// Via values grouped per header line (a line with several values is a comma list).
    via_lines: Vec<Vec<ViaSpec>>,
    via_name: &'static str,
    from_user: String,
    from_tag: String,
    to_tag: Option<String>,
    call_id: String,
    call_id_name: &'static str,
    cseq: u32,
    max_forwards: Option<u32>,
    contacts: Vec<String>,
    /// Unknown headers `X-H{i}` with words; `fold` replaces spaces by folds.
    unknown: Vec<(Vec<String>, bool)>,
    body: Vec<u8>,
    /// `None`: no Content-Length (datagram body = rest). `Some(name)`: written with this name.
    cl_name: Option<&'static str>,
    trailing: Vec<u8>,
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]{1,10}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
        (1u8..=254, 0u8..=255).prop_map(|(a, b)| format!("10.{a}.{b}.1")),
        (1u16..=0xffff).prop_map(|n| format!("[2001:db8::{n:x}]")),
    ]
}

fn via_spec() -> impl Strategy<Value = ViaSpec> {
    (
        prop::sample::select(vec!["UDP", "TCP", "TLS", "WS"]),
        host(),
        prop::option::of(1u16..),
        word(),
        prop::sample::select(vec![" ", "   ", "\r\n ", "\r\n\t"]),
    )
        .prop_map(|(transport, host, port, b, sep)| ViaSpec {
            transport,
            host,
            port,
            branch: format!("z9hG4bK{b}"),
            sep,
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        prop::sample::select(vec![
            Method::Invite,
            Method::Options,
            Method::Bye,
            Method::Register,
            Method::Info
        ]),
        "[A-Z]{3,10}".prop_map(|s| Method::from_token(&s).unwrap()),
    ]
}

fn msg_spec() -> impl Strategy<Value = MsgSpec> {
    (
        (
            method(),
            word(),
            host(),
            prop::collection::vec(prop::collection::vec(via_spec(), 1..3), 1..3),
        ),
        (
            prop::sample::select(vec!["Via", "v", "VIA", "via "]),
            word(),
            word(),
            prop::option::of(word()),
        ),
        (
            word(),
            prop::sample::select(vec!["Call-ID", "i", "call-id"]),
            0u32..(1 << 31),
            prop::option::of(0u32..=255),
        ),
        (
            prop::collection::vec(word(), 0..3),
            prop::collection::vec((prop::collection::vec(word(), 1..4), any::<bool>()), 0..4),
        ),
        (
            prop::collection::vec(any::<u8>(), 0..120),
            prop::option::of(prop::sample::select(vec![
                "Content-Length",
                "l",
                "content-length  ",
            ])),
            prop::collection::vec(any::<u8>(), 0..8),
        ),
    )
        .prop_map(
            |(
                (method, ruri_user, ruri_host, via_lines),
                (via_name, from_user, from_tag, to_tag),
                (call_id, call_id_name, cseq, max_forwards),
                (contacts, unknown),
                (body, cl_name, trailing),
            )| MsgSpec {
                method,
                ruri_user,
                ruri_host,
                via_lines,
                via_name,
                from_user,
                from_tag,
                to_tag,
                call_id,
                call_id_name,
                cseq,
                max_forwards,
                contacts,
                unknown,
                body,
                cl_name,
                // Trailing octets beyond Content-Length only make sense when it is present.
                trailing: if cl_name.is_some() {
                    trailing
                } else {
                    Vec::new()
                },
            },
        )
}

impl MsgSpec {
    fn bytes(&self) -> Vec<u8> {
        let mut s = format!(
            "{} sip:{}@{} SIP/2.0\r\n",
            self.method, self.ruri_user, self.ruri_host
        );
        for line in &self.via_lines {
            let values: Vec<String> = line.iter().map(ViaSpec::text).collect();
            s += &format!("{}: {}\r\n", self.via_name, values.join(" ,\r\n  "));
        }
        s += &format!(
            "From: \"Caller\" <sip:{}@example.com>;tag={}\r\n",
            self.from_user, self.from_tag
        );
        match &self.to_tag {
            Some(t) => s += &format!("t: <sip:callee@example.com> ;\r\n tag = {t}\r\n"),
            None => s += "To: sip:callee@example.com\r\n",
        }
        s += &format!("{}: {}\r\n", self.call_id_name, self.call_id);
        s += &format!("CSeq: {} {}\r\n", self.cseq, self.method);
        if let Some(mf) = self.max_forwards {
            s += &format!("Max-Forwards: {mf}\r\n");
        }
        if !self.contacts.is_empty() {
            let values: Vec<String> = self
                .contacts
                .iter()
                .map(|u| format!("<sip:{u}@192.0.2.1>"))
                .collect();
            s += &format!("m: {}\r\n", values.join(", "));
        }
        for (i, (words, fold)) in self.unknown.iter().enumerate() {
            let sep = if *fold { "\r\n " } else { " " };
            s += &format!("X-H{i}: {}\r\n", words.join(sep));
        }
        if let Some(name) = self.cl_name {
            s += &format!("{name}: {}\r\n", self.body.len());
        }
        s += "\r\n";
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&self.trailing);
        out
    }

    fn vias(&self) -> Vec<&ViaSpec> {
        self.via_lines.iter().flatten().collect()
    }
}

fn host_of(s: &str) -> Host<'_> {
    match s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        Some(v6) => Host::Ip(v6.parse().unwrap()),
        None => match s.parse() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(s),
        },
    }
}

fn check_accessors(spec: &MsgSpec, m: &Message) {
    assert_eq!(m.method(), Some(&spec.method));
    assert_eq!(
        m.request_uri().unwrap(),
        format!("sip:{}@{}", spec.ruri_user, spec.ruri_host)
    );
    assert_eq!(m.call_id(), spec.call_id);
    assert_eq!(m.cseq().seq, spec.cseq);
    assert_eq!(m.cseq().method, spec.method);
    assert_eq!(m.max_forwards(), spec.max_forwards);
    let vias = m.vias();
    let want = spec.vias();
    assert_eq!(vias.len(), want.len());
    for (got, want) in vias.iter().zip(&want) {
        assert_eq!(got.transport, TransportKind::from_token(want.transport));
        assert_eq!(got.host, host_of(&want.host));
        assert_eq!(got.port, want.port);
        assert_eq!(got.branch, Some(want.branch.as_str()));
    }
    assert_eq!(m.headers(HeaderName::Via).count(), spec.via_lines.len());
    assert_eq!(m.header_values(HeaderName::Via).count(), want.len());
    assert_eq!(m.from_hdr().tag(), Some(spec.from_tag.as_str()));
    assert_eq!(m.from_hdr().uri.user, Some(spec.from_user.as_str()));
    assert_eq!(m.to_hdr().tag(), spec.to_tag.as_deref());
    assert_eq!(m.from_tag(), Some(spec.from_tag.as_str()));
    assert_eq!(m.to_tag(), spec.to_tag.as_deref());
    assert_eq!(m.top_via(), vias[0]);
    let contact_users: Vec<_> = m
        .contacts()
        .iter()
        .map(|c| c.uri.user.unwrap().to_string())
        .collect();
    assert_eq!(contact_users, spec.contacts);
    for (i, (words, _)) in spec.unknown.iter().enumerate() {
        let name = format!("x-h{i}");
        assert_eq!(
            m.header(HeaderName::Other(&name)).as_deref(),
            Some(words.join(" ").as_str())
        );
    }
    let mut body = spec.body.clone();
    if spec.cl_name.is_none() {
        body.extend_from_slice(&spec.trailing);
    }
    assert_eq!(&m.body()[..], &body[..]);
}

/// An edit operation and its expected effect.
#[derive(Debug, Clone)]
enum Op {
    PushVia(String),
    PopVia,
    DecrementMaxForwards,
    SetContact(String),
    RemoveUnknown(usize),
    AppendUnknown(String),
    SetBody(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        word().prop_map(|b| Op::PushVia(format!("z9hG4bK{b}"))),
        Just(Op::PopVia),
        Just(Op::DecrementMaxForwards),
        word().prop_map(Op::SetContact),
        (0usize..4).prop_map(Op::RemoveUnknown),
        word().prop_map(Op::AppendUnknown),
        prop::collection::vec(any::<u8>(), 0..60).prop_map(Op::SetBody),
    ]
}

/// Overwrites, inserts or deletes bytes at the given positions.
fn mutate(data: &mut Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) {
    for (at, byte, kind) in edits {
        let i = at.index(data.len() + 1);
        match kind {
            0 if i < data.len() => data[i] = *byte,
            1 => data.insert(i, *byte),
            _ if i < data.len() => {
                data.remove(i);
            }
            _ => {}
        }
    }
}

/// Every torture message of `tests/torture/`, read once.
fn torture_corpus() -> &'static [Vec<u8>] {
    static CORPUS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/torture");
        let mut out = Vec::new();
        for sub in [dir.to_string(), format!("{dir}/rfc5118")] {
            for entry in std::fs::read_dir(sub).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "dat") {
                    out.push(std::fs::read(path).unwrap());
                }
            }
        }
        out.sort();
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_messages_parse_to_their_parts(spec in msg_spec()) {
        let m = Message::parse(Bytes::from(spec.bytes())).unwrap();
        check_accessors(&spec, &m);
    }

    #[test]
    fn edits_are_visible_and_untouched_lines_verbatim(spec in msg_spec(), ops in prop::collection::vec(op(), 0..6)) {
        let m = Message::parse(Bytes::from(spec.bytes())).unwrap();
        let mut branches: Vec<String> = spec.vias().iter().map(|v| v.branch.clone()).collect();
        let mut mf = spec.max_forwards;
        let mut contact: Option<String> = None;
        let mut removed = vec![false; spec.unknown.len()];
        let mut appended = Vec::new();
        let mut body = m.body().to_vec();
        let mut ed = m.edit();
        for op in &ops {
            match op {
                Op::PushVia(b) => {
                    ed.push_front(HeaderName::Via, &format!("SIP/2.0/UDP 192.0.2.9;branch={b}"));
                    branches.insert(0, b.clone());
                }
                Op::PopVia if branches.len() > 1 => {
                    ed.pop_first_value(HeaderName::Via);
                    branches.remove(0);
                }
                Op::PopVia => {}
                Op::DecrementMaxForwards => {
                    ed.decrement_max_forwards();
                    mf = Some(mf.map_or(70, |n| n.saturating_sub(1)));
                }
                Op::SetContact(u) => {
                    ed.set(HeaderName::Contact, &format!("<sip:{u}@198.51.100.1>"));
                    contact = Some(u.clone());
                }
                Op::RemoveUnknown(i) => {
                    ed.remove_all(HeaderName::Other(&format!("X-H{i}")));
                    if let Some(r) = removed.get_mut(*i) {
                        *r = true;
                    }
                }
                Op::AppendUnknown(v) => {
                    ed.append(HeaderName::Other("X-Added"), v);
                    appended.push(v.clone());
                }
                Op::SetBody(b) => {
                    ed.set_body(Some("application/x-test"), b);
                    body = b.clone();
                }
            }
        }
        let out = ed.finish();
        let e = Message::parse(out.clone()).unwrap();
        let got: Vec<String> = e.vias().iter().map(|v| v.branch.unwrap().to_string()).collect();
        prop_assert_eq!(got, branches);
        prop_assert_eq!(e.max_forwards(), mf);
        match &contact {
            Some(u) => {
                let users: Vec<_> = e.contacts().iter().map(|c| c.uri.user.unwrap().to_string()).collect();
                prop_assert_eq!(users, vec![u.clone()]);
            }
            None => prop_assert_eq!(e.contacts().len(), spec.contacts.len()),
        }
        let added: Vec<String> = e.headers(HeaderName::Other("x-added")).map(|v| v.into_owned()).collect();
        prop_assert_eq!(added, appended);
        for (i, gone) in removed.iter().enumerate() {
            prop_assert_eq!(e.header(HeaderName::Other(&format!("X-H{i}"))).is_none(), *gone);
        }
        prop_assert_eq!(&e.body()[..], &body[..]);
        prop_assert_eq!(e.header(HeaderName::ContentLength).unwrap().parse::<usize>().unwrap(), body.len());
        prop_assert_eq!(e.call_id(), m.call_id());
        prop_assert_eq!(e.cseq(), m.cseq());
        // Lines no operation touched are copied byte for byte, in order.
        let touched = |name: HeaderName<'_>| {
            name.is(HeaderName::Via)
                || name.is(HeaderName::MaxForwards)
                || name.is(HeaderName::Contact)
                || name.is(HeaderName::ContentLength)
                || name.is(HeaderName::ContentType)
                || name.is(HeaderName::Other("X-Added"))
        };
        let mut at = 0;
        for (i, (name, _)) in m.iter_headers().enumerate() {
            let gone = (0..removed.len()).any(|k| removed[k] && name.is(HeaderName::Other(&format!("X-H{k}"))));
            if touched(name) || gone {
                continue;
            }
            let line = &m.as_bytes()[m.header_span(i).unwrap()];
            let found = memchr::memmem::find(&out[at..], line);
            prop_assert!(found.is_some(), "line {:?} not copied verbatim", String::from_utf8_lossy(line));
            at += found.unwrap() + line.len();
        }
    }

    #[test]
    fn stream_framing_is_split_independent(
        specs in prop::collection::vec(msg_spec(), 1..4),
        keepalive in prop::collection::vec(any::<bool>(), 4),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        // A stream carries only Content-Length-framed messages, without trailing octets.
        let messages: Vec<Vec<u8>> = specs
            .into_iter()
            .map(|mut s| {
                s.cl_name = Some("Content-Length");
                s.trailing.clear();
                s.bytes()
            })
            .collect();
        let mut stream = Vec::new();
        for (i, msg) in messages.iter().enumerate() {
            if keepalive[i] {
                stream.extend_from_slice(b"\r\n\r\n");
            }
            stream.extend_from_slice(msg);
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let mut buf: Vec<u8> = Vec::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut fed = 0;
        for p in points {
            buf.extend_from_slice(&stream[fed..p]);
            fed = p;
            while let Some(n) = frame_stream(&buf).unwrap() {
                let frame: Vec<u8> = buf.drain(..n).collect();
                if is_keepalive(&frame) {
                    continue;
                }
                let m = Message::parse(Bytes::from(frame)).unwrap();
                let start = m.as_bytes().iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
                got.push(m.as_bytes()[start..].to_vec());
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, messages);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        tandem_sip::fuzz::fuzz_parse(&data);
    }

    #[test]
    fn parse_never_panics_on_mutated_torture_messages(
        file in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let corpus = torture_corpus();
        let mut data = corpus[file.index(corpus.len())].clone();
        mutate(&mut data, &edits);
        tandem_sip::fuzz::fuzz_parse(&data);
    }

    #[test]
    fn parse_never_panics_on_mutated_messages(
        spec in msg_spec(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut data = spec.bytes();
        mutate(&mut data, &edits);
        tandem_sip::fuzz::fuzz_parse(&data);
    }
}
