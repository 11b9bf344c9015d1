//! HTTPS on the daemon's listeners: the certificate (from files, or a
//! self-signed one made on first start and kept in `DATA_DIR/tls`), and a
//! listener for axum that does each TLS handshake in its own task (a slow
//! or silent client holds up nobody else) before the request framing
//! check sees the decrypted bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cloudshell_net::tls::{Fingerprint, Identity};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::{ConfigError, DaemonConfig};
use crate::error::DaemonError;
use crate::http::framing::FramedStream;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for axum to take them.
const READY_QUEUE: usize = 64;

/// The daemon's TLS: what its listeners serve, and the fingerprint clients
/// pin.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    /// SHA-256 of the certificate.
    pub fingerprint: Fingerprint,
    /// Where the certificate is (what a client can be given to trust).
    pub cert_path: std::path::PathBuf,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("fingerprint", &self.fingerprint)
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The TLS the configuration asks for, if any.
    pub fn from_config(config: &DaemonConfig) -> Result<Option<Self>, DaemonError> {
        let (identity, cert_path) = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => (
                Identity::from_pem_files(cert, key)
                    .map_err(crate::error::net("cannot read the TLS certificate and key"))?,
                cert.clone(),
            ),
            (None, None) if config.tls => {
                let dir = config.data_dir.join("tls");
                let identity = Identity::load_or_create_for(&dir, names(config))
                    .map_err(crate::error::net("cannot load or make the TLS certificate"))?;
                (identity, dir.join("cert.pem"))
            }
            (None, None) => return Ok(None),
            _ => {
                return Err(ConfigError::Invalid(
                    "give both --tls-cert and --tls-key (PEM files), or --tls for a self-signed \
                     certificate"
                        .to_owned(),
                )
                .into());
            }
        };
        let server = cloudshell_net::tls::https_server_config(&identity)
            .map_err(crate::error::net("cannot configure TLS"))?;
        Ok(Some(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            fingerprint: identity.fingerprint(),
            cert_path,
        }))
    }

    /// A listener serving TLS on `tcp`.
    pub fn listener(&self, tcp: tokio::net::TcpListener) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(READY_QUEUE);
        let acceptor = self.acceptor.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY: {e}");
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        // Plain HTTP, a client that does not trust the
                        // certificate, a scanner: said once, at debug.
                        Ok(Err(e)) => tracing::debug!(%addr, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready: rx,
            local,
            _accepting: AbortOnDrop(task),
        })
    }
}

/// The names a self-signed certificate carries: loopback, this machine's
/// host name, and the addresses the daemon listens on.
fn names(config: &DaemonConfig) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let listens = std::iter::once(config.listen).chain(config.s3_listen);
    for candidate in std::iter::once(host).chain(
        listens
            .filter(|a| !a.ip().is_unspecified())
            .map(|a| a.ip().to_string()),
    ) {
        if !candidate.is_empty() && !names.contains(&candidate) {
            names.push(candidate);
        }
    }
    names
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A TLS listener for axum (see [`Tls::listener`]).
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local: SocketAddr,
    _accepting: AbortOnDrop,
}

impl axum::serve::Listener for TlsListener {
    type Io = FramedStream<TlsStream<tokio::net::TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some((tls, addr)) => (FramedStream::new(tls), addr),
            // The accepting task ended (only when dropped): nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
