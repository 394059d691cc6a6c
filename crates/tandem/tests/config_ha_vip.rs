//! `[ha.vip]`: who moves the service address (`owner`), and what each owner requires and refuses.
#![allow(clippy::unwrap_used)]

use tandem::config::{Config, HaSettings, VipOwner, VipSettings};
use tandem_ha::AddressOwner;

const SERVER: &str = r#"
[[media_server]]
name = "asterisk-1"
address = "127.0.0.1:5080"
"#;

const HA: &str = r#"
[ha]
node = "tandem-a"
peer = "tandem-b"
listen = "10.0.1.11:7070"
peer_address = "10.0.1.12:7070"
"#;

/// The `[ha]` settings of `[ha]` + `extra` (more `[ha]` keys, then `[ha.vip]`).
fn ha(extra: &str) -> Result<HaSettings, String> {
    Config::from_toml(&format!("{HA}{extra}\n{SERVER}"))
        .map(|config| config.ha.unwrap())
        .map_err(|e| e.to_string())
}

#[test]
fn tandem_moves_the_address_by_default_on_its_interface() {
    let settings =
        ha("peer_sip = \"10.0.0.100:5060\"\n[ha.vip]\naddress = \"10.0.0.100/24\"\ninterface = \"eth0\"")
            .unwrap();
    assert_eq!(
        settings.vip,
        Some(VipSettings {
            ip: "10.0.0.100".parse().unwrap(),
            prefix: 24,
            owner: VipOwner::Tandem {
                interface: "eth0".into()
            },
        })
    );
    assert_eq!(settings.address_owner(), AddressOwner::Tandem);
    assert_eq!(settings.peer_sip, Some("10.0.0.100:5060".parse().unwrap()));

    let without_vip = ha("peer_sip = \"10.0.0.12:5060\"").unwrap();
    assert_eq!(without_vip.vip, None);
    assert_eq!(without_vip.address_owner(), AddressOwner::Tandem);
}

#[test]
fn keepalived_owns_the_address_without_interface_or_peer_sip() {
    let settings = ha("[ha.vip]\nowner = \"keepalived\"\naddress = \"10.0.0.100\"").unwrap();
    assert_eq!(settings.address_owner(), AddressOwner::Keepalived);
    assert_eq!(settings.peer_sip, None);
    let vip = settings.vip.unwrap();
    assert_eq!((vip.ip, vip.prefix), ("10.0.0.100".parse().unwrap(), 32));
    assert_eq!(vip.owner, VipOwner::Keepalived);

    let with_prefix = ha("[ha.vip]\nowner = \"keepalived\"\naddress = \"fd00::100/64\"").unwrap();
    assert_eq!(with_prefix.vip.unwrap().prefix, 64);
}

#[test]
fn each_owner_refuses_what_the_other_needs() {
    for (extra, key) in [
        // Tandem's second path is required when the pair decides by itself
        ("[ha.vip]\naddress = \"10.0.0.100/24\"\ninterface = \"eth0\"", "ha.peer_sip"),
        ("", "ha.peer_sip"),
        // Tandem needs an interface and a prefix length
        (
            "peer_sip = \"10.0.0.100:5060\"\n[ha.vip]\naddress = \"10.0.0.100/24\"",
            "ha.vip.interface",
        ),
        (
            "peer_sip = \"10.0.0.100:5060\"\n[ha.vip]\naddress = \"10.0.0.100\"\ninterface = \"eth0\"",
            "ha.vip.address",
        ),
        // keepalived.conf names the interface
        (
            "[ha.vip]\nowner = \"keepalived\"\naddress = \"10.0.0.100\"\ninterface = \"eth0\"",
            "ha.vip.interface",
        ),
        ("[ha.vip]\nowner = \"vrrpd\"\naddress = \"10.0.0.100\"", "ha.vip.owner"),
        (
            "[ha.vip]\nowner = \"keepalived\"\naddress = \"10.0.0.100/33\"",
            "ha.vip.address",
        ),
    ] {
        let error = ha(extra).unwrap_err();
        assert!(error.contains(key), "{extra:?}: {error}");
    }
}

#[test]
fn the_batch_window_defaults_to_a_millisecond_and_may_be_zero() {
    let peer_sip = "peer_sip = \"10.0.0.12:5060\"";
    let default = ha(peer_sip).unwrap();
    assert_eq!(default.batch_window, std::time::Duration::from_millis(1));
    let zero = ha(&format!("{peer_sip}\nbatch_window = \"0ms\"")).unwrap();
    assert_eq!(zero.batch_window, std::time::Duration::ZERO);
    let bad = ha(&format!("{peer_sip}\nbatch_window = \"soon\"")).unwrap_err();
    assert!(bad.contains("ha.batch_window"), "{bad}");
}
