//! Building the messages that cross from one leg to the other.
//!
//! Every relayed message is the incoming one edited in place by the codec's byte-splicing
//! [`tandem_sip::Editor`]: headers that belong to one leg (Via, Route, Record-Route, Contact, Call-ID,
//! From, To, CSeq, Max-Forwards) are replaced; everything else — unknown headers, the body — is copied
//! byte for byte.

use crate::call::Leg;
use crate::Transport;
use bytes::Bytes;
use std::fmt::Write;
use std::net::SocketAddr;
use tandem_sip::{HeaderName, Message, Method};

/// What Tandem writes about itself: Via sent-by and Contact per transport.
#[derive(Debug, Clone)]
pub struct SelfAddress {
    pub advertised: SocketAddr,
    contact_udp: String,
    contact_tcp: String,
}

impl SelfAddress {
    pub fn new(advertised: SocketAddr) -> SelfAddress {
        SelfAddress {
            advertised,
            contact_udp: format!("<sip:{advertised}>"),
            contact_tcp: format!("<sip:{advertised};transport=tcp>"),
        }
    }

    pub fn contact(&self, transport: Transport) -> &str {
        match transport {
            Transport::Udp => &self.contact_udp,
            Transport::Tcp => &self.contact_tcp,
        }
    }

    /// A Via value for a request Tandem sends with `branch`.
    pub fn via(&self, transport: Transport, branch: &str) -> String {
        let mut v = String::with_capacity(64);
        let _ = write!(
            v,
            "SIP/2.0/{} {};branch={};rport",
            transport.via_token(),
            self.advertised,
            branch
        );
        v
    }
}

/// The request `incoming` (received on one leg) rewritten for leg `to`, as request `method` with CSeq
/// `cseq`. `rack` replaces the RAck value (PRACK) when given; `body` replaces the body (an SDP
/// anchored on Tandem's relay ports) when given.
#[allow(clippy::too_many_arguments)]
pub fn relay_request(
    me: &SelfAddress,
    incoming: &Message,
    to: &Leg,
    method: &Method,
    cseq: u32,
    branch: &str,
    rack: Option<&str>,
    body: Option<&[u8]>,
) -> Bytes {
    let start_line = format!("{} {} SIP/2.0", method.as_str(), to.remote_target);
    let via = me.via(to.peer.transport, branch);
    let cseq_value = format!("{cseq} {}", method.as_str());
    let mut ed = incoming.edit();
    ed.set_start_line(&start_line)
        .set(HeaderName::Via, &via)
        .remove_all(HeaderName::RecordRoute)
        .set(HeaderName::From, &to.local_party)
        .set(HeaderName::To, &to.remote_party)
        .set(HeaderName::CallId, &to.call_id)
        .set(HeaderName::CSeq, &cseq_value)
        .decrement_max_forwards();
    if to.route_set.is_empty() {
        ed.remove_all(HeaderName::Route);
    } else {
        ed.set(HeaderName::Route, &to.route_set.join(", "));
    }
    if incoming.header(HeaderName::Contact).is_some() {
        ed.set(HeaderName::Contact, me.contact(to.peer.transport));
    }
    if let Some(rack) = rack {
        ed.set(HeaderName::RAck, rack);
    }
    if let Some(body) = body {
        ed.set_body(None, body);
    }
    ed.finish()
}

