//! The config file: defaults, every validation error (each naming its key), unknown keys.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;
use tandem::config::{Config, ConfigError};
use tandem_core::Transport;
use tandem_relay::RelayIo;

const SERVER: &str = r#"
[[media_server]]
name = "asterisk-1"
address = "127.0.0.1:5080"
"#;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// The message of the error `text` is rejected with.
fn rejection(text: &str) -> String {
    match Config::from_toml(text) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn embedded_default_is_the_loopback_lab() {
    let config = Config::embedded_default().unwrap();
    assert_eq!(config.sip.listen, addr("127.0.0.1:5060"));
    assert_eq!(config.sip.advertised, None);
    assert!(config.sip.tcp);
    assert_eq!(config.sip.max_calls, 10_000);
    assert_eq!(config.sip.server_invite_timeout, Duration::from_secs(2));
    assert_eq!(
        config.sip.max_call_duration,
        Some(Duration::from_secs(12 * 3600))
    );
    assert_eq!(config.sip.timers.t1, Duration::from_millis(500));
    assert_eq!(config.sip.timers.t2, Duration::from_secs(4));
    assert_eq!(config.sip.timers.t4, Duration::from_secs(5));
    assert_eq!(config.admin_listen, addr("127.0.0.1:9090"));
    assert_eq!(config.probe.interval, Duration::from_secs(1));
    assert_eq!(config.probe.timeout, Duration::from_millis(500));
    assert_eq!(
        (config.probe.failures_to_down, config.probe.successes_to_up),
        (2, 2)
    );
    assert_eq!(config.media_servers.len(), 1);
    let server = &config.media_servers[0];
    assert_eq!(
        (
            server.name.as_str(),
            server.addr,
            server.transport,
            server.weight
        ),
        ("asterisk-1", addr("127.0.0.1:5080"), Transport::Udp, 1)
    );
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    assert_eq!(config.log_level, "info");
}

#[test]
fn a_file_with_only_a_media_server_takes_every_default() {
    let minimal = Config::from_toml(SERVER).unwrap();
    assert_eq!(minimal, Config::embedded_default().unwrap());
}

#[test]
fn every_key_can_be_set() {
    let config = Config::from_toml(
        r#"
        [sip]
        listen = "0.0.0.0:5070"
        advertised = "192.0.2.10:5060"
        tcp = false
        tcp_idle_timeout = "1h"
        max_calls = 5
        server_invite_timeout = "750ms"
        max_call_duration = "90m"
        [sip.timers]
        t1 = "100ms"
        t2 = "1s"
        t4 = "2s"
        [admin]
        listen = "127.0.0.2:9191"
        [pool]
        probe_interval = "5s"
        probe_timeout = "1s"
        failures_to_down = 3
        successes_to_up = 4
        [[media_server]]
        name = "a"
        address = "10.0.0.1:5060"
        weight = 3
        [[media_server]]
        name = "b"
        address = "[2001:db8::1]:5060"
        transport = "udp"
        [shutdown]
        grace = "1m"
        [log]
        level = "info,tandem=debug"
        "#,
    )
    .unwrap();
    assert_eq!(config.sip.listen, addr("0.0.0.0:5070"));
    assert_eq!(
        config.advertised(addr("0.0.0.0:5070")),
        addr("192.0.2.10:5060")
    );
    assert!(!config.sip.tcp);
    assert_eq!(config.sip.tcp_idle_timeout, Duration::from_secs(3600));
    assert_eq!(config.sip.timers.t2, Duration::from_secs(1));
    assert_eq!(config.probe.failures_to_down, 3);
    assert_eq!(config.media_servers[0].weight, 3);
    assert_eq!(config.media_servers[1].addr, addr("[2001:db8::1]:5060"));
    assert_eq!(config.shutdown_grace, Duration::from_secs(60));

    let core = config.core_config(config.advertised(addr("0.0.0.0:5070")));
    assert_eq!(core.advertised, addr("192.0.2.10:5060"));
    assert!(!core.tcp);
    assert_eq!(core.max_calls, 5);
    assert_eq!(core.server_invite_timeout, Duration::from_millis(750));
    assert_eq!(core.max_call_duration, Some(Duration::from_secs(90 * 60)));
    assert_eq!(core.probe, config.probe);
    assert_eq!(core.media_servers, config.media_servers);
}

#[test]
fn advertised_defaults_to_the_bound_address() {
    let config = Config::from_toml(&format!("[sip]\nlisten = \"127.0.0.1:0\"\n{SERVER}")).unwrap();
    assert_eq!(
        config.advertised(addr("127.0.0.1:40123")),
        addr("127.0.0.1:40123")
    );
}

#[test]
fn each_bad_value_is_reported_with_its_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[sip]\nlisten = \"localhost\"",
            "sip.listen: invalid socket address \"localhost\"",
        ),
        (
            "[sip]\nlisten = \"0.0.0.0:5060\"",
            "sip.advertised: required when sip.listen is an unspecified address",
        ),
        (
            "[sip]\nadvertised = \"0.0.0.0:5060\"",
            "sip.advertised: 0.0.0.0:5060 is not a reachable address",
        ),
        (
            "[sip]\nadvertised = \"192.0.2.1:0\"",
            "sip.advertised: port must not be 0",
        ),
        (
            "[sip]\ntcp_idle_timeout = \"0s\"",
            "sip.tcp_idle_timeout: must be longer than 0",
        ),
        ("[sip]\nmax_calls = 0", "sip.max_calls: must be at least 1"),
        (
            "[sip]\nserver_invite_timeout = \"2\"",
            "sip.server_invite_timeout: `2` has no unit",
        ),
        (
            "[sip]\nmax_call_duration = \"forever\"",
            "sip.max_call_duration: `forever` is not a duration",
        ),
        (
            "[sip.timers]\nt1 = \"fast\"",
            "sip.timers.t1: `fast` is not a duration",
        ),
        (
            "[sip.timers]\nt1 = \"0ms\"",
            "sip.timers.t1: must be longer than 0",
        ),
        (
            "[sip.timers]\nt1 = \"5s\"\nt2 = \"4s\"",
            "sip.timers.t2: must not be shorter than sip.timers.t1",
        ),
        (
            "[sip.timers]\nt4 = \"5 minutes\"",
            "sip.timers.t4: `5 minutes` has an unknown unit",
        ),
        (
            "[admin]\nlisten = \"127.0.0.1\"",
            "admin.listen: invalid socket address",
        ),
        (
            "[admin]\nlisten = \"127.0.0.1:5060\"",
            "admin.listen: must differ from sip.listen",
        ),
        (
            "[pool]\nprobe_interval = \"0s\"",
            "pool.probe_interval: must be longer than 0",
        ),
        (
            "[pool]\nprobe_timeout = \"0s\"",
            "pool.probe_timeout: must be longer than 0",
        ),
        (
            "[pool]\nprobe_interval = \"1s\"\nprobe_timeout = \"1s\"",
            "pool.probe_timeout: must be shorter than pool.probe_interval",
        ),
        (
            "[pool]\nfailures_to_down = 0",
            "pool.failures_to_down: must be at least 1",
        ),
        (
            "[pool]\nsuccesses_to_up = 0",
            "pool.successes_to_up: must be at least 1",
        ),
        (
            "[shutdown]\ngrace = \"soon\"",
            "shutdown.grace: `soon` is not a duration",
        ),
        (
            "[log]\nlevel = \"tandem=loud\"",
            "log.level: invalid filter \"tandem=loud\"",
        ),
    ];
    for (snippet, expected) in cases {
        let message = rejection(&format!("{snippet}\n{SERVER}"));
        assert!(
            message.starts_with(expected),
            "for {snippet:?}:\n  got      {message}\n  expected {expected}"
        );
    }
}

