//! TLS to PostgreSQL with rustls, with libpq's `sslmode` rules:
//!
//! | sslmode | TLS | chain checked | host name checked |
//! |---|---|---|---|
//! | `disable` | never | — | — |
//! | `prefer` (default) | when the server offers it | only with `sslrootcert` | no |
//! | `require` | always | only with `sslrootcert` | no |
//! | `verify-full` | always | against `sslrootcert`, or the system's roots | yes |
//!
//! A refused certificate fails the connection with a sentence that names
//! the server and what it was checked against, e.g. "PostgreSQL at
//! db:5432: the server certificate is not trusted by
//! sslrootcert=/etc/nadir/ca.pem". Unlike libpq, `prefer` does not retry
//! in plaintext when the TLS handshake itself fails.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use nadir_config::tls::{self as config_tls, PostgresUrl, RootCert, SslMode};

/// The TLS side of a connection to `target` (unused with `sslmode=disable`).
pub(crate) fn connector(target: &PostgresUrl) -> MakeRustlsConnect {
    let provider = config_tls::provider();
    let roots = match (&target.root_cert, target.ssl_mode) {
        (Some(RootCert::File(ca)), _) => Some(ca.roots()),
        (Some(RootCert::System), _) | (None, SslMode::VerifyFull) => {
            Some(config_tls::system_roots())
        }
        (None, _) => None,
    };
    // An empty store makes the verifier builder fail; every certificate is
    // then unknown, which is what an empty system store means.
    let chain = roots.filter(|r| !r.is_empty()).and_then(|roots| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .ok()
    });
    let checks_chain = target.root_cert.is_some() || target.ssl_mode == SslMode::VerifyFull;
    let verifier = ServerCheck {
        chain,
        checks_chain,
        checks_name: target.ssl_mode == SslMode::VerifyFull,
        algorithms: provider.signature_verification_algorithms,
        target: target.clone(),
    };
    MakeRustlsConnect::new(config_tls::client_config(Arc::new(verifier)))
}

/// Our sentence about a refused certificate, when that is what `e` is.
pub(crate) fn refusal(e: &tokio_postgres::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
                inner.downcast_ref::<rustls::Error>()
            && let Some(refused) = other.0.downcast_ref::<Refused>()
        {
            return Some(refused.0.clone());
        }
        source = cause.source();
    }
    None
}

/// A certificate refused, in words (carried through rustls and
/// tokio-postgres to [`refusal`]).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Checks the server's certificate as the URL's `sslmode` says.
#[derive(Debug)]
struct ServerCheck {
    /// The webpki verifier over the trusted roots; `None` when there are
    /// none to check against.
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// `sslrootcert` given, or `verify-full`: the chain must be trusted.
    checks_chain: bool,
    /// `verify-full`: the certificate must name the host.
    checks_name: bool,
    /// For the handshake signatures, checked in every mode.
    algorithms: WebPkiSupportedAlgorithms,
    /// For the words of a refusal.
    target: PostgresUrl,
}

impl ServerCheck {
    fn refuse(&self, err: &rustls::Error, server_name: &ServerName<'_>) -> rustls::Error {
        let peer = self.target.peer(Some(&server_name.to_str()));
        let why = config_tls::describe_rejection(err, &self.target.trusted_by());
        let mut text = format!("{peer}: {why}");
        if !matches!(self.target.root_cert, Some(RootCert::File(_))) {
            text.push_str(" (for a private CA, set sslrootcert=/path/to/ca.pem)");
        }
        if matches!(
            err,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ) {
            text.push_str(" (sslmode=verify-full checks the host name)");
        }
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            Refused(text),
        ))))
    }
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.checks_chain {
            return Ok(ServerCertVerified::assertion());
        }
        let Some(chain) = &self.chain else {
            let none = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
            return Err(self.refuse(&none, server_name));
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(verified) => Ok(verified),
            // webpki checks the name only once the chain is trusted.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.checks_name => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(self.refuse(&e, server_name)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
