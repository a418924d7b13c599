//! weir: a TCP stream that does not leave the broker waiting for its acknowledgement (see
//! WEIR-PATCH.md).
//!
//! A broker using Nagle's algorithm holds a small packet until its previous one is
//! acknowledged, and Linux delays that acknowledgement up to 40 ms while the reader has
//! nothing to send back. A client that answers only once other work is done (a PUBACK after
//! processing) then waits out that timer. When this stream has read something, has nothing
//! more to read and has written nothing for [`GRACE`], it sends the acknowledgement at once
//! (`TCP_QUICKACK`). Under load a write comes sooner and carries the acknowledgement itself,
//! so this costs nothing there. A read that comes [`QUIET`] or more after the one before, on
//! a stream that did not answer its last read within [`GRACE`], is acknowledged at once
//! instead: there the timer would fire, and at such rates its wake-up of the thread was about
//! a quarter of the CPU time of a message, where a pure ACK packet costs a system call. (A stream
//! that answers its reads, a source's PUBACKs, stays with the timer, which its writes cancel:
//! acknowledging at once there would only add packets.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::framed::AsyncReadWrite;

/// How long a read may stay unanswered before its acknowledgement is sent on its own. tokio's
/// timer fires on whole milliseconds, so this is 0.5–1.5 ms in effect.
const GRACE: Duration = Duration::from_micros(500);

/// Reads at least this far apart (fewer than 500 a second) are acknowledged at once on a
/// stream that does not answer them within [`GRACE`].
const QUIET: Duration = Duration::from_millis(2);

/// `tcp`, with the above when `quickack` is set (Linux only).
pub(crate) fn boxed(tcp: TcpStream, quickack: bool) -> Box<dyn AsyncReadWrite> {
    if quickack && cfg!(any(target_os = "linux", target_os = "android")) {
        Box::new(QuickAck { tcp, unanswered: false, timer: None, last_read: None, read_since_write: false, answers: false })
    } else {
        Box::new(tcp)
    }
}

struct QuickAck {
    tcp: TcpStream,
    /// Read since the last write and not yet acknowledged: the timer runs when idle.
    unanswered: bool,
    /// Running from the first time the stream went idle unanswered.
    timer: Option<Pin<Box<Sleep>>>,
    /// When something was last read, and whether nothing was written since.
    last_read: Option<Instant>,
    read_since_write: bool,
    /// The last read was answered (something written) within [`GRACE`].
    answers: bool,
}

impl QuickAck {
    fn wrote(&mut self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            if self.read_since_write {
                self.read_since_write = false;
                self.answers = self.last_read.is_some_and(|read| read.elapsed() < GRACE);
            }
            self.unanswered = false;
            self.timer = None;
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                let now = Instant::now();
                let quiet = this.last_read.is_none_or(|last| now.duration_since(last) >= QUIET);
                this.last_read = Some(now);
                this.read_since_write = true;
                if quiet && !this.answers {
                    this.unanswered = false;
                    this.timer = None;
                    #[cfg(any(target_os = "linux", target_os = "android"))]
                    let _ = this.tcp.set_quickack(true);
                } else {
                    this.unanswered = true;
                }
            }
            Poll::Pending if this.unanswered => {
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(GRACE)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.timer = None;
                    this.unanswered = false;
                    this.answers = false;
                    #[cfg(any(target_os = "linux", target_os = "android"))]
                    let _ = this.tcp.set_quickack(true);
                }
            }
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.wrote(&written);
        written
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
