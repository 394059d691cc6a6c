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
//! * [`view_encode`]: a change borrowed from the core written straight into its wire form (the
//!   active node's hot path).
//!
//! # Wiring (the shell)
//!
//! * Every node runs the `Replication` server; a standby dials its peer and says
//!   [`Mirror::hello`]. A server that is not active answers with heartbeats only (two standbys
//!   still see each other). Heartbeats travel on that stream both ways.
//! * Active: one [`Outbox`] per epoch (created on [`Action::BecomeActive`]); see the `outbox`
//!   module for the loop. Hellos go to [`Role::handle_hello`] first, then to the outbox. Durability
//!   is `Sync` only while [`Outbox::synced`], `Async` otherwise (never `Off` on a node with a peer:
//!   the core leaves calls answered under `Off` out of later snapshots).
//! * Standby: received messages go to [`Mirror::handle_message`] (heartbeats it hands back go to
//!   [`Role::handle_heartbeat`]); after each batch send [`Mirror::poll_ack`]; when
//!   [`Mirror::needs_resync`], say Hello again.
//! * After each batch of replication work, [`Role::set_replication`] with a [`Progress`]; then
//!   carry out [`Role::poll_action`] in order and sleep until [`Role::poll_timeout`].
//! * [`Action::BecomeActive`]: `Core::restore(now, mirror.to_snapshot(unix_ms))`, take the address,
//!   bind, then report [`StepName::AddressTaken`] and [`StepName::CallsResumed`] through
//!   [`Role::record_step`]. [`Action::BecomeStandby`]: release the address, drop the calls, reset
//!   the mirror, dial the peer — after sending the heartbeat queued just before it.
//!
//! # What the schema carries and the core does not give (yet)
//!
//! `CallSnapshot` has no answer time, session timer or maximum-duration deadlines (the core has
//! neither timer) and no agent (agents come later): those `CallRecord` fields are sent empty and
//! ignored on the way back. Each side's latest SDP body, the latched sources, the outbound RTP
//! streams' continuity and the `o=` version tracks do travel.

#![warn(missing_docs)]

mod ack_latency;
pub mod convert;
pub mod incident;
pub mod mirror;
pub mod outbox;
pub mod outgoing;
pub mod role;
pub mod view_encode;

pub use incident::{Incident, IncidentKind, IncidentLog, StepName, WallClock};
pub use mirror::{CallChange, Mirror, MirrorError, MirrorState, MirroredMedia};
pub use outbox::{HelloOutcome, Lag, Outbox, OutboxConfig, OutboxError};
pub use outgoing::{Outgoing, WriteError};
pub use role::{Action, AddressOwner, NodeRole, Progress, Role, RoleConfig, RoleError, RoleStatus};
