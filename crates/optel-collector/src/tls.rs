//! HTTPS on the collector's port (cargo feature `tls`): rustls with the `ring` provider, TLS 1.2
//! and 1.3, HTTP/1.1 over it. [`TlsConfig::from_pem_files`] loads a PEM certificate chain and
//! its private key; [`crate::serve_tls`] serves the same routes as [`crate::serve`].
//!
//! # Handshakes
//! [`crate::serve_tls`] runs each handshake on its connection's own task, never in the accept
//! loop, so one slow or silent client cannot stall every other connection. A handshake holds a
//! place under the connection cap, may be replaced like an idle connection, and must finish
//! within [`crate::ServerConfig::tls_handshake_timeout`]. The client's address reaches the rate
//! limiter exactly as on plain HTTP.
//!
//! # Renewed certificates
//! The certificate and key are read again by [`TlsConfig::reload`] (`optel serve` calls it on
//! `SIGHUP`) and by [`TlsConfig::reload_when_changed`] (the files' modification times, checked
//! every [`RELOAD_CHECK_EVERY`] by `optel serve`), so a renewal by certbot, cert-manager or a
//! deploy script needs no restart. New handshakes use the new pair; established connections
//! keep theirs. A pair that cannot be used is logged and the previous one stays in service.
//!
//! # Plain HTTP on the TLS port
//! A client that speaks plain HTTP to the HTTPS port (a first byte that is not a TLS handshake
//! record) gets `400 Bad Request` with an `https_required` JSON error body
//! ([`optel_wire::ErrorBody`]) telling it to use `https://`, and the connection is closed. Any
//! other failed handshake is logged at debug level and dropped. Neither affects other
//! connections.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::sync::RwLock;
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How often `optel serve` checks whether the certificate or key file changed: 60 s.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(60);

/// First byte of a TLS record carrying a handshake message (RFC 8446 §5.1, `ContentType`).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why the certificate or key cannot be used. Every message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file cannot be read.
    #[error(
        "cannot read the TLS certificate file {path:?} ({cause}): pass a readable PEM file \
         with --tls-cert or OPTEL_TLS_CERT"
    )]
    ReadCert {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not a `source`: the message is complete).
        cause: io::Error,
    },
    /// The key file cannot be read.
    #[error(
        "cannot read the TLS key file {path:?} ({cause}): pass a readable PEM file with \
         --tls-key or OPTEL_TLS_KEY"
    )]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not a `source`: the message is complete).
        cause: io::Error,
    },
    /// The certificate file holds no usable PEM certificate.
    #[error(
        "the TLS certificate file {path:?} holds no PEM certificate ({reason}): pass the \
         server certificate followed by any intermediates, each as `-----BEGIN CERTIFICATE-----`"
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM parser found.
        reason: String,
    },
    /// The key file holds no usable PEM private key.
    #[error(
        "the TLS key file {path:?} holds no PEM private key ({reason}): pass an unencrypted \
         PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1 \
         (`BEGIN EC PRIVATE KEY`) key; decrypt an encrypted one with `openssl pkey`"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What the PEM parser found.
        reason: String,
    },
    /// The key is not the certificate's key.
    #[error(
        "the TLS key {key:?} does not match the certificate {cert:?}: pass the private key \
         the certificate was issued for (the first certificate in the file is the server's)"
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refuses the certificate or key for another reason (e.g. an unsupported key type).
    #[error(
        "the TLS certificate {cert:?} with key {key:?} cannot be used ({reason}): use an \
         RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key and its certificate"
    )]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        reason: String,
    },
}

/// A loaded certificate and key, ready to serve: rustls with the `ring` provider, TLS 1.2 and
/// 1.3, ALPN `http/1.1`, no client certificates. Clones share the pair, so a
/// [`reload`](Self::reload) through any clone serves every listener made from them.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    pair: Arc<CurrentPair>,
}

impl TlsConfig {
    /// An acceptor of new handshakes with the pair in service.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server.clone())
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert", &self.pair.cert)
            .field("key", &self.pair.key)
            .field("alpn", &self.server.alpn_protocols)
            .finish_non_exhaustive()
    }
}