#[test]
fn each_bad_media_server_is_reported_with_its_index() {
    let server = |name: &str, address: &str, extra: &str| {
        format!("[[media_server]]\nname = \"{name}\"\naddress = \"{address}\"\n{extra}\n")
    };
    let good = server("a", "127.0.0.1:5080", "");
    let cases: Vec<(String, &str)> = vec![
        (
            String::new(),
            "media_server: at least one [[media_server]] is required",
        ),
        (
            good.clone() + &server("b", "nowhere", ""),
            "media_server[1].address: invalid socket address \"nowhere\"",
        ),
        (
            good.clone() + &server("b", "0.0.0.0:5080", ""),
            "media_server[1].address: 0.0.0.0:5080 is not a reachable address",
        ),
        (
            good.clone() + &server("b", "127.0.0.1:0", ""),
            "media_server[1].address: port must not be 0",
        ),
        (
            good.clone() + &server("b", "127.0.0.1:5080", ""),
            "media_server[1].address: 127.0.0.1:5080 is already used by media_server[0]",
        ),
        (
            good.clone() + &server(" ", "127.0.0.1:5081", ""),
            "media_server[1].name: must not be empty",
        ),
        (
            good.clone() + &server("a", "127.0.0.1:5081", ""),
            "media_server[1].name: \"a\" is already used by media_server[0]",
        ),
        (
            server("a", "127.0.0.1:5080", "transport = \"sctp\""),
            "media_server[0].transport: expected \"udp\" or \"tcp\", got \"sctp\"",
        ),
        (
            format!(
                "[sip]\ntcp = false\n{}",
                server("a", "127.0.0.1:5080", "transport = \"tcp\"")
            ),
            "media_server[0].transport: \"tcp\" needs sip.tcp = true",
        ),
        (
            server("a", "127.0.0.1:5080", "weight = 0"),
            "media_server[0].weight: must be at least 1",
        ),
    ];
    for (text, expected) in cases {
        let message = rejection(&text);
        assert!(
            message.starts_with(expected),
            "for {text:?}:\n  got      {message}\n  expected {expected}"
        );
    }
}

