//! rtpengine through its ng control protocol: UDP datagrams of `<cookie> <bencoded dict>`, answered
//! with the same cookie. Per call: `offer` with side A's SDP (the answer's SDP names the relay port
//! side B sends to), `answer` with side B's SDP (names the port side A sends to), `delete` at the
//! end. Requests go one at a time; an unanswered one is resent with the same cookie (rtpengine
//! answers a repeated cookie from its cache).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::backend::{Backend, Endpoints, Pacer, Session, SetupOutcome, TeardownOutcome};
use crate::bencode::Value;
use crate::sdp;

/// Wait for one ng response before resending.
const NG_RETRANSMIT: Duration = Duration::from_millis(500);
/// Sends of one request before giving up.
const NG_TRIES: u32 = 4;

/// The rtpengine backend.
#[derive(Debug)]
pub struct Rtpengine {
    socket: UdpSocket,
    cookie_prefix: String,
    next_cookie: u64,
    run: String,
    /// Streams with a call set up (offer and answer done).
    established: Vec<u32>,
    retransmits: u64,
    buf: Vec<u8>,
}

impl Rtpengine {
    /// A client of the ng listener at `ng`, from an ephemeral port on `local`.
    pub fn connect(ng: SocketAddr, local: std::net::IpAddr) -> anyhow::Result<Rtpengine> {
        let socket = UdpSocket::bind(SocketAddr::new(local, 0)).context("binding the ng socket")?;
        socket.connect(ng).context("connecting the ng socket")?;
        let run = format!("{:x}", std::process::id());
        Ok(Rtpengine {
            socket,
            cookie_prefix: format!("rtpload{run}_"),
            next_cookie: 0,
            run,
            established: Vec::new(),
            retransmits: 0,
            buf: vec![0; 65_536],
        })
    }

    /// Checks that rtpengine answers (`ping` → `pong`).
    pub fn ping(&mut self) -> anyhow::Result<()> {
        let reply = self.request(&Value::dict([("command", Value::str("ping"))]))?;
        match reply.get("result").and_then(Value::as_str) {
            Some("pong") => Ok(()),
            other => bail!("ng ping answered {other:?}"),
        }
    }

    fn call_id(&self, stream: u32) -> String {
        format!("{stream}-{}@rtpload", self.run)
    }

    /// One request and its response (result `ok` or `pong` checked by the caller).
    fn request(&mut self, body: &Value) -> anyhow::Result<Value> {
        let cookie = format!("{}{}", self.cookie_prefix, self.next_cookie);
        self.next_cookie += 1;
        let mut datagram = Vec::with_capacity(512);
        datagram.extend_from_slice(cookie.as_bytes());
        datagram.push(b' ');
        body.encode(&mut datagram);
        for attempt in 0..NG_TRIES {
            if attempt > 0 {
                self.retransmits += 1;
            }
            self.socket
                .send(&datagram)
                .context("sending an ng request")?;
            let deadline = Instant::now() + NG_RETRANSMIT;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if left.is_zero() {
                    break;
                }
                self.socket.set_read_timeout(Some(left))?;
                let n = match self.socket.recv(&mut self.buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) => return Err(e).context("receiving an ng response"),
                };
                let reply = &self.buf[..n];
                let Some(space) = reply.iter().position(|&b| b == b' ') else {
                    continue;
                };
                if &reply[..space] != cookie.as_bytes() {
                    continue; // a late answer to an earlier request
                }
                let (value, _) = Value::decode(&reply[space + 1..])
                    .map_err(|e| anyhow!("undecodable ng response: {e}"))?;
                return Ok(value);
            }
        }
        bail!("no ng response after {NG_TRIES} tries")
    }

    /// `offer` or `answer`; returns the SDP rtpengine rewrote.
    fn sdp_command(&mut self, pairs: Vec<(&str, Value)>) -> anyhow::Result<Vec<u8>> {
        let reply = self.request(&Value::dict(pairs))?;
        match reply.get("result").and_then(Value::as_str) {
            Some("ok") => {}
            other => bail!(
                "ng result {other:?}: {}",
                reply
                    .get("error-reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ),
        }
        match reply.get("sdp") {
            Some(Value::Bytes(sdp)) => Ok(sdp.clone()),
            _ => bail!("ng response has no sdp"),
        }
    }

    fn setup_one(&mut self, stream: u32, endpoints: &Endpoints) -> anyhow::Result<Session> {
        let call_id = self.call_id(stream);
        let from_tag = format!("a{stream}");
        let to_tag = format!("b{stream}");
        let offered = self.sdp_command(vec![
            ("command", Value::str("offer")),
            ("call-id", Value::str(&call_id)),
            ("from-tag", Value::str(&from_tag)),
            ("sdp", Value::str(&sdp::body(stream, endpoints.a))),
        ])?;
        let b_sends_to = sdp::media_target(&offered).context("offer SDP from rtpengine")?;
        let answered = self.sdp_command(vec![
            ("command", Value::str("answer")),
            ("call-id", Value::str(&call_id)),
            ("from-tag", Value::str(&from_tag)),
            ("to-tag", Value::str(&to_tag)),
            ("sdp", Value::str(&sdp::body(stream, endpoints.b))),
        ])?;
        let a_sends_to = sdp::media_target(&answered).context("answer SDP from rtpengine")?;
        Ok(Session {
            a_sends_to,
            b_sends_to,
        })
    }
}

impl Backend for Rtpengine {
    fn name(&self) -> &'static str {
        "rtpengine"
    }

    fn setup(
        &mut self,
        endpoints: &[Endpoints],
        rate: u32,
        deadline: Instant,
    ) -> anyhow::Result<SetupOutcome> {
        self.ping().context("rtpengine ng ping")?;
        let pacer = Pacer::new(rate);
        let mut sessions = Vec::with_capacity(endpoints.len());
        let mut first_error = None;
        for (stream, ep) in endpoints.iter().enumerate() {
            let now = Instant::now();
            if now >= deadline {
                sessions.resize(endpoints.len(), None);
                break;
            }
            std::thread::sleep(pacer.wait_for(stream, now));
            let stream = stream as u32;
            match self.setup_one(stream, ep) {
                Ok(session) => {
                    self.established.push(stream);
                    sessions.push(Some(session));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                    sessions.push(None);
                }
            }
        }
        if let Some(e) = first_error {
            eprintln!("rtpload: rtpengine setup: first error: {e:#}");
        }
        Ok(SetupOutcome {
            sessions,
            retransmits: self.retransmits,
        })
    }

    fn service(&mut self) {}

    fn teardown(&mut self, rate: u32, deadline: Instant) -> TeardownOutcome {
        let pacer = Pacer::new(rate);
        let mut outcome = TeardownOutcome::default();
        let streams = std::mem::take(&mut self.established);
        for (done, stream) in streams.iter().enumerate() {
            let now = Instant::now();
            if now >= deadline {
                outcome.failed += streams.len() - done;
                break;
            }
            std::thread::sleep(pacer.wait_for(done, now));
            let body = Value::dict([
                ("command", Value::str("delete")),
                ("call-id", Value::str(&self.call_id(*stream))),
                ("from-tag", Value::str(&format!("a{stream}"))),
            ]);
            let ok = self
                .request(&body)
                .is_ok_and(|r| r.get("result").and_then(Value::as_str) == Some("ok"));
            if ok {
                outcome.ok += 1;
            } else {
                outcome.failed += 1;
            }
        }
        outcome
    }
}