/// The files and the pair in service, which every handshake asks for.
#[derive(Debug)]
struct CurrentPair {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CurrentPair {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

impl TlsConfig {
    /// Loads a PEM certificate chain (`cert`: the server certificate first, then intermediates)
    /// and its PEM private key (`key`: PKCS#8, PKCS#1 or SEC1, unencrypted).
    ///
    /// # Errors
    /// [`TlsError`]: a file cannot be read, holds no certificate or key, the key does not
    /// match the certificate, or rustls cannot use them.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = Arc::new(CurrentPair {
            current: RwLock::new(Arc::new(load_pair(cert, key, &provider)?)),
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider: provider.clone(),
        });
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Unusable {
                cert: cert.to_owned(),
                key: key.to_owned(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(pair.clone());
        // The router speaks HTTP/1.1 only (axum's `http1` feature).
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            server: Arc::new(server),
            pair,
        })
    }

    /// Reads the certificate and key files again and, if they can be used, serves them to
    /// every new handshake. Otherwise the pair in service stays.
    ///
    /// # Errors
    /// As [`from_pem_files`](Self::from_pem_files); nothing changed.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_pair(&self.pair.cert, &self.pair.key, &self.pair.provider)?;
        *self
            .pair
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(fresh);
        Ok(())
    }

    /// Runs until dropped: every `every`, when the certificate's or the key's modification
    /// time or size changed since the last look, [`reload`](Self::reload)s and logs the
    /// outcome (a failure at `error` level, naming the file and what to do).
    pub async fn reload_when_changed(self, every: Duration) {
        let mut seen = self.files_stamp();
        loop {
            tokio::time::sleep(every).await;
            let now = self.files_stamp();
            if now == seen {
                continue;
            }
            seen = now;
            self.reload_and_log("the certificate or key file changed");
        }
    }

    /// [`reload`](Self::reload)s and logs the outcome, saying `why` it reloaded.
    pub fn reload_and_log(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.pair.cert.display(),
                why,
                "TLS certificate reloaded: new connections use it"
            ),
            Err(e) => tracing::error!(
                error = %e,
                why,
                "TLS certificate NOT reloaded: the previous one stays in service"
            ),
        }
    }

    /// Modification time and size of both files (`None` where unreadable).
    fn files_stamp(&self) -> [Option<(SystemTime, u64)>; 2] {
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        [stamp(&self.pair.cert), stamp(&self.pair.key)]
    }

    /// The end-entity certificate in service (DER), as new handshakes present it.
    #[cfg(test)]
    fn current_certificate(&self) -> CertificateDer<'static> {
        self.pair
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cert[0]
            .clone()
    }
}

/// Reads and checks a certificate chain and its key (see [`TlsConfig::from_pem_files`]).
fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|cause| TlsError::ReadCert {
        path: cert.to_owned(),
        cause,
    })?;
    let key_pem = std::fs::read(key).map_err(|cause| TlsError::ReadKey {
        path: key.to_owned(),
        cause,
    })?;
    let no_cert = |reason: String| TlsError::NoCertificate {
        path: cert.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| no_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(no_cert("no `BEGIN CERTIFICATE` section".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: key.to_owned(),
        reason: match e {
            pem::Error::NoItemsFound => "no unencrypted private key section".into(),
            other => other.to_string(),
        },
    })?;
    let pair = CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        },
        other => TlsError::Unusable {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason: other.to_string(),
        },
    })?;
    // `from_der` lets a key whose consistency it cannot tell pass; the certificate must also
    // parse as an end-entity certificate.
    rustls::server::ParsedCertificate::try_from(&pair.cert[0]).map_err(|e| TlsError::Unusable {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(pair)
}

/// Completes the handshake, or answers a plain-HTTP client with 400 and returns `None`.
pub(crate) async fn handshake(
    tcp: TcpStream,
    acceptor: &TlsAcceptor,
) -> io::Result<Option<TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        refuse_plain_http(tcp).await?;
        return Ok(None);
    }
    acceptor.accept(tcp).await.map(Some)
}

/// The answer to plain HTTP on the HTTPS port, then a lingering close: the request is drained
/// (up to 64 KiB, at most 1 s) so that the client reads the answer rather than a reset.
async fn refuse_plain_http(mut tcp: TcpStream) -> io::Result<()> {
    let body = serde_json::to_string(&optel_wire::ErrorBody {
        error: optel_wire::ErrorDetail {
            code: "https_required".into(),
            message: "this collector port speaks HTTPS: use an https:// URL".into(),
            field: None,
        },
    })
    .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    tcp.shutdown().await?;
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    let drain = async {
        while drained < 64 * 1024 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    /// The test-only certificates in `tests/fixtures` (see their README).
    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn der_of(pem_file: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(fixture(pem_file)).unwrap()
    }

    /// Files replaced in place (as a renewal does) are served after the next check; files that
    /// cannot be used are logged and the pair in service stays.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn changed_files_are_reloaded_and_broken_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::copy(fixture("tls-test.crt"), &cert).unwrap();
        std::fs::copy(fixture("tls-test.key"), &key).unwrap();
        let tls = TlsConfig::from_pem_files(&cert, &key).unwrap();
        assert_eq!(tls.current_certificate(), der_of("tls-test.crt"));
        let watcher = tokio::spawn(tls.clone().reload_when_changed(Duration::from_secs(1)));
        // Let the watcher take its first look at the files.
        tokio::task::yield_now().await;

        // A certificate whose key does not match yet (renewals write one file, then the other).
        std::fs::copy(fixture("tls-renewed.crt"), &cert).unwrap();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(tls.current_certificate(), der_of("tls-test.crt"));
        assert!(matches!(tls.reload(), Err(TlsError::Mismatch { .. })));

        std::fs::copy(fixture("tls-renewed.key"), &key).unwrap();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(tls.current_certificate(), der_of("tls-renewed.crt"));

        std::fs::write(&cert, b"not a certificate").unwrap();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(tls.current_certificate(), der_of("tls-renewed.crt"));
        watcher.abort();
    }
}
