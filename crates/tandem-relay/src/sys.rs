//! The crate's only direct system calls: `recvmmsg(2)`, `sendmmsg(2)` and `sendto(2)` on
//! non-blocking UDP sockets, with every buffer allocated once when a shard starts, and the two
//! socket options that pair a send-only socket with a receiving one on the same port.
//!
//! [`RecvBatch`] owns `batch` packet slots of [`SLOT_LEN`] bytes and the kernel headers that point
//! into them (set up once: the boxed slices never move); [`SendBatch`] sends packets that sit in a
//! [`RecvBatch`]'s slots (edited in place) to per-packet destinations, its headers rebuilt on every
//! call so no raw pointer outlives the borrow it was taken from.
//!
//! Both IPv4 and IPv6 sockets are handled; an IPv4 destination sent through an IPv6 socket is
//! written as a v4-mapped address.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::ptr;

/// Bytes per packet slot: above any Ethernet MTU; a larger datagram is truncated and flagged.
pub(crate) const SLOT_LEN: usize = 2048;

/// `SO_ATTACH_REUSEPORT_CBPF` of `asm-generic/socket.h` (x86, Arm, RISC-V; the libc crate lacks it
/// for Linux). Where it means something else the attach fails and the caller does without.
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// The most packets one system call moves (the kernel's `UIO_MAXIOV`).
pub(crate) const MAX_BATCH: usize = 1024;

/// What the kernel said about one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// Bytes stored in the slot (at most [`SLOT_LEN`]).
    pub(crate) len: usize,
    /// The sender, `None` for an address family other than IPv4/IPv6.
    pub(crate) source: Option<SocketAddr>,
    /// The datagram was longer than the slot and was cut.
    pub(crate) truncated: bool,
}

const NOTHING: Received = Received {
    len: 0,
    source: None,
    truncated: false,
};

/// Preallocated receive slots and the `mmsghdr` array that `recvmmsg` fills.
pub(crate) struct RecvBatch {
    data: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
    received: Box<[Received]>,
    count: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.received.len())
            .field("count", &self.count)
            .finish()
    }
}

impl RecvBatch {
    /// Slots for `batch` packets (clamped to 1..=[`MAX_BATCH`]).
    pub(crate) fn new(batch: usize) -> Self {
        let batch = batch.clamp(1, MAX_BATCH);
        let mut this = Self {
            data: vec![0; batch * SLOT_LEN].into_boxed_slice(),
            names: (0..batch).map(|_| zeroed_storage()).collect(),
            iovecs: (0..batch).map(|_| empty_iovec()).collect(),
            headers: (0..batch).map(|_| empty_mmsghdr()).collect(),
            received: vec![NOTHING; batch].into_boxed_slice(),
            count: 0,
        };
        // The headers point into the boxed slices, whose heap blocks never move or change size
        // (moving `this` moves only the box pointers), so they are set up once here; `recv` only
        // resets the fields the kernel writes back.
        let data = this.data.as_mut_ptr();
        for i in 0..batch {
            this.iovecs[i] = libc::iovec {
                // SAFETY: i * SLOT_LEN + SLOT_LEN <= data.len(), so the offset stays in the buffer.
                iov_base: unsafe { data.add(i * SLOT_LEN) }.cast(),
                iov_len: SLOT_LEN,
            };
            let header = &mut this.headers[i];
            header.msg_hdr.msg_name = ptr::addr_of_mut!(this.names[i]).cast();
            header.msg_hdr.msg_namelen = storage_len();
            header.msg_hdr.msg_iov = ptr::addr_of_mut!(this.iovecs[i]);
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = ptr::null_mut();
            header.msg_hdr.msg_controllen = 0;
        }
        this
    }

    /// How many packets one call can receive.
    pub(crate) fn capacity(&self) -> usize {
        self.received.len()
    }