#[test]
fn unknown_keys_are_rejected_by_name_at_every_level() {
    let cases = [
        format!("colour = \"blue\"\n{SERVER}"),
        format!("[sip]\nlisten_udp = \"127.0.0.1:5060\"\n{SERVER}"),
        format!("[sip.timers]\nt3 = \"1s\"\n{SERVER}"),
        format!("[admin]\nport = 9090\n{SERVER}"),
        format!("[pool]\nprobe_every = \"1s\"\n{SERVER}"),
        format!("[shutdown]\ntimeout = \"1s\"\n{SERVER}"),
        format!("[log]\nformat = \"json\"\n{SERVER}"),
        format!("{SERVER}port = 5080\n"),
        "[[media_servers]]\nname = \"x\"\n".to_owned(),
    ];
    let names = [
        "colour",
        "listen_udp",
        "t3",
        "port",
        "probe_every",
        "timeout",
        "format",
        "port",
        "media_servers",
    ];
    for (text, name) in cases.iter().zip(names) {
        let error = Config::from_toml(text).unwrap_err();
        assert!(matches!(error, ConfigError::Syntax(_)), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&format!("unknown field `{name}`")),
            "for {text:?}: {message}"
        );
    }
}

#[test]
fn wrong_types_and_missing_fields_are_syntax_errors() {
    let message = rejection(&format!("[sip]\ntcp = \"yes\"\n{SERVER}"));
    assert!(message.contains("tcp = \"yes\""), "{message}");
    let message = rejection("[[media_server]]\nname = \"a\"\n");
    assert!(message.contains("missing field `address`"), "{message}");
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let error = Config::load(std::path::Path::new("/nonexistent/tandem.toml")).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with("cannot read /nonexistent/tandem.toml: "),
        "{error}"
    );
}

#[test]
fn media_anchoring_is_on_by_default_on_the_sip_ip() {
    let config = Config::from_toml(SERVER).unwrap();
    let media = config.media.clone().unwrap();
    assert_eq!((media.port_min, media.port_max), (20000, 32767));
    assert_eq!(media.inactivity_timeout, Some(Duration::from_secs(60)));
    assert!(!media.latch_any_ip);
    assert_eq!(media.io, RelayIo::IoUring);
    assert_eq!(media.batch_wait, Duration::from_millis(1));
    let advertised = addr("192.0.2.7:5060");
    assert_eq!(
        config.media_address(advertised),
        Some("192.0.2.7".parse().unwrap())
    );
    let core = config.core_config(advertised).media.unwrap();
    assert_eq!(
        core.address,
        "192.0.2.7".parse::<std::net::IpAddr>().unwrap()
    );
}

#[test]
fn media_keys_are_read_and_checked() {
    let text = format!(
        "[media]\naddress = \"10.1.1.1\"\nport_min = 40000\nport_max = 40099\n\
         inactivity_timeout = \"0s\"\nshards = 3\nlatch_any_ip = true\nio = \"epoll\"\n\
         batch_wait = \"0ms\"\n{SERVER}"
    );
    let media = Config::from_toml(&text).unwrap().media.unwrap();
    assert_eq!(media.address, Some("10.1.1.1".parse().unwrap()));
    assert_eq!(
        (media.port_min, media.port_max, media.shards),
        (40000, 40099, 3)
    );
    assert_eq!(media.inactivity_timeout, None, "0s turns it off");
    assert!(media.latch_any_ip);
    assert_eq!(media.io, RelayIo::Epoll);
    assert_eq!(media.batch_wait, Duration::ZERO, "0ms: never waits");

    let off = Config::from_toml(&format!("[media]\nenabled = false\n{SERVER}")).unwrap();
    assert_eq!(off.media, None);
    assert!(off.core_config(addr("127.0.0.1:5060")).media.is_none());

    for (table, key) in [
        ("address = \"0.0.0.0\"", "media.address"),
        ("address = \"nope\"", "media.address"),
        ("port_min = 40100\nport_max = 40000", "media.port_min"),
        ("inactivity_timeout = \"soon\"", "media.inactivity_timeout"),
        ("io = \"poll\"", "media.io"),
        ("batch_wait = \"-1ms\"", "media.batch_wait"),
    ] {
        let error = rejection(&format!("[media]\n{table}\n{SERVER}"));
        assert!(error.starts_with(key), "{table}: {error}");
    }
}

#[test]
fn a_zero_maximum_call_duration_means_no_limit() {
    let config =
        Config::from_toml(&format!("[sip]\nmax_call_duration = \"0s\"\n{SERVER}")).unwrap();
    assert_eq!(config.sip.max_call_duration, None);
    let core = config.core_config(addr("127.0.0.1:5060"));
    assert_eq!(core.max_call_duration, None);
}
