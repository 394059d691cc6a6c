//! Matching keys (RFC 3261 §17.1.3, §17.2.3, §9.2), written into a reusable scratch string so a
//! lookup allocates nothing; only a transaction being created copies its key into the map.
//!
//! * Client transactions: `C`, the CSeq method, the top-Via branch. ACK never has a client
//!   transaction, so the method is the request's own (INVITE, CANCEL, BYE...).
//! * Server transactions, RFC 3261 branch (`z9hG4bK`): `S`, the method (ACK written as INVITE), the
//!   branch, the sent-by host (lower-cased) and port.
//! * Server transactions, RFC 2543 branch or none: `L`, the method (ACK as INVITE), Call-ID, CSeq
//!   number, From tag, Request-URI and the top Via's sent-by and branch text. This is §17.2.3's rule
//!   without the To tag: the To tag of an ACK is the response's, not the INVITE's, and a retransmitted
//!   request never changes its To tag, so dropping it loses nothing a legacy peer relies on.
//! * Accepted INVITE server transactions, for the ACK of a 2xx (a new transaction with its own
//!   branch): `A`, Call-ID, CSeq number, From tag.

use std::fmt::Write;
use std::net::IpAddr;
use tandem_sip::{Host, Message, Method};

/// Writes the key of the client transaction `method` + `branch` (responses: CSeq method + top-Via
/// branch).
pub(super) fn client(buf: &mut String, method: &Method, branch: &str) {
    buf.clear();
    buf.push('C');
    buf.push_str(method.as_str());
    buf.push('\0');
    buf.push_str(branch);
}

/// Writes the key of the server transaction `request` belongs to, as if its method were `method`
/// (INVITE for an ACK or for the INVITE a CANCEL targets).
pub(super) fn server(buf: &mut String, request: &Message, method: &Method) {
    buf.clear();
    let via = request.top_via();
    let rfc3261 = via.is_rfc3261();
    buf.push(if rfc3261 { 'S' } else { 'L' });
    buf.push_str(method.as_str());
    buf.push('\0');
    if !rfc3261 {
        buf.push_str(request.call_id());
        buf.push('\0');
        push_u32(buf, request.cseq().seq);
        buf.push('\0');
        buf.push_str(request.from_tag().unwrap_or(""));
        buf.push('\0');
        buf.push_str(request.request_uri().unwrap_or(""));
        buf.push('\0');
    }
    buf.push_str(via.branch.unwrap_or(""));
    buf.push('\0');
    match via.host {
        Host::Ip(IpAddr::V4(ip)) => {
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push('.');
                }
                push_u32(buf, u32::from(octet));
            }
        }
        Host::Ip(ip) => {
            let _ = write!(buf, "{ip}");
        }
        Host::Name(name) => buf.extend(name.chars().map(|c| c.to_ascii_lowercase())),
    }
    if let Some(port) = via.port {
        buf.push(':');
        push_u32(buf, u32::from(port));
    }
}

/// Writes the key an ACK for a 2xx is matched with: Call-ID, CSeq number, From tag.
pub(super) fn ack(buf: &mut String, msg: &Message) {
    buf.clear();
    buf.push('A');
    buf.push_str(msg.call_id());
    buf.push('\0');
    push_u32(buf, msg.cseq().seq);
    buf.push('\0');
    buf.push_str(msg.from_tag().unwrap_or(""));
}

/// Appends `n` in decimal (what `write!` does, without the formatting machinery).
fn push_u32(buf: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend(digits[i..].iter().map(|&d| char::from(d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut buf = String::new();
        for n in [0, 7, 10, 5060, 65535, u32::MAX] {
            buf.clear();
            push_u32(&mut buf, n);
            assert_eq!(buf, n.to_string());
        }
    }
}
