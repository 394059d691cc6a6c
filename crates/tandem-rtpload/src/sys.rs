//! The few syscalls the blaster needs that std and socket2 lack: `sendmmsg`/`recvmmsg` batches,
//! kernel receive timestamps (`SO_TIMESTAMPNS`), forced socket buffer sizes, timer slack and the
//! clock tick rate. Every `unsafe` block of the crate is here, each with its `SAFETY:` argument;
//! the functions exported are safe.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

/// Most datagrams one `sendmmsg`/`recvmmsg` call moves.
pub const MAX_BATCH: usize = 64;
/// Receive buffer per datagram: RTP from the relays is 172 bytes; anything longer is truncated and
/// then rejected by the packet check.
const RECV_BUF: usize = 512;
/// Control buffer per datagram, 8-byte aligned: room for one `SCM_TIMESTAMPNS` (16 + 16 bytes).
const CTRL_WORDS: usize = 8;

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Up to [`MAX_BATCH`] datagrams of one fixed length, each with its destination, for one
/// `sendmmsg`. The buffers keep whatever was written in them: callers prefill the constant bytes
/// once and rewrite only the fields that change.
pub struct SendBatch {
    bufs: Box<[[u8; RECV_BUF]; MAX_BATCH]>,
    dests: [libc::sockaddr_in; MAX_BATCH],
    packet_len: usize,
    len: usize,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("packet_len", &self.packet_len)
            .field("len", &self.len)
            .finish()
    }
}

impl SendBatch {
    /// A batch whose every buffer starts as a copy of `template` (at most 512 bytes).
    pub fn new(template: &[u8]) -> SendBatch {
        let packet_len = template.len().min(RECV_BUF);
        let mut bufs = Box::new([[0u8; RECV_BUF]; MAX_BATCH]);
        for buf in bufs.iter_mut() {
            buf[..packet_len].copy_from_slice(&template[..packet_len]);
        }
        SendBatch {
            bufs,
            dests: [sockaddr(SocketAddrV4::new(0.into(), 0)); MAX_BATCH],
            packet_len,
            len: 0,
        }
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no datagram is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the batch holds [`MAX_BATCH`] datagrams.
    pub fn is_full(&self) -> bool {
        self.len == MAX_BATCH
    }

    /// Empties the batch (the buffers keep their bytes).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Queues one more datagram to `dest` and returns its buffer to fill; `None` when full.
    pub fn push(&mut self, dest: SocketAddrV4) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        self.dests[self.len] = sockaddr(dest);
        let buf = &mut self.bufs[self.len][..self.packet_len];
        self.len += 1;
        Some(buf)
    }
}

