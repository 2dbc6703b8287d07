//! Accepting connections: caps on how many are open (in all, and from one address), a
//! deadline for a request's headers, and graceful shutdown. Each connection is served by
//! hyper (HTTP/1.1, with upgrades for the WebSocket) over the app's router.

use crate::state::AppState;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::either::Either;
use tokio_util::task::TaskTracker;

/// Open connections, in all and per address.
#[derive(Default)]
pub struct Connections {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it frees its place. A WebSocket keeps it (in the
/// upgrade request's extensions) for as long as it is open.
#[derive(Clone)]
pub struct Place(#[allow(dead_code)] Arc<Admitted>);

pub struct Admitted {
    conns: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut map = self.conns.per_ip.lock().expect("connections lock");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
}

impl Connections {
    /// Admits a connection from `ip` if it keeps within both caps.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        total: usize,
        per_ip: usize,
    ) -> Result<Admitted, Refused> {
        let mut map = self.per_ip.lock().expect("connections lock");
        let open: usize = map.values().sum();
        if open >= total {
            return Err(Refused::Total);
        }
        let mine = map.entry(ip).or_default();
        if *mine >= per_ip {
            return Err(Refused::PerAddress);
        }
        *mine += 1;
        Ok(Admitted { conns: self.clone(), ip })
    }

    pub fn open(&self) -> usize {
        self.per_ip.lock().expect("connections lock").values().sum()
    }
}

/// Raises this process's soft limit on open files to its hard limit (connections are
/// files), and returns the soft limit now in force.
pub fn raise_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024)
        }
    }
}

/// Accepts and serves connections until `state.shutdown` is cancelled; then asks each
/// HTTP connection to finish its request in progress, and returns once all are closed.
pub async fn accept_loop(listener: TcpListener, state: Arc<AppState>, app: Router) {
    let conns = Arc::new(Connections::default());
    let http = TaskTracker::new();
    let (mut total, per_ip) = (state.config.max_connections, state.config.max_connections_per_ip);
    // Room for the database, the media files and the listener besides the connections.
    let files = raise_file_limit();
    let fits = usize::try_from(files.saturating_sub(128)).unwrap_or(usize::MAX).max(1);
    if total > fits {
        tracing::warn!(
            files,
            "--max-connections {total} is above what the open-file limit allows; using {fits}"
        );
        total = fits;
    }
    let header_timeout = Duration::from_secs(state.config.header_timeout_s.max(1));
    let mut last_refusal_logged = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = state.shutdown.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = match conns.admit(peer.ip(), total, per_ip) {
            Ok(a) => a,
            Err(why) => {
                let counter = match why {
                    Refused::Total => &state.metrics.refused_total_cap,
                    Refused::PerAddress => &state.metrics.refused_per_address_cap,
                };
                counter.inc();
                if last_refusal_logged.elapsed() >= Duration::from_secs(10) {
                    last_refusal_logged = std::time::Instant::now();
                    tracing::warn!(
                        peer = %peer.ip(),
                        open = conns.open(),
                        "refusing connections: {}",
                        match why {
                            Refused::Total => format!("{total} are open (--max-connections)"),
                            Refused::PerAddress => format!(
                                "{per_ip} are open from this address (--max-connections-per-ip)"
                            ),
                        }
                    );
                }
                drop(tcp);
                continue;
            }
        };
        // Small frames (acks, live notes) must leave at once: with Nagle's algorithm on, a
        // frame written behind an unacknowledged one waits for the peer's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let place = Place(Arc::new(admitted));
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(place.clone());
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let shutdown = state.shutdown.clone();
        let tls = state.tls.as_ref().map(|t| t.acceptor());
        http.spawn(async move {
            let io = match tls {
                None => Either::Left(tcp),
                // The handshake has the headers' deadline too.
                Some(tls) => match tokio::time::timeout(header_timeout, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => Either::Right(stream),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
            };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "HTTP connection ended");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    http.close();
    http.wait().await;
}
