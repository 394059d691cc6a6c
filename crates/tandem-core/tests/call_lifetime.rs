//! How long an answered call lives: the session timer its endpoints negotiated (RFC 4028) and the
//! configured maximum duration, on virtual time. Either running out ends the call with a BYE on
//! both legs; a refresh moves the session's deadline; a standby that takes the call over keeps both.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use std::time::Duration;
use support::*;
use tandem_core::{CallEvent, Durability};
use tandem_sip::{HeaderName, Message, Method, ResponseBuilder};

const SECOND: Duration = Duration::from_secs(1);

/// The server's 200 with an SDP answer and, when given, `Session-Expires`.
fn ok_with_timer(req: &Message, session_expires: Option<&str>) -> Bytes {
    let mut b = ResponseBuilder::new(req, 200, "OK");
    b.to_tag("srv1")
        .header(HeaderName::Contact, "<sip:100@127.0.0.1:5070>");
    if let Some(value) = session_expires {
        b.header(HeaderName::Require, "timer")
            .header(HeaderName::SessionExpires, value);
    }
    b.body(
        "application/sdp",
        b"v=0\r\no=ms 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 8\r\n",
    );
    b.build()
}

/// The BYE requests Tandem sent (retransmissions counted once): (to the caller, to the media
/// server).
fn byes(sent: &[(std::net::SocketAddr, Message)]) -> (usize, usize) {
    let count = |to| {
        let mut cseqs: Vec<u32> = only_to(sent, to)
            .iter()
            .filter(|m| m.method() == Some(&Method::Bye))
            .map(|m| m.cseq().seq)
            .collect();
        cseqs.dedup();
        cseqs.len()
    };
    (count(CALLER), count(MS1))
}

