//! Tandem's gRPC schema, generated from the `.proto` files in the repository's `proto/` folder and
//! checked in (`src/gen/`), so a build needs no `protoc`. After editing a `.proto` file run
//! `cargo run -p tandem-proto --example regenerate`; `tests/drift.rs` fails while the two disagree.
//!
//! * [`replication::v1`]: the active → standby state stream (snapshot, deltas, acks, heartbeats).
//! * [`admin::v1`]: the operator API behind `tandemctl`.

#![allow(missing_debug_implementations, clippy::all)]

pub mod replication {
    pub mod v1 {
        include!("gen/tandem.replication.v1.rs");
    }
}

pub mod admin {
    pub mod v1 {
        include!("gen/tandem.admin.v1.rs");
    }
}
