//! One connection lane to one node, speaking RESP itself: the driver's hot path.
//!
//! Workers share a lane. A worker *submits* a request (one or more commands, already encoded
//! as RESP) together with a reply [`Slot`] of its own: under the lane's lock the request's
//! bytes are appended to the write buffer, its entry joins the FIFO of pending requests, and
//! when the socket has nothing else queued the worker writes the bytes itself (one `write`,
//! no hand-over to another task). One reader task per lane reads replies, parses them
//! ([`super::resp`]), fills the head request's slot once all its replies are in and wakes its
//! worker; it also finishes writes the socket could not take at once.
//!
//! Timeouts are the worker's: it waits on its slot under the client policy's deadline and,
//! when that passes, leaves the request in the FIFO (its replies, if they ever come, are
//! matched and dropped) and counts a timeout, so a hung node shows as timeouts, never as a
//! stall. A connection that breaks (reset, end of stream, bytes that are not RESP) fails
//! every pending request with a `reset` that may have been applied, and refuses new ones
//! the same way until the worker asks the router for a new connection.
//!
//! This module moves bytes and completes requests; it never classifies replies beyond what
//! [`super::resp`] does, and never retries or redirects (that is [`super::exec`]).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::classify::{Failure, io_error};
use super::resp::{Reply, parse, write_command};
use crate::history::ErrorClass;

/// Read buffer growth step, and the free space a read wants at least.
const READ_CHUNK: usize = 16 * 1024;

/// What a request on a broken connection comes to: it may have been sent and applied.
const BROKEN: Failure = Failure { class: ErrorClass::Reset, maybe_applied: true };

/// A connection lane to one node; clones share it. The reader task ends when the last
/// clone is dropped or the connection breaks.
#[derive(Clone)]
pub struct Conn(Arc<Handle>);

/// Dropping the last handle tells the reader task to stop.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        if let Some(waker) = state.task_waker.take() {
            waker.wake();
        }
    }
}

/// What the workers and the reader task share.
struct Shared {
    stream: TcpStream,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain buffers behind, still consistent
        // enough to fail requests with.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The lane's state, behind its lock.
#[derive(Default)]
struct State {
    /// Bytes the socket has not taken yet; while there are any, the reader task writes them.
    out: Vec<u8>,
    /// Requests sent (or queued in `out`) and not yet answered, in order.
    pending: VecDeque<Pending>,
    /// The connection broke: every new request fails.
    dead: bool,
    /// Every handle is gone.
    closed: bool,
    /// Wakes the reader task to write `out` or to stop.
    task_waker: Option<Waker>,
}

/// A request waiting for its replies.
struct Pending {
    /// How many replies it expects.
    replies: usize,
    /// Whether to keep string and array values (see [`parse`]).
    keep: bool,
    /// Where its replies go.
    slot: Arc<Slot>,
    /// Which use of `slot` it is: a slot reused after a timeout ignores late replies.
    seq: u64,
}

/// Where one request's replies land. A worker keeps its slots and reuses them request after
/// request (no allocation per request); a request it gave up on cannot fill its next one.
#[derive(Default)]
pub struct Slot(Mutex<SlotState>);

#[derive(Default)]
struct SlotState {
    seq: u64,
    done: Option<Result<(), Failure>>,
    replies: Vec<Reply>,
    waker: Option<Waker>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a new use, abandoning the previous one.
    fn begin(&self) -> u64 {
        let mut s = self.lock();
        s.seq += 1;
        s.done = None;
        s.waker = None;
        s.seq
    }

    /// Complete use `seq` (if it is still the current one), taking the replies out of
    /// `replies` on success; returns the worker to wake.
    fn complete(&self, seq: u64, result: Result<(), Failure>, replies: &mut Vec<Reply>) -> Option<Waker> {
        let mut s = self.lock();
        if s.seq != seq || s.done.is_some() {
            return None;
        }
        if result.is_ok() {
            std::mem::swap(&mut s.replies, replies);
        }
        s.done = Some(result);
        s.waker.take()
    }

