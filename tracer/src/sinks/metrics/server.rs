//! `GET /metrics` over plain HTTP/1.1 on the tokio runtime the binary already runs: one request
//! per connection, no keep-alive, which is all a Prometheus scrape needs.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use super::{MetricsState, CONTENT_TYPE, DEFAULT_GRACE};
use crate::{collector::Record, report::Report, sinks::Sink};

/// A request head larger than this is not a scrape.
const MAX_HEAD: usize = 8 * 1024;
/// A client that has not sent its request (or read the answer) by then is dropped.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics {addr}: cannot listen there: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The exporter: its state, fed by the session, and the HTTP server that renders it. Dropping
/// it stops the server.
#[derive(Debug)]
pub struct MetricsExporter {
    state: Arc<Mutex<MetricsState>>,
    local_addr: SocketAddr,
    server: JoinHandle<()>,
}

impl MetricsExporter {
    /// Listens on `addr` (an error if the port is taken or the address is not ours) and
    /// serves `/metrics` from then on; ended processes' series stay [`DEFAULT_GRACE`].
    pub async fn bind(addr: SocketAddr) -> Result<MetricsExporter, MetricsError> {
        Self::bind_with_grace(addr, DEFAULT_GRACE).await
    }

    /// As [`Self::bind`], with another grace period for ended processes' series.
    pub async fn bind_with_grace(
        addr: SocketAddr,
        grace: Duration,
    ) -> Result<MetricsExporter, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let state = Arc::new(Mutex::new(MetricsState::new(grace)));
        let server = tokio::spawn(serve(listener, state.clone()));
        Ok(MetricsExporter {
            state,
            local_addr,
            server,
        })
    }

    /// Where it listens (the port the system chose, for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// One record of the session's stream.
    pub fn record(&self, record: &Record) {
        self.lock().record(record, Instant::now());
    }

    /// The session's final report.
    pub fn finish(&self, report: &Report) {
        self.lock().finish(report);
    }

    /// The reader's health figures so far (absolute values; see
    /// [`MetricsState::update_health`]).
    pub fn update_health(&self, counters: &BTreeMap<&str, u64>, events: u64, malformed: u64) {
        self.lock().update_health(counters, events, malformed);
    }

    /// A handle on the same state, to give the session's [`crate::sinks::Sinks`] while the
    /// exporter (and its server) stays with the caller, who can still call
    /// [`Self::update_health`].
    pub fn sink(&self) -> MetricsSink {
        MetricsSink {
            state: self.state.clone(),
        }
    }

    /// What a scrape would get now.
    pub fn render(&self) -> String {
        self.lock().render(Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MetricsState> {
        lock(&self.state)
    }
}

/// The exporter as one of the session's sinks. It never fails: the final figures stay served
/// until the exporter is dropped.
impl Sink for MetricsExporter {
    fn record(&mut self, r: &Record) {
        MetricsExporter::record(self, r);
    }

    fn finish(&mut self, report: &Report) -> crate::Result<()> {
        MetricsExporter::finish(self, report);
        Ok(())
    }
}

/// The exporter's state as a sink ([`MetricsExporter::sink`]); the server keeps running for as
/// long as the [`MetricsExporter`] lives.
#[derive(Clone, Debug)]
pub struct MetricsSink {
    state: Arc<Mutex<MetricsState>>,
}

impl MetricsSink {
    /// As [`MetricsExporter::update_health`].
    pub fn update_health(&self, counters: &BTreeMap<&str, u64>, events: u64, malformed: u64) {
        lock(&self.state).update_health(counters, events, malformed);
    }
}

impl Sink for MetricsSink {
    fn record(&mut self, r: &Record) {
        lock(&self.state).record(r, Instant::now());
    }

    fn finish(&mut self, report: &Report) -> crate::Result<()> {
        lock(&self.state).finish(report);
        Ok(())
    }
}

/// A panic while holding the lock leaves figures that are still figures: keep serving.
fn lock(state: &Mutex<MetricsState>) -> std::sync::MutexGuard<'_, MetricsState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for MetricsExporter {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<MetricsState>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, state)).await;
                });
            }
            // Out of descriptors and the like: wait instead of spinning.
            Err(e) => {
                log::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, state: Arc<Mutex<MetricsState>>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
                true,
            )
            .await;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut request_line = head.lines().next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default();
    let path = request_line
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default();
    let with_body = method != "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = lock(&state).render(Instant::now());
            respond(&mut stream, "200 OK", CONTENT_TYPE, &body, with_body).await
        }
        ("GET" | "HEAD", "/") => {
            respond(
                &mut stream,
                "200 OK",
                "text/plain; charset=utf-8",
                "tt-tracer: metrics at /metrics\n",
                with_body,
            )
            .await
        }
        ("GET" | "HEAD", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain; charset=utf-8",
                "not found: try /metrics\n",
                with_body,
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                "only GET\n",
                true,
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}
