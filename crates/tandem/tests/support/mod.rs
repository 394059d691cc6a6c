//! Helpers shared by the test files that talk SIP to a running Tandem: a stand-in media server and
//! a UDP caller.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tandem_sip::{HeaderName, Message, Method, ResponseBuilder};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Longest wait for anything a test expects to happen.
pub const DEADLINE: Duration = Duration::from_secs(5);

const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
    t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

/// A media server that answers every request but ACK with 200 (INVITE: with a Contact and SDP), and
/// reports the method of every request it gets.
pub async fn start_media_server() -> (SocketAddr, mpsc::UnboundedReceiver<Method>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(request) = Message::parse(Bytes::copy_from_slice(&buf[..len])) else {
                continue;
            };
            let Some(method) = request.method().cloned() else {
                continue;
            };
            let _ = seen_tx.send(method.clone());
            if method == Method::Ack {
                continue;
            }
            let mut response = ResponseBuilder::new(&request, 200, "OK");
            response.to_tag("media");
            if method == Method::Invite {
                response
                    .header(HeaderName::Contact, &format!("<sip:media@{addr}>"))
                    .body("application/sdp", SDP);
            }
            let _ = socket.send_to(&response.build(), from).await;
        }
    });
    (addr, seen)
}

/// A request from `from` over `transport` ("UDP"/"TCP") with this To header value.
pub fn request(
    method: &str,
    uri: &str,
    from: SocketAddr,
    transport: &str,
    call_id: &str,
    cseq: u32,
    to: &str,
) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {from};branch=z9hG4bK-{call_id}-{cseq}-{method};rport\r\n\
         From: <sip:caller@{from}>;tag=caller\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Max-Forwards: 70\r\n\
         Contact: <sip:caller@{from}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// An answered call as the caller sees it.
pub struct Dialog {
    pub call_id: String,
    /// Contact of the 200: the Request-URI of in-dialog requests.
    pub contact: String,
    /// To of the 200, with Tandem's tag.
    pub to: String,
}

/// A caller on UDP.
pub struct Caller {
    socket: UdpSocket,
    tandem: SocketAddr,
}

impl Caller {
    pub async fn new(tandem: SocketAddr) -> Caller {
        Caller {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            tandem,
        }
    }

    pub fn request(&self, method: &str, uri: &str, call_id: &str, cseq: u32, to: &str) -> String {
        request(
            method,
            uri,
            self.socket.local_addr().unwrap(),
            "UDP",
            call_id,
            cseq,
            to,
        )
    }

    /// Sends `text` and returns the final response.
    pub async fn exchange(&self, text: &str) -> Message {
        self.socket
            .send_to(text.as_bytes(), self.tandem)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_535];
        loop {
            let received = timeout(DEADLINE, self.socket.recv_from(&mut buf)).await;
            let (len, _) = received.expect("no response in time").unwrap();
            let msg = Message::parse(Bytes::copy_from_slice(&buf[..len])).unwrap();
            if msg.status().is_some_and(|code| code >= 200) {
                return msg;
            }
        }
    }

    /// Sends an INVITE and returns its final status.
    pub async fn invite(&self, call_id: &str) -> (Option<u16>, Message) {
        let answer = self
            .exchange(&self.request("INVITE", "sip:100@tandem", call_id, 1, "<sip:100@tandem>"))
            .await;
        (answer.status(), answer)
    }

    /// INVITE, 200, ACK.
    pub async fn call(&self, call_id: &str) -> Dialog {
        let (status, answer) = self.invite(call_id).await;
        assert_eq!(status, Some(200));
        let dialog = Dialog {
            call_id: call_id.to_owned(),
            contact: answer
                .contacts()
                .first()
                .map(|c| c.uri.raw.to_owned())
                .unwrap(),
            to: answer.header(HeaderName::To).unwrap().into_owned(),
        };
        let ack = self.request("ACK", &dialog.contact, call_id, 1, &dialog.to);
        self.socket
            .send_to(ack.as_bytes(), self.tandem)
            .await
            .unwrap();
        dialog
    }

    /// BYE; returns its final status.
    pub async fn hang_up(&self, dialog: &Dialog) -> Option<u16> {
        let bye = self.request("BYE", &dialog.contact, &dialog.call_id, 2, &dialog.to);
        self.exchange(&bye).await.status()
    }
}
