//! Fuzzing entry point shared by the cargo-fuzz target and a unit test over the torture corpus.

use crate::{frame_stream, is_keepalive, HeaderName, Message};
use bytes::Bytes;

/// Runs the parser, every accessor, an edit and stream framing on `data`. Must never panic.
pub fn fuzz_parse(data: &[u8]) {
    let _ = is_keepalive(data);
    let mut rest = data;
    while let Ok(Some(n)) = frame_stream(rest) {
        if n == 0 || n > rest.len() {
            break;
        }
        if !is_keepalive(&rest[..n]) {
            let _ = Message::parse(Bytes::copy_from_slice(&rest[..n]));
        }
        rest = &rest[n..];
    }
    let Ok(msg) = Message::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = msg.start_line();
    let _ = (
        msg.is_request(),
        msg.method(),
        msg.status(),
        msg.request_uri(),
        msg.reason(),
    );
    let _ = (
        msg.call_id(),
        msg.cseq(),
        msg.top_via(),
        msg.vias(),
        msg.from_hdr(),
        msg.to_hdr(),
    );
    let _ = (
        msg.max_forwards(),
        msg.contacts(),
        msg.try_contacts(),
        msg.routes(),
        msg.record_routes(),
    );
    let _ = (
        msg.content_type(),
        msg.body(),
        msg.header_count(),
        msg.request_uri_parsed(),
    );
    // What `parse` caches must be what the accessors would parse.
    if msg.vias().first() != Some(&msg.top_via())
        || msg.from_tag() != msg.from_hdr().tag()
        || msg.to_tag() != msg.to_hdr().tag()
    {
        panic!("cached top Via or tags differ from the parsed headers");
    }
    // The readers for messages Tandem built agree with the parser on every valid message.
    let head = crate::peek_request(data);
    if crate::peek_status(data) != msg.status()
        || head.as_ref().map(|h| &h.method) != msg.method()
        || head.is_some_and(|h| h.branch != msg.top_via().branch)
    {
        panic!("peek_status or peek_request disagrees with parse");
    }
    for (name, value) in msg.iter_headers() {
        let _ = msg.header(name);
        let _ = value.len();
    }
    for name in [
        HeaderName::Via,
        HeaderName::Route,
        HeaderName::Contact,
        HeaderName::Other("x-unknown"),
    ] {
        let _ = msg.header_values(name).count();
        let _ = msg.headers(name).count();
    }
    let out = msg
        .edit()
        .push_front(
            HeaderName::Via,
            "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKfuzz",
        )
        .decrement_max_forwards()
        .pop_first_value(HeaderName::Route)
        .set(HeaderName::Contact, "<sip:fuzz@192.0.2.9>")
        .finish();
    // An edit of a valid message stays valid (the pushed Via is well-formed).
    if Message::parse(out).is_err() {
        panic!("edited message no longer parses");
    }
}
