//! A TCP listener whose connections a handler can reset, for the `reset` fault.
//!
//! axum writes a response once the handler returns; a handler cannot drop the connection
//! itself. So each accepted stream carries a shared flag ([`Conn`], reached through
//! `ConnectInfo`). When the flag is set, the stream sets `SO_LINGER` to zero and fails every
//! further read and write with `ConnectionReset`: hyper gives up on the response without
//! writing a byte and drops the socket, and the zero linger turns that close into a TCP RST.
//! The client sees a reset (or "connection closed before message completed") and no response.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The per-connection handle handlers get through `ConnectInfo<Conn>`.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    reset: Arc<AtomicBool>,
}

impl Conn {
    /// Abort this connection: the pending response is never written.
    pub fn reset(&self) {
        self.reset.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.io().conn.clone()
    }
}

/// Wraps the bound listener; each accepted stream gets its own [`Conn`].
#[derive(Debug)]
pub(crate) struct SimListener(pub TcpListener);

impl Listener for SimListener {
    type Io = SimStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SimStream, SocketAddr) {
        let (stream, addr) = Listener::accept(&mut self.0).await;
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            reset: Arc::new(AtomicBool::new(false)),
        };
        (
            SimStream {
                inner: stream,
                conn,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

#[derive(Debug)]
pub(crate) struct SimStream {
    inner: TcpStream,
    conn: Conn,
}

impl SimStream {
    /// `Some(error)` once the connection was reset; arms the RST on first use.
    fn aborted(&self) -> Option<io::Error> {
        if self.conn.reset.load(Ordering::SeqCst) {
            // Zero linger does not block on drop; it makes close() send RST.
            let _ = self.inner.set_zero_linger();
            Some(io::ErrorKind::ConnectionReset.into())
        } else {
            None
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.aborted() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.aborted() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.aborted() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.aborted() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.aborted() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
