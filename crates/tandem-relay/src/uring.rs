//! The io_uring primitives of a relay shard (`media.io = "io_uring"`): one multishot `recvmsg`
//! per relay socket taking buffers from a pool the ring owns, sends straight from the buffer a
//! packet arrived in, and the shard's wake-up as a multishot poll of its command `mio::Poll`.
//!
//! Compared with the epoll shard this spares, per packet, the `recvmmsg` and `sendto` system calls
//! and the `epoll_wait` share: one `io_uring_enter` per round submits every send and reaps every
//! arrival. The kernel's UDP work per packet is the same.
//!
//! The pool is a registered buffer ring: returning a buffer is writing an entry and moving the
//! ring's tail, no request. Buffer ownership, which the `unsafe` blocks below rely on: a buffer of
//! the pool belongs to the kernel from the moment its entry is published until a completion names
//! it (a packet in it); then to the shard, until it is either published again ([`Ring::recycle`])
//! or handed to a send ([`Ring::send`]), after whose completion the shard recycles it. The shard
//! touches a buffer only while it owns it, and frees the pool and the ring's entries only once no
//! request can use them (see `Drop`).

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::alloc::{self, Layout};
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::flow::Port;
use crate::stream::{token, untoken, GENERATIONS};
use crate::sys::{read_sockaddr, write_sockaddr, zeroed_storage};
use mio::Token;

/// Bytes per pool buffer: the `recvmsg` header, the sender's address and the datagram.
const BUFFER_LEN: usize = 2048;
/// Buffers in a shard's pool (4 MiB); a power of two, as the buffer ring's size must be.
const BUFFERS: u16 = 2048;
/// The pool's buffer group id.
const GROUP: u16 = 1;
/// `struct io_uring_recvmsg_out`, which the kernel writes in front of each datagram.
const OUT_HEADER_LEN: usize = 16;
/// Room for the sender's address: a `sockaddr_in6` (an IPv4 sender takes less).
const NAME_LEN: usize = mem::size_of::<libc::sockaddr_in6>();
/// Where the datagram starts in a buffer.
const PAYLOAD_AT: usize = OUT_HEADER_LEN + NAME_LEN;
/// Submission queue entries (the completion queue gets twice as many).
const ENTRIES: u32 = 4096;
/// The buffer the self-test sends from, handed to the kernel after it.
const SELF_TEST_BUFFER: u16 = 0;
/// Registered-file slots for the sockets packets leave from (two per side of a stream).
const FIXED_FILES: u32 = 16384;

/// What a request's `user_data` says it was: the kind in the top byte.
const KIND_SHIFT: u32 = 56;
const RECV: u64 = 0;
const SEND: u64 = 1;
const WAKE: u64 = 2;
const CANCEL: u64 = 3;
const LOW: u64 = (1 << KIND_SHIFT) - 1;

/// A completion, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completion {
    /// A datagram (in buffer `buffer`) or the end of the receive request `target` (`more`
    /// false: it has to be armed again if its socket is still open).
    Received {
        target: u64,
        buffer: Option<u16>,
        result: i32,
        more: bool,
    },
    /// The send from buffer `buffer` is done (`result` < 0: it failed).
    Sent { buffer: u16, result: i32 },
    /// The command poll fired; `more` false: it has to be armed again.
    Woken { more: bool },
    /// The cancellation of `target` is done: 0, or `-ENOENT` when it had already ended.
    Cancelled { target: u64, result: i32 },
}

/// The socket a packet leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    /// A registered-file slot ([`Ring::register`]).
    Fixed(u32),
    /// A plain descriptor.
    Fd(RawFd),
}

/// A received datagram, borrowed from its buffer.
#[derive(Debug)]
pub(crate) struct Datagram<'a> {
    pub(crate) source: Option<SocketAddr>,
    pub(crate) truncated: bool,
    pub(crate) payload: &'a mut [u8],
}

