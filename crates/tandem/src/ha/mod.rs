//! Hot standby in the shell: the replication link (gRPC) and the node's HA logic, which runs on
//! the core task next to the `Core` it replicates.

pub mod link;
