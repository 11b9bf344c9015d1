//! Identities and pinned mutual TLS for QUIC.
//!
//! Each side has a self-signed certificate ([`Identity`]); a peer is known
//! only by the SHA-256 of its certificate ([`Fingerprint`]), exchanged over
//! the authenticated CloudShell session. Both verifiers accept exactly the
//! pinned certificate and still check the handshake signature, so holding
//! the certificate without its key is not enough. TLS 1.3 only, with the
//! aws-lc-rs provider (the one provider of this workspace).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The ALPN of this protocol.
pub const ALPN: &[u8] = b"cloudshell-store/1";
/// The name every agent certificate carries (peers are pinned, not named).
pub const SERVER_NAME: &str = "cloudshell-agent";

/// Why an identity or a TLS configuration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("cannot generate a certificate")]
    Generate(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Reading or writing identity files failed.
    #[error("identity file {path}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The identity files are not a certificate and key.
    #[error("identity file {0} is not a PEM certificate or key")]
    Pem(String),
    /// rustls refused the configuration.
    #[error("tls configuration")]
    Config(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The SHA-256 of a certificate (DER).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `cert`.
    pub fn of(cert: &[u8]) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Parses 64 hex digits (colons allowed, as openssl prints them).
    pub fn parse(s: &str) -> Option<Self> {
        let hex: String = s.chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A self-signed certificate and its key.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// A fresh identity.
    pub fn generate() -> Result<Self, TlsError> {
        let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .map_err(|e| TlsError::Generate(e.into()))?;
        Ok(Self {
            cert: ck.cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
        })
    }

    /// Loads `dir/cert.pem` and `dir/key.pem`, or creates them (the key
    /// with mode 0600), so a restarted agent keeps its fingerprint.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        Self::load_or_create_for(dir, vec![SERVER_NAME.to_owned()])
    }

    fn create(dir: &Path, names: Vec<String>) -> Result<Self, TlsError> {
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        let io = |p: &Path| {
            let path = p.display().to_string();
            move |source| TlsError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let ck =
            rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.into()))?;
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&key_path)
                .map_err(io(&key_path))?;
            f.write_all(ck.signing_key.serialize_pem().as_bytes())
                .map_err(io(&key_path))?;
        }
        std::fs::write(&cert_path, ck.cert.pem()).map_err(io(&cert_path))?;
        Ok(Self {
            cert: ck.cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
        })
    }

    /// A secret derived from the private key, stable across restarts: the
    /// key for QUIC stateless resets, so a restarted agent tells the daemon
    /// at once that the old connection is gone (instead of the daemon
    /// waiting out the idle timeout).
    pub fn reset_secret(&self) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(b"cloudshell-store quic stateless reset v1");
        ctx.update(self.key.secret_der());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// The certificate's fingerprint, which peers pin.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert)
    }

    /// A certificate and key from PEM files (a web server's, say one from
    /// a CA).
    pub fn from_pem_files(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert = CertificateDer::from_pem_file(cert_path)
            .map_err(|_| TlsError::Pem(cert_path.display().to_string()))?;
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|_| TlsError::Pem(key_path.display().to_string()))?;
        Ok(Self { cert, key })
    }

    /// Loads `dir/cert.pem` and `dir/key.pem`, or creates a self-signed
    /// certificate for `names` (host names and IP addresses) there, the key
    /// with mode 0600: a web server's, kept across restarts so clients that
    /// pinned its fingerprint go on trusting it.
    pub fn load_or_create_for(dir: &Path, names: Vec<String>) -> Result<Self, TlsError> {
        if dir.join("cert.pem").exists() && dir.join("key.pem").exists() {
            return Self::from_pem_files(&dir.join("cert.pem"), &dir.join("key.pem"));
        }
        Self::create(dir, names)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts exactly one certificate, as server or as client.
#[derive(Debug)]
struct Pinned {
    fingerprint: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let got = Fingerprint::of(cert);
        if got == self.fingerprint {
            Ok(())
        } else {
            Err(rustls::Error::General(format!(
                "peer certificate {got} is not the pinned {}",
                self.fingerprint
            )))
        }
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

fn config_error<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> TlsError {
    TlsError::Config(e.into())
}

/// A server (agent) configuration that accepts only the client `peer`.
pub fn server_config(
    identity: &Identity,
    peer: Fingerprint,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        fingerprint: peer,
        provider: provider.clone(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(config_error)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A client (daemon) configuration that accepts only the server `peer`.
pub fn client_config(
    identity: &Identity,
    peer: Fingerprint,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        fingerprint: peer,
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(config_error)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A web server's configuration (HTTPS: the daemon's API, UI and S3
/// endpoint): TLS 1.2 and 1.3, no client certificates, HTTP/1.1.
pub fn https_server_config(identity: &Identity) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A web client's configuration that trusts exactly the server certificate
/// with SHA-256 `pin` (a self-signed one, say), whatever name it carries,
/// and still checks that the server holds its key.
pub fn pinned_https_client_config(pin: Fingerprint) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        fingerprint: pin,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_and_print() {
        let id = Identity::generate().unwrap();
        let f = id.fingerprint();
        assert_eq!(Fingerprint::parse(&f.to_string()), Some(f));
        let colons: Vec<String> = f.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(Fingerprint::parse(&colons.join(":")), Some(f));
        assert_eq!(Fingerprint::parse("abc"), None);
    }

    #[test]
    fn identities_persist_with_a_private_key_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let mode = std::fs::metadata(dir.path().join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
