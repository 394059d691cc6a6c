//! The role machine's configuration, inputs and outputs.

use std::time::{Duration, Instant};
use tandem_proto::admin::v1 as admin;
use tandem_proto::replication::v1 as wire;

/// How a node watches its peer and decides its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfig {
    /// This node's name (`ha.node`).
    pub node: String,
    /// The peer's name; heartbeats and Hellos from other names are ignored.
    pub peer: String,
    /// Heartbeats are sent this often (default 50 ms).
    pub heartbeat_interval: Duration,
    /// Heartbeat intervals without a heartbeat before the peer is suspected (default 4: ≈ 200 ms).
    pub misses: u32,
    /// How long the second path (the shell's probe of the peer's own SIP address) may take; no
    /// answer within it counts as "dead" (default 100 ms).
    pub confirm_timeout: Duration,
    /// While the peer stays unheard, how often the probe is repeated (default 1 s).
    pub reprobe_interval: Duration,
    /// At start (and after handing the active role over), how long to wait for the peer before
    /// probing it (default 1 s). Also how long a tie between two standbys lasts before the node
    /// names break it.
    pub startup_grace: Duration,
    /// How long a switchover may wait for the standby to acknowledge every change (default 1 s).
    pub handover_timeout: Duration,
    /// The node was configured as the active one: it wins a tie between two standbys at once.
    pub prefer_active: bool,
    /// The highest epoch this node has seen, from its persisted epoch file (0: none).
    pub epoch: u64,
    /// Incidents kept for the admin API (default 32).
    pub incidents_kept: usize,
    /// Who moves the service address and so decides which node is active (default: the pair).
    pub address_owner: AddressOwner,
}

/// Who moves the service address, and with it who decides which node is active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AddressOwner {
    /// The pair itself: a standby takes over a dead active on its own (detection, second path),
    /// two standbys elect one, and the shell moves the address (if it has one) with the role.
    #[default]
    Tandem,
    /// keepalived (VRRP) moves the address; its notify script promotes the node that got it and
    /// demotes the one that lost it through the admin API. The node never promotes itself (no
    /// detection probe, no election between standbys), a demote steps down at once (the address is
    /// gone, whether or not a synced standby is there), and a switchover is refused: the address
    /// is moved with keepalived instead. Replication and epoch fencing are unchanged.
    Keepalived,
}

impl AddressOwner {
    /// `"tandem"` or `"keepalived"`, as in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressOwner::Tandem => "tandem",
            AddressOwner::Keepalived => "keepalived",
        }
    }
}

impl RoleConfig {
    /// The defaults for node `node` paired with `peer`.
    pub fn new(node: impl Into<String>, peer: impl Into<String>) -> RoleConfig {
        RoleConfig {
            node: node.into(),
            peer: peer.into(),
            heartbeat_interval: Duration::from_millis(50),
            misses: 4,
            confirm_timeout: Duration::from_millis(100),
            reprobe_interval: Duration::from_secs(1),
            startup_grace: Duration::from_secs(1),
            handover_timeout: Duration::from_secs(1),
            prefer_active: false,
            epoch: 0,
            incidents_kept: 32,
            address_owner: AddressOwner::Tandem,
        }
    }

    /// Time without a heartbeat before the peer is suspected: `misses × heartbeat_interval`.
    pub fn detection_window(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(self.misses.max(1))
    }
}

/// The node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRole {
    /// Serves calls and streams its state.
    Active,
    /// Mirrors the active node and watches it.
    Standby,
}

impl NodeRole {
    /// The replication schema's value.
    pub fn to_wire(self) -> wire::Role {
        match self {
            NodeRole::Active => wire::Role::Active,
            NodeRole::Standby => wire::Role::Standby,
        }
    }

    /// The admin schema's value.
    pub fn to_admin(self) -> admin::Role {
        match self {
            NodeRole::Active => admin::Role::Active,
            NodeRole::Standby => admin::Role::Standby,
        }
    }

    /// A short lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Active => "active",
            NodeRole::Standby => "standby",
        }
    }
}

/// Where replication stands, as the shell reports it to the role machine. A report of the other
/// role than the machine's (the shell has not carried out a role change yet) is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// From the active node's outbox.
    Active {
        /// The last change pushed.
        last_seq: u64,
        /// The standby's cumulative ack.
        acked: u64,
        /// The outbox says the standby is synced.
        standby_synced: bool,
        /// Live calls.
        calls: u64,
    },
    /// From the standby node's mirror.
    Standby {
        /// The last change applied.
        applied_seq: u64,
        /// The mirror is synced.
        synced: bool,
        /// Mirrored calls.
        calls: u64,
    },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this heartbeat on the stream to the peer (as an ActiveMessage when this node is active,
    /// a StandbyMessage otherwise).
    SendHeartbeat(wire::Heartbeat),
    /// Probe the peer over the second path (SIP OPTIONS to its own address) and report with
    /// `handle_confirm_result`; no report within the confirm timeout counts as dead.
    StartConfirm,
    /// Write this epoch to the epoch file before carrying out the actions that follow.
    PersistEpoch {
        /// The highest epoch seen.
        epoch: u64,
    },
    /// Become active under `epoch`: restore the mirror into the core, take the service address,
    /// bind the ports, serve the replication stream with a new outbox of this epoch.
    BecomeActive {
        /// The new epoch.
        epoch: u64,
    },
    /// Become standby: release the service address, drop the calls, reset the mirror and dial the
    /// peer as its standby.
    BecomeStandby {
        /// The highest epoch seen.
        epoch: u64,
    },
    /// A switchover began: stop taking SIP (new calls and in-dialog requests; retransmissions reach
    /// the next active), keep streaming replication and report progress.
    StopAccepting,
    /// The switchover was given up: take SIP again.
    ResumeAccepting,
}

/// Why an admin command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// The mirror is not synced (or lost the active's stream while it lived): promote with force.
    #[error("mirror not synced; promote with force to take over anyway (calls it lacks are lost)")]
    NotSynced,
    /// The peer is not a connected standby with a synced mirror.
    #[error("no synced standby to hand over to")]
    NoSyncedStandby,
    /// Only the active node can hand over (the schema has no handover request from the standby).
    #[error("this node is not active; run the switchover on the active node")]
    NotActive,
    /// A switchover is in progress.
    #[error("a switchover is in progress")]
    Busy,
    /// keepalived moves the service address, so it decides which node is active.
    #[error(
        "keepalived owns the service address: move it with keepalived (stop keepalived on the \
         active node or lower its priority); its notify script demotes this node and promotes the peer"
    )]
    KeepalivedOwnsAddress,
}

/// What the role machine knows, for Status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleStatus {
    /// The role.
    pub role: NodeRole,
    /// Active: the epoch served. Standby: the highest seen.
    pub epoch: u64,
    /// The replication stream to the peer is up.
    pub peer_connected: bool,
    /// When the peer was last heard (heartbeat, Hello or a new stream).
    pub peer_last_heard: Option<Instant>,
    /// The last probe's answer, while the peer is unheard (`None`: not probed).
    pub peer_alive: Option<bool>,
    /// Standby: automatic promotion is possible now if the active dies.
    pub can_take_over: bool,
    /// A switchover is in progress.
    pub handing_over: bool,
}
