//! What the active sends its standby, as [`Outbox::poll_send`](crate::Outbox::poll_send) hands it
//! out. A delta is encoded once ([`crate::view_encode`]), when it enters the outbox's ring, and
//! that buffer is what every send (and every resend after a reconnect) writes: no copy of the
//! delta's strings per send, and an evicted ring entry frees one buffer instead of a tree of
//! fields.

use bytes::{BufMut, Bytes};
use prost::Message;
use tandem_proto::replication::v1::ActiveMessage;

/// One message for the standby: the wire form of an [`ActiveMessage`] either way.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// An `ActiveMessage` already encoded (a delta from the ring).
    Encoded(Bytes),
    /// A message encoded when it is sent (snapshot chunks, heartbeats).
    Message(Box<ActiveMessage>),
}

impl Outgoing {
    /// Writes the wire form into `buf`.
    pub fn write_to(&self, buf: &mut impl BufMut) -> Result<(), WriteError> {
        match self {
            Outgoing::Encoded(bytes) => {
                if buf.remaining_mut() < bytes.len() {
                    return Err(WriteError::NoRoom {
                        required: bytes.len(),
                        remaining: buf.remaining_mut(),
                    });
                }
                buf.put_slice(bytes);
                Ok(())
            }
            Outgoing::Message(message) => Ok(message.encode(buf)?),
        }
    }

    /// The length of the wire form.
    pub fn encoded_len(&self) -> usize {
        match self {
            Outgoing::Encoded(bytes) => bytes.len(),
            Outgoing::Message(message) => message.encoded_len(),
        }
    }

    /// The message itself (an encoded one is decoded): for in-process links and tests.
    pub fn into_message(self) -> Result<ActiveMessage, prost::DecodeError> {
        match self {
            Outgoing::Encoded(bytes) => ActiveMessage::decode(bytes),
            Outgoing::Message(message) => Ok(*message),
        }
    }
}

/// Why an [`Outgoing`] could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The buffer has less room than the encoded message needs.
    #[error("{required} bytes to write, {remaining} left in the buffer")]
    NoRoom {
        /// The encoded message's length.
        required: usize,
        /// Room left in the buffer.
        remaining: usize,
    },
    /// Encoding a plain message failed.
    #[error(transparent)]
    Encode(#[from] prost::EncodeError),
}

impl From<ActiveMessage> for Outgoing {
    fn from(message: ActiveMessage) -> Self {
        Outgoing::Message(Box::new(message))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tandem_proto::replication::v1::{active_message::Kind, Delta, Heartbeat};

    fn delta(seq: u64) -> ActiveMessage {
        ActiveMessage {
            kind: Some(Kind::Delta(Delta {
                epoch: 3,
                seq,
                change: None,
            })),
        }
    }

    #[test]
    fn an_encoded_message_writes_the_bytes_prost_would() {
        let message = delta(7);
        let encoded = Outgoing::Encoded(Bytes::from(message.encode_to_vec()));
        let mut written = Vec::new();
        encoded.write_to(&mut written).unwrap();
        assert_eq!(written, message.encode_to_vec());
        assert_eq!(encoded.encoded_len(), written.len());
        assert_eq!(encoded.into_message().unwrap(), message);
    }

    #[test]
    fn a_plain_message_is_encoded_on_writing() {
        let message = ActiveMessage {
            kind: Some(Kind::Heartbeat(Heartbeat::default())),
        };
        let outgoing = Outgoing::from(message.clone());
        let mut written = Vec::new();
        outgoing.write_to(&mut written).unwrap();
        assert_eq!(written, message.encode_to_vec());
        assert_eq!(outgoing.encoded_len(), written.len());
    }

    #[test]
    fn a_full_buffer_is_an_error_not_a_panic() {
        let encoded = Outgoing::Encoded(Bytes::from(delta(9).encode_to_vec()));
        let mut space = [0u8; 2];
        let mut buf = &mut space[..];
        assert!(encoded.write_to(&mut buf).is_err());
    }
}
