//! Hot standby in the shell: the replication link (gRPC), the service address, and the node's HA
//! logic, which runs on the core task next to the `Core` it replicates.

pub mod address;
pub mod link;
pub mod node;
mod route;

pub use node::HaNode;