fn ended_reasons(net: &mut Net) -> Vec<String> {
    net.events()
        .into_iter()
        .filter_map(|e| match e {
            CallEvent::CallEnded { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// The caller refreshes the session with a re-INVITE (CSeq `cseq`) that the server answers with
/// `session_expires`.
fn refresh(net: &mut Net, call_id: &str, tag: &str, cseq: u32, session_expires: Option<&str>) {
    net.caller_sends(&in_dialog(
        "INVITE",
        call_id,
        &format!("z9hG4bKre{cseq}"),
        tag,
        cseq,
    ));
    let sent = net.drain();
    let reinvite = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, ok_with_timer(&reinvite, session_expires));
    assert_eq!(statuses(&net.drain(), CALLER), vec![200]);
    net.caller_sends(&in_dialog(
        "ACK",
        call_id,
        &format!("z9hG4bKre{cseq}ack"),
        tag,
        cseq,
    ));
    net.drain();
}

#[test]
fn a_session_nobody_refreshes_ends_with_bye_on_both_legs_when_it_expires() {
    let mut net = Net::new();
    establish_with(&mut net, "lt1@caller", |invite| {
        ok_with_timer(invite, Some("90;refresher=uac"))
    });
    net.events();
    net.advance(89 * SECOND);
    assert_eq!(
        byes(&net.drain()),
        (0, 0),
        "not before the interval is over"
    );
    assert_eq!(net.core.active_calls(), 1);

    net.advance(2 * SECOND);
    assert_eq!(byes(&net.drain()), (1, 1));
    assert_eq!(net.core.active_calls(), 0);
    assert_eq!(net.core.metrics().calls_session_expired, 1);
    assert_eq!(ended_reasons(&mut net), vec!["session-expired"]);
}

#[test]
fn a_refresh_moves_the_session_deadline_and_one_without_a_timer_turns_it_off() {
    let mut net = Net::new();
    let (_, tag) = establish_with(&mut net, "lt2@caller", |invite| {
        ok_with_timer(invite, Some("90"))
    });
    net.advance(45 * SECOND);
    refresh(&mut net, "lt2@caller", &tag, 2, Some("90;refresher=uac"));
    // 100 s after the answer: past the first deadline, within the refreshed one (45 + 90).
    net.advance(55 * SECOND);
    assert_eq!(byes(&net.drain()), (0, 0), "the refresh counts");
    assert_eq!(net.core.active_calls(), 1);

    refresh(&mut net, "lt2@caller", &tag, 3, None);
    net.advance(3600 * SECOND);
    assert_eq!(
        byes(&net.drain()),
        (0, 0),
        "a 2xx without Session-Expires ends the timer"
    );
    assert_eq!(net.core.active_calls(), 1);
    assert_eq!(net.core.metrics().calls_session_expired, 0);
}

#[test]
fn a_compact_session_expires_header_is_understood() {
    let mut net = Net::new();
    establish_with(&mut net, "lt3@caller", |invite| {
        let ok = ok_with_timer(invite, None);
        let text = String::from_utf8(ok.to_vec()).unwrap();
        Bytes::from(text.replacen("\r\n", "\r\nx: 120\r\n", 1))
    });
    net.advance(119 * SECOND);
    assert_eq!(net.core.active_calls(), 1);
    net.advance(2 * SECOND);
    assert_eq!(byes(&net.drain()), (1, 1));
}

#[test]
fn a_session_interval_that_is_not_a_number_is_ignored() {
    let mut net = Net::new();
    establish_with(&mut net, "lt4@caller", |invite| {
        ok_with_timer(invite, Some("soon;refresher=uas"))
    });
    net.advance(7200 * SECOND);
    assert_eq!(byes(&net.drain()), (0, 0));
    assert_eq!(net.core.active_calls(), 1);
}

/// The caller's INVITE `call_id` rings on ms1; returns ms1's INVITE.
fn ring(net: &mut Net, call_id: &str) -> Message {
    net.caller_sends(&invite(call_id, "z9hG4bKring", 70));
    let sent = net.drain();
    let srv_invite = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, answer(&srv_invite, 180, "Ringing", false));
    net.drain();
    srv_invite
}

/// ms1 answers `srv_invite` (with `session_expires`) and the caller acknowledges.
fn answer_rung(net: &mut Net, call_id: &str, srv_invite: &Message, session_expires: Option<&str>) {
    net.server_sends(MS1, ok_with_timer(srv_invite, session_expires));
    let sent = net.drain();
    let ok = only_to(&sent, CALLER)
        .into_iter()
        .find(|m| m.status() == Some(200))
        .unwrap()
        .clone();
    let tag = ok.to_hdr().tag().unwrap().to_owned();
    net.caller_sends(&in_dialog("ACK", call_id, "z9hG4bKack", &tag, 1));
    net.drain();
}

#[test]
fn the_maximum_duration_ends_an_answered_call_whatever_it_does() {
    let mut net = Net::with_config(|c| c.max_call_duration = Some(600 * SECOND));
    // Ringing for 5 s does not count: the limit runs from the answer.
    let srv_invite = ring(&mut net, "lt5@caller");
    net.advance(5 * SECOND);
    answer_rung(&mut net, "lt5@caller", &srv_invite, Some("1800"));
    net.events();

    net.advance(599 * SECOND);
    assert_eq!(byes(&net.drain()), (0, 0));
    net.advance(2 * SECOND);
    assert_eq!(byes(&net.drain()), (1, 1));
    assert_eq!(net.core.metrics().calls_max_duration, 1);
    assert_eq!(ended_reasons(&mut net), vec!["max-duration"]);
}

#[test]
fn without_a_limit_or_a_timer_a_call_lasts() {
    let mut net = Net::new();
    establish(&mut net, "lt6@caller");
    net.advance(24 * 3600 * SECOND);
    assert_eq!(byes(&net.drain()), (0, 0));
    assert_eq!(net.core.active_calls(), 1);
}

#[test]
fn a_standby_that_takes_the_call_over_keeps_its_deadlines() {
    let mut active = Net::with_config(|c| c.max_call_duration = Some(3600 * SECOND));
    active.core.set_durability(active.now, Durability::Async);
    establish_with(&mut active, "lt7@caller", |invite| {
        ok_with_timer(invite, Some("300"))
    });
    active.advance(100 * SECOND);
    let snapshot = active.core.replication_snapshot(active.now);
    let times = snapshot.calls[0].times;
    assert_eq!(
        times.session_expires.unwrap() - times.answered.unwrap(),
        300 * SECOND
    );
    assert_eq!(
        times.max_duration.unwrap() - times.answered.unwrap(),
        3600 * SECOND
    );

    // The standby has no limit of its own: the call keeps the one it was answered under.
    let mut standby = Net::new();
    assert_eq!(standby.core.restore(standby.now, snapshot), 1);
    standby.drain();
    standby.advance(199 * SECOND);
    assert_eq!(byes(&standby.drain()), (0, 0));
    standby.advance(2 * SECOND);
    assert_eq!(
        byes(&standby.drain()),
        (1, 1),
        "the session expires 300 s after the answer, on the node that carries the call then"
    );
}

#[test]
fn a_deadline_that_passed_during_the_takeover_ends_the_call_at_once() {
    let mut active = Net::new();
    active.core.set_durability(active.now, Durability::Async);
    establish_with(&mut active, "lt8@caller", |invite| {
        ok_with_timer(invite, Some("90"))
    });
    let mut snapshot = active.core.replication_snapshot(active.now);
    snapshot.calls[0].age += 120 * SECOND;
    let mut standby = Net::new();
    standby.core.restore(standby.now, snapshot);
    standby.advance(Duration::ZERO);
    assert_eq!(byes(&standby.drain()), (1, 1));
    assert_eq!(standby.core.active_calls(), 0);
}

#[test]
fn an_ended_call_leaves_no_deadline_behind() {
    let mut net = Net::with_config(|c| {
        c.max_call_duration = Some(12 * 3600 * SECOND);
        c.media_servers.truncate(1); // every call on ms1
    });
    for n in 0..20 {
        let call_id = format!("lt9-{n}@caller");
        let (_, tag) = establish_with(&mut net, &call_id, |invite| {
            ok_with_timer(invite, Some("1800"))
        });
        assert_eq!(
            net.core.queued_call_deadlines(),
            2,
            "session expiry and maximum duration"
        );
        net.advance(60 * SECOND);
        refresh(&mut net, &call_id, &tag, 2, Some("1800"));
        assert_eq!(
            net.core.queued_call_deadlines(),
            2,
            "a refresh replaces one"
        );
        net.caller_sends(&in_dialog(
            "BYE",
            &call_id,
            &format!("z9hG4bKlt9b{n}"),
            &tag,
            3,
        ));
        let sent = net.drain();
        let bye = request_to(&sent, MS1, Method::Bye);
        net.server_sends(MS1, answer(bye, 200, "OK", false));
        net.drain();
        assert_eq!(net.core.active_calls(), 0);
        assert_eq!(
            net.core.queued_call_deadlines(),
            0,
            "call {n} left its deadlines behind"
        );
    }
}

#[test]
fn the_admin_view_shows_talk_time_and_what_ends_the_call_first() {
    let mut net = Net::with_config(|c| c.max_call_duration = Some(600 * SECOND));
    let srv_invite = ring(&mut net, "lt10@caller");
    net.advance(4 * SECOND);
    let ringing = net.core.call_overview(net.now, "lt10@caller").unwrap();
    assert_eq!((ringing.talk_time(), ringing.ends_in()), (None, None));

    answer_rung(&mut net, "lt10@caller", &srv_invite, Some("90"));
    net.advance(10 * SECOND);
    let call = net.core.call_overview(net.now, "lt10@caller").unwrap();
    assert_eq!(call.talk_time(), Some(10 * SECOND));
    assert_eq!(call.ends_in(), Some((80 * SECOND, "session-expires")));

    let mut short = Net::with_config(|c| c.max_call_duration = Some(60 * SECOND));
    establish_with(&mut short, "lt11@caller", |invite| {
        ok_with_timer(invite, Some("90"))
    });
    let call = short.core.call_overview(short.now, "lt11@caller").unwrap();
    assert_eq!(call.ends_in(), Some((60 * SECOND, "max-duration")));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever a Session-Expires value says, Tandem does not fail on it: a whole number of
    /// seconds within a week (before its parameters) ends an unrefreshed call right then, anything
    /// else sets no timer.
    #[test]
    fn any_session_expires_value_sets_its_interval_or_none(
        value in proptest::prop_oneof![
            "[0-9]{1,7}(;refresher=ua[cs])?",
            "[ -~]{0,24}",
        ]
    ) {
        let mut net = Net::new();
        establish_with(&mut net, "lt12@caller", |invite| ok_with_timer(invite, Some(&value)));
        let interval = value
            .split(';')
            .next()
            .and_then(|seconds| seconds.trim().parse::<u64>().ok())
            .filter(|seconds| (1..=7 * 24 * 3600).contains(seconds));
        match interval {
            Some(seconds) => {
                net.advance(Duration::from_secs(seconds) - Duration::from_millis(1));
                proptest::prop_assert_eq!(net.core.active_calls(), 1);
                net.advance(Duration::from_millis(1));
                proptest::prop_assert_eq!(net.core.active_calls(), 0);
            }
            None => {
                net.advance(8 * 24 * 3600 * SECOND);
                proptest::prop_assert_eq!(net.core.active_calls(), 1);
            }
        }
    }
}
