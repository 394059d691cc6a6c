//! Media anchoring in the signalling core: every SDP offer and answer that crosses a call is read
//! (where the sending side wants its media) and rewritten (so that the receiving side sends its
//! media to Tandem's relay ports). The port allocation and the per-call [`SessionPlan`] are plain
//! call state; the data plane applies the plans it is handed through [`MediaCommand`]s.

use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tandem_media::continuity::{SourceSnapshot, StreamSnapshot};
use tandem_media::ports::{PortAllocator, PortPair, PortRangeError};
use tandem_media::session::{EndpointPlan, MediaCommand, MediaSide, SessionPlan, StreamPlan};
use tandem_sdp::{Direction, MediaPorts, Plan, Sdp, SdpError};

/// Where relay ports live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaConfig {
    /// The address relay sockets bind to and SDP bodies name (the service address / VIP).
    pub address: IpAddr,
    /// First port of the relay range (RTP ports are even, RTCP the odd port above).
    pub port_min: u16,
    /// Last port of the relay range.
    pub port_max: u16,
}

/// Why a body could not be anchored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// The body is not SDP Tandem can read.
    #[error("unreadable SDP: {0}")]
    Sdp(#[from] SdpError),
    /// No relay port pair is free.
    #[error("relay ports exhausted")]
    PortsExhausted,
}

/// Counters of the anchoring work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnchorMetrics {
    /// SDP bodies rewritten onto relay ports.
    pub sdp_rewritten: u64,
    /// SDP bodies forwarded unchanged because they could not be read (their media bypasses Tandem).
    pub sdp_unanchored: u64,
    /// Offers refused because no relay port pair was free.
    pub ports_exhausted: u64,
}

/// The `o=` session versions Tandem sent toward one side, so that a body seen again keeps its
/// version and a changed body gets exactly one more (RFC 3264 §8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionTrack {
    /// The version the last body arrived with, and the version Tandem sent it on with.
    last: Option<(u64, u64)>,
}

impl VersionTrack {
    /// A track that last sent version `sent` for a body that arrived with `received`, as
    /// `Some((received, sent))` (restoring a replicated call).
    pub fn from_last(last: Option<(u64, u64)>) -> VersionTrack {
        VersionTrack { last }
    }

    /// The version the last body arrived with and the version Tandem sent it on with.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.last
    }

    fn next(&mut self, incoming: u64) -> u64 {
        let out = match self.last {
            Some((seen, sent)) if seen == incoming => sent,
            Some((_, sent)) => sent.wrapping_add(1),
            None => incoming.wrapping_add(1),
        };
        self.last = Some((incoming, out));
        out
    }
}

/// The media state of one call: the streams with their relay ports on both sides and where each
/// side wants its media, plus what each side last said about sending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallMedia {
    /// One per m-line seen so far, in body order.
    pub streams: Vec<StreamPlan>,
    /// Whether each side's latest SDP says it sends media on the stream (index as `streams`):
    /// `[caller, server]`. A side that does not send (hold, `recvonly`, `inactive`) is not expected
    /// to stay audible.
    pub sending: Vec<[bool; 2]>,
    /// Versions Tandem sent toward the caller and toward the server.
    pub versions: [VersionTrack; 2],
    /// The RTP stream Tandem sends toward each side (index as `streams`), as the relay last
    /// reported it: `[toward the caller, toward the server]`; `None` until the stream switched
    /// source once (before that it is a passthrough, which a new node rebuilds by itself). Empty
    /// while no stream has a record, else as long as `streams`.
    pub outbound: Vec<[Option<OutboundRecord>; 2]>,
    /// The latest SDP body each side sent, as it sent it (before Tandem's rewrite): `[the
    /// caller's, the server's]`; empty until one arrived. What a node that takes the call over
    /// offers a new media server, and what an operator reads about the call.
    pub bodies: [Bytes; 2],
}

/// The RTP stream Tandem sends toward one side, as the relay reported it on its latest switch of
/// source, so that a node taking the call over keeps the receiver's SSRC and carries the sequence
/// and timestamp on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundRecord {
    /// The SSRC the receiver knows.
    pub ssrc: u32,
    /// Sequence number of the newest packet sent when reported.
    pub last_sequence: u16,
    /// Timestamp of that packet.
    pub last_timestamp: u32,
    /// The call's age when that packet left (a time base that travels with the call).
    pub sent_at: Duration,
    /// How the source relayed then mapped onto the stream.
    pub source: Option<SourceSnapshot>,
}