/// The ring, its buffer pool and the headers its requests point at. Field order matters: the
/// ring closes before the memory it uses is freed.
pub(crate) struct Ring {
    ring: IoUring,
    /// The buffer ring's entries, registered with the kernel.
    entries: BufferRing,
    /// The tail the shard has written up to (published to the kernel before each wait).
    tail: u16,
    /// The pool, `buffers` × `BUFFER_LEN` bytes; see the module notes for who owns which buffer.
    pool: Box<[u8]>,
    /// Per buffer: the destination of the send from it.
    names: Box<[libc::sockaddr_storage]>,
    /// Per buffer: handed to the kernel and not yet named by a completion (a second hand-over
    /// would let two datagrams share it, so [`Ring::recycle`] refuses it).
    with_kernel: Box<[bool]>,
    /// The template of every multishot `recvmsg` (only its name and control lengths count).
    recv_header: Box<libc::msghdr>,
    /// Requests that may still write into the pool (receives) or read it (sends); when not 0 at
    /// drop, the memory is leaked.
    receiving: usize,
    sending: usize,
    /// Registered-file slots not in use.
    free_fixed: Vec<u32>,
}

/// Page-aligned memory for `count` buffer ring entries (16 bytes each), zeroed.
struct BufferRing {
    memory: NonNull<types::BufRingEntry>,
    /// Entries, a power of two.
    count: u16,
    /// Never freed: the kernel might still read it.
    leak: bool,
}

impl BufferRing {
    fn layout(count: u16) -> Layout {
        let size = usize::from(count.max(1)) * mem::size_of::<types::BufRingEntry>();
        // 4096 is a power of two and the size is not near isize::MAX.
        Layout::from_size_align(size, 4096).unwrap_or_else(|_| Layout::new::<u8>())
    }

    /// Entries for `count` buffers (a power of two).
    fn new(count: u16) -> io::Result<BufferRing> {
        if !count.is_power_of_two() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: the layout has a non-zero size.
        let memory = unsafe { alloc::alloc_zeroed(Self::layout(count)) };
        let memory = NonNull::new(memory.cast())
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(BufferRing {
            memory,
            count,
            leak: false,
        })
    }

    /// The tail the kernel reads (the `resv` field of the first entry).
    fn tail(&self) -> &AtomicU16 {
        // SAFETY: the memory is a valid, initialised first entry; its tail field is a u16 the
        // kernel only reads, aligned for an AtomicU16, living as long as `self`.
        unsafe { &*types::BufRingEntry::tail(self.memory.as_ptr()).cast::<AtomicU16>() }
    }

