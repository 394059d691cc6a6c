//! `Sdp::parse` and every accessor on arbitrary bytes; when the body parses, a relay rewrite with
//! a plan derived from the input must not panic and, when it succeeds, must parse again with the
//! same media sections, the planned ports and the version it reports.
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run sdp` from `crates/tandem-sdp`.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tandem_sdp::{rewrite, MediaPorts, Plan, Sdp};

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = Sdp::parse(data) else { return };
    touch_accessors(&sdp);
    let plan = plan_from(data, sdp.media().len());
    let body = Bytes::copy_from_slice(data);
    let Ok(out) = rewrite(&body, &plan) else {
        return;
    };
    if !out.changed {
        assert_eq!(out.body, body, "an unchanged rewrite returns the input");
    }
    let again = Sdp::parse(&out.body).expect("a rewritten body parses again");
    assert_eq!(
        again.media().len(),
        sdp.media().len(),
        "same media sections"
    );
    assert_eq!(
        again.origin_version(),
        out.version,
        "reported version is in the body"
    );
    for ((before, after), ports) in sdp.media().iter().zip(again.media()).zip(&plan.media) {
        let expected = match ports {
            Some(ports) if !before.is_rejected() => ports.rtp,
            _ => before.port,
        };
        assert_eq!(after.port, expected, "m= port is the planned one");
    }
    // The index's own rewrite gives the same body whenever something changed.
    let direct = sdp.rewrite(&plan).expect("same plan, same body");
    assert_eq!(direct.body, out.body);
});

fn touch_accessors(sdp: &Sdp<'_>) {
    let _ = sdp.origin_version();
    let _ = sdp.session_connection().map(|c| c.is_hold());
    let _ = sdp.session_direction();
    let _ = sdp.lines().len();
    let _ = sdp.session_lines().count();
    for index in 0..=sdp.media().len() {
        let _ = sdp.effective_connection(index);
        let _ = sdp.effective_direction(index);
    }
}

/// A plan chosen by a hash of the input: relay address (none, IPv4, IPv6), ports for some or all
/// sections (explicit RTCP ports at times, 65535 at times to reach the RTCP overflow), and an
/// explicit `o=` version at times.
fn plan_from(data: &[u8], sections: usize) -> Plan {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let connection = match hash % 3 {
        0 => None,
        1 => Some(IpAddr::V4(Ipv4Addr::from(hash as u32))),
        _ => Some(IpAddr::V6(Ipv6Addr::from(u128::from(hash) << 64 | 1))),
    };
    // Up to one more section than the body has, to reach the plan-length error.
    let planned = (hash >> 8) as usize % (sections + 2);
    let media = (0..planned)
        .map(|i| {
            let bits = hash.rotate_left(16 * i as u32 + 3);
            match bits % 5 {
                0 => None,
                1 => Some(MediaPorts {
                    rtp: u16::MAX,
                    rtcp: None,
                }),
                2 => Some(MediaPorts {
                    rtp: bits as u16,
                    rtcp: Some((bits >> 16) as u16),
                }),
                _ => Some(MediaPorts {
                    rtp: bits as u16,
                    rtcp: None,
                }),
            }
        })
        .collect();
    let origin_version = (hash & 0x30 == 0x30).then_some(hash >> 7);
    Plan {
        connection,
        media,
        origin_version,
    }
}