impl OutboundRecord {
    /// The relay's report, received when the call was `call_age` old.
    pub fn from_report(stream: &StreamSnapshot, call_age: Duration) -> OutboundRecord {
        OutboundRecord {
            ssrc: stream.outbound_ssrc,
            last_sequence: stream.last_sequence,
            last_timestamp: stream.last_timestamp,
            sent_at: call_age.saturating_sub(stream.since_last_sent),
            source: stream.source,
        }
    }

    /// The stream for the relay, now that the call is `call_age` old.
    pub fn to_stream(&self, call_age: Duration) -> StreamSnapshot {
        StreamSnapshot {
            outbound_ssrc: self.ssrc,
            last_sequence: self.last_sequence,
            last_timestamp: self.last_timestamp,
            since_last_sent: call_age.saturating_sub(self.sent_at),
            source: self.source,
        }
    }
}

impl CallMedia {
    /// Whether the latest SDP of `side` says it sends media on some stream.
    pub fn side_sends(&self, side: MediaSide) -> bool {
        self.sending.iter().any(|s| s[slot(side)])
    }

    /// Every relay port pair the call holds.
    pub fn pairs(&self) -> impl Iterator<Item = PortPair> + '_ {
        self.streams
            .iter()
            .flat_map(|s| [s.caller.local, s.server.local])
    }

    /// Records the source the relay latched on for `side` of stream `index` (its RTCP port's latch
    /// when `rtcp`). Returns whether anything changed.
    pub fn record_latch(
        &mut self,
        index: u16,
        side: MediaSide,
        rtcp: bool,
        source: SocketAddr,
    ) -> bool {
        let Some(stream) = self.streams.iter_mut().find(|s| s.index == index) else {
            return false;
        };
        let endpoint = stream.endpoint_mut(side);
        let latched = match rtcp {
            true => &mut endpoint.latched_rtcp,
            false => &mut endpoint.latched_rtp,
        };
        let changed = *latched != Some(source);
        *latched = Some(source);
        changed
    }

    /// Records the stream Tandem sends toward `side` of stream `index`. Returns whether anything
    /// changed.
    pub fn record_outbound(&mut self, index: u16, side: MediaSide, record: OutboundRecord) -> bool {
        let Some(position) = self.streams.iter().position(|s| s.index == index) else {
            return false;
        };
        if self.outbound.len() < self.streams.len() {
            self.outbound.resize(self.streams.len(), [None, None]);
        }
        let Some(pair) = self.outbound.get_mut(position) else {
            return false;
        };
        let slot = &mut pair[slot(side)];
        let changed = *slot != Some(record);
        *slot = Some(record);
        changed
    }

    /// The relay's plan of the call's streams, with the outbound streams to resume for a call
    /// that is `call_age` old.
    pub fn plan_streams(&self, call_age: Duration) -> Vec<StreamPlan> {
        let mut streams = self.streams.clone();
        for (stream, outbound) in streams.iter_mut().zip(&self.outbound) {
            for side in [MediaSide::Caller, MediaSide::Server] {
                stream.endpoint_mut(side).outbound =
                    outbound[slot(side)].map(|record| record.to_stream(call_age));
            }
        }
        streams
    }

    /// Forgets the server side's media (a new media server is being tried): its endpoints are
    /// learned again from the new server's SDP, Tandem's ports stay.
    pub fn forget_server(&mut self) {
        for s in &mut self.streams {
            s.server.remote_rtp = None;
            s.server.remote_rtcp = None;
            s.server.rtcp_mux = false;
            s.server.latched_rtp = None;
            s.server.latched_rtcp = None;
        }
        for s in &mut self.sending {
            s[slot(MediaSide::Server)] = false;
        }
        self.bodies[slot(MediaSide::Server)] = Bytes::new();
    }
}

fn slot(side: MediaSide) -> usize {
    match side {
        MediaSide::Caller => 0,
        MediaSide::Server => 1,
    }
}

/// The node's relay port range and the commands waiting for the data plane.
#[derive(Debug)]
pub struct MediaAnchor {
    config: MediaConfig,
    ports: PortAllocator,
    commands: std::collections::VecDeque<MediaCommand>,
    metrics: AnchorMetrics,
}

