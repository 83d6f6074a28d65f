//! `/metrics` over HTTP/1.1 (hyper), on a one-thread tokio runtime of its own so that a slow
//! scraper never delays a measurement, and a slow measurement never stalls a scrape.

use std::{
    convert::Infallible,
    net::{SocketAddr, TcpListener},
    sync::Arc,
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderValue, ACCEPT, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, Semaphore};

use super::format;

/// Scrapes served at once; more wait in the kernel's accept queue.
const MAX_CLIENTS: usize = 32;
/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `address` (`host:port`); the one error a person sees when it is taken or not theirs.
pub fn bind(address: &str) -> Result<TcpListener> {
    let listener =
        TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
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

impl Server {
    pub fn start(listener: TcpListener, registry: Arc<Registry>) -> Result<Server> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("cannot start the HTTP runtime")?;
        let stop = Arc::new(Notify::new());
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("flow-http".into())
            .spawn(move || runtime.block_on(accept(listener, registry, stopped)))
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

async fn accept(listener: TcpListener, registry: Arc<Registry>, stop: Arc<Notify>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            log::error!("cannot serve: {err}");
            return;
        }
    };
    let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.notified() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors, say: wait instead of spinning.
                    log::warn!("accept: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&clients).acquire_owned().await else {
            return;
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, Arc::clone(&registry)));
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                log::debug!("{peer}: {err}");
            }
            drop(permit);
        });
    }
}

async fn respond(
    request: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let get = matches!(*request.method(), Method::GET | Method::HEAD);
    let response = match request.uri().path() {
        "/metrics" if get => {
            let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, &registry) {
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
    };
    Ok(response)
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
