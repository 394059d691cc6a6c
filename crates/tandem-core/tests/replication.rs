//! Replication seen from the core: the ordered change stream, the `sync` gate on a call's answer,
//! and a second node carrying an answered call on from a snapshot (BYE, re-INVITE, media ports).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;
use support::*;
use tandem_core::call::CallState;
use tandem_core::{Durability, Peer, ReplicationChange};
use tandem_media::session::MediaCommand;
use tandem_sip::{Message, Method};

const SYNC: Durability = Durability::Sync {
    wait: Duration::from_millis(50),
};

fn changes(net: &mut Net) -> Vec<(u64, ReplicationChange)> {
    std::iter::from_fn(|| net.core.poll_replication()).collect()
}

/// Caller INVITE → server 200: returns the server-side INVITE (the caller's 200 may be held).
fn answer_call(net: &mut Net, call_id: &str) -> Message {
    net.caller_sends(&invite(call_id, "z9hG4bKr1", 70));
    let sent = net.drain();
    let srv_invite = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, answer(&srv_invite, 200, "OK", true));
    srv_invite
}

/// The caller's BYE on call `call_id` (its To tag `tag`) relayed to the server, which answers
/// 200; `meanwhile` runs between the two.
fn caller_hangs_up(net: &mut Net, call_id: &str, tag: &str, meanwhile: impl FnOnce(&mut Net)) {
    net.caller_sends(&in_dialog("BYE", call_id, "z9hG4bKbye", tag, 2));
    let sent = net.drain();
    meanwhile(net);
    net.server_sends(
        MS1,
        answer(request_to(&sent, MS1, Method::Bye), 200, "OK", false),
    );
    net.drain();
}

fn caller_200(sent: &[(std::net::SocketAddr, Message)]) -> Option<Message> {
    only_to(sent, CALLER)
        .into_iter()
        .find(|m| m.status() == Some(200))
        .cloned()
}

#[test]
fn answered_calls_and_their_end_stream_in_order() {
    let mut net = Net::new();
    net.core.set_durability(net.now, Durability::Async);
    let (_, tag) = establish(&mut net, "r1@caller");
    let stream = changes(&mut net);
    let (seq, ReplicationChange::Call(call)) = &stream[0] else {
        panic!("{stream:?}")
    };
    assert_eq!(*seq, 1);
    assert_eq!(call.state, CallState::Confirmed);
    assert_eq!(call.caller.call_id, "r1@caller");
    assert_eq!(call.server.remote_tag.as_deref(), Some("srv1"));
    assert_eq!(call.server_name.as_deref(), Some("ms1"));
    assert_eq!(call.media.streams.len(), 1);

    caller_hangs_up(&mut net, "r1@caller", &tag, |net| {
        assert!(
            changes(net).is_empty(),
            "a relayed BYE sends no record: its 2xx removes the call"
        );
    });
    let stream = changes(&mut net);
    assert!(
        matches!(
            stream.as_slice(),
            [(2, ReplicationChange::CallRemoved { reason, .. })] if reason == "bye-caller"
        ),
        "{stream:?}"
    );
}

#[test]
fn a_call_is_described_when_handed_out_and_one_already_ended_as_removed() {
    let mut net = Net::new();
    net.core.set_durability(net.now, Durability::Async);
    let (_, tag) = establish(&mut net, "r9@caller");
    // The call ends before its answered record is handed out.
    caller_hangs_up(&mut net, "r9@caller", &tag, |_| {});
    let stream = changes(&mut net);
    assert!(
        matches!(
            stream.as_slice(),
            [
                (1, ReplicationChange::CallRemoved { key: first, .. }),
                (2, ReplicationChange::CallRemoved { key: second, reason }),
            ] if first == second && reason == "bye-caller"
        ),
        "{stream:?}"
    );
}

#[test]
fn a_live_call_is_handed_out_borrowed() {
    let mut net = Net::new();
    net.core.set_durability(net.now, Durability::Async);
    establish(&mut net, "r10@caller");
    let described = net.core.poll_replication_view(|seq, change| match change {
        tandem_core::ChangeView::Call(call) => (seq, call.caller.call_id.clone(), call.state),
        other => panic!("{other:?}"),
    });
    assert_eq!(
        described,
        Some((1, "r10@caller".to_owned(), CallState::Confirmed))
    );
    assert!(net.core.poll_replication_view(|_, _| ()).is_none());
}

#[test]
fn set_up_attempts_are_not_replicated() {
    let mut net = Net::new();
    net.core.set_durability(net.now, Durability::Async);
    net.caller_sends(&invite("r2@caller", "z9hG4bKr2", 70));
    let sent = net.drain();
    let srv_invite = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, answer(&srv_invite, 486, "Busy Here", false));
    net.drain();
    assert!(changes(&mut net).is_empty());
}

#[test]
fn sync_holds_the_answer_until_the_standby_acknowledges() {
    let mut net = Net::new();
    net.core.set_durability(net.now, SYNC);
    answer_call(&mut net, "r3@caller");
    assert!(caller_200(&net.drain()).is_none(), "held for the standby");
    assert_eq!(net.core.answers_waiting_for_standby(), 1);
    let (seq, _) = changes(&mut net).pop().unwrap();
    net.core.handle_replication_ack(net.now, seq - 1);
    assert!(
        caller_200(&net.drain()).is_none(),
        "an older ack is not enough"
    );
    net.core.handle_replication_ack(net.now, seq);
    assert!(caller_200(&net.drain()).is_some());
    assert_eq!(net.core.metrics().replication_sync_timeouts, 0);
}

