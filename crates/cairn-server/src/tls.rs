//! TLS in the server (`--tls-cert FILE --tls-key FILE`): WebSocket and HTTP on the one
//! port, rustls with ring's primitives. The files are read again on SIGHUP; connections
//! already open keep the certificate they started with.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio_rustls::TlsAcceptor;

pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    acceptor: RwLock<TlsAcceptor>,
}

fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("the certificate {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and its key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Tls {
    /// Reads the certificate chain and key (PEM).
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        Ok(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            acceptor: RwLock::new(acceptor(cert, key)?),
        })
    }

    /// Reads the files again; on error the certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = acceptor(&self.cert, &self.key)?;
        *self.acceptor.write().expect("tls lock") = fresh;
        Ok(())
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.read().expect("tls lock").clone()
    }
}

/// Reloads the certificate whenever the process gets SIGHUP, until `stop`.
pub async fn reload_on_hangup(tls: Arc<Tls>, stop: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: the certificate is not reloaded");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate and key"),
                Err(e) => tracing::warn!("SIGHUP: kept the certificate in use: {e:#}"),
            },
            _ = stop.cancelled() => return,
        }
    }
}