impl MediaAnchor {
    pub fn new(config: MediaConfig) -> Result<MediaAnchor, PortRangeError> {
        Ok(MediaAnchor {
            ports: PortAllocator::new(config.port_min, config.port_max)?,
            config,
            commands: std::collections::VecDeque::new(),
            metrics: AnchorMetrics::default(),
        })
    }

    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    pub fn metrics(&self) -> AnchorMetrics {
        self.metrics
    }

    /// Relay port pairs in use.
    pub fn pairs_in_use(&self) -> usize {
        self.ports.in_use()
    }

    /// Relay port pairs still free.
    pub fn pairs_free(&self) -> usize {
        self.ports.free()
    }

    pub fn poll_command(&mut self) -> Option<MediaCommand> {
        self.commands.pop_front()
    }

    /// An SDP `body` sent by `from` is about to cross to the other side: remembers where `from`
    /// wants its media and returns the body rewritten onto the relay ports facing the other side
    /// (`None`: unchanged). New m-lines get port pairs on both sides.
    pub fn anchor(
        &mut self,
        media: &mut CallMedia,
        from: MediaSide,
        body: &Bytes,
    ) -> Result<Option<Bytes>, AnchorError> {
        let sdp = match Sdp::parse(body) {
            Ok(sdp) => sdp,
            Err(error) => {
                self.metrics.sdp_unanchored += 1;
                return Err(error.into());
            }
        };
        let sections = sdp.media().len();
        while media.streams.len() < sections {
            let index = u16::try_from(media.streams.len()).unwrap_or(u16::MAX);
            let caller = self.allocate()?;
            let server = match self.allocate() {
                Ok(pair) => pair,
                Err(error) => {
                    let _ = self.ports.release(caller);
                    return Err(error);
                }
            };
            media.streams.push(StreamPlan {
                index,
                clock_rate: 8000,
                caller: EndpointPlan::unsignalled(caller),
                server: EndpointPlan::unsignalled(server),
            });
            media.sending.push([false, false]);
        }
        if !media.outbound.is_empty() {
            media.outbound.resize(media.streams.len(), [None, None]);
        }
        let to = from.other();
        let mut plan = Plan {
            connection: Some(self.config.address),
            media: Vec::with_capacity(sections),
            origin_version: None,
        };
        for (i, section) in sdp.media().iter().enumerate() {
            let stream = &mut media.streams[i];
            stream.clock_rate = clock_rate(&sdp, i);
            let endpoint = stream.endpoint_mut(from);
            let ip = sdp.effective_connection(i).and_then(|c| c.ip);
            let usable = ip.filter(|ip| !ip.is_unspecified() && !section.is_rejected());
            endpoint.rtcp_mux = section.rtcp_mux;
            let remote_rtp = usable.map(|ip| SocketAddr::new(ip, section.port));
            let remote_rtcp = usable.map(|ip| match (&section.rtcp, section.rtcp_mux) {
                (_, true) => SocketAddr::new(ip, section.port),
                (Some(rtcp), false) => {
                    let rtcp_ip = rtcp.address.as_ref().and_then(|c| c.ip).unwrap_or(ip);
                    SocketAddr::new(rtcp_ip, rtcp.port)
                }
                (None, false) => SocketAddr::new(ip, section.port.wrapping_add(1)),
            });
            // A changed address re-signals the relay's latch, which forgets its source.
            if endpoint.remote_rtp != remote_rtp {
                endpoint.latched_rtp = None;
            }
            if endpoint.remote_rtcp != remote_rtcp {
                endpoint.latched_rtcp = None;
            }
            endpoint.remote_rtp = remote_rtp;
            endpoint.remote_rtcp = remote_rtcp;
            let direction = sdp.effective_direction(i).unwrap_or(Direction::SendRecv);
            media.sending[i][slot(from)] =
                usable.is_some() && matches!(direction, Direction::SendRecv | Direction::SendOnly);
            plan.media.push(Some(MediaPorts {
                rtp: stream.endpoint(to).local.rtp(),
                rtcp: None,
            }));
        }
        plan.origin_version = Some(media.versions[slot(to)].next(sdp.origin_version()));
        // A copy: a slice would keep the whole received message alive with the call.
        media.bodies[slot(from)] = Bytes::copy_from_slice(body);
        let rewritten = sdp.rewrite(&plan)?;
        self.metrics.sdp_rewritten += 1;
        Ok(rewritten.changed.then_some(rewritten.body))
    }

