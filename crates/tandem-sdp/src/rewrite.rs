//! The rewrite: a sorted list of byte-range replacements spliced over the original body.

use std::net::IpAddr;
use std::ops::Range;

use bytes::Bytes;

use crate::parse::{Connection, Sdp};
use crate::SdpError;

/// Relay ports for one media section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPorts {
    /// The new `m=` port.
    pub rtp: u16,
    /// The new `a=rtcp:` port. `None` derives it: the RTP port when the original `a=rtcp` port
    /// equalled the `m=` port (multiplexed), else RTP port + 1. Only used when `a=rtcp` is present.
    pub rtcp: Option<u16>,
}

/// What to rewrite. Anything left `None` is copied as is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The address written into every session- and media-level `c=` line and into `a=rtcp`
    /// addresses, as `IP4 <addr>` / `IP6 <addr>`. Hold addresses (`0.0.0.0`, `::`) and the `c=` of
    /// rejected sections are kept.
    pub connection: Option<IpAddr>,
    /// Per media section index (body order): the relay ports. Rejected sections (port 0) keep
    /// port 0 whatever the plan says. Shorter than the section list is fine; longer is an error.
    pub media: Vec<Option<MediaPorts>>,
    /// The `o=` session version to write. `None`: the body's version, plus one when any other
    /// byte changed (RFC 3264 §8).
    pub origin_version: Option<u64>,
}

/// The rewritten body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The new body (the input itself when nothing changed).
    pub body: Bytes,
    /// The `o=` session version in `body`: remember it as the last one sent on this leg.
    pub version: u64,
    /// Whether any byte differs from the input.
    pub changed: bool,
}

/// Parse `body` and rewrite it according to `plan`. When nothing changes the returned body
/// shares `body`'s buffer.
pub fn rewrite(body: &Bytes, plan: &Plan) -> Result<Rewritten, SdpError> {
    let sdp = Sdp::parse(body)?;
    let (edits, version) = sdp.edits(plan)?;
    if edits.is_empty() {
        return Ok(Rewritten {
            body: body.clone(),
            version,
            changed: false,
        });
    }
    Ok(Rewritten {
        body: splice(body, &edits),
        version,
        changed: true,
    })
}

impl Sdp<'_> {
    /// Rewrite the indexed body according to `plan` (always a fresh buffer).
    pub fn rewrite(&self, plan: &Plan) -> Result<Rewritten, SdpError> {
        let (edits, version) = self.edits(plan)?;
        Ok(Rewritten {
            body: splice(self.body, &edits),
            version,
            changed: !edits.is_empty(),
        })
    }

    /// The replacements `plan` asks for (only those that change bytes), sorted, and the version.
    fn edits(&self, plan: &Plan) -> Result<(Vec<Edit>, u64), SdpError> {
        if plan.media.len() > self.media.len() {
            return Err(SdpError::PlanMediaCount {
                planned: plan.media.len(),
                present: self.media.len(),
            });
        }
        let mut edits = Vec::new();
        if let Some(ip) = plan.connection {
            for (section, connection) in &self.connections {
                let rejected = section
                    .and_then(|i| self.media.get(i))
                    .is_some_and(|m| m.is_rejected());
                if !rejected {
                    self.push_address(&mut edits, connection, ip);
                }
            }
        }
        for (media, ports) in self.media.iter().zip(&plan.media) {
            if media.is_rejected() {
                continue;
            }
            if let Some(ports) = ports {
                self.push(
                    &mut edits,
                    media.port_span.clone(),
                    ports.rtp.to_string().into_bytes(),
                );
            }
            let Some(rtcp) = &media.rtcp else { continue };
            if let Some(ports) = ports {
                let port = match ports.rtcp {
                    Some(port) => port,
                    None if rtcp.port == media.port => ports.rtp,
                    None => ports
                        .rtp
                        .checked_add(1)
                        .ok_or(SdpError::RtcpPortOverflow { rtp: ports.rtp })?,
                };
                self.push(
                    &mut edits,
                    rtcp.port_span.clone(),
                    port.to_string().into_bytes(),
                );
            }
            if let (Some(ip), Some(address)) = (plan.connection, &rtcp.address) {
                self.push_address(&mut edits, address, ip);
            }
        }
        let version = match plan.origin_version {
            Some(version) => version,
            None if edits.is_empty() => self.origin_version,
            None => self
                .origin_version
                .checked_add(1)
                .ok_or(SdpError::VersionOverflow)?,
        };
        self.push(
            &mut edits,
            self.origin_version_span.clone(),
            version.to_string().into_bytes(),
        );
        edits.sort_by_key(|edit| edit.range.start);
        Ok((edits, version))
    }

    fn push_address(&self, edits: &mut Vec<Edit>, connection: &Connection<'_>, ip: IpAddr) {
        if connection.is_hold() {
            return;
        }
        let text = match ip {
            IpAddr::V4(v4) => format!("IP4 {v4}"),
            IpAddr::V6(v6) => format!("IP6 {v6}"),
        };
        self.push(edits, connection.span.clone(), text.into_bytes());
    }

    /// Record a replacement unless it would write the same bytes.
    fn push(&self, edits: &mut Vec<Edit>, range: Range<usize>, bytes: Vec<u8>) {
        if self.body.get(range.clone()) != Some(&bytes[..]) {
            edits.push(Edit { range, bytes });
        }
    }
}

/// Replace `range` of the body by `bytes`.
#[derive(Debug)]
struct Edit {
    range: Range<usize>,
    bytes: Vec<u8>,
}

/// Copy `body` with the sorted, non-overlapping `edits` applied.
fn splice(body: &[u8], edits: &[Edit]) -> Bytes {
    let grown: usize = edits.iter().map(|edit| edit.bytes.len()).sum();
    let mut out = Vec::with_capacity(body.len() + grown);
    let mut at = 0;
    for edit in edits {
        out.extend_from_slice(&body[at..edit.range.start]);
        out.extend_from_slice(&edit.bytes);
        at = edit.range.end;
    }
    out.extend_from_slice(&body[at..]);
    Bytes::from(out)
}
