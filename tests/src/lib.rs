//! Harness for Tandem's scenario tests against real SIP peers: SIPp callers and media servers,
//! Kamailio as a proxy in the chain, Asterisk 22 in a chroot.
//!
//! The crate never links Tandem: it runs the binary (`TANDEM_BIN`, else `target/{release,debug}/tandem`)
//! with a generated config file, like an operator would. Every process it starts is killed by pid when
//! its guard is dropped, every wait has a deadline, and every test gets its own loopback ports and its
//! own log folder under `target/tandem-tests/` (kept when the test fails, named in the failure message).
//!
//! The scenario tests live in `tests/tests/`; the call flows they share are in [`flows`].

pub mod asterisk;
pub mod capture;
pub mod flows;
pub mod ha_calls;
pub mod kamailio;
pub mod keepalived;
pub mod media;
pub mod netns;
pub mod ports;
pub mod process;
pub mod sip_ping;
pub mod sipp;
pub mod tandem;
pub mod workdir;

pub use asterisk::AsteriskLab;
pub use capture::{RtpCapture, RtpFlows};
pub use flows::{run_flow, run_flow_on, Flow, Hop};
pub use kamailio::{Kamailio, KamailioConfig};
pub use keepalived::{Keepalived, KeepalivedConfig, VrrpState};
pub use media::{MediaPath, RelayedRtp};
pub use netns::{LossMethod, Node, NsSipp, NsTandem, Topology};
pub use ports::{free_media_range, free_port, free_port_block};
pub use sipp::{Sipp, SippOutcome, SippProcess};
pub use tandem::{verdict, MediaConfig, MediaServer, Tandem, TandemConfig};
pub use workdir::{need_root, need_tool, scenario_path, skip, workspace_root, TestDir};

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::OnceLock;

/// SIP transport used on a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl Transport {
    /// Lower-case name, as in Tandem's and Kamailio's configs (`udp`, `tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// SIPp's `-t` value (one socket for all calls).
    pub fn sipp_mode(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Address family of the loopback address every process of a test listens on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4: 127.0.0.1.
    #[default]
    V4,
    /// IPv6: ::1 (written `[::1]` in SIP URIs and Via headers, RFC 5118).
    V6,
}

impl IpFamily {
    /// Both families.
    pub const ALL: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

    /// The loopback address: 127.0.0.1 or ::1.
    pub fn loopback(self) -> IpAddr {
        match self {
            IpFamily::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpFamily::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }

    /// `port` on the loopback address.
    pub fn addr(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.loopback(), port)
    }

    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// Whether this machine has the loopback address (a UDP socket can be bound to it); checked
    /// once per process. ::1 is missing where IPv6 is disabled (e.g. some containers).
    pub fn is_configured(self) -> bool {
        static CONFIGURED: [OnceLock<bool>; 2] = [OnceLock::new(), OnceLock::new()];
        *CONFIGURED[self as usize].get_or_init(|| UdpSocket::bind(self.addr(0)).is_ok())
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}