    /// Queues the plan of a call that is `call_age` old for the data plane.
    pub fn apply(&mut self, call: u64, call_id: &str, media: &CallMedia, call_age: Duration) {
        if let Some(plan) = session_plan(call, call_id, media, call_age) {
            self.commands.push_back(MediaCommand::Apply(plan));
        }
    }

    /// Queues a standby's copy of a call the active node carries: the data plane binds its ports
    /// ahead of a takeover. The range's allocation is untouched (the call is not this node's yet).
    pub fn prepare(&mut self, call: u64, call_id: &str, media: &CallMedia, call_age: Duration) {
        if let Some(plan) = session_plan(call, call_id, media, call_age) {
            self.commands.push_back(MediaCommand::Prepare(plan));
        }
    }

    /// A prepared call ended on the active node: the data plane closes its ports.
    pub fn unprepare(&mut self, call: u64) {
        self.commands.push_back(MediaCommand::Remove { call });
    }

    /// The call ended: its ports go back to the range and the data plane closes them.
    pub fn release(&mut self, call: u64, media: &CallMedia) {
        if media.streams.is_empty() {
            return;
        }
        for pair in media.pairs() {
            if let Err(error) = self.ports.release(pair) {
                tracing::error!(%error, "relay port pair released twice");
            }
        }
        self.commands.push_back(MediaCommand::Remove { call });
    }

    /// Takes the pairs of a call restored from a replica out of the free range.
    pub fn reserve(&mut self, media: &CallMedia) -> Result<(), tandem_media::ports::PairError> {
        for pair in media.pairs() {
            self.ports.reserve(pair)?;
        }
        Ok(())
    }

    fn allocate(&mut self) -> Result<PortPair, AnchorError> {
        self.ports.allocate().map_err(|_| {
            self.metrics.ports_exhausted += 1;
            AnchorError::PortsExhausted
        })
    }
}

/// The data plane's plan of a call that is `call_age` old; `None` without media streams.
fn session_plan(
    call: u64,
    call_id: &str,
    media: &CallMedia,
    call_age: Duration,
) -> Option<SessionPlan> {
    (!media.streams.is_empty()).then(|| SessionPlan {
        call,
        call_id: call_id.to_owned(),
        streams: media.plan_streams(call_age),
    })
}