    /// Entry `index` (masked into the ring).
    fn entry(&mut self, index: u16) -> &mut types::BufRingEntry {
        let at = usize::from(index & (self.count - 1));
        // SAFETY: `at` is within the `count` entries allocated; the kernel reads an entry only
        // between the tail's publication and its consumption, and the shard writes entries only
        // beyond the published tail (which the kernel has not reached).
        unsafe { &mut *self.memory.as_ptr().add(at) }
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        if !self.leak {
            // SAFETY: allocated in `new` with this layout, freed once.
            unsafe { alloc::dealloc(self.memory.as_ptr().cast(), Self::layout(self.count)) }
        }
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("receiving", &self.receiving)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// A ring for the calling thread (it alone submits), with its pool handed to the kernel,
    /// once a datagram has gone through it: sent by a `send` request with an address, received by
    /// a multishot `recvmsg` (a kernel that lacks either fails here, and the shard uses epoll).
    pub(crate) fn new() -> io::Result<Ring> {
        let mut ring = Self::with_pool(BUFFERS, SELF_TEST_BUFFER)?;
        ring.self_test()?;
        ring.recycle(SELF_TEST_BUFFER)?;
        Ok(ring)
    }

    fn self_test(&mut self) -> io::Result<()> {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let sender = std::net::UdpSocket::bind("127.0.0.1:0")?;
        const TARGET: u64 = LOW;
        self.arm_recv(receiver.as_raw_fd(), TARGET)?;
        // From the buffer `new` kept back: the kernel cannot receive into it meanwhile.
        self.send(
            Sender::Fd(sender.as_raw_fd()),
            SELF_TEST_BUFFER,
            4,
            receiver.local_addr()?,
            false,
        )?;
        let (mut sent, mut received, mut completions) = (false, false, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(1);
        while !(sent && received) && Instant::now() < deadline {
            self.submit_and_wait(Some(Duration::from_millis(100)))?;
            completions.clear();
            self.completions(&mut completions);
            for completion in &completions {
                match *completion {
                    // The kept buffer goes to the kernel once, in `new`.
                    Completion::Sent { result, .. } => {
                        if result < 0 {
                            return Err(io::Error::from_raw_os_error(-result));
                        }
                        sent = true;
                    }
                    Completion::Received {
                        buffer: Some(buffer),
                        result,
                        ..
                    } => {
                        let from = self.datagram(buffer, result).and_then(|d| d.source);
                        received = from == Some(sender.local_addr()?);
                        self.recycle(buffer)?;
                    }
                    Completion::Received { result, .. } if result < 0 => {
                        return Err(io::Error::from_raw_os_error(-result));
                    }
                    _ => {}
                }
            }
        }
        self.cancel_recv(TARGET)?;
        let ended = self.drain(Duration::from_secs(1));
        match (sent && received, ended) {
            (true, true) => Ok(()),
            _ => Err(io::Error::other(
                "io_uring self-test: no datagram came through",
            )),
        }
    }

    /// A ring with a pool of `buffers` buffers (a power of two), every one handed to the kernel
    /// but `kept` (`buffers` or more: none kept).
    fn with_pool(buffers: u16, kept: u16) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .build(ENTRIES)?;
        // SAFETY: all-zero bytes are a valid msghdr (null pointers, zero lengths).
        let mut recv_header: Box<libc::msghdr> = Box::new(unsafe { mem::zeroed() });
        recv_header.msg_namelen = NAME_LEN as libc::socklen_t;
        let mut ring = Ring {
            ring,
            entries: BufferRing::new(buffers)?,
            tail: 0,
            pool: vec![0u8; BUFFER_LEN * usize::from(buffers)].into_boxed_slice(),
            names: (0..buffers).map(|_| zeroed_storage()).collect(),
            with_kernel: vec![false; usize::from(buffers)].into_boxed_slice(),
            recv_header,
            receiving: 0,
            sending: 0,
            free_fixed: (0..FIXED_FILES).rev().collect(),
        };
        ring.ring.submitter().register_files_sparse(FIXED_FILES)?;
        for buffer in (0..buffers).filter(|&buffer| buffer != kept) {
            ring.recycle(buffer)?;
        }
        ring.publish();
        // SAFETY: the entries (`buffers` of them, page-aligned) and the pool they point into live
        // until the ring is closed (field order) or are leaked (see `Drop`).
        unsafe {
            ring.ring.submitter().register_buf_ring_with_flags(
                ring.entries.memory.as_ptr() as u64,
                buffers,
                GROUP,
                0,
            )?;
        }
        Ok(ring)
    }

    /// Queues `entry`, submitting what is queued first when the queue is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        for _ in 0..4 {
            // SAFETY: every entry built here points at memory that outlives the request: the pool
            // and the names (owned by `self`, freed only as `Drop` describes), the boxed receive
            // header, or nothing.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
        // The kernel took nothing from a full queue four times over: give up on this entry.
        Err(io::Error::from(io::ErrorKind::WouldBlock))
    }

    /// Starts the multishot receive `target` on socket `fd`.
    pub(crate) fn arm_recv(&mut self, fd: RawFd, target: u64) -> io::Result<()> {
        let entry = opcode::RecvMsgMulti::new(types::Fd(fd), &raw const *self.recv_header, GROUP)
            .build()
            .user_data((RECV << KIND_SHIFT) | (target & LOW));
        self.push(&entry)?;
        self.receiving += 1;
        Ok(())
    }

    /// Registers socket `fd` as a fixed file for sends (no file lookup per send); `None` when
    /// every slot is taken or the kernel refuses (sends then name the descriptor).
    pub(crate) fn register(&mut self, fd: RawFd) -> Option<u32> {
        let slot = self.free_fixed.pop()?;
        match self.ring.submitter().register_files_update(slot, &[fd]) {
            Ok(_) => Some(slot),
            Err(error) => {
                tracing::debug!(%error, "relay socket not registered");
                self.free_fixed.push(slot);
                None
            }
        }
    }

