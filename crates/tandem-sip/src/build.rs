//! Building new messages: responses to a request (RFC 3261 §8.2.6) and requests from scratch.

use crate::header_name::HeaderName;
use crate::message::Message;
use crate::method::Method;
use crate::name_addr::NameAddr;
use bytes::Bytes;

/// Extra header lines and an optional body, shared by both builders.
#[derive(Debug, Default)]
struct Parts {
    headers: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
}

impl Parts {
    fn header(&mut self, name: HeaderName<'_>, value: &str) {
        // Content-Length is always computed.
        if name.classified() != HeaderName::ContentLength {
            self.headers
                .push((name.classified().as_str().to_string(), value.to_string()));
        }
    }

    fn write_tail(&self, out: &mut Vec<u8>) {
        let body_ct = self.body.is_some();
        for (name, value) in &self.headers {
            if body_ct && HeaderName::parse(name) == HeaderName::ContentType {
                continue;
            }
            put_line(out, name, value);
        }
        let body: &[u8] = match &self.body {
            Some((ct, body)) => {
                put_line(out, "Content-Type", ct);
                body
            }
            None => b"",
        };
        put_line(out, "Content-Length", &body.len().to_string());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }

    fn size_hint(&self) -> usize {
        self.headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
            + self
                .body
                .as_ref()
                .map_or(0, |(ct, b)| ct.len() + b.len() + 16)
            + 24
    }
}

fn put_line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Builds a response to a request (RFC 3261 §8.2.6): copies every Via, From, To, Call-ID and CSeq;
/// adds a To tag when given and the To has none.
///
/// Copied values are written with folding replaced by one space, under their long names.
#[derive(Debug)]
pub struct ResponseBuilder<'m> {
    req: &'m Message,
    code: u16,
    reason: String,
    to_tag: Option<String>,
    vias: Option<String>,
    parts: Parts,
}

impl<'m> ResponseBuilder<'m> {
    /// A response with this status code and reason phrase.
    pub fn new(req: &'m Message, code: u16, reason: &str) -> ResponseBuilder<'m> {
        ResponseBuilder {
            req,
            code,
            reason: reason.to_string(),
            to_tag: None,
            vias: None,
            parts: Parts::default(),
        }
    }

    /// Writes this Via value (a comma-list) instead of copying the request's Via lines, e.g. with
    /// `received`/`rport` filled in on the top one (RFC 3261 §18.2.1, RFC 3581 §4).
    pub fn vias(&mut self, value: &str) -> &mut Self {
        self.vias = Some(value.to_string());
        self
    }

    /// Adds `;tag=` to the To value unless the request's To already has a tag.
    pub fn to_tag(&mut self, tag: &str) -> &mut Self {
        self.to_tag = Some(tag.to_string());
        self
    }

    /// Adds a header line after the copied ones (Content-Length is ignored: it is always computed).
    pub fn header(&mut self, name: HeaderName<'_>, value: &str) -> &mut Self {
        self.parts.header(name, value);
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(&mut self, content_type: &str, body: &[u8]) -> &mut Self {
        self.parts.body = Some((content_type.to_string(), body.to_vec()));
        self
    }

    /// Writes the response.
    pub fn build(&self) -> Bytes {
        let req = self.req;
        let mut out = Vec::with_capacity(req.as_bytes().len().min(2048) + self.parts.size_hint());
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(self.code.to_string().as_bytes());
        out.extend_from_slice(b" ");
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        match &self.vias {
            Some(vias) => put_line(&mut out, "Via", vias),
            None => {
                for v in req.headers(HeaderName::Via) {
                    put_line(&mut out, "Via", &v);
                }
            }
        }
        if let Some(v) = req.header(HeaderName::From) {
            put_line(&mut out, "From", &v);
        }
        if let Some(v) = req.header(HeaderName::To) {
            let has_tag = NameAddr::parse(&v).is_ok_and(|n| n.tag().is_some());
            match &self.to_tag {
                Some(tag) if !has_tag => put_line(&mut out, "To", &format!("{v};tag={tag}")),
                _ => put_line(&mut out, "To", &v),
            }
        }
        put_line(&mut out, "Call-ID", req.call_id());
        if let Some(v) = req.header(HeaderName::CSeq) {
            put_line(&mut out, "CSeq", &v);
        }
        self.parts.write_tail(&mut out);
        Bytes::from(out)
    }
}

/// Builds a request from scratch (probes, BYE, ACK for 2xx, CANCEL). Headers are written in the order
/// added; Content-Length is always written last.
#[derive(Debug)]
pub struct RequestBuilder {
    method: Method,
    uri: String,
    parts: Parts,
}

impl RequestBuilder {
    /// A request line `METHOD uri SIP/2.0`.
    pub fn new(method: &Method, uri: &str) -> RequestBuilder {
        RequestBuilder {
            method: method.clone(),
            uri: uri.to_string(),
            parts: Parts::default(),
        }
    }

    /// Adds a header line (Content-Length is ignored: it is always computed).
    pub fn header(&mut self, name: HeaderName<'_>, value: &str) -> &mut Self {
        self.parts.header(name, value);
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(&mut self, content_type: &str, body: &[u8]) -> &mut Self {
        self.parts.body = Some((content_type.to_string(), body.to_vec()));
        self
    }

    /// Writes the request.
    pub fn build(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.uri.len() + 32 + self.parts.size_hint());
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.extend_from_slice(b" ");
        out.extend_from_slice(self.uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        self.parts.write_tail(&mut out);
        Bytes::from(out)
    }
}