/// RTP clock rate of section `i`'s first payload format: the static table of RFC 3551 or its
/// `a=rtpmap`; 8000 when unknown (audio), 90000 for unknown video.
fn clock_rate(sdp: &Sdp<'_>, i: usize) -> u32 {
    let section = &sdp.media()[i];
    let default = if section.media == b"video" {
        90_000
    } else {
        8000
    };
    let Some(first) = section
        .formats
        .split(|b| *b == b' ')
        .find(|f| !f.is_empty())
    else {
        return default;
    };
    let rtpmap = sdp.lines().iter().find_map(|line| {
        if line.kind != b'a' || line.section != Some(i) {
            return None;
        }
        let rest = line.value.strip_prefix(b"rtpmap:")?;
        let rest = rest.strip_prefix(first)?;
        let encoding = rest.strip_prefix(b" ")?;
        let rate = encoding.split(|b| *b == b'/').nth(1)?;
        std::str::from_utf8(rate).ok()?.trim().parse::<u32>().ok()
    });
    if let Some(rate) = rtpmap.filter(|r| *r > 0) {
        return rate;
    }
    match first {
        b"10" | b"11" => 44_100,
        b"14" | b"25" | b"26" | b"28" | b"31" | b"32" | b"33" | b"34" => 90_000,
        _ => default,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn anchor() -> MediaAnchor {
        MediaAnchor::new(MediaConfig {
            address: "192.0.2.1".parse().unwrap(),
            port_min: 30000,
            port_max: 30099,
        })
        .unwrap()
    }

    fn offer(version: u64, ip: &str, port: u16, extra: &str) -> Bytes {
        Bytes::from(format!(
            "v=0\r\no=- 1 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n{extra}"
        ))
    }

    fn text(body: &Option<Bytes>) -> String {
        String::from_utf8(body.clone().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn offer_and_answer_are_anchored_on_opposite_pairs() {
        let mut a = anchor();
        let mut media = CallMedia::default();
        let out = a
            .anchor(
                &mut media,
                MediaSide::Caller,
                &offer(5, "10.0.0.1", 4000, ""),
            )
            .unwrap();
        let s = media.streams[0];
        assert_eq!(s.caller.remote_rtp, Some("10.0.0.1:4000".parse().unwrap()));
        assert_eq!(s.caller.remote_rtcp, Some("10.0.0.1:4001".parse().unwrap()));
        let sent = text(&out);
        assert!(sent.contains("c=IN IP4 192.0.2.1\r\n"), "{sent}");
        assert!(sent.contains(&format!("m=audio {} ", s.server.local.rtp())));
        assert!(sent.contains("o=- 1 6 IN IP4"), "{sent}");

        let out = a
            .anchor(
                &mut media,
                MediaSide::Server,
                &offer(9, "10.0.0.9", 9000, "a=rtcp-mux\r\n"),
            )
            .unwrap();
        let s = media.streams[0];
        assert_eq!(s.server.remote_rtcp, Some("10.0.0.9:9000".parse().unwrap()));
        assert!(s.server.rtcp_mux);
        assert!(text(&out).contains(&format!("m=audio {} ", s.caller.local.rtp())));
        assert_eq!(a.pairs_in_use(), 2);
        assert!(media.side_sends(MediaSide::Caller) && media.side_sends(MediaSide::Server));
    }

    #[test]
    fn versions_stay_for_a_repeated_body_and_grow_by_one_on_change() {
        let mut a = anchor();
        let mut media = CallMedia::default();
        let first = text(
            &a.anchor(
                &mut media,
                MediaSide::Server,
                &offer(3, "10.0.0.9", 9000, ""),
            )
            .unwrap(),
        );
        // 183 then 200 with the same SDP: same version both times.
        let again = text(
            &a.anchor(
                &mut media,
                MediaSide::Server,
                &offer(3, "10.0.0.9", 9000, ""),
            )
            .unwrap(),
        );
        assert_eq!(first, again);
        let changed = text(
            &a.anchor(
                &mut media,
                MediaSide::Server,
                &offer(4, "10.0.0.9", 9002, ""),
            )
            .unwrap(),
        );
        assert!(changed.contains("o=- 1 5 IN IP4"), "{changed}");
        // A new server whose session starts at version 1: still one more than the last sent.
        media.forget_server();
        let new_server = text(
            &a.anchor(
                &mut media,
                MediaSide::Server,
                &offer(1, "10.0.0.7", 7000, ""),
            )
            .unwrap(),
        );
        assert!(new_server.contains("o=- 1 6 IN IP4"), "{new_server}");
    }

    #[test]
    fn hold_is_passed_through_and_marks_the_side_silent() {
        let mut a = anchor();
        let mut media = CallMedia::default();
        a.anchor(
            &mut media,
            MediaSide::Caller,
            &offer(1, "10.0.0.1", 4000, ""),
        )
        .unwrap();
        let hold = Bytes::from_static(
            b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\na=sendonly\r\n",
        );
        let out = text(&a.anchor(&mut media, MediaSide::Caller, &hold).unwrap());
        assert!(out.contains("c=IN IP4 0.0.0.0\r\n"), "{out}");
        assert!(out.contains("a=sendonly\r\n"));
        assert_eq!(media.streams[0].caller.remote_rtp, None);
        assert!(!media.side_sends(MediaSide::Caller));
    }

    #[test]
    fn new_m_lines_get_pairs_rejected_ones_keep_port_zero() {
        let mut a = anchor();
        let mut media = CallMedia::default();
        let body = Bytes::from_static(
            b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=x-unknown:keep me\r\n",
        );
        let out = text(&a.anchor(&mut media, MediaSide::Caller, &body).unwrap());
        assert_eq!(media.streams.len(), 3);
        assert!(out.contains("m=video 0 RTP/AVP 96\r\n"), "{out}");
        assert!(out.contains("a=x-unknown:keep me\r\n"));
        assert_eq!(media.streams[1].caller.remote_rtp, None);
        assert_eq!(media.streams[2].clock_rate, 90_000);
        a.release(7, &media);
        assert_eq!(a.pairs_in_use(), 0);
        assert!(matches!(
            a.poll_command(),
            Some(MediaCommand::Remove { call: 7 })
        ));
    }

    #[test]
    fn exhaustion_is_an_error_and_leaks_nothing() {
        let mut a = MediaAnchor::new(MediaConfig {
            address: "192.0.2.1".parse().unwrap(),
            port_min: 30000,
            port_max: 30005,
        })
        .unwrap();
        let mut one = CallMedia::default();
        a.anchor(&mut one, MediaSide::Caller, &offer(1, "10.0.0.1", 4000, ""))
            .unwrap();
        let mut two = CallMedia::default();
        assert_eq!(
            a.anchor(&mut two, MediaSide::Caller, &offer(1, "10.0.0.2", 4000, "")),
            Err(AnchorError::PortsExhausted)
        );
        assert_eq!(a.pairs_in_use(), 2);
        assert!(two.streams.is_empty());
    }

    #[test]
    fn a_latch_is_kept_while_the_address_stays_and_forgotten_when_it_changes() {
        let mut a = anchor();
        let mut media = CallMedia::default();
        a.anchor(
            &mut media,
            MediaSide::Caller,
            &offer(1, "10.0.0.1", 4000, ""),
        )
        .unwrap();
        let natted: SocketAddr = "198.51.100.7:61000".parse().unwrap();
        let rtcp: SocketAddr = "198.51.100.7:61001".parse().unwrap();
        assert!(media.record_latch(0, MediaSide::Caller, false, natted));
        assert!(media.record_latch(0, MediaSide::Caller, true, rtcp));
        assert!(!media.record_latch(0, MediaSide::Caller, false, natted));
        assert!(!media.record_latch(3, MediaSide::Caller, false, natted));
        // Same address again (a re-INVITE that changes the direction only): the relay keeps its
        // latch, so does the call.
        a.anchor(
            &mut media,
            MediaSide::Caller,
            &offer(2, "10.0.0.1", 4000, "a=sendonly\r\n"),
        )
        .unwrap();
        assert_eq!(media.streams[0].caller.latched_rtp, Some(natted));
        assert_eq!(media.streams[0].caller.latched_rtcp, Some(rtcp));
        // A new port re-signals the relay's latch: forgotten.
        a.anchor(
            &mut media,
            MediaSide::Caller,
            &offer(3, "10.0.0.1", 4002, ""),
        )
        .unwrap();
        assert_eq!(media.streams[0].caller.latched_rtp, None);
        assert_eq!(media.streams[0].caller.latched_rtcp, None);
        // A new media server's side is learned anew, latches included.
        assert!(media.record_latch(0, MediaSide::Server, false, natted));
        media.forget_server();
        assert_eq!(media.streams[0].server.latched_rtp, None);
    }

    #[test]
    fn the_plan_carries_the_outbound_stream_as_of_the_calls_age() {
        use tandem_media::continuity::StreamSnapshot;
        let mut a = anchor();
        let mut media = CallMedia::default();
        a.anchor(
            &mut media,
            MediaSide::Caller,
            &offer(1, "10.0.0.1", 4000, ""),
        )
        .unwrap();
        let report = StreamSnapshot {
            outbound_ssrc: 7,
            last_sequence: 1,
            last_timestamp: 2,
            since_last_sent: Duration::from_millis(5),
            source: None,
        };
        let record = OutboundRecord::from_report(&report, Duration::from_secs(60));
        assert_eq!(record.sent_at, Duration::from_millis(59_995));
        assert!(media.record_outbound(0, MediaSide::Server, record));
        assert!(!media.record_outbound(0, MediaSide::Server, record));
        a.apply(1, "c", &media, Duration::from_secs(61));
        let Some(MediaCommand::Apply(plan)) = a.poll_command() else {
            panic!("no plan")
        };
        let sent = plan.streams[0].server.outbound.unwrap();
        assert_eq!(sent.since_last_sent, Duration::from_millis(1005));
        assert_eq!(plan.streams[0].caller.outbound, None);
        assert_eq!(media.streams[0].server.outbound, None, "kept apart");
    }

    #[test]
    fn unreadable_sdp_is_an_error() {
        let mut a = anchor();
        let mut media = CallMedia::default();
        let garbage = Bytes::from_static(b"this is not sdp");
        assert!(matches!(
            a.anchor(&mut media, MediaSide::Caller, &garbage),
            Err(AnchorError::Sdp(_))
        ));
        assert_eq!(a.metrics().sdp_unanchored, 1);
    }
}
