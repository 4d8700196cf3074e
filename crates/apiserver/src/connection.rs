//! What one client connection may hold, and for how long: Go net/http's deadlines, which
//! kube-apiserver relies on and hyper does not give for both HTTP versions alike.
//!
//! - over HTTP/1.1, a request's head must arrive within [`Limits::header_timeout`] of its first
//!   byte (Go's `ReadHeaderTimeout`; a client trickling headers a byte a second is cut off).
//!   HTTP/2 has no such deadline in Go either: its frames (PING, WINDOW_UPDATE) arrive between
//!   requests, and a stream's HEADERS come in frames whose size the server bounds;
//! - a connection with no request in flight is closed after [`Limits::idle_timeout`] (Go's
//!   `IdleTimeout`), for HTTP/1.1 keep-alive and HTTP/2 alike;
//! - hyper's own answers to unparseable HTTP/1.1 requests (400, 414, 431 with empty bodies)
//!   are rewritten into Kubernetes `Status` bodies, so that every error a client reads is one.
//!
//! The TLS handshake deadline and the connection count are the accept loop's (`server`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    /// kube-apiserver's: `ReadHeaderTimeout` 32 s, `IdleTimeout` 90 s; client-go gives up on a
    /// TLS handshake after 10 s, so a server waiting longer only holds a socket for nobody.
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(90),
            max_connections: 10_000,
        }
    }
}

const NONE: u64 = u64::MAX;

/// What the watchdog of one connection knows: requests in flight, and since when the
/// connection has been idle or has been receiving an unfinished request head. Times are
/// milliseconds since the connection was accepted.
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    idle_since: AtomicU64,
    head_since: AtomicU64,
    /// Switched protocols (exec, port-forward, WebSocket): the bytes are no longer HTTP.
    upgraded: AtomicBool,
    /// Wakes the watchdog when a deadline moves: a request head starts arriving, or the last
    /// request in flight ends.
    changed: tokio::sync::Notify,
    /// HTTP/2 (by ALPN): no request-head deadline, and no rewriting of bytes.
    http2: bool,
}

impl Activity {
    pub fn new(http2: bool) -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
            upgraded: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            http2,
        })
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// A request's head has been read; the returned guard lives as long as its response body.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_since.store(NONE, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// The connection has switched protocols: its bytes belong to the upgraded stream.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::SeqCst);
    }

    fn received(&self) {
        let idle = !self.http2 && self.in_flight.load(Ordering::SeqCst) == 0 && self.head_since.load(Ordering::Relaxed) == NONE;
        if idle && self.head_since.compare_exchange(NONE, self.now(), Ordering::SeqCst, Ordering::Relaxed).is_ok() {
            self.changed.notify_one();
        }
    }

    /// When the connection must be closed if nothing changes, or `None` while a request is in
    /// flight (its own deadlines are the handler's).
    fn deadline(&self, limits: &Limits) -> Option<u64> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let idle = self.idle_since.load(Ordering::SeqCst).saturating_add(limits.idle_timeout.as_millis() as u64);
        match self.head_since.load(Ordering::SeqCst) {
            NONE => Some(idle),
            since => Some(idle.min(since.saturating_add(limits.header_timeout.as_millis() as u64))),
        }
    }

    /// Resolves when the connection has been idle, or stuck in a request head, for too long.
    pub async fn expired(&self, limits: Limits) {
        loop {
            let now = self.now();
            let wait = match self.deadline(&limits) {
                Some(at) if at <= now => return,
                Some(at) => Duration::from_millis(at - now),
                // In flight: nothing expires until the request ends, which wakes us.
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.changed.notified() => {}
            }
        }
    }
}

/// One request in flight on a connection; dropped with its response body.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.head_since.store(NONE, Ordering::SeqCst);
        a.idle_since.store(a.now(), Ordering::SeqCst);
        if a.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            a.changed.notify_one();
        }
    }
}