/// The response `incoming` (to a request Tandem relayed) rewritten as the response to `origin`, the
/// request Tandem received on the other leg. `local_party` is Tandem's To value on the origin leg,
/// used when the origin request carried no To tag (a dialog-creating INVITE); `vias` is the Via set
/// the response carries (the origin's, stamped: see `response_vias`); `body` replaces the body (an
/// SDP anchored on Tandem's relay ports) when given.
pub fn relay_response(
    me: &SelfAddress,
    incoming: &Message,
    origin: &Message,
    vias: &str,
    local_party: &str,
    transport: Transport,
    body: Option<&[u8]>,
) -> Bytes {
    let mut ed = incoming.edit();
    ed.set(HeaderName::Via, vias);
    // The far leg's Record-Route stays there; the origin's own is echoed back (§12.1.1) so the
    // proxies on the origin side stay in its route set.
    let record_route = joined(origin, HeaderName::RecordRoute);
    if record_route.is_empty() {
        ed.remove_all(HeaderName::RecordRoute);
    } else {
        ed.set(HeaderName::RecordRoute, &record_route);
    }
    copy_header(&mut ed, origin, HeaderName::From);
    if origin.to_tag().is_some() {
        copy_header(&mut ed, origin, HeaderName::To);
    } else {
        ed.set(HeaderName::To, local_party);
    }
    ed.set(HeaderName::CallId, origin.call_id());
    copy_header(&mut ed, origin, HeaderName::CSeq);
    if incoming.header(HeaderName::Contact).is_some() {
        ed.set(HeaderName::Contact, me.contact(transport));
    }
    if let Some(body) = body {
        ed.set_body(None, body);
    }
    ed.finish()
}

fn copy_header(ed: &mut tandem_sip::Editor<'_>, from: &Message, name: HeaderName<'_>) {
    if let Some(value) = from.header(name) {
        ed.set(name, &value);
    }
}

/// Every line of header `name`, joined into one comma-list value.
pub fn joined(msg: &Message, name: HeaderName<'_>) -> String {
    let mut out = String::new();
    for (i, value) in msg.headers(name).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&value);
    }
    out
}

/// `"display" <uri>;tag=tag` for a party whose URI Tandem keeps and whose tag it replaces.
pub fn party(display: Option<&str>, uri: &str, tag: Option<&str>) -> String {
    let mut s = String::with_capacity(uri.len() + 48);
    if let Some(d) = display.filter(|d| !d.is_empty()) {
        let _ = write!(s, "\"{d}\" ");
    }
    let _ = write!(s, "<{uri}>");
    if let Some(t) = tag {
        let _ = write!(s, ";tag={t}");
    }
    s
}

/// A request Tandem originates on a leg by itself: the ACK for a 2xx (§13.2.2.4, carrying the body
/// of a late offer's answer when given), or a BYE when a call must end.
pub fn leg_request(
    me: &SelfAddress,
    leg: &Leg,
    method: &Method,
    cseq: u32,
    branch: &str,
    body: Option<(&str, &[u8])>,
) -> Bytes {
    let mut b = tandem_sip::RequestBuilder::new(method, &leg.remote_target);
    b.header(HeaderName::Via, &me.via(leg.peer.transport, branch));
    if !leg.route_set.is_empty() {
        b.header(HeaderName::Route, &leg.route_set.join(", "));
    }
    b.header(HeaderName::MaxForwards, "70")
        .header(HeaderName::From, &leg.local_party)
        .header(HeaderName::To, &leg.remote_party)
        .header(HeaderName::CallId, &leg.call_id)
        .header(HeaderName::CSeq, &format!("{cseq} {}", method.as_str()));
    if let Some((content_type, body)) = body {
        b.body(content_type, body);
    }
    b.build()
}

/// Which way a Record-Route list becomes a route set (RFC 3261 §12.1.1 and §12.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOrder {
    /// Tandem is the UAS of the dialog: the request's Record-Route order.
    AsReceived,
    /// Tandem is the UAC: the response's Record-Route reversed.
    Reversed,
}

/// The route set a dialog-creating message's Record-Route values give.
pub fn route_set(msg: &Message, order: RouteOrder) -> Vec<String> {
    let mut set: Vec<String> = msg
        .record_routes()
        .iter()
        .map(|r| format!("<{}>{}", r.uri.raw, r.params))
        .collect();
    if order == RouteOrder::Reversed {
        set.reverse();
    }
    set
}