    /// Receives up to [`RecvBatch::capacity`] datagrams without blocking; returns how many.
    /// `WouldBlock` means the socket's queue is empty.
    pub(crate) fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        // The kernel wrote back the name length, flags and length of the headers it filled last
        // time (and of none after those).
        for header in &mut self.headers[..self.count.max(1)] {
            header.msg_len = 0;
            header.msg_hdr.msg_namelen = storage_len();
            header.msg_hdr.msg_flags = 0;
        }
        self.count = 0;
        let capacity = self.capacity();
        // SAFETY: every header points at a live name buffer of `msg_namelen` bytes and at one iovec
        // that covers a distinct SLOT_LEN-byte region of `self.data` (set up in `new`; the boxed
        // slices never move or shrink); all of them are owned by `self`, which stays mutably
        // borrowed for the whole call. `vlen` is the array's length.
        let result = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                capacity as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        let count = usize::try_from(result).map_err(|_| io::Error::last_os_error())?;
        let count = count.min(capacity);
        for i in 0..count {
            let header = &self.headers[i];
            self.received[i] = Received {
                len: (header.msg_len as usize).min(SLOT_LEN),
                source: read_sockaddr(&self.names[i], header.msg_hdr.msg_namelen),
                truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        self.count = count;
        Ok(count)
    }

    /// Packets held since the last [`RecvBatch::recv`].
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Packet `i` of the last receive: what the kernel said and its bytes, editable in place.
    pub(crate) fn packet_mut(&mut self, i: usize) -> (Received, &mut [u8]) {
        let received = self.received.get(i).copied().unwrap_or(NOTHING);
        let start = i.saturating_mul(SLOT_LEN);
        let bytes = self
            .data
            .get_mut(start..start.saturating_add(received.len))
            .unwrap_or_default();
        (received, bytes)
    }
}

/// One packet to send: a slot of a [`RecvBatch`], its length and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outgoing {
    /// The slot index in the [`RecvBatch`].
    pub(crate) slot: usize,
    /// Bytes to send from the start of the slot.
    pub(crate) len: usize,
    /// The destination.
    pub(crate) destination: SocketAddr,
    /// Caller's tag, carried untouched (the relay marks RTCP with it).
    pub(crate) rtcp: bool,
    /// Set by [`SendBatch::send`] when the kernel took the packet.
    pub(crate) sent: bool,
}

/// How a [`SendBatch::send`] went; packets not sent were dropped, never retried later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendReport {
    /// Packets the kernel accepted.
    pub(crate) sent: usize,
    /// Packets dropped because the socket's send buffer was full.
    pub(crate) busy: usize,
    /// Packets the kernel refused (bad destination, unreachable network, ...).
    pub(crate) failed: usize,
}

/// Preallocated `sendmmsg` headers.
pub(crate) struct SendBatch {
    names: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("slots", &self.headers.len())
            .finish()
    }
}

impl SendBatch {
    /// Headers for `batch` packets (clamped to 1..=[`MAX_BATCH`]).
    pub(crate) fn new(batch: usize) -> Self {
        let batch = batch.clamp(1, MAX_BATCH);
        Self {
            names: (0..batch).map(|_| zeroed_storage()).collect(),
            iovecs: (0..batch).map(|_| empty_iovec()).collect(),
            headers: (0..batch).map(|_| empty_mmsghdr()).collect(),
        }
    }