    /// The outcome of the current use once there is one, its replies swapped into `into`
    /// (whose old contents are dropped).
    pub fn poll_take(&self, cx: &mut Context<'_>, into: &mut Vec<Reply>) -> Poll<Result<(), Failure>> {
        let mut s = self.lock();
        match s.done.take() {
            Some(result) => {
                into.clear();
                std::mem::swap(into, &mut s.replies);
                Poll::Ready(result)
            }
            None => {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Conn {
    /// Connect to `addr` (and `AUTH` with `password`) within `timeout`, and start the
    /// lane's reader task.
    ///
    /// # Errors
    /// The failure, classified as the connect step's (never applied): `timeout` when the
    /// node did not answer in time, `refused`, `reset`, or the class of an `AUTH` error.
    pub async fn connect(
        addr: SocketAddr,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Conn, Failure> {
        let stream = tokio::time::timeout(timeout, open(addr, password))
            .await
            .map_err(|_| Failure::definite(ErrorClass::Timeout))??;
        let shared = Arc::new(Shared { stream, state: Mutex::new(State::default()) });
        tokio::spawn(read_replies(shared.clone()));
        Ok(Conn(Arc::new(Handle { shared })))
    }

    /// Send a request of `replies` replies whose commands `write` appends (RESP-encoded),
    /// to be answered into `slot` (see [`Slot::poll_take`]). `keep` keeps string and array
    /// values in the replies.
    ///
    /// # Errors
    /// A `reset` (maybe applied, as a request on a broken connection) when the connection
    /// has broken: ask the router for a new one.
    pub fn submit(
        &self,
        slot: &Arc<Slot>,
        replies: usize,
        keep: bool,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), Failure> {
        debug_assert!(replies > 0, "a request expects a reply");
        let seq = slot.begin();
        let shared = &self.0.shared;
        let mut state = shared.lock();
        if state.dead {
            return Err(BROKEN);
        }
        let idle = state.out.is_empty();
        write(&mut state.out);
        // The entry goes in before any byte leaves, so the reader finds it for the reply.
        state.pending.push_back(Pending { replies, keep, slot: slot.clone(), seq });
        if idle {
            // Nothing queued before these bytes: write them here rather than waking the
            // reader task to do it. Whatever the socket does not take, the task writes.
            match shared.stream.try_write(&state.out) {
                Ok(n) if n == state.out.len() => state.out.clear(),
                Ok(n) => drop(state.out.drain(..n)),
                // A real error is the reader task's to find (it fails every request).
                Err(_) => {}
            }
            if !state.out.is_empty()
                && let Some(waker) = &state.task_waker
            {
                waker.wake_by_ref();
            }
        }
        Ok(())
    }
}

/// TCP connect, no Nagle delay (requests are whole pipelines), and `AUTH` if asked.
async fn open(addr: SocketAddr, password: Option<&str>) -> Result<TcpStream, Failure> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| io_error(&e, false))?;
    stream.set_nodelay(true).map_err(|e| io_error(&e, false))?;
    let Some(password) = password else { return Ok(stream) };
    let mut buf = Vec::new();
    write_command(&mut buf, &[b"AUTH", password.as_bytes()]);
    stream.write_all(&buf).await.map_err(|e| io_error(&e, false))?;
    buf.clear();
    loop {
        if stream.read_buf(&mut buf).await.map_err(|e| io_error(&e, false))? == 0 {
            return Err(Failure::definite(ErrorClass::Reset));
        }
        match parse(&buf, false) {
            Ok(None) => continue,
            Ok(Some((Reply::Error(e), _))) => return Err(Failure::definite(e.class)),
            Ok(Some(_)) => return Ok(stream),
            Err(_) => return Err(Failure::definite(ErrorClass::Other)),
        }
    }
}

/// The reader task's own state.
struct Reader {
    /// Bytes read, parsed from `start` on.
    buf: Vec<u8>,
    start: usize,
    /// The head request's replies so far.
    current: Vec<Reply>,
    /// Workers to wake once the lane's lock is released.
    wake: Vec<Waker>,
}

/// The reader task: finish writes, read replies and complete requests, until the lane
/// breaks or every handle is gone.
async fn read_replies(shared: Arc<Shared>) {
    let mut reader =
        Reader { buf: Vec::with_capacity(READ_CHUNK), start: 0, current: Vec::new(), wake: Vec::new() };
    std::future::poll_fn(|cx| reader.poll(&shared, cx)).await;
}

impl Reader {
    fn poll(&mut self, shared: &Shared, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut state = shared.lock();
            if state.closed || state.dead {
                return Poll::Ready(());
            }
            if !state.task_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                state.task_waker = Some(cx.waker().clone());
            }
            while !state.out.is_empty() {
                match shared.stream.poll_write_ready(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => {
                        drop(state);
                        return self.fail(shared, &e);
                    }
                    Poll::Ready(Ok(())) => match shared.stream.try_write(&state.out) {
                        Ok(n) => drop(state.out.drain(..n)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            drop(state);
                            return self.fail(shared, &e);
                        }
                    },
                }
            }
        }
        loop {
            match shared.stream.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return self.fail(shared, &e),
                Poll::Ready(Ok(())) => {}
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                // Move a partial reply to the front before growing.
                self.buf.drain(..self.start);
                self.start = 0;
                self.buf.reserve(READ_CHUNK);
            }
            match shared.stream.try_read_buf(&mut self.buf) {
                Ok(0) => return self.fail(shared, &io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {
                    if self.dispatch(shared).is_err() {
                        return self.fail(shared, &io::ErrorKind::InvalidData.into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return self.fail(shared, &e),
            }
        }
    }

    /// Parse every whole reply read so far and complete the requests they finish.
    fn dispatch(&mut self, shared: &Shared) -> Result<(), super::resp::ProtocolError> {
        let mut state = shared.lock();
        let mut pos = self.start;
        let result = loop {
            let keep = state.pending.front().is_some_and(|p| p.keep);
            let (reply, used) = match parse(&self.buf[pos..], keep) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            pos += used;
            // Out-of-band, or a reply no request is waiting for: nothing to complete.
            let Some(head) = state.pending.front().filter(|_| reply != Reply::Push) else { continue };
            self.current.push(reply);
            if self.current.len() >= head.replies {
                let done = state.pending.pop_front().expect("the head request");
                self.wake.extend(done.slot.complete(done.seq, Ok(()), &mut self.current));
                self.current.clear();
            }
        };
        drop(state);
        if pos == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else {
            self.start = pos;
        }
        for waker in self.wake.drain(..) {
            waker.wake();
        }
        result
    }

    /// The connection broke: fail every pending request and refuse new ones.
    fn fail(&mut self, shared: &Shared, e: &io::Error) -> Poll<()> {
        let failure = Failure { maybe_applied: true, ..io_error(e, true) };
        let pending = {
            let mut state = shared.lock();
            state.dead = true;
            state.out.clear();
            std::mem::take(&mut state.pending)
        };
        tracing::debug!(error = %e, requests = pending.len(), "A driver connection broke; its requests failed.");
        for p in pending {
            if let Some(waker) = p.slot.complete(p.seq, Err(failure), &mut self.current) {
                waker.wake();
            }
        }
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A slot's outcome within `limit`, or `None`.
    async fn wait(slot: &Arc<Slot>, limit: Duration) -> Option<(Result<(), Failure>, Vec<Reply>)> {
        let mut replies = Vec::new();
        let result = tokio::time::timeout(limit, std::future::poll_fn(|cx| slot.poll_take(cx, &mut replies)))
            .await
            .ok()?;
        Some((result, replies))
    }

    async fn read_exactly(sock: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        sock.read_exact(&mut buf).await.unwrap();
        buf
    }

    #[tokio::test]
    async fn replies_complete_requests_in_order_even_split_byte_by_byte() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conn = Conn::connect(addr, None, Duration::from_secs(5)).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (a, b) = (Arc::new(Slot::default()), Arc::new(Slot::default()));
        conn.submit(&a, 2, false, |out| {
            write_command(out, &[b"SET", b"k", b"v"]);
            write_command(out, &[b"INCR", b"n"]);
        })
        .unwrap();
        conn.submit(&b, 1, true, |out| write_command(out, &[b"SMEMBERS", b"s"])).unwrap();
        let mut expected = Vec::new();
        write_command(&mut expected, &[b"SET", b"k", b"v"]);
        write_command(&mut expected, &[b"INCR", b"n"]);
        write_command(&mut expected, &[b"SMEMBERS", b"s"]);
        assert_eq!(read_exactly(&mut server, expected.len()).await, expected);
        for byte in b"+OK\r\n:7\r\n*2\r\n$1\r\n1\r\n$2\r\n22\r\n" {
            server.write_all(&[*byte]).await.unwrap();
            server.flush().await.unwrap();
        }
        let (r, replies) = wait(&a, Duration::from_secs(5)).await.unwrap();
        assert_eq!((r, replies), (Ok(()), vec![Reply::Ok, Reply::Int(7)]));
        let (r, replies) = wait(&b, Duration::from_secs(5)).await.unwrap();
        assert_eq!(r, Ok(()));
        assert_eq!(
            replies,
            vec![Reply::Array(vec![Reply::Bulk(b"1".to_vec()), Reply::Bulk(b"22".to_vec())])]
        );
    }

    #[tokio::test]
    async fn a_late_reply_to_an_abandoned_request_does_not_fill_the_next_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let conn = Conn::connect(listener.local_addr().unwrap(), None, Duration::from_secs(5)).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let slot = Arc::new(Slot::default());
        conn.submit(&slot, 1, false, |out| write_command(out, &[b"GET", b"a"])).unwrap();
        assert!(wait(&slot, Duration::from_millis(50)).await.is_none(), "the node is silent: no outcome yet");
        // The worker gives up (a timeout) and reuses the slot for its next request.
        conn.submit(&slot, 1, false, |out| write_command(out, &[b"INCR", b"b"])).unwrap();
        server.write_all(b":1\r\n").await.unwrap();
        assert!(wait(&slot, Duration::from_millis(50)).await.is_none(), "that reply was the first request's");
        server.write_all(b":2\r\n").await.unwrap();
        let (r, replies) = wait(&slot, Duration::from_secs(5)).await.unwrap();
        assert_eq!((r, replies), (Ok(()), vec![Reply::Int(2)]));
    }

    #[tokio::test]
    async fn a_closed_connection_fails_pending_requests_and_refuses_new_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let conn = Conn::connect(listener.local_addr().unwrap(), None, Duration::from_secs(5)).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let slot = Arc::new(Slot::default());
        conn.submit(&slot, 1, false, |out| write_command(out, &[b"GET", b"a"])).unwrap();
        drop(server);
        let (r, _) = wait(&slot, Duration::from_secs(5)).await.unwrap();
        let failure = r.unwrap_err();
        assert_eq!(failure, Failure { class: ErrorClass::Reset, maybe_applied: true });
        let refused = conn.submit(&slot, 1, false, |out| write_command(out, &[b"GET", b"a"]));
        assert_eq!(refused, Err(BROKEN));
    }

    #[tokio::test]
    async fn connecting_where_nobody_listens_is_refused_and_auth_errors_are_classified() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut auth = Vec::new();
            write_command(&mut auth, &[b"AUTH", b"secret"]);
            assert_eq!(read_exactly(&mut sock, auth.len()).await, auth);
            sock.write_all(b"-WRONGPASS invalid username-password pair\r\n").await.unwrap();
            sock
        });
        let e = Conn::connect(addr, Some("secret"), Duration::from_secs(5)).await.err().unwrap();
        assert_eq!(e, Failure::definite(ErrorClass::Other));
        drop(server.await.unwrap());
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let e = Conn::connect(free, None, Duration::from_secs(5)).await.err().unwrap();
        assert_eq!(e, Failure::definite(ErrorClass::Refused));
    }
}
