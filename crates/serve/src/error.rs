//! Errors of starting and running the server (request errors are HTTP answers, not these).

use std::net::SocketAddr;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid server configuration: {0}")]
    Config(String),
    #[error("async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("server stopped with an error: {0}")]
    Serve(#[source] std::io::Error),
    #[error("server thread panicked")]
    Panicked,
}