/// The decrypted stream of one connection, watched by its [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    /// A rewritten error response still being written, and how much of it is out.
    rewrite: Option<(Vec<u8>, usize)>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity, rewrite: None }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.activity.received();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(done) = self.as_mut().poll_rewrite(cx, buf, buf.len()) {
            return done;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty()).map(|b| &**b).unwrap_or_default();
        if let Some(done) = self.as_mut().poll_rewrite(cx, first, bufs.iter().map(|b| b.len()).sum()) {
            return done;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// When `head` (the first bytes of a write of `len` in all) is hyper's answer to an
    /// unparseable request, writes the Status answer instead and reports the write done.
    fn poll_rewrite(self: Pin<&mut Self>, cx: &mut Context<'_>, head: &[u8], len: usize) -> Option<Poll<io::Result<usize>>> {
        let this = self.get_mut();
        // Only a whole write, while bytes of a new request have arrived since the last response
        // ended and none is in flight: that is when hyper answers a head it could not parse.
        // The tail of a response (written after its body, and its in-flight guard, are gone)
        // comes before any new request's bytes.
        let a = &this.activity;
        let answering_unparsed = !a.http2
            && !a.upgraded.load(Ordering::SeqCst)
            && a.in_flight.load(Ordering::SeqCst) == 0
            && a.head_since.load(Ordering::SeqCst) != NONE
            && head.len() == len;
        if this.rewrite.is_none() && answering_unparsed {
            this.rewrite = status_for_parse_error(head).map(|r| (r, 0));
        }
        let (bytes, written) = this.rewrite.as_mut()?;
        while *written < bytes.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Some(Poll::Ready(Err(io::ErrorKind::WriteZero.into()))),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Some(Poll::Ready(Err(e))),
                Poll::Pending => return Some(Poll::Pending),
            }
        }
        this.rewrite = None;
        Some(Poll::Ready(Ok(len)))
    }
}

/// hyper answers a request it cannot parse with a bare head (`HTTP/1.1 431 ...`,
/// `content-length: 0`) and closes; no hook lets a server give that answer a body, so the
/// bytes are recognised here and replaced by the same code with a `Status` body. Only heads
/// written while no request is in flight are looked at: lockbox's own responses always carry
/// a body, and are written while their request is in flight.
fn status_for_parse_error(head: &[u8]) -> Option<Vec<u8>> {
    let (code, message) = match head.get(..13)? {
        b"HTTP/1.1 400 " | b"HTTP/1.0 400 " => (400, "the request could not be parsed as HTTP"),
        b"HTTP/1.1 414 " | b"HTTP/1.0 414 " => (414, "the request URI is too long"),
        b"HTTP/1.1 431 " | b"HTTP/1.0 431 " => (431, "the request's header fields are too large"),
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?;
    if !text.ends_with("\r\n\r\n") || !text.to_ascii_lowercase().contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let body = api::ApiError::http_layer(code, message).to_json().to_string();
    let status_line = &text[..text.find("\r\n")?];
    Some(format!("{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_heads_become_status_bodies() {
        let out = status_for_parse_error(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n").unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let status: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!((status["kind"].as_str(), status["code"].as_u64()), (Some("Status"), Some(431)));
        // A response with a body, or another code, is left alone.
        assert!(status_for_parse_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(status_for_parse_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }

    #[test]
    fn idle_and_slow_heads_expire_busy_connections_do_not() {
        let limits = Limits { header_timeout: Duration::from_secs(32), idle_timeout: Duration::from_secs(90), ..Limits::default() };
        let a = Activity::new(false);
        assert_eq!(a.deadline(&limits), Some(90_000));
        a.received();
        assert!(a.deadline(&limits).unwrap() <= 32_000);
        let req = a.begin();
        assert_eq!(a.deadline(&limits), None);
        drop(req);
        assert!(a.deadline(&limits).unwrap() >= 90_000 - 1);
        // HTTP/2 frames between requests are not a request head.
        let h2 = Activity::new(true);
        h2.received();
        assert_eq!(h2.deadline(&limits), Some(90_000));
    }
}
