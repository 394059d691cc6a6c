//! The service address (VIP) a node takes when it becomes active and gives up when it becomes
//! standby, when Tandem moves it itself (`[ha.vip]`): `ip addr replace` / `ip addr del` on the
//! configured interface, then gratuitous ARP (`arping -U`) so that neighbours send to this node at
//! once. When keepalived owns the address (`ha.vip.owner = "keepalived"`) Tandem only looks
//! whether it is here ([`is_local`]), for the incident timeline.

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};

/// The address and where it goes.
#[derive(Debug)]
pub struct ServiceAddress {
    pub ip: IpAddr,
    pub prefix: u8,
    pub interface: String,
    /// The gratuitous ARP still being sent: stopped on release, or its late announcements would
    /// point neighbours back at a node that gave the address up.
    announcer: Option<Child>,
}

impl ServiceAddress {
    pub fn new(ip: IpAddr, prefix: u8, interface: String) -> ServiceAddress {
        ServiceAddress {
            ip,
            prefix,
            interface,
            announcer: None,
        }
    }

    fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.prefix)
    }

    /// Adds the address (idempotent) and announces it. The announcement runs in the background.
    pub fn take(&mut self) -> Result<(), String> {
        run(
            "ip",
            &["addr", "replace", &self.cidr(), "dev", &self.interface],
        )?;
        self.announce();
        Ok(())
    }

    /// Gratuitous ARP for the address (IPv4), in the background: every neighbour updates its cache
    /// to this node's MAC.
    pub fn announce(&mut self) {
        self.stop_announcing();
        if self.ip.is_ipv4() {
            // Unsolicited ARP: every neighbour updates its cache to this node's MAC.
            let spawned = Command::new("arping")
                .args(["-U", "-c", "2", "-w", "2", "-I", &self.interface])
                .arg(self.ip.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            match spawned {
                Ok(child) => self.announcer = Some(child),
                Err(error) => {
                    tracing::warn!(%error, "gratuitous ARP not sent (is arping installed?)")
                }
            }
        }
    }

    /// Removes the address; not having it is fine.
    pub fn release(&mut self) -> Result<(), String> {
        self.stop_announcing();
        match run("ip", &["addr", "del", &self.cidr(), "dev", &self.interface]) {
            Ok(()) => Ok(()),
            Err(error) if error.contains("Cannot assign") => Ok(()),
            Err(error) => Err(error),
        }
    }
}

impl ServiceAddress {
    fn stop_announcing(&mut self) {
        if let Some(mut child) = self.announcer.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServiceAddress {
    fn drop(&mut self) {
        self.stop_announcing();
    }
}

/// Whether `ip` is on one of this host's interfaces (`ip -o addr show to <ip>` lists it).
pub fn is_local(ip: IpAddr) -> Result<bool, String> {
    let output = Command::new("ip")
        .args(["-o", "addr", "show", "to", &ip.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "ip addr show to {ip}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(!output.stdout.trim_ascii().is_empty())
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
