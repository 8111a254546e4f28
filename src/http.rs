//! The one outbound HTTP client: reqwest (blocking, on its own tokio runtime thread) over rustls
//! on ring, the provider the agent's own TLS listener uses, so that building canopy needs no C
//! toolchain beyond a compiler. The trusted roots are chosen here rather than by the platform:
//! Mozilla's set, or only the certificates an operator names (`[source] ca_file`, an in-cluster
//! CA). Used by the Prometheus backfill, and by the tests and examples as their client.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, pem::PemObject};

/// Mozilla's root certificates, as browsers trust them.
pub fn mozilla_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The certificates of a PEM file as the only trusted roots: an error names the file and what is
/// wrong with it (bad PEM, a certificate rustls refuses, or none at all).
pub fn pem_roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(cert.map_err(|e| format!("{}: {e}", path.display()))?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(roots)
}

/// A client builder trusting `roots`; callers add their timeout and build.
pub fn client_builder(roots: RootCertStore) -> reqwest::blocking::ClientBuilder {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::blocking::Client::builder().tls_backend_preconfigured(tls)
}
