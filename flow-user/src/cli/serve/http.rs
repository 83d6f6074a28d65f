//! `/metrics` over HTTP/1.1 (hyper), on a one-thread tokio runtime of its own so that a slow
//! scraper never delays a measurement, and a slow measurement never stalls a scrape.

use std::{
    convert::Infallible,
    io,
    net::{SocketAddr, TcpListener},
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context as TaskContext, Poll},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Notify,
    time::Instant,
};
use tokio_rustls::TlsAcceptor;

use super::{format, web_config::WebConfig};

/// A client that has not finished its TLS handshake, or sent a request's headers, by then is
/// dropped; the same bound closes a kept-alive connection that sends no next request. Every
/// connection has its own task and there is no cap on them, so a slow or stuck client costs a
/// descriptor and a few KiB for this long, and never a scrape's turn.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection on which no byte moved either way for this long is dropped (a client that asked
/// and then stopped reading the answer).
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds `address` (`host:port`); the one error a person sees when it is taken or not theirs.
pub fn bind(address: &str) -> Result<TcpListener> {
    let listener =
        TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
    // std listens with a backlog of 128: a burst of connections beyond it has SYNs dropped, and a
    // scrape whose SYN is dropped waits a second for the retransmit. Listening again on Linux
    // only raises the backlog (the kernel caps it at net.core.somaxconn).
    // SAFETY: listen(2) on a descriptor the listener owns.
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 4096) };
    listener
        .set_nonblocking(true)
        .with_context(|| format!("cannot listen on {address}"))?;
    Ok(listener)
}