    /// Releases a registered-file slot (the socket closes once no send uses it).
    pub(crate) fn unregister(&mut self, slot: u32) {
        match self.ring.submitter().register_files_update(slot, &[-1]) {
            Ok(_) => self.free_fixed.push(slot),
            Err(error) => tracing::warn!(%error, slot, "relay socket not unregistered"),
        }
    }

    /// Starts the multishot poll of the shard's command poll `fd`.
    pub(crate) fn arm_wake(&mut self, fd: RawFd) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(WAKE << KIND_SHIFT);
        self.push(&entry)
    }

    /// Asks the kernel to end the receive `target` (a [`Completion::Cancelled`] follows, and
    /// the request's last [`Completion::Received`] unless it had already ended).
    pub(crate) fn cancel_recv(&mut self, target: u64) -> io::Result<()> {
        self.cancel((RECV << KIND_SHIFT) | (target & LOW), target)
    }

    /// Asks the kernel to end the command poll.
    pub(crate) fn cancel_wake(&mut self) -> io::Result<()> {
        self.cancel(WAKE << KIND_SHIFT, LOW)
    }

    fn cancel(&mut self, user_data: u64, target: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data((CANCEL << KIND_SHIFT) | (target & LOW));
        self.push(&entry)
    }

    /// The datagram in `buffer` that a receive completion with `result` named; the shard owns
    /// the buffer until it recycles or sends it.
    pub(crate) fn datagram(&mut self, buffer: u16, result: i32) -> Option<Datagram<'_>> {
        let filled = usize::try_from(result).ok()?.min(BUFFER_LEN);
        if filled < PAYLOAD_AT {
            return None;
        }
        let start = usize::from(buffer).checked_mul(BUFFER_LEN)?;
        let bytes = self.pool.get_mut(start..start + filled)?;
        let word = |at: usize| {
            let mut raw = [0u8; 4];
            raw.copy_from_slice(&bytes[at..at + 4]);
            u32::from_ne_bytes(raw)
        };
        // struct io_uring_recvmsg_out { namelen, controllen, payloadlen, flags }
        let (name_len, payload_len, flags) = (word(0), word(8), word(12));
        let mut storage = zeroed_storage();
        let name_len = (name_len as usize).min(NAME_LEN);
        let name = &bytes[OUT_HEADER_LEN..OUT_HEADER_LEN + name_len];
        // SAFETY: `storage` is larger than NAME_LEN bytes and the source is `name_len` bytes of
        // the owned buffer; the regions do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(name.as_ptr(), (&raw mut storage).cast::<u8>(), name_len);
        }
        let source = read_sockaddr(&storage, name_len as libc::socklen_t);
        let truncated = flags & (libc::MSG_TRUNC as u32) != 0;
        let payload_end = PAYLOAD_AT + (payload_len as usize).min(filled - PAYLOAD_AT);
        Some(Datagram {
            source,
            truncated,
            payload: &mut bytes[PAYLOAD_AT..payload_end],
        })
    }

    /// Sends the first `len` bytes of the datagram in `buffer` from socket `from` to
    /// `destination`, without waiting for room (a full socket buffer fails the send). The
    /// buffer goes back to the shard with the [`Completion::Sent`].
    pub(crate) fn send(
        &mut self,
        from: Sender,
        buffer: u16,
        len: usize,
        destination: SocketAddr,
        ipv6_socket: bool,
    ) -> io::Result<()> {
        let index = usize::from(buffer);
        let (Some(name), true) = (self.names.get_mut(index), len <= BUFFER_LEN - PAYLOAD_AT) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let name_len = write_sockaddr(destination, ipv6_socket, name);
        let name: *const libc::sockaddr = (&raw const *name).cast();
        let data = self.pool[index * BUFFER_LEN + PAYLOAD_AT..].as_ptr();
        let send = match from {
            Sender::Fixed(slot) => opcode::Send::new(types::Fixed(slot), data, len as u32),
            Sender::Fd(fd) => opcode::Send::new(types::Fd(fd), data, len as u32),
        };
        let entry = send
            .flags(libc::MSG_DONTWAIT)
            .dest_addr(name)
            .dest_addr_len(name_len)
            .build()
            .user_data((SEND << KIND_SHIFT) | u64::from(buffer));
        self.push(&entry)?;
        self.sending += 1;
        Ok(())
    }

    /// Hands `buffer` back to the pool (the kernel sees it at the next [`Ring::publish`]).
    pub(crate) fn recycle(&mut self, buffer: u16) -> io::Result<()> {
        let start = usize::from(buffer) * BUFFER_LEN;
        let (Some(bytes), Some(with_kernel)) = (
            self.pool.get_mut(start..start + BUFFER_LEN),
            self.with_kernel.get_mut(usize::from(buffer)),
        ) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        if std::mem::replace(with_kernel, true) {
            tracing::error!(buffer, "relay buffer handed back twice; kept once");
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let address = bytes.as_mut_ptr() as u64;
        let entry = self.entries.entry(self.tail);
        entry.set_addr(address);
        entry.set_len(BUFFER_LEN as u32);
        entry.set_bid(buffer);
        self.tail = self.tail.wrapping_add(1);
        Ok(())
    }

    /// Makes the recycled buffers visible to the kernel.
    fn publish(&self) {
        self.entries.tail().store(self.tail, Ordering::Release);
    }

    /// Submits what is queued and waits for a completion, `timeout` at most (`None`: no limit).
    pub(crate) fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.submit_and_wait_for(1, timeout)
    }

    /// Submits what is queued and waits until `count` completions came besides those of the
    /// sends in flight (which mostly complete within the submission), `timeout` at most.
    pub(crate) fn submit_and_gather(&mut self, count: usize, timeout: Duration) -> io::Result<()> {
        self.submit_and_wait_for(self.sending + count, Some(timeout))
    }

    /// Submits what is queued and waits until `want` completions are queued (the caller took the
    /// earlier ones), `timeout` at most.
    fn submit_and_wait_for(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        self.publish();
        let result = match timeout {
            None => self.ring.submit_and_wait(want),
            Some(timeout) => {
                let timespec = types::Timespec::from(timeout);
                let args = types::SubmitArgs::new().timespec(&timespec);
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Appends the completions that arrived to `into` (decoded, in order).
    pub(crate) fn completions(&mut self, into: &mut Vec<Completion>) {
        for entry in self.ring.completion() {
            let data = entry.user_data();
            let (result, flags) = (entry.result(), entry.flags());
            let completion = match data >> KIND_SHIFT {
                RECV => {
                    let more = cqueue::more(flags);
                    if !more {
                        self.receiving = self.receiving.saturating_sub(1);
                    }
                    let buffer = cqueue::buffer_select(flags);
                    if let Some(owned) =
                        buffer.and_then(|b| self.with_kernel.get_mut(usize::from(b)))
                    {
                        *owned = false;
                    }
                    Completion::Received {
                        target: data & LOW,
                        buffer,
                        result,
                        more,
                    }
                }
                SEND => {
                    self.sending = self.sending.saturating_sub(1);
                    Completion::Sent {
                        buffer: (data & LOW) as u16,
                        result,
                    }
                }
                WAKE => Completion::Woken {
                    more: cqueue::more(flags),
                },
                _ => Completion::Cancelled {
                    target: data & LOW,
                    result,
                },
            };
            into.push(completion);
        }
    }

    /// Buffers in the pool.
    pub(crate) fn buffers(&self) -> usize {
        self.names.len()
    }

    /// Receive requests not known to have ended.
    pub(crate) fn receiving(&self) -> usize {
        self.receiving
    }

    /// Waits until every receive and send has ended, `timeout` at most; the completions that come
    /// meanwhile are dropped (their buffers go back to the pool). Returns whether all ended.
    pub(crate) fn drain(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut completions = Vec::new();
        while self.receiving + self.sending > 0 {
            let now = Instant::now();
            if now >= deadline || self.submit_and_wait(Some(deadline - now)).is_err() {
                break;
            }
            completions.clear();
            self.completions(&mut completions);
            let buffers: Vec<u16> = completions
                .iter()
                .filter_map(|completion| match *completion {
                    Completion::Received {
                        buffer: Some(buffer),
                        ..
                    }
                    | Completion::Sent { buffer, .. } => Some(buffer),
                    _ => None,
                })
                .collect();
            for buffer in buffers {
                let _ = self.recycle(buffer);
            }
        }
        self.receiving + self.sending == 0
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // The shard cancelled every receive (its sockets all closed) and waited for their ends;
        // a request that did not end in time might still write into the pool after the ring is
        // gone, so the pool then outlives it.
        if self.receiving + self.sending > 0 {
            tracing::warn!(
                receiving = self.receiving,
                sending = self.sending,
                "relay ring dropped with requests pending; its buffers are leaked"
            );
            mem::forget(mem::take(&mut self.pool));
            self.entries.leak = true;
        }
    }
}

/// The `target` of `side`'s `port` socket in stream `slot` (its poll [`token`]), bound as
/// `generation` (24 bits, [`GENERATIONS`]).
pub(crate) fn target(slot: usize, side: usize, port: Port, generation: u32) -> u64 {
    let token = token(slot, side, port).0 as u64 & 0xFFFF_FFFF;
    (u64::from(generation & GENERATIONS) << 32) | token
}

/// Slot, side, port and generation of a `target`.
pub(crate) fn untarget(target: u64) -> (usize, usize, Port, u32) {
    let (slot, side, port) = untoken(Token((target & 0xFFFF_FFFF) as usize));
    (slot, side, port, (target >> 32) as u32 & GENERATIONS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_receive_that_runs_out_of_buffers_ends_and_resumes_when_armed_again() {
        let mut ring = match Ring::with_pool(4, 4) {
            Ok(ring) => ring,
            Err(error) => {
                eprintln!("SKIP: io_uring unavailable here ({error})");
                return;
            }
        };
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..10u8 {
            sender
                .send_to(&[i; 100], receiver.local_addr().unwrap())
                .unwrap();
        }
        let target = target(3, 1, Port::Rtp, 9);
        ring.arm_recv(receiver.as_raw_fd(), target).unwrap();
        let (mut received, mut ended, mut completions) = (Vec::new(), 0, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(5);
        while received.len() < 10 && Instant::now() < deadline {
            ring.submit_and_wait(Some(Duration::from_millis(50)))
                .unwrap();
            completions.clear();
            ring.completions(&mut completions);
            for completion in completions.iter().copied() {
                let Completion::Received {
                    target: got,
                    buffer,
                    result,
                    more,
                } = completion
                else {
                    panic!("unexpected {completion:?}");
                };
                assert_eq!(got, target);
                if let Some(buffer) = buffer {
                    let datagram = ring.datagram(buffer, result).unwrap();
                    assert_eq!(datagram.source, Some(sender.local_addr().unwrap()));
                    assert!(!datagram.truncated);
                    assert_eq!(datagram.payload.len(), 100);
                    received.push(datagram.payload[0]);
                    ring.recycle(buffer).unwrap();
                }
                if !more {
                    assert!(
                        buffer.is_some() || result == -libc::ENOBUFS,
                        "{completion:?}"
                    );
                    ended += 1;
                    ring.arm_recv(receiver.as_raw_fd(), target).unwrap();
                }
            }
        }
        assert_eq!(
            received,
            (0..10).collect::<Vec<u8>>(),
            "every datagram, in order"
        );
        assert!(ended >= 2, "a pool of 4 ran dry at least twice ({ended})");
        ring.cancel_recv(target).unwrap();
        assert!(
            ring.drain(Duration::from_secs(1)),
            "the cancelled receive ended"
        );
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_buffer_is_handed_to_the_kernel_once() {
        let Ok(mut ring) = Ring::with_pool(4, 0) else {
            eprintln!("SKIP: io_uring unavailable here");
            return;
        };
        ring.recycle(0).unwrap();
        assert_eq!(
            ring.recycle(0).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(ring.recycle(1).is_err(), "never taken back from the kernel");
        assert!(ring.recycle(4).is_err(), "no such buffer");
    }

    #[test]
    fn targets_round_trip() {
        for (slot, side, port, generation) in [
            (0, 0, Port::Rtp, 0),
            (1, 1, Port::Rtcp, 1),
            (123_456, 0, Port::Rtcp, GENERATIONS),
        ] {
            let round_trip = untarget(target(slot, side, port, generation));
            assert_eq!(round_trip, (slot, side, port, generation));
        }
        assert_eq!(target(5, 1, Port::Rtcp, 9) >> KIND_SHIFT, RECV);
    }
}
