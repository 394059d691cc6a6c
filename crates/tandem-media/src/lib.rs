//! Media anchoring, the parts that need no socket and no clock (the data plane that moves packets
//! comes with the media issue's I/O work and drives these):
//!
//! * [`ports`]: relay port pairs (RTP even, RTCP odd) from a configured range, per leg and m-line.
//! * [`latch`]: symmetric RTP latching — learn each leg's real source from its first packets.
//! * [`continuity`]: one continuous outbound stream per leg even when the far side changes.
//! * [`stats`]: per-stream packets, bytes, loss and jitter (RFC 3550).
//! * [`session`]: the per-call media plan the core hands to the data plane, and its reports.

pub mod continuity;
pub mod latch;
pub mod ports;
pub mod session;
pub mod stats;