/// The server thread; [`Server::stop`] ends it.
pub struct Server {
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

/// What every connection's task needs.
struct Site {
    registry: Arc<Registry>,
    web: WebConfig,
}

impl Server {
    pub fn start(listener: TcpListener, registry: Arc<Registry>, web: WebConfig) -> Result<Server> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("cannot start the HTTP runtime")?;
        let stop = Arc::new(Notify::new());
        let stopped = Arc::clone(&stop);
        let site = Arc::new(Site { registry, web });
        let thread = std::thread::Builder::new()
            .name("flow-http".into())
            .spawn(move || runtime.block_on(accept(listener, site, stopped)))
            .context("cannot start the HTTP thread")?;
        Ok(Server {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Accepts and hands each connection to a task of its own at once: nothing here waits on a
/// client, so a scrape is accepted however many others are slow or stuck.
async fn accept(listener: TcpListener, site: Arc<Site>, stop: Arc<Notify>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            log::error!("cannot serve: {err}");
            return;
        }
    };
    let tls = site.web.tls.clone().map(TlsAcceptor::from);
    let crowd = Arc::new(Crowd::new(connection_cap()));
    for id in 0u64.. {
        let (stream, peer) = tokio::select! {
            _ = stop.notified() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors, say: the oldest connection makes room; with none to
                    // close, wait instead of spinning.
                    if crowd.evict_oldest() {
                        log::debug!("accept: {err}; closed the oldest connection");
                        tokio::task::yield_now().await;
                    } else {
                        log::warn!("accept: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
        };
        let site = Arc::clone(&site);
        let tls = tls.clone();
        let (member, evicted) = Crowd::join(&crowd, id);
        if evicted {
            // Let the evicted connection's task run and close its descriptor before the next
            // accept needs one.
            tokio::task::yield_now().await;
        }
        tokio::spawn(async move {
            let work = async move {
                let Some(acceptor) = tls else {
                    return serve(stream, site, peer).await;
                };
                match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve(stream, site, peer).await,
                    // Plain HTTP to the TLS listener ends here too: the connection is closed.
                    Ok(Err(err)) => log::debug!("{peer}: TLS handshake: {err}"),
                    Err(_) => log::debug!("{peer}: TLS handshake timed out"),
                }
            };
            tokio::select! {
                () = work => {}
                () = member.evicted.notified() => log::debug!("{peer}: closed to make room"),
            }
        });
    }
}

/// Most connections held open at once: three quarters of the descriptors this process may open
/// (the monitor needs the rest), between 32 and 16,384.
fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a plain system call on a local struct.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    (soft / 4 * 3).clamp(32, 16_384)
}

/// The open connections, oldest first. A new one beyond the cap closes the oldest: a flood of
/// clients that never finish a request then costs its own oldest members, not the descriptors
/// a scrape (or the monitor) needs.
struct Crowd {
    cap: usize,
    open: std::sync::Mutex<std::collections::BTreeMap<u64, Arc<Notify>>>,
}

/// One connection's place in the [`Crowd`]; leaves it when dropped.
struct Member {
    crowd: Arc<Crowd>,
    id: u64,
    evicted: Arc<Notify>,
}

impl Crowd {
    fn new(cap: usize) -> Crowd {
        Crowd {
            cap,
            open: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// Adds connection `id`; true when an older one was told to close to make room.
    fn join(crowd: &Arc<Crowd>, id: u64) -> (Member, bool) {
        let evicted = Arc::new(Notify::new());
        let mut made_room = false;
        while crowd.len() >= crowd.cap && crowd.evict_oldest() {
            made_room = true;
        }
        if let Ok(mut open) = crowd.open.lock() {
            open.insert(id, Arc::clone(&evicted));
        }
        let member = Member {
            crowd: Arc::clone(crowd),
            id,
            evicted,
        };
        (member, made_room)
    }

    fn len(&self) -> usize {
        self.open.lock().map_or(0, |open| open.len())
    }

    /// Tells the oldest connection to close; false when there is none.
    fn evict_oldest(&self) -> bool {
        let Ok(mut open) = self.open.lock() else {
            return false;
        };
        match open.pop_first() {
            // notify_one keeps the wake-up for a task that is not waiting yet.
            Some((_, oldest)) => {
                oldest.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Ok(mut open) = self.crowd.open.lock() {
            open.remove(&self.id);
        }
    }
}

/// Serves one connection until it closes, times out waiting for headers, or stalls.
async fn serve<S>(stream: S, site: Arc<Site>, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let moved = Arc::new(Moved::new());
    let io = Watched {
        inner: stream,
        moved: Arc::clone(&moved),
    };
    let service = service_fn(move |request| respond(request, Arc::clone(&site)));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        served = connection => {
            if let Err(err) = served {
                log::debug!("{peer}: {err}");
            }
        }
        () = moved.stalled(STALL_TIMEOUT) => log::debug!("{peer}: stalled, dropped"),
    }
}

/// When a byte last moved on a connection, in milliseconds since it was accepted.
struct Moved {
    start: Instant,
    last: AtomicU64,
}

impl Moved {
    fn new() -> Moved {
        Moved {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `limit`.
    async fn stalled(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let due = last + limit;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// A stream that notes in [`Moved`] every read or write that moved bytes.
struct Watched<S> {
    inner: S,
    moved: Arc<Moved>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Asks for the password first where the web config has users, then answers.
async fn respond(
    request: Request<Incoming>,
    site: Arc<Site>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = match &site.web.auth {
        Some(auth) if !auth.allows(request.headers().get(AUTHORIZATION)).await => {
            let mut response = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"flow\""),
            );
            response
        }
        _ => answer(&request, &site.registry),
    };
    for (name, value) in &site.web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    Ok(response)
}

fn answer(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let get = matches!(*request.method(), Method::GET | Method::HEAD);
    match request.uri().path() {
        "/metrics" if get => {
            let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) if format::wants_openmetrics(accept) => {
                    typed(StatusCode::OK, body, format::OPENMETRICS)
                }
                Ok(()) => typed(
                    StatusCode::OK,
                    format::prometheus_text(&body),
                    format::PROMETHEUS,
                ),
                Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
            }
        }
        "/" if get => plain(StatusCode::OK, "flow exporter: metrics at /metrics\n"),
        "/metrics" | "/" => plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"),
        _ => plain(StatusCode::NOT_FOUND, "not found: metrics at /metrics\n"),
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    typed(status, body.to_string(), "text/plain; charset=utf-8")
}

fn typed(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The address actually bound (port 0 asks the kernel for one).
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

/// Each waiting client holds a descriptor: the soft limit (often 1024) is raised to the hard one
/// so that a crowd of idle clients does not leave the exporter unable to accept a scrape.
pub fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                log::debug!(
                    "cannot raise the descriptor limit: {}",
                    io::Error::last_os_error()
                );
            }
        }
    }
}
