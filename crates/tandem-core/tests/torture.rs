//! Every RFC 4475 and RFC 5118 torture message, sent to Tandem: what a B2BUA must do with each.
//! Valid requests are forwarded or answered as their method asks; invalid requests get 400 (505 for
//! an unsupported version) when an answer can be addressed, else they are dropped and counted;
//! responses that belong to nothing are dropped. Nothing panics.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use std::path::PathBuf;
use support::*;
use tandem_core::Peer;
use tandem_sip::Method;

/// What Tandem did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Answered to the sender with this final status.
    Answered(u16),
    /// A new call: the INVITE went to a media server (the sender got 100 Trying).
    Forwarded,
    /// Nothing sent.
    Dropped,
}

fn outcome_of(file: &str) -> Outcome {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tandem-sip/tests/torture");
    let raw = std::fs::read(dir.join(file)).unwrap();
    let mut net = Net::new();
    net.core
        .handle_message(net.now, Bytes::from(raw), Peer::udp(addr(CALLER)));
    let sent = net.drain();
    if sent
        .iter()
        .any(|(to, m)| *to == addr(MS1) && m.method() == Some(&Method::Invite))
    {
        return Outcome::Forwarded;
    }
    let raw = net
        .raw_rejections
        .iter()
        .filter_map(|(_, line)| line.split(' ').nth(1)?.parse().ok());
    match statuses(&sent, CALLER)
        .into_iter()
        .chain(raw)
        .find(|c| *c >= 200)
    {
        Some(code) => Outcome::Answered(code),
        None => Outcome::Dropped,
    }
}

#[test]
fn every_torture_message_gets_what_an_element_owes_it() {
    use Outcome::*;
    let expected = [
        ("badaspec.dat", Answered(400)), // bad addr-spec: 400 (RFC 4475 3.1.2.14)
        ("badbranch.dat", Answered(200)), // odd branch, still valid OPTIONS: 200
        ("baddate.dat", Forwarded),      // Date ignored: call set up
        ("baddn.dat", Answered(400)),    // unquoted display name: 400
        ("badinv01.dat", Answered(400)), // bad INVITE: 400
        ("badvers.dat", Answered(505)),  // SIP/7.0: 505
        ("bcast.dat", Dropped),          // stray response: dropped
        ("bext01.dat", Answered(420)),   // Require of an unknown option: 420
        ("bigcode.dat", Dropped),        // status out of range: dropped
        ("clerr.dat", Answered(400)),    // Content-Length past the datagram: 400
        ("cparam01.dat", Answered(501)), // REGISTER: 501 (registrations not served yet)
        ("cparam02.dat", Answered(501)), // REGISTER: 501
        ("dblreq.dat", Answered(501)),   // REGISTER (second request ignored): 501
        ("esc01.dat", Forwarded),        // escaped user part: call set up
        ("esc02.dat", Answered(501)),    // escaped method is an unknown method: 501
        ("escnull.dat", Answered(501)),  // REGISTER: 501
        ("escruri.dat", Answered(400)),  // headers in the Request-URI: 400
        ("insuf.dat", Dropped),          // no Call-ID/From/To: no answer can be addressed, dropped
        ("intmeth.dat", Answered(501)),  // unknown method out of dialog: 501
        ("inv2543.dat", Forwarded),      // RFC 2543 INVITE without Contact: call set up
        ("invut.dat", Forwarded),        // unknown body type: set up (the media server answers 415)
        ("longreq.dat", Forwarded),      // long values: call set up
        ("ltgtruri.dat", Answered(400)), // <> around the Request-URI: 400
        ("lwsdisp.dat", Answered(200)),  // no LWS after display name: 200
        ("lwsruri.dat", Answered(400)),  // LWS in the Request-URI: 400
        ("lwsstart.dat", Answered(400)), // extra spaces in the Request-Line: 400
        ("mcl01.dat", Answered(400)),    // several Content-Length values: 400
        ("mismatch01.dat", Answered(400)), // CSeq method differs: 400
        ("mismatch02.dat", Answered(400)), // CSeq method differs: 400
        ("mpart01.dat", Answered(501)),  // MESSAGE: 501
        ("multi01.dat", Answered(400)),  // several values in single-value headers: 400
        ("ncl.dat", Answered(400)),      // negative Content-Length: 400
        ("noreason.dat", Dropped),       // stray response: dropped
        ("novelsc.dat", Answered(416)),  // unknown URI scheme: 416
        ("quotbal.dat", Answered(400)),  // unbalanced quotes: 400
        ("regaut01.dat", Answered(501)), // REGISTER: 501
        ("regbadct.dat", Answered(501)), // REGISTER: 501
        ("regescrt.dat", Answered(501)), // REGISTER: 501
        ("rfc5118/ipv4-mapped-ipv6.dat", Forwarded), // IPv4-mapped IPv6: call set up
        ("rfc5118/ipv6-bad.dat", Answered(400)), // IPv6 without brackets: 400
        ("rfc5118/ipv6-bug-abnf-3-colons.dat", Answered(400)), // three colons: 400
        ("rfc5118/ipv6-correct-abnf-2-colons.dat", Answered(200)), // two colons: 200
        ("rfc5118/ipv6-good.dat", Answered(501)), // REGISTER: 501
        ("rfc5118/ipv6-in-sdp.dat", Answered(400)), // archived Content-Length exceeds the body: 400
        ("rfc5118/mult-ip-in-header.dat", Answered(481)), // BYE for no dialog: 481
        ("rfc5118/mult-ip-in-sdp.dat", Forwarded), // call set up
        ("rfc5118/port-ambiguous.dat", Answered(501)), // REGISTER: 501
        ("rfc5118/port-unambiguous.dat", Answered(501)), // REGISTER: 501
        ("rfc5118/via-received-param-no-delim.dat", Answered(200)), // OPTIONS: 200
        ("rfc5118/via-received-param-with-delim.dat", Answered(481)), // BYE for no dialog: 481
        ("scalar02.dat", Answered(400)), // CSeq and Max-Forwards out of range: 400
        ("scalarlg.dat", Dropped),       // stray response: dropped
        ("sdp01.dat", Forwarded),        // call set up (Accept is the server's business)
        ("semiuri.dat", Answered(200)),  // OPTIONS: 200
        ("transports.dat", Answered(200)), // OPTIONS: 200
        ("trws.dat", Answered(400)),     // trailing whitespace in the Request-Line: 400
        ("unkscm.dat", Answered(416)),   // unknown URI scheme: 416
        ("unksm2.dat", Answered(501)),   // REGISTER: 501
        ("unreason.dat", Dropped),       // stray response: dropped
        ("wsinv.dat", Answered(481)),    // valid, but names a dialog Tandem does not have: 481
        ("zeromf.dat", Answered(200)),   // OPTIONS to Tandem with Max-Forwards 0: 200
    ];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tandem-sip/tests/torture");
    let on_disk = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "dat")
        })
        .count()
        + std::fs::read_dir(dir.join("rfc5118")).unwrap().count();
    assert_eq!(
        on_disk,
        expected.len(),
        "every message on disk has an expected outcome"
    );
    let mut wrong = Vec::new();
    for (file, want) in expected {
        let got = outcome_of(file);
        if got != want {
            wrong.push(format!("{file}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
