//! Bad input from the network never panics the core and never disturbs another call: an
//! established call survives a storm of mangled messages from every side and still ends cleanly.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use proptest::prelude::*;
use std::time::Duration;
use support::*;
use tandem_core::Peer;
use tandem_sip::{Method, ResponseBuilder};

/// Valid messages that belong to no call of the test; mutations of them are the bad input.
fn templates() -> Vec<String> {
    vec![
        invite("storm@elsewhere", "z9hG4bKstorm", 70).replace("tag=c1", "tag=zz"),
        in_dialog("BYE", "storm@elsewhere", "z9hG4bKstormbye", "tdnotours", 2),
        in_dialog("INFO", "storm@elsewhere", "z9hG4bKstorminfo", "tdnotours", 3),
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnotours\r\nFrom: <sip:a@b>;tag=x\r\n\
         To: <sip:c@d>;tag=y\r\nCall-ID: stray@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            .to_owned(),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, byte: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    DuplicateLine { line: usize },
    DropLine { line: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        any::<usize>().prop_map(|line| Mutation::DropLine { line }),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip { at, byte } => {
                let i = at % len;
                if i < bytes.len() {
                    bytes[i] = *byte;
                }
            }
            Mutation::Truncate { at } => bytes.truncate(at % len),
            Mutation::Insert { at, bytes: extra } => {
                let i = at % len;
                bytes.splice(i..i, extra.iter().copied());
            }
            Mutation::DuplicateLine { line } | Mutation::DropLine { line } => {
                let mut lines: Vec<Vec<u8>> =
                    bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let i = line % lines.len().max(1);
                if i < lines.len() {
                    if matches!(m, Mutation::DuplicateLine { .. }) {
                        let copy = lines[i].clone();
                        lines.insert(i, copy);
                    } else {
                        lines.remove(i);
                    }
                }
                bytes = lines.join(&b'\n');
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mangled_messages_never_disturb_an_established_call(
        storm in proptest::collection::vec(
            (0usize..4, 0usize..4, proptest::collection::vec(mutation(), 1..4)),
            1..24,
        )
    ) {
        let mut net = Net::new();
        let (srv_invite, tag) = establish(&mut net, "kept@caller");
        let peers = [CALLER, MS1, MS2, "127.0.0.9:5999"];
        let templates = templates();
        for (template, peer, mutations) in &storm {
            let bytes = apply(&templates[*template], mutations);
            net.core.handle_message(net.now, Bytes::from(bytes), Peer::udp(addr(peers[*peer])));
            net.drain();
        }
        // A mutation may still be a valid new INVITE: such calls are legitimate, the kept call must
        // simply be among the calls.
        let before = net.core.active_calls();
        prop_assert!(before >= 1, "the established call is still there");

        net.caller_sends(&in_dialog("BYE", "kept@caller", "z9hG4bKkeptbye", &tag, 2));
        let sent = net.drain();
        let bye = request_to(&sent, MS1, Method::Bye);
        prop_assert_eq!(bye.call_id(), srv_invite.call_id());
        let ok = ResponseBuilder::new(bye, 200, "OK").build();
        net.server_sends(MS1, ok);
        let to_caller = statuses(&net.drain(), CALLER);
        prop_assert!(to_caller.contains(&200), "BYE answered: {:?}", to_caller);
        prop_assert_eq!(net.core.active_calls(), before - 1);

        // Nothing leaks: once every timer has run out (the storm's calls fail over to nothing and
        // are rejected), no call and no transaction is left.
        for _ in 0..4 {
            net.advance(Duration::from_secs(40));
            net.drain();
        }
        prop_assert_eq!(net.core.active_calls(), 0);
        prop_assert_eq!(net.core.transactions(), 0);
    }
}
