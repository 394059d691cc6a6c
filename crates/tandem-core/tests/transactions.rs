//! RFC 3261 §17 transaction layer, driven in virtual time.
//!
//! Most tests drive one layer by hand and check that every timer fires at the exact RFC time;
//! the network tests join a UAC and a UAS layer through the lossy, reordering network of
//! `tandem_core::transaction::testing` and check whole exchanges, ending with a property test.
#![allow(clippy::unwrap_used)]

#[path = "transactions/cancel.rs"]
mod cancel;
#[path = "transactions/client.rs"]
mod client;
#[path = "transactions/network.rs"]
mod network;
#[path = "transactions/server.rs"]
mod server;
#[path = "transactions/support.rs"]
mod support;
