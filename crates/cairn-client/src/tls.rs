//! Which servers' certificates a client trusts over `wss://` and `https://`: the public
//! web PKI (webpki-roots), plus any certificate authority the user adds — a team's own CA,
//! or a server's self-signed certificate (`cairn-cli --ca FILE`, `CAIRN_CA_FILE`).

use crate::error::ClientError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::{Arc, RwLock};

/// Certificate authorities added for this process.
static EXTRA: RwLock<Vec<CertificateDer<'static>>> = RwLock::new(Vec::new());

/// Trusts every certificate in `pem` (PEM, `-----BEGIN CERTIFICATE-----` blocks) as a
/// certificate authority, for every connection this process makes from now on. Returns
/// how many were added.
pub fn trust_ca_pem(pem: &[u8]) -> Result<usize, ClientError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ClientError::BadCertificate(format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError::BadCertificate("no certificate in the CA file".into()));
    }
    let n = certs.len();
    EXTRA.write().expect("trust lock").extend(certs);
    Ok(n)
}

/// As [`trust_ca_pem`], from a file.
pub fn trust_ca_file(path: &std::path::Path) -> Result<usize, ClientError> {
    let pem = std::fs::read(path)
        .map_err(|e| ClientError::BadCertificate(format!("reading {}: {e}", path.display())))?;
    trust_ca_pem(&pem)
}

/// The added authorities.
pub(crate) fn extra_roots() -> Vec<CertificateDer<'static>> {
    EXTRA.read().expect("trust lock").clone()
}

/// TLS for the WebSocket: the web PKI's roots and the added ones, ring's primitives.
pub(crate) fn client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots() {
        if let Err(e) = roots.add(cert) {
            tracing::warn!(error = %e, "an added certificate authority is not usable");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}
