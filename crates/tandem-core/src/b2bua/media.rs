//! Media anchoring inside calls: SDP bodies crossing a call are moved onto Tandem's relay ports
//! (`crate::media`), and what the data plane reports comes back here.

use super::Core;
use crate::call::{CallKey, Side};
use crate::media::AnchorError;
use bytes::Bytes;
use std::time::Instant;
use tandem_media::continuity::StreamSnapshot;
use tandem_media::session::{MediaCommand, MediaEvent, MediaSide};
use tandem_sip::Message;

/// What to do with the body of a message crossing a call.
#[derive(Debug)]
pub(super) enum Anchored {
    /// Forward the body as it is (no SDP, media anchoring off, or an SDP Tandem cannot read).
    Keep,
    /// Forward this body instead.
    Replace(Bytes),
    /// No relay ports are free for the streams the body adds.
    Exhausted,
}

impl Anchored {
    pub(super) fn body(&self) -> Option<&[u8]> {
        match self {
            Anchored::Replace(body) => Some(body),
            Anchored::Keep | Anchored::Exhausted => None,
        }
    }
}

pub(super) fn media_side(side: Side) -> MediaSide {
    match side {
        Side::Caller => MediaSide::Caller,
        Side::Server => MediaSide::Server,
    }
}

/// Whether `msg` carries an SDP body (`application/sdp`, parameters allowed).
fn has_sdp(msg: &Message) -> bool {
    if msg.body().is_empty() {
        return false;
    }
    msg.content_type().is_some_and(|ct| {
        let media_type = ct.split(';').next().unwrap_or_default().trim();
        media_type.eq_ignore_ascii_case("application/sdp")
    })
}

impl Core {
    /// The body of `msg`, sent by `from` on call `key`, anchored for the other side.
    pub(super) fn anchor_body(
        &mut self,
        now: Instant,
        key: CallKey,
        from: Side,
        msg: &Message,
    ) -> Anchored {
        let Some(anchor) = self.media.as_mut() else {
            return Anchored::Keep;
        };
        if !has_sdp(msg) {
            return Anchored::Keep;
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return Anchored::Keep;
        };
        let result = anchor.anchor(&mut call.media, media_side(from), &msg.body());
        match result {
            Ok(body) => {
                let age = now.saturating_duration_since(call.created);
                anchor.apply(key, &call.caller.call_id, &call.media, age);
                body.map_or(Anchored::Keep, Anchored::Replace)
            }
            Err(AnchorError::PortsExhausted) => {
                tracing::warn!(call_id = %call.caller.call_id, "no relay ports free");
                Anchored::Exhausted
            }
            Err(error @ AnchorError::Sdp(_)) => {
                tracing::warn!(call_id = %call.caller.call_id, %error, "SDP forwarded unanchored");
                Anchored::Keep
            }
        }
    }

    /// A new media server is being tried for call `key`: its media endpoints are learned anew.
    pub(super) fn forget_server_media(&mut self, key: CallKey) {
        if let Some(call) = self.calls.get_mut(&key) {
            call.media.forget_server();
        }
    }

    /// The call's relay ports go back to the range.
    pub(super) fn release_media(&mut self, key: CallKey, media: &crate::media::CallMedia) {
        if let Some(anchor) = self.media.as_mut() {
            anchor.release(key, media);
        }
    }

    /// What the data plane must do next (apply a call's media plan, close a call's ports).
    pub fn poll_media(&mut self) -> Option<MediaCommand> {
        self.media.as_mut()?.poll_command()
    }

    /// The anchoring counters, when media anchoring is on.
    pub fn media_metrics(&self) -> Option<crate::media::AnchorMetrics> {
        self.media.as_ref().map(|m| m.metrics())
    }

    /// Relay port pairs in use and free, when media anchoring is on.
    pub fn media_ports(&self) -> Option<(usize, usize)> {
        self.media
            .as_ref()
            .map(|m| (m.pairs_in_use(), m.pairs_free()))
    }

    /// Something the data plane noticed.
    pub fn handle_media_event(&mut self, now: Instant, event: MediaEvent) {
        match event {
            MediaEvent::Inactive { call, side } => self.on_media_inactive(now, call, side),
            MediaEvent::Latched {
                call,
                side,
                index,
                source,
                rtcp,
            } => self.on_media_latched(now, call, side, index, source, rtcp),
            MediaEvent::Outbound {
                call,
                side,
                index,
                stream,
            } => self.on_outbound_remapped(now, call, side, index, &stream),
            MediaEvent::BindFailed { call, port, error } => {
                self.metrics.media_bind_failures += 1;
                let call_id = self.calls.get(&call).map(|c| c.caller.call_id.clone());
                tracing::error!(call_id = call_id.as_deref().unwrap_or("-"), port, %error, "relay port could not be bound");
            }
        }
    }

    /// The relay latched `side` of stream `index` on `source`: kept with the call's media, so a
    /// node that takes the call over sends there from its first packet (one change for the
    /// standby per latch, none when the source is the one already known).
    fn on_media_latched(
        &mut self,
        now: Instant,
        call: CallKey,
        side: MediaSide,
        index: u16,
        source: std::net::SocketAddr,
        rtcp: bool,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        tracing::debug!(call_id = %c.caller.call_id, side = side.as_str(), index, %source, rtcp, "media source latched");
        if c.media.record_latch(index, side, rtcp, source) {
            self.replicate_call(now, call);
        }
    }

    /// The stream Tandem sends toward `side` of stream `index` follows a new source: kept with the
    /// call's media for the standby.
    fn on_outbound_remapped(
        &mut self,
        now: Instant,
        call: CallKey,
        side: MediaSide,
        index: u16,
        stream: &StreamSnapshot,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let age = now.saturating_duration_since(c.created);
        let record = crate::media::OutboundRecord::from_report(stream, age);
        if c.media.record_outbound(index, side, record) {
            self.replicate_call(now, call);
        }
    }

    /// No media from `side` of call `call` for the inactivity timeout. A silent caller that should
    /// be sending means the call is dead: both legs get BYE. A silent media server while the caller
    /// is alive is reported to the pool's health logic (an immediate probe) and counted; the call
    /// stays up. A side on hold is not expected to send and is left alone.
    fn on_media_inactive(&mut self, now: Instant, call: CallKey, side: MediaSide) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if !c.media.side_sends(side) {
            return;
        }
        let call_id = c.caller.call_id.clone();
        match side {
            MediaSide::Caller => {
                self.metrics.media_timeouts += 1;
                tracing::warn!(%call_id, "no media from the caller; ending the call");
                self.hang_up_both(now, call, "media-timeout");
            }
            MediaSide::Server => {
                self.metrics.server_media_silences += 1;
                if let Some(server) = c.server_index {
                    let name = self.pool.server(server).config.name.clone();
                    tracing::warn!(%call_id, server = %name, "no media from the media server; probing it now");
                    let state = self.pool.server_mut(server);
                    if state.probe_in_flight.is_none() {
                        state.next_probe = now;
                    }
                    self.run_probes(now);
                }
            }
        }
    }
}
