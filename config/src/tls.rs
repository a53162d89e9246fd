//! What nadir's clients need to speak TLS, read and checked at start.
//!
//! - [`CaFile`]: a PEM bundle of certificate authorities (`NADIR_NATS_CA_FILE`,
//!   `NADIR_S3_CA_FILE`, a PostgreSQL URL's `sslrootcert`), read once and
//!   refused at start when it holds no usable certificate.
//! - [`PostgresUrl`]: libpq's `sslmode` and `sslrootcert` taken out of a
//!   PostgreSQL URL or key=value string (tokio-postgres knows neither
//!   `verify-full` nor `sslrootcert`), with the rest of it parsed.
//! - [`client_config`] and [`describe_rejection`]: one rustls setup (the
//!   `ring` provider) and one wording for a refused certificate, shared by
//!   the PostgreSQL and NATS clients.
//!
//! No connection is made here: `nadir_db`, `nadir_bus` and `nadir_store`
//! build their clients from these.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// A PEM file of trusted certificate authorities, read and checked.
#[derive(Clone)]
pub struct CaFile {
    pub path: PathBuf,
    /// The file as read (what clients that take PEM are given).
    pub pem: Vec<u8>,
    pub certificates: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaFile({}, {} certificates)",
            self.path.display(),
            self.certificates.len()
        )
    }
}

impl CaFile {
    /// Reads `path`; the error says what is wrong with the file (the caller
    /// names the setting).
    pub fn read(path: impl AsRef<Path>) -> Result<CaFile, String> {
        let path = path.as_ref();
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ));
        }
        let mut roots = RootCertStore::empty();
        for (i, certificate) in certificates.iter().enumerate() {
            roots.add(certificate.clone()).map_err(|e| {
                format!(
                    "certificate {} of {} cannot be a trust anchor: {e}",
                    i + 1,
                    path.display()
                )
            })?;
        }
        Ok(CaFile {
            path: path.to_path_buf(),
            pem,
            certificates,
        })
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(self.certificates.iter().cloned());
        roots
    }
}

/// The operating system's trusted roots (what is readable of them).
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

/// The cryptography every nadir TLS client uses. Explicit, because the
/// workspace builds rustls with two providers and then none is the default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that checks the server with `verifier`.
pub fn client_config(verifier: Arc<dyn ServerCertVerifier>) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