/// Sends the queued datagrams with one `sendmmsg` (non-blocking). Returns how many left, 0 when the
/// socket buffer is full.
pub fn send_batch(socket: &UdpSocket, batch: &SendBatch) -> io::Result<usize> {
    let n = batch.len;
    if batch.is_empty() {
        return Ok(0);
    }
    let mut iovecs: [libc::iovec; MAX_BATCH] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_BATCH];
    // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { mem::zeroed() };
    for i in 0..n {
        iovecs[i].iov_base = batch.bufs[i].as_ptr() as *mut libc::c_void;
        iovecs[i].iov_len = batch.packet_len;
        msgs[i].msg_hdr.msg_name = &batch.dests[i] as *const libc::sockaddr_in as *mut libc::c_void;
        msgs[i].msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_iov = &mut iovecs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs[..n]` point at `iovecs`, `batch.bufs` and `batch.dests`, all alive and unmoved
    // for the duration of the call; the kernel only reads the buffers and addresses (sendmmsg does
    // not write through msg_name/msg_iov) and writes msg_len into `msgs`, which we own mutably.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock => Ok(0),
            _ => Err(err),
        };
    }
    Ok(sent as usize)
}

/// Buffers for one `recvmmsg` of up to [`MAX_BATCH`] datagrams, with each datagram's kernel receive
/// timestamp when the socket has [`enable_rx_timestamps`].
pub struct RecvBatch {
    bufs: Box<[[u8; RECV_BUF]; MAX_BATCH]>,
    ctrl: Box<[[u64; CTRL_WORDS]; MAX_BATCH]>,
    lens: [usize; MAX_BATCH],
    stamps: [Option<u64>; MAX_BATCH],
    len: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").field("len", &self.len).finish()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: Box::new([[0u8; RECV_BUF]; MAX_BATCH]),
            ctrl: Box::new([[0u64; CTRL_WORDS]; MAX_BATCH]),
            lens: [0; MAX_BATCH],
            stamps: [None; MAX_BATCH],
            len: 0,
        }
    }
}

impl RecvBatch {
    /// Datagram `i` of the last receive and its kernel receive time (CLOCK_REALTIME ns), if the
    /// kernel stamped it. Truncated datagrams come back at the buffer's length.
    pub fn get(&self, i: usize) -> Option<(&[u8], Option<u64>)> {
        if i >= self.len {
            return None;
        }
        Some((&self.bufs[i][..self.lens[i]], self.stamps[i]))
    }
}

/// Receives up to [`MAX_BATCH`] datagrams with one non-blocking `recvmmsg`. Returns how many, 0 when
/// none is waiting.
pub fn recv_batch(socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<usize> {
    batch.len = 0;
    let mut iovecs: [libc::iovec; MAX_BATCH] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_BATCH];
    // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { mem::zeroed() };
    for i in 0..MAX_BATCH {
        iovecs[i].iov_base = batch.bufs[i].as_mut_ptr() as *mut libc::c_void;
        iovecs[i].iov_len = RECV_BUF;
        msgs[i].msg_hdr.msg_iov = &mut iovecs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = batch.ctrl[i].as_mut_ptr() as *mut libc::c_void;
        msgs[i].msg_hdr.msg_controllen = mem::size_of::<[u64; CTRL_WORDS]>();
    }
    // SAFETY: every msg points at its own iovec, data buffer and 8-byte aligned control buffer, all
    // owned by this frame or by `batch` (borrowed mutably) and valid for the lengths given; no
    // msg_name is requested; the kernel writes at most those lengths. A null timeout is allowed.
    let got = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            MAX_BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock => Ok(0),
            _ => Err(err),
        };
    }
    let got = got as usize;
    for (i, msg) in msgs.iter_mut().enumerate().take(got) {
        batch.lens[i] = (msg.msg_len as usize).min(RECV_BUF);
        batch.stamps[i] = rx_timestamp(&mut msg.msg_hdr);
    }
    batch.len = got;
    Ok(got)
}

/// The `SCM_TIMESTAMPNS` control message of a received datagram, as CLOCK_REALTIME nanoseconds.
fn rx_timestamp(hdr: &mut libc::msghdr) -> Option<u64> {
    // SAFETY: `hdr` was just filled by recvmmsg: msg_control points at our control buffer and
    // msg_controllen is what the kernel wrote there, so the CMSG_* walk stays inside it. The
    // timespec is read unaligned from the data of a cmsg the kernel typed as SCM_TIMESTAMPNS,
    // whose payload is exactly one timespec.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                let ns = (ts.tv_sec as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(ts.tv_nsec as u64);
                return Some(ns);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

fn set_int_option(socket: &UdpSocket, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a c_int living for the call, with its exact size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to stamp every datagram received on `socket` (`SO_TIMESTAMPNS`).
pub fn enable_rx_timestamps(socket: &UdpSocket) -> io::Result<()> {
    set_int_option(socket, libc::SO_TIMESTAMPNS, 1)
}

/// Sets both socket buffers to `bytes`: `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` when allowed (root with
/// CAP_NET_ADMIN), else the plain options (capped by net.core.rmem_max/wmem_max).
pub fn set_buffers(socket: &UdpSocket, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if set_int_option(socket, libc::SO_RCVBUFFORCE, value).is_err() {
        set_int_option(socket, libc::SO_RCVBUF, value)?;
    }
    if set_int_option(socket, libc::SO_SNDBUFFORCE, value).is_err() {
        set_int_option(socket, libc::SO_SNDBUF, value)?;
    }
    Ok(())
}

/// Lowers this thread's timer slack so that short sleeps end close to when asked (the default
/// slack is 50 µs).
pub fn set_timer_slack(nanos: u64) {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long argument and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, nanos as libc::c_ulong, 0, 0, 0);
    }
}

/// Clock ticks per second, the unit of utime/stime in /proc/PID/stat.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a system constant and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}