#[test]
fn sync_answers_anyway_after_the_bounded_wait_and_counts_it() {
    let mut net = Net::new();
    net.core.set_durability(net.now, SYNC);
    answer_call(&mut net, "r4@caller");
    net.drain();
    net.advance(Duration::from_millis(49));
    assert!(caller_200(&net.drain()).is_none());
    net.advance(Duration::from_millis(2));
    assert!(caller_200(&net.drain()).is_some());
    assert_eq!(net.core.metrics().replication_sync_timeouts, 1);
}

#[test]
fn losing_the_standby_releases_held_answers() {
    let mut net = Net::new();
    net.core.set_durability(net.now, SYNC);
    answer_call(&mut net, "r5@caller");
    net.drain();
    net.core.set_durability(net.now, Durability::Off);
    assert!(caller_200(&net.drain()).is_some());
}

#[test]
fn a_second_node_carries_the_call_on_from_a_snapshot() {
    let mut active = Net::new();
    active.core.set_durability(active.now, Durability::Async);
    let (srv_invite, tag) = establish(&mut active, "r6@caller");
    let snapshot = active.core.replication_snapshot(active.now);
    assert_eq!(snapshot.calls.len(), 1);
    let ports = snapshot.calls[0].media.streams[0];

    // The standby takes over: same calls, same relay ports, same dialogs.
    let mut standby = Net::new();
    assert_eq!(standby.core.restore(standby.now, snapshot), 1);
    assert_eq!(standby.core.active_calls(), 1);
    assert_eq!(standby.core.media_ports().unwrap().0, 2);
    let plans: Vec<MediaCommand> = std::iter::from_fn(|| standby.core.poll_media()).collect();
    let MediaCommand::Apply(plan) = &plans[0] else {
        panic!("{plans:?}")
    };
    assert_eq!(
        plan.streams[0], ports,
        "the relay binds the very same ports"
    );

    // A re-INVITE from the caller minutes later crosses with the next CSeq of the server leg.
    standby.advance(Duration::from_secs(300));
    standby.drain();
    let mut reinvite = in_dialog("INVITE", "r6@caller", "z9hG4bKr6re", &tag, 2);
    reinvite = reinvite.replace(
        "Content-Length: 0\r\n",
        "Contact: <sip:caller@127.0.0.1:5061>\r\nContent-Length: 0\r\n",
    );
    standby.caller_sends(&reinvite);
    let sent = standby.drain();
    let srv_reinvite = request_to(&sent, MS1, Method::Invite).clone();
    assert_eq!(srv_reinvite.call_id(), srv_invite.call_id());
    assert_eq!(srv_reinvite.to_hdr().tag(), Some("srv1"));
    assert_eq!(srv_reinvite.cseq().seq, 2);
    standby.server_sends(MS1, answer(&srv_reinvite, 200, "OK", true));
    let sent = standby.drain();
    let ok = caller_200(&sent).unwrap();
    assert_eq!(ok.call_id(), "r6@caller");
    assert_eq!(ok.to_hdr().tag(), Some(tag.as_str()));

    // And the BYE ends it on both legs.
    standby.caller_sends(&in_dialog("BYE", "r6@caller", "z9hG4bKr6bye", &tag, 3));
    let sent = standby.drain();
    let bye = request_to(&sent, MS1, Method::Bye);
    assert_eq!(bye.cseq().seq, 3);
    let ok = answer(bye, 200, "OK", false);
    standby
        .core
        .handle_message(standby.now, ok, Peer::udp(addr(MS1)));
    assert_eq!(statuses(&standby.drain(), CALLER), vec![200]);
    assert_eq!(standby.core.active_calls(), 0);
    assert_eq!(standby.core.media_ports().unwrap().0, 0);
}

#[test]
fn calls_answered_before_a_standby_connects_are_in_its_snapshot() {
    let mut net = Net::new();
    let (_, tag) = establish(&mut net, "r7@caller");
    assert!(changes(&mut net).is_empty(), "no standby, no stream");
    net.core.set_durability(net.now, Durability::Async);
    let snapshot = net.core.replication_snapshot(net.now);
    assert_eq!(snapshot.calls.len(), 1);
    net.caller_sends(&in_dialog("BYE", "r7@caller", "z9hG4bKr7bye", &tag, 2));
    let sent = net.drain();
    net.server_sends(
        MS1,
        answer(request_to(&sent, MS1, Method::Bye), 200, "OK", false),
    );
    net.drain();
    assert!(changes(&mut net)
        .iter()
        .any(|(_, c)| matches!(c, ReplicationChange::CallRemoved { .. })));
}

#[test]
fn a_demoted_node_forgets_its_calls_silently_and_frees_their_ports() {
    let mut net = Net::new();
    establish(&mut net, "r8@caller");
    std::iter::from_fn(|| net.core.poll_media()).for_each(drop);
    assert_eq!(net.core.drop_all_calls(), 1);
    assert_eq!(net.core.active_calls(), 0);
    assert!(
        net.drain().is_empty(),
        "no BYE: the new active carries the call on"
    );
    assert_eq!(net.core.media_ports().unwrap().0, 0);
    assert!(matches!(
        net.core.poll_media(),
        Some(MediaCommand::Remove { .. })
    ));
}