/// A client configuration that verifies the chain against `roots` and the
/// host name, as a browser does.
pub fn verifying_client_config(roots: RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Why the server's certificate was refused, in words (the caller puts the
/// server in front): `trusted_by` names what the chain was checked against
/// (e.g. "sslrootcert=/etc/nadir/ca.pem").
pub fn describe_rejection(err: &rustls::Error, trusted_by: &str) -> String {
    let rustls::Error::InvalidCertificate(cert) = err else {
        return format!("TLS handshake failed: {err}");
    };
    match cert {
        CertificateError::UnknownIssuer => {
            format!("the server certificate is not trusted by {trusted_by}: no CA there signed it")
        }
        CertificateError::NotValidForName => "the server certificate is not valid for this \
             host name; connect by a name the certificate holds"
            .to_string(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "the server certificate is not valid for the host name {} (it names {}); \
             connect by one of those names",
            server_name(expected),
            if presented.is_empty() {
                "no host".to_string()
            } else {
                presented
                    .iter()
                    .map(|n| tidy_name(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("the server certificate has expired ({cert})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("the server certificate is not valid yet ({cert})")
        }
        other => format!("the server certificate is refused: {other}"),
    }
}

fn server_name(name: &ServerName<'_>) -> String {
    name.to_str().into_owned()
}

/// `DnsName("db")` and `IpAddress(10.0.0.1)` (webpki's Debug) as `db`, `10.0.0.1`.
fn tidy_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(name)
}

/// libpq's `sslmode`, the values nadir supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext.
    Disable,
    /// TLS when the server offers it (libpq's default): the certificate is
    /// not checked, unless `sslrootcert` is given (then its chain is).
    Prefer,
    /// TLS or no connection; the certificate is not checked unless
    /// `sslrootcert` is given (then its chain is, not the host name), as
    /// libpq does.
    Require,
    /// TLS, the chain checked against `sslrootcert` (or the system's roots)
    /// and the host name against the certificate.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where a PostgreSQL URL's certificate authorities come from.
#[derive(Debug, Clone)]
pub enum RootCert {
    /// `sslrootcert=/path/ca.pem`.
    File(CaFile),
    /// `sslrootcert=system`: the operating system's roots (libpq 16).
    System,
}

/// A PostgreSQL connection string with its TLS settings taken apart.
#[derive(Clone)]
pub struct PostgresUrl {
    /// Everything but `sslmode` and `sslrootcert`, for tokio-postgres.
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub root_cert: Option<RootCert>,
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("PostgresUrl")
            .field("config", &self.config)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

impl PostgresUrl {
    /// Parses `url` (`postgres://...?sslmode=verify-full&sslrootcert=/ca.pem`
    /// or `host=... sslmode=... sslrootcert=...`) and reads the CA file.
    /// The error never holds the password.
    pub fn parse(url: &str) -> Result<PostgresUrl, String> {
        let (rest, ssl) = take_ssl_params(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| error_chain(&e))?;
        let ssl_mode = match ssl.mode.as_deref() {
            None | Some("prefer") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-full") => SslMode::VerifyFull,
            Some("verify-ca") => {
                return Err(
                    "sslmode=verify-ca is not supported: use sslmode=verify-full \
                     (chain and host name checked) or sslmode=require with sslrootcert \
                     (chain checked)"
                        .into(),
                );
            }
            Some(other) => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, prefer, require, verify-full"
                ));
            }
        };
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        // Plaintext reads no CA file, as libpq.
        let root_cert = match ssl
            .root_cert
            .as_deref()
            .filter(|_| ssl_mode != SslMode::Disable)
        {
            None | Some("") => None,
            Some("system") => Some(RootCert::System),
            Some(path) => Some(RootCert::File(
                CaFile::read(path).map_err(|e| format!("sslrootcert: {e}"))?,
            )),
        };
        Ok(PostgresUrl {
            config,
            ssl_mode,
            root_cert,
        })
    }

    /// "PostgreSQL at host:port" for `host` (the first host when `None`).
    pub fn peer(&self, host: Option<&str>) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let index = host
            .and_then(|h| hosts.iter().position(|known| known == h))
            .unwrap_or(0);
        let name = host
            .map(str::to_string)
            .or_else(|| hosts.first().cloned())
            .unwrap_or_else(|| "localhost".into());
        let ports = self.config.get_ports();
        let port = ports
            .get(index)
            .or_else(|| ports.first().filter(|_| ports.len() == 1))
            .copied()
            .unwrap_or(5432);
        format!("PostgreSQL at {name}:{port}")
    }

    /// What the chain is checked against, in words.
    pub fn trusted_by(&self) -> String {
        match &self.root_cert {
            Some(RootCert::File(ca)) => format!("sslrootcert={}", ca.path.display()),
            Some(RootCert::System) | None => "the system's root certificates".into(),
        }
    }
}

/// An error with its causes, each once (a tokio-postgres error's Display
/// shows only its kind).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}

#[derive(Default)]
struct SslParams {
    mode: Option<String>,
    root_cert: Option<String>,
}

/// The connection string without `sslmode` and `sslrootcert`, and their
/// values.
fn take_ssl_params(url: &str) -> Result<(String, SslParams), String> {
    let mut ssl = SslParams::default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), ssl));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|v| v.into_owned())
                    .map_err(|_| format!("the query parameter {key} is not valid UTF-8"))
            };
            match decode(key)?.as_str() {
                "sslmode" => ssl.mode = Some(decode(value)?),
                "sslrootcert" => ssl.root_cert = Some(decode(value)?),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, ssl));
    }
    // key=value: `key = value` pairs separated by spaces; a value may be
    // quoted ('...', with \' and \\).
    let mut rest = String::with_capacity(url.len());
    let mut chars = url.char_indices().peekable();
    let bytes = url;
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            // Not key=value: left for tokio-postgres to refuse in its words.
            return Ok((url.to_string(), SslParams::default()));
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next() {
                    Some((_, '\'')) => break,
                    Some((_, '\\')) => {
                        if let Some((_, c)) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("the value of {key} has no closing quote")),
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                value.push(c);
            }
        }
        let end = chars.peek().map_or(bytes.len(), |(i, _)| *i);
        match key.as_str() {
            "sslmode" => ssl.mode = Some(value),
            "sslrootcert" => ssl.root_cert = Some(value),
            _ => {
                if !rest.is_empty() {
                    rest.push(' ');
                }
                rest.push_str(bytes[start..end].trim_end());
            }
        }
    }
    Ok((rest, ssl))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn ssl_parameters_leave_a_url_and_a_dsn() {
        let (rest, ssl) = take_ssl_params(
            "postgres://u:p@db:5432/nadir?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/nadir?application_name=x");
        assert_eq!(ssl.mode.as_deref(), Some("verify-full"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/etc/ca.pem"));

        let (rest, ssl) = take_ssl_params("postgres://db/nadir?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://db/nadir");
        assert_eq!(ssl.mode.as_deref(), Some("require"));

        let (rest, ssl) = take_ssl_params(
            "host=db sslmode = verify-full  password='a b\\'c' sslrootcert='/my certs/ca.pem' dbname=nadir",
        )
        .unwrap();
        assert_eq!(rest, "host=db password='a b\\'c' dbname=nadir");
        assert_eq!(ssl.mode.as_deref(), Some("verify-full"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/my certs/ca.pem"));
        let parsed: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"a b'c"[..]));
    }

    #[test]
    fn modes_other_than_the_four_are_refused_in_words() {
        let url = |mode: &str| format!("postgres://u:secret@db/nadir?sslmode={mode}");
        assert_eq!(
            PostgresUrl::parse("postgres://db/n").unwrap().ssl_mode,
            SslMode::Prefer
        );
        use tokio_postgres::config::SslMode as Tokio;
        for (mode, expected, tokio) in [
            ("disable", SslMode::Disable, Tokio::Disable),
            ("prefer", SslMode::Prefer, Tokio::Prefer),
            ("require", SslMode::Require, Tokio::Require),
            ("verify-full", SslMode::VerifyFull, Tokio::Require),
        ] {
            let parsed = PostgresUrl::parse(&url(mode)).unwrap();
            assert_eq!(parsed.ssl_mode, expected);
            assert_eq!(parsed.config.get_ssl_mode(), tokio, "{mode}");
        }
        let err = PostgresUrl::parse(&url("verify-ca")).unwrap_err();
        assert!(err.contains("verify-ca is not supported"), "{err}");
        let err = PostgresUrl::parse(&url("allow")).unwrap_err();
        assert!(err.contains("\"allow\" is not one of"), "{err}");
        // verify-full with the system's roots needs no file.
        let parsed = PostgresUrl::parse(&url("verify-full")).unwrap();
        assert!(parsed.root_cert.is_none());
        assert_eq!(parsed.peer(None), "PostgreSQL at db:5432");
        let err = PostgresUrl::parse("postgres://u:secret@db/n?sslrootcert=/nonexistent/ca.pem")
            .unwrap_err();
        assert!(
            err.starts_with("sslrootcert: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
        assert!(!err.contains("secret"));
        let err = PostgresUrl::parse("postgres://u:secret@db/n?sslcert=/c.pem").unwrap_err();
        assert!(err.contains("sslcert"), "{err}");
        assert!(!err.contains("secret"));
    }

    /// A CA certificate (its key thrown away), for the file checks.
    pub(crate) const SOME_CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBoDCCAUegAwIBAgIUPpvhAD/SL7L80pYJXbanv6wPXEYwCgYIKoZIzj0EAwIw\n\
HTEbMBkGA1UEAwwSbmFkaXIgdW5pdC10ZXN0IENBMCAXDTI2MTIwMjA0MDQ0MloY\n\
DzIxMjYxMTA4MDQwNDQyWjAdMRswGQYDVQQDDBJuYWRpciB1bml0LXRlc3QgQ0Ew\n\
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAToUl9uCvsVdOzIr6xMbgbdct9G4biG\n\
239+RN+BRNECA9uU8tNJGdElkJDua9Byk4LOYWgGJDQRfe2TWvG+sc1ko2MwYTAd\n\
BgNVHQ4EFgQUSzragkfTWGGgG9ZrGJOHsog4B4cwHwYDVR0jBBgwFoAUSzragkfT\n\
WGGgG9ZrGJOHsog4B4cwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAgQw\n\
CgYIKoZIzj0EAwIDRwAwRAIgFWBj9iryW/Pe/c+NlshXh5iBODry9VJdUKAeAnjx\n\
L64CIG0QDcGH5p8tQ185RxGi5bN0PB4rL4GR4yEbBuBfLGAr\n\
-----END CERTIFICATE-----\n\
";

    #[test]
    fn a_ca_file_is_read_with_its_certificates() {
        let dir = std::env::temp_dir().join(format!("nadir-tls-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, format!("{SOME_CA}{SOME_CA}")).unwrap();
        let ca = CaFile::read(&path).unwrap();
        assert_eq!(ca.certificates.len(), 2);
        assert_eq!(ca.roots().len(), 2);
        let url = format!(
            "postgres://db/n?sslmode=require&sslrootcert={}",
            path.display()
        );
        assert!(matches!(
            PostgresUrl::parse(&url).unwrap().root_cert,
            Some(RootCert::File(_))
        ));
        // Plaintext reads no CA file.
        assert!(
            PostgresUrl::parse("postgres://db/n?sslmode=disable&sslrootcert=/nonexistent")
                .unwrap()
                .root_cert
                .is_none()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("nadir-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = CaFile::read(&path).unwrap_err();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rejection_names_the_trust_and_the_names() {
        let err = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            describe_rejection(&err, "sslrootcert=/ca.pem"),
            "the server certificate is not trusted by sslrootcert=/ca.pem: no CA there signed it"
        );
        let err = rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").unwrap(),
            presented: vec![
                "DnsName(\"localhost\")".into(),
                "IpAddress(10.0.0.1)".into(),
            ],
        });
        let text = describe_rejection(&err, "x");
        assert!(
            text.contains("not valid for the host name 127.0.0.1 (it names localhost, 10.0.0.1)"),
            "{text}"
        );
    }
}
