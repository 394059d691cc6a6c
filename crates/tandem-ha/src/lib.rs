//! Tandem's hot standby, sans-IO: nothing here opens a socket, reads a clock or spawns a task. The
//! shell feeds messages and the current time in and carries out what comes out.
//!
//! * [`convert`]: core replication types ↔ the `tandem.replication.v1` wire types.
//! * [`outbox`]: the active side of the stream (ring of recent deltas, resume, snapshot, acks, lag,
//!   stale standby, synced flag for the durability gate).
//! * [`mirror`]: the standby side (snapshot + ordered deltas, cumulative acks, the snapshot to
//!   restore on promotion).
//! * [`role`]: the role machine (heartbeats, detection with second-path confirmation, promotion
//!   with epoch bump, fencing, switchover).
//! * [`incident`]: the timeline of every role change, for the admin API.
//!
//! # What the schema carries and the core does not give (yet)
//!
//! `CallSnapshot` has no SDP bodies, latched addresses, RTP continuity state, answer time, session
//! timer or maximum-duration deadlines, agent, and its `o=` version tracks are opaque: those
//! `CallRecord` fields are sent empty and ignored on the way back.

#![warn(missing_docs)]

pub mod convert;
pub mod incident;
pub mod mirror;
pub mod outbox;
pub mod role;

pub use incident::{Incident, IncidentKind, IncidentLog, StepName, WallClock};
pub use mirror::{Mirror, MirrorError, MirrorState};
pub use outbox::{HelloOutcome, Lag, Outbox, OutboxConfig, OutboxError};
pub use role::{Action, NodeRole, Progress, Role, RoleConfig, RoleError, RoleStatus};