    /// Sends `packets` (slots of `from`) through `socket` without blocking, marking each one sent or
    /// not. A full send buffer drops the rest of the batch; a refused packet is skipped.
    pub(crate) fn send(
        &mut self,
        socket: &impl AsRawFd,
        ipv6_socket: bool,
        from: &RecvBatch,
        packets: &mut [Outgoing],
    ) -> SendReport {
        let mut report = SendReport::default();
        let mut start = 0;
        let mut interrupted = 0;
        while start < packets.len() {
            let prepared = self.prepare(ipv6_socket, from, &packets[start..]);
            if prepared == 0 {
                // The packet cannot be described to the kernel (slot out of range): skip it.
                report.failed += 1;
                start += 1;
                continue;
            }
            let result = match prepared {
                // One packet (the common case: a call's port sees one packet per wake-up): sendto
                // spares the kernel copying in a message header and an iovec array.
                1 => {
                    let (header, iovec) = (&self.headers[0].msg_hdr, &self.iovecs[0]);
                    // SAFETY: as `prepare` checked, the iovec points into `from.data` (borrowed for
                    // the whole call) within its length, and the name is a buffer owned by `self` of
                    // `msg_namelen` bytes. The kernel only reads both.
                    let sent = unsafe {
                        libc::sendto(
                            socket.as_raw_fd(),
                            iovec.iov_base,
                            iovec.iov_len,
                            libc::MSG_DONTWAIT,
                            header.msg_name.cast_const().cast(),
                            header.msg_namelen,
                        )
                    };
                    if sent < 0 {
                        -1
                    } else {
                        1
                    }
                }
                // SAFETY: the first `prepared` headers point at name buffers and iovecs owned by
                // `self` (mutably borrowed), and the iovecs point into `from.data` (borrowed for the
                // whole call) within its length, as `prepare` checked. The kernel only reads the
                // packet bytes.
                _ => unsafe {
                    libc::sendmmsg(
                        socket.as_raw_fd(),
                        self.headers.as_mut_ptr(),
                        prepared as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                },
            };
            match usize::try_from(result) {
                Ok(sent) if sent > 0 => {
                    let sent = sent.min(prepared);
                    packets[start..start + sent]
                        .iter_mut()
                        .for_each(|packet| packet.sent = true);
                    report.sent += sent;
                    start += sent;
                }
                _ => {
                    let error = io::Error::last_os_error();
                    match error.kind() {
                        io::ErrorKind::Interrupted if interrupted < 8 => interrupted += 1,
                        io::ErrorKind::WouldBlock => {
                            report.busy += packets.len() - start;
                            break;
                        }
                        _ if error.raw_os_error() == Some(libc::ENOBUFS) => {
                            report.busy += packets.len() - start;
                            break;
                        }
                        _ => {
                            report.failed += 1;
                            start += 1;
                        }
                    }
                }
            }
        }
        report
    }

    /// Fills the headers for the leading packets of `packets`; returns how many were prepared.
    fn prepare(&mut self, ipv6_socket: bool, from: &RecvBatch, packets: &[Outgoing]) -> usize {
        let data = from.data.as_ptr();
        let mut prepared = 0;
        for (i, packet) in packets.iter().take(self.headers.len()).enumerate() {
            let in_range = packet.slot < from.capacity() && packet.len <= SLOT_LEN;
            if !in_range {
                break;
            }
            let name_len = write_sockaddr(packet.destination, ipv6_socket, &mut self.names[i]);
            self.iovecs[i] = libc::iovec {
                // SAFETY: slot < capacity and len <= SLOT_LEN keep the region inside `from.data`.
                // The pointer is only read by the kernel (sendmmsg never writes packet bytes).
                iov_base: unsafe { data.add(packet.slot * SLOT_LEN) }
                    .cast_mut()
                    .cast(),
                iov_len: packet.len,
            };
            let header = &mut self.headers[i];
            header.msg_len = 0;
            header.msg_hdr.msg_name = ptr::addr_of_mut!(self.names[i]).cast();
            header.msg_hdr.msg_namelen = name_len;
            header.msg_hdr.msg_iov = ptr::addr_of_mut!(self.iovecs[i]);
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = ptr::null_mut();
            header.msg_hdr.msg_controllen = 0;
            header.msg_hdr.msg_flags = 0;
            prepared += 1;
        }
        prepared
    }
}

/// Sets `SO_REUSEPORT` on `socket`: sockets of the same user with it set may bind the same port.
pub(crate) fn set_reuse_port(socket: &impl AsRawFd, on: bool) -> io::Result<()> {
    let value = libc::c_int::from(on);
    // SAFETY: the option value is a live c_int and its exact size is passed.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            ptr::from_ref(&value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match result {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Makes the kernel deliver every datagram for the `SO_REUSEPORT` group of `socket` to the
/// group's first socket (a classic BPF program that always answers index 0), so the others bound
/// to the same port only send.
pub(crate) fn steer_to_first(socket: &impl AsRawFd) -> io::Result<()> {
    let mut program = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, one valid instruction, both alive for the call (the
    // kernel copies the program); the exact size of the option value is passed.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            ptr::from_ref(&fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    match result {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

pub(crate) fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is a plain C struct of integers; all-zero bytes are a valid value.
    unsafe { mem::zeroed() }
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }
}

fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct of integers and pointers; all-zero bytes (null pointers,
    // zero lengths) are a valid value, and every field the kernel reads is set before each call.
    unsafe { mem::zeroed() }
}

fn storage_len() -> libc::socklen_t {
    mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t
}

/// Writes `address` into `storage` as the sockaddr the socket's family needs; returns its length.
pub(crate) fn write_sockaddr(
    address: SocketAddr,
    ipv6_socket: bool,
    storage: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    let v6 = match address {
        SocketAddr::V4(v4) if !ipv6_socket => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr type.
            unsafe { ptr::write(ptr::from_mut(storage).cast::<libc::sockaddr_in>(), sin) };
            return mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        SocketAddr::V4(v4) => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
        SocketAddr::V6(v6) => v6,
    };
    let sin6 = libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: v6.port().to_be(),
        sin6_flowinfo: v6.flowinfo().to_be(),
        sin6_addr: libc::in6_addr {
            s6_addr: v6.ip().octets(),
        },
        sin6_scope_id: v6.scope_id(),
    };
    // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr type.
    unsafe { ptr::write(ptr::from_mut(storage).cast::<libc::sockaddr_in6>(), sin6) };
    mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
}

/// Reads the sender address the kernel wrote; a v4-mapped IPv6 sender comes back as IPv4.
pub(crate) fn read_sockaddr(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the kernel wrote a sockaddr_in, which fits in the storage.
            let sin = unsafe { ptr::read(ptr::from_ref(storage).cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the kernel wrote a sockaddr_in6, which fits in the storage.
            let sin6 = unsafe { ptr::read(ptr::from_ref(storage).cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    u32::from_be(sin6.sin6_flowinfo),
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sockaddr_round_trips() {
        let cases: [SocketAddr; 3] = [
            "127.0.0.1:4000".parse().unwrap(),
            "[::1]:5000".parse().unwrap(),
            "[fe80::1%3]:6000".parse().unwrap(),
        ];
        for address in cases {
            let mut storage = zeroed_storage();
            let len = write_sockaddr(address, address.is_ipv6(), &mut storage);
            assert_eq!(read_sockaddr(&storage, len), Some(address));
        }
    }

    #[test]
    fn ipv4_through_an_ipv6_socket_is_mapped_and_read_back_as_ipv4() {
        let address: SocketAddr = "10.1.2.3:7000".parse().unwrap();
        let mut storage = zeroed_storage();
        let len = write_sockaddr(address, true, &mut storage);
        assert_eq!(i32::from(storage.ss_family), libc::AF_INET6);
        assert_eq!(read_sockaddr(&storage, len), Some(address));
    }

    #[test]
    fn short_or_unknown_names_are_not_addresses() {
        let mut storage = zeroed_storage();
        let len = write_sockaddr("127.0.0.1:1".parse().unwrap(), false, &mut storage);
        assert_eq!(read_sockaddr(&storage, len - 1), None);
        storage.ss_family = libc::AF_UNIX as libc::sa_family_t;
        assert_eq!(read_sockaddr(&storage, len), None);
    }
}
