//! SIP methods (RFC 3261 §7.1, §27.4).

use crate::lex::is_token;
use std::fmt;

/// A SIP method. Methods are open: any token is a legal method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// OPTIONS (RFC 3261).
    Options,
    /// REGISTER (RFC 3261).
    Register,
    /// PRACK (RFC 3262).
    Prack,
    /// UPDATE (RFC 3311).
    Update,
    /// INFO (RFC 6086).
    Info,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other token, kept verbatim (case-sensitive per RFC 3261 §7.1).
    Other(Box<str>),
}

const KNOWN: [(&str, Method); 14] = [
    ("INVITE", Method::Invite),
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("OPTIONS", Method::Options),
    ("REGISTER", Method::Register),
    ("PRACK", Method::Prack),
    ("UPDATE", Method::Update),
    ("INFO", Method::Info),
    ("SUBSCRIBE", Method::Subscribe),
    ("NOTIFY", Method::Notify),
    ("REFER", Method::Refer),
    ("MESSAGE", Method::Message),
    ("PUBLISH", Method::Publish),
];

impl Method {
    /// Parses a method token; `None` if `s` is not a valid token.
    pub fn from_token(s: &str) -> Option<Method> {
        if !is_token(s) {
            return None;
        }
        for (name, m) in &KNOWN {
            if *name == s {
                return Some(m.clone());
            }
        }
        Some(Method::Other(s.into()))
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn known_and_other() {
        for (name, m) in &KNOWN {
            assert_eq!(Method::from_token(name).as_ref(), Some(m));
            assert_eq!(m.as_str(), *name);
        }
        // Case-sensitive: `invite` is an unknown method.
        assert_eq!(
            Method::from_token("invite"),
            Some(Method::Other("invite".into()))
        );
        assert_eq!(Method::from_token("IN%56ITE").unwrap().as_str(), "IN%56ITE");
        assert_eq!(Method::from_token(""), None);
        assert_eq!(Method::from_token("IN VITE"), None);
    }
}
