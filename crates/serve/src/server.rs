//! The HTTP server: routes, body limits, logging, start-up and graceful shutdown.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use crate::api::{self, ApiError, SearchRequest};
use crate::batcher::Batcher;
use crate::config::{Limits, ServerConfig};
use crate::error::ServeError;
use crate::SearchService;

#[derive(Clone)]
struct AppState {
    batcher: Batcher,
    limits: Arc<Limits>,
    default_top_n: usize,
    default_topk: usize,
}

fn json(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json(self.status, self.body())
    }
}

/// Reads the body up to `limit` bytes. A larger body is read on (and dropped) up to a bound so the
/// client still receives the 413 instead of a reset connection; past that bound the connection is
/// simply closed after the answer.
async fn read_body(headers: &HeaderMap, mut body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let drain_cap = limit.saturating_mul(4).max(16 << 20);
    let too_large = |n: &str| ApiError::new(413, format!("request body is {n} bytes; the limit is {limit}"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > drain_cap as u64 {
            return Err(too_large(&n.to_string()));
        }
    }
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| (n as usize).min(limit)));
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::new(400, format!("cannot read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total <= limit {
                buf.extend_from_slice(&data);
            } else if total > drain_cap {
                return Err(too_large(&format!("more than {drain_cap}")));
            }
        }
    }
    if total > limit {
        return Err(too_large(&total.to_string()));
    }
    Ok(buf)
}

type Parser = fn(&[u8], &Limits, usize) -> Result<SearchRequest, ApiError>;

async fn run_search(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
    parse: Parser,
    default_k: usize,
) -> Result<(SearchRequest, Vec<Vec<crate::Hit>>), ApiError> {
    let bytes = read_body(headers, body, st.limits.max_body_bytes).await?;
    let req = parse(&bytes, &st.limits, default_k)?;
    let results = st.batcher.search(req.queries.clone(), req.k).await?;
    Ok((req, results))
}

async fn health(State(st): State<AppState>) -> Response {
    let (total, available) = st.batcher.workers();
    json(200, api::health_response(total, available))
}

async fn search(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match run_search(&st, &headers, body, api::parse_search, st.default_top_n).await {
        Ok((req, mut results)) => json(
            200,
            api::search_response(&results.pop().unwrap_or_default(), req.scores),
        ),
        Err(e) => e.into_response(),
    }
}

async fn batch_search(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match run_search(&st, &headers, body, api::parse_batch_search, st.default_top_n).await {
        Ok((req, results)) => json(200, api::batch_search_response(&results, req.scores)),
        Err(e) => e.into_response(),
    }
}

async fn retrieve(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match run_search(&st, &headers, body, api::parse_retrieve, st.default_topk).await {
        Ok((req, results)) => json(200, api::retrieve_response(&results, req.scores)),
        Err(e) => e.into_response(),
    }
}

async fn not_found() -> Response {
    ApiError::new(404, "Not Found").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(405, "Method Not Allowed").into_response()
}

async fn log_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        ms = format_args!("{:.2}", start.elapsed().as_secs_f64() * 1e3),
        "request"
    );
    response
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/search", post(search))
        .route("/batch_search", post(batch_search))
        .route("/retrieve", post(retrieve))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// Waits for SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: finishing in-flight requests, then stopping"),
        _ = term => tracing::info!("SIGTERM: finishing in-flight requests, then stopping"),
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    service: Arc<dyn SearchService>,
    config: ServerConfig,
}

impl Server {
    /// Checks the configuration and binds the listening socket (port 0 picks a free port).
    pub fn bind(service: impl SearchService, config: ServerConfig) -> Result<Self, ServeError> {
        let l = &config.limits;
        let b = &config.batching;
        for (name, v) in [
            ("max_body_bytes", l.max_body_bytes),
            ("max_queries", l.max_queries),
            ("max_top_k", l.max_top_k),
            ("max_query_chars", l.max_query_chars),
            ("max_queued_requests", l.max_queued_requests),
            ("max_batch_queries", b.max_batch_queries),
            ("search_workers", b.search_workers),
            ("default_top_n", config.default_top_n),
            ("default_topk", config.default_topk),
        ] {
            if v == 0 {
                return Err(ServeError::Config(format!("{name} must be at least 1")));
            }
        }
        let listener = std::net::TcpListener::bind(config.addr).map_err(|source| ServeError::Bind {
            addr: config.addr,
            source,
        })?;
        listener.set_nonblocking(true).map_err(|source| ServeError::Bind {
            addr: config.addr,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.addr,
            source,
        })?;
        Ok(Self {
            listener,
            addr,
            service: Arc::new(service),
            config,
        })
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish and
    /// returns. Must run inside a multi-threaded tokio runtime.
    pub async fn serve<F>(self, shutdown: F) -> Result<(), ServeError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Server {
            listener,
            addr,
            service,
            config,
        } = self;
        let corpus = service.corpus_size();
        let batcher = Batcher::start(service, &config.batching, config.limits.max_queued_requests);
        let state = AppState {
            batcher,
            limits: Arc::new(config.limits.clone()),
            default_top_n: config.default_top_n,
            default_topk: config.default_topk,
        };
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|source| ServeError::Bind { addr, source })?
            .tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
        tracing::info!(
            "listening on http://{addr} ({corpus} passages; routes /health /search /batch_search /retrieve; \
             batches of up to {} queries within {:?}, {} search worker(s); limits: body {} B, {} queries, \
             top-k {}, {} chars per query)",
            config.batching.max_batch_queries,
            config.batching.max_wait,
            config.batching.search_workers,
            config.limits.max_body_bytes,
            config.limits.max_queries,
            config.limits.max_top_k,
            config.limits.max_query_chars,
        );
        let signalled = Arc::new(tokio::sync::Notify::new());
        let notify = signalled.clone();
        let shutdown = async move {
            shutdown.await;
            notify.notify_one();
        };
        let grace = config.shutdown_grace;
        let server = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown);
        tokio::select! {
            result = server.into_future() => result.map_err(ServeError::Serve)?,
            _ = async {
                signalled.notified().await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!("requests still in flight {grace:?} after the shutdown signal; stopping anyway"),
        }
        tracing::info!("server stopped");
        Ok(())
    }

    fn runtime() -> Result<tokio::runtime::Runtime, ServeError> {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("research-serve")
            .build()
            .map_err(ServeError::Runtime)
    }

    /// Serves on a new runtime, blocking this thread, until SIGINT or SIGTERM.
    pub fn run_until_signal(self) -> Result<(), ServeError> {
        let rt = Self::runtime()?;
        let result = rt.block_on(self.serve(shutdown_signal()));
        // Searches still running after the grace period are not waited for.
        rt.shutdown_timeout(std::time::Duration::from_millis(100));
        result
    }

    /// Serves on a background thread; stop it with [`ServerHandle::shutdown`] (or by dropping the handle).
    pub fn spawn(self) -> Result<ServerHandle, ServeError> {
        let rt = Self::runtime()?;
        let addr = self.addr;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("research-serve".into())
            .spawn(move || {
                let result = rt.block_on(self.serve(async {
                    let _ = stopped.await;
                }));
                rt.shutdown_timeout(std::time::Duration::from_millis(100));
                result
            })
            .map_err(ServeError::Runtime)?;
        Ok(ServerHandle {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// A server running on a background thread.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl ServerHandle {
    /// The address listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, waits for in-flight requests to finish (at most
    /// [`ServerConfig::shutdown_grace`]) and for the server thread to end.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| ServeError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
