//! HTTPS, on when `[server] tls_cert_file` and `tls_key_file` are set: rustls with the `ring`
//! provider (no C toolchain beyond what `ring` needs), TLS 1.2 and 1.3, HTTP/1.1.
//!
//! [`Certificates`] is rustls's certificate resolver: every handshake takes the current pair from
//! an `ArcSwap`. The server's watcher calls [`Certificates::refresh`] every second, which re-reads
//! both files and, when either changed, loads the new pair for the next handshakes (connections
//! already open keep theirs). A pair that does not load (a file half written, a key that does not
//! go with the certificate) is logged once and the last good pair keeps serving; it is tried again
//! when a file changes again, which is how cert-manager's and kubelet's updates complete.
//!
//! [`TlsListener`] is what `axum::serve` accepts connections from: one task accepts TCP
//! connections and runs each handshake in a task of its own, bounded by [`HANDSHAKE_TIMEOUT`], so
//! a slow or silent client never holds up the others; finished handshakes come over a channel.
//! When the server stops accepting (shutdown), it drops the listener, the channel closes, and the
//! accepting task ends and closes the socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete its handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("config key `server.{key}`: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config key `server.tls_cert_file`: {path} holds no PEM certificate{reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error(
        "config key `server.tls_key_file`: {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}"
    )]
    Key { path: PathBuf, reason: String },
    #[error(
        "config key `server.tls_key_file`: the key in {key} does not go with the certificate in {cert}: {reason}"
    )]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
}

/// The certificate and key files, and the pair served from them.
pub(crate) struct Certificates {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// The files' bytes when last loaded or tried, so that a bad pair is tried (and logged) once.
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

impl Certificates {
    /// Loads the pair: a file that cannot be read or parsed, or a key that does not go with the
    /// certificate, is a configuration error at start.
    pub(crate) fn load(cert_path: &Path, key_path: &Path) -> Result<Certificates, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert_pem = read("tls_cert_file", cert_path)?;
        let key_pem = read("tls_key_file", key_path)?;
        let pair = certified_key(&provider, (cert_path, &cert_pem), (key_path, &key_pem))?;
        Ok(Certificates {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: ArcSwap::from_pointee(pair),
            seen: Mutex::new((cert_pem, key_pem)),
        })
    }

    /// Re-reads both files and serves the new pair when they changed and load; otherwise the
    /// last good pair stays, and what went wrong is logged once per change of the files.
    pub(crate) fn refresh(&self) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let files = read("tls_cert_file", &self.cert_path)
            .and_then(|cert| Ok((cert, read("tls_key_file", &self.key_path)?)));
        let (cert_pem, key_pem) = match files {
            Ok(files) if files == *seen => return,
            Ok(files) => files,
            Err(e) => {
                if !seen.0.is_empty() {
                    tracing::warn!(error = %e, "the TLS files cannot be re-read: the last certificate stays in use");
                    // remembered as nothing, so that the files are loaded again once readable
                    *seen = (Vec::new(), Vec::new());
                }
                return;
            }
        };
        match certified_key(
            &self.provider,
            (&self.cert_path, &cert_pem),
            (&self.key_path, &key_pem),
        ) {
            Ok(pair) => {
                self.current.store(Arc::new(pair));
                tracing::info!(cert = %self.cert_path.display(), "the TLS certificate files changed: the new certificate is in use");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the changed TLS files do not load: the last certificate stays in use");
            }
        }
        *seen = (cert_pem, key_pem);
    }

    /// rustls's configuration for a server presenting these certificates.
    pub(crate) fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The certificate chain (leaf first) and its private key, checked to go together.
fn certified_key(
    provider: &CryptoProvider,
    (cert_path, cert_pem): (&Path, &[u8]),
    (key_path, key_pem): (&Path, &[u8]),
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate {
            path: cert_path.to_owned(),
            reason: format!(": {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: cert_path.to_owned(),
            reason: " (no -----BEGIN CERTIFICATE----- block)".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Pair {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        reason: e.to_string(),
    })
}

/// Accepts TLS connections for `axum::serve`.
pub(crate) struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` (in a task of the current runtime).
    pub(crate) fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (handed, handshaken) = mpsc::channel(64);
        tokio::spawn(accept(tcp, TlsAcceptor::from(config), handed));
        Ok(TlsListener {
            handshaken,
            local_addr,
        })
    }
}

/// Accepts TCP connections and hands each over once its handshake is done, until the listener
/// is dropped.
async fn accept(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handed: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, addr) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // as axum's own listener: a connection that failed before it was accepted is
                    // nothing; anything else (out of file descriptors) waits a second
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionRefused
                    ) {
                        tracing::error!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = handed.closed() => return,
        };
        let (acceptor, handed) = (acceptor.clone(), handed.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = handed.send((tls, addr)).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // the accepting task ended only because this listener is being dropped
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
