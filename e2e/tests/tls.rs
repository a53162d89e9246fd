//! TLS and credentials against real servers: the PostgreSQL that
//! `scripts/test` starts (it offers TLS with a certificate for `localhost`
//! signed by a CA it makes, `NADIR_TEST_PG_CA`), a private `nats-server`
//! started here with TLS and a token, and `openssl s_server` standing in
//! for an https S3 endpoint. Every connection goes through what the
//! workers use (`nadir_db::pool`, `nadir_db::connect`, `Bus::connect`,
//! `ObjectStore::new`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nadir_bus::Bus;
use nadir_config::{Env as _, NatsSettings};
use nadir_db::DbError;

fn required(var: &str) -> String {
    nadir_config::ProcessEnv.get(var).unwrap_or_else(|| {
        panic!(
            "{var} is not set: the TLS tests need the services (and the certificates) that \
             scripts/test starts through scripts/lib/services.sh; run them with scripts/test"
        )
    })
}

/// The test CA, the CA that signed nothing, and the admin URL's parts.
struct Postgres {
    ca: PathBuf,
    other_ca: PathBuf,
    /// `postgres://user:password@`
    credentials: String,
    password: String,
    port: u16,
    /// `/nadir`
    path: String,
}

impl Postgres {
    fn from_env() -> Postgres {
        let ca = PathBuf::from(required("NADIR_TEST_PG_CA"));
        assert!(
            ca.exists(),
            "NADIR_TEST_PG_CA={} does not exist: start fresh services (scripts/test makes the certificates)",
            ca.display()
        );
        let other_ca = ca.with_file_name("other-ca.pem");
        let admin = required("NADIR_TEST_ADMIN_URL");
        let admin = admin.split('?').next().unwrap();
        let at = admin
            .rfind('@')
            .expect("NADIR_TEST_ADMIN_URL has user:password@");
        let credentials = admin[..=at].to_string();
        let password = credentials
            .trim_start_matches("postgres://")
            .trim_end_matches('@')
            .split_once(':')
            .map(|(_, p)| p.to_string())
            .expect("NADIR_TEST_ADMIN_URL has a password");
        let rest = &admin[at + 1..];
        let (host_port, path) = rest.split_at(rest.find('/').expect("a database name"));
        let port = host_port.rsplit(':').next().unwrap().parse().unwrap();
        Postgres {
            ca,
            other_ca,
            credentials,
            password,
            port,
            path: path.to_string(),
        }
    }

    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "{}{host}:{}{}?{query}",
            self.credentials, self.port, self.path
        )
    }
}

const ENCRYPTED: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// Whether a pooled connection to `url` is encrypted, or the error in words.
async fn pooled_ssl(url: &str) -> Result<bool, String> {
    let pool = nadir_db::pool(url, 1).map_err(|e| e.detail())?;
    let client = pool.get().await.map_err(|e| DbError::from(e).detail())?;
    let row = client
        .query_one(ENCRYPTED, &[])
        .await
        .map_err(|e| DbError::from(e).detail())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn postgres_over_tls_is_encrypted_and_verified_as_libpq_does() {
    let pg = Postgres::from_env();
    let ca = pg.ca.display().to_string();
    let other = pg.other_ca.display().to_string();

    // verify-full: the chain against the test CA, the name `localhost`.
    let verified = pg.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    assert_eq!(pooled_ssl(&verified).await, Ok(true));
    let client = nadir_db::connect(&verified).await.expect("one connection");
    assert!(
        client
            .query_one(ENCRYPTED, &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
    );

    // require: encrypted, nothing checked; with sslrootcert the chain is
    // checked but not the name (so 127.0.0.1 passes).
    assert_eq!(
        pooled_ssl(&pg.url("127.0.0.1", "sslmode=require")).await,
        Ok(true)
    );
    let chain_only = pg.url("127.0.0.1", &format!("sslmode=require&sslrootcert={ca}"));
    assert_eq!(pooled_ssl(&chain_only).await, Ok(true));

    // libpq's default, prefer: TLS because the server offers it.
    assert_eq!(pooled_ssl(&pg.url("127.0.0.1", "")).await, Ok(true));

    // Plaintext, as the demo and the other tests connect.
    assert_eq!(
        pooled_ssl(&pg.url("127.0.0.1", "sslmode=disable")).await,
        Ok(false)
    );

    // verify-full by an address the certificate does not name.
    let by_ip = pg.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let err = pooled_ssl(&by_ip).await.unwrap_err();
    let peer = format!("PostgreSQL at 127.0.0.1:{}", pg.port);
    assert!(err.starts_with(&peer), "{err}");
    assert!(
        err.contains("not valid for the host name 127.0.0.1 (it names localhost)"),
        "{err}"
    );
    assert!(!err.contains(&pg.password), "{err}");

    // A CA that did not sign the server's certificate, with verify-full
    // and with require.
    for mode in ["verify-full", "require"] {
        let wrong = pg.url("localhost", &format!("sslmode={mode}&sslrootcert={other}"));
        let err = pooled_ssl(&wrong).await.unwrap_err();
        assert!(
            err.starts_with(&format!("PostgreSQL at localhost:{}", pg.port)),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "the server certificate is not trusted by sslrootcert={other}"
            )),
            "{err}"
        );
        assert!(!err.contains(&pg.password), "{err}");
        let err = nadir_db::connect(&wrong).await.unwrap_err().detail();
        assert!(err.contains("is not trusted by sslrootcert="), "{err}");
    }

    // verify-full without sslrootcert: the system's roots, which do not
    // know the test CA.
    let err = pooled_ssl(&pg.url("localhost", "sslmode=verify-full"))
        .await
        .unwrap_err();
    assert!(
        err.contains("not trusted by the system's root certificates")
            && err.contains("set sslrootcert="),
        "{err}"
    );

    // Modes libpq has and nadir does not, refused before any connection.
    let err = nadir_db::pool(&pg.url("localhost", "sslmode=verify-ca"), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("NADIR_DATABASE_URL="), "{err}");
    assert!(err.contains("sslmode=verify-ca is not supported"), "{err}");
    assert!(!err.contains(&pg.password), "{err}");
}

/// A private nats-server, killed when dropped.
struct NatsServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_server_binary() -> PathBuf {
    // Where scripts/lib/services.sh finds it (nadir_nats_bin).
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file());
    let binary = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"));
    assert!(
        binary.is_file(),
        "nats-server is not installed: scripts/test installs it (nadir_install)"
    );
    binary
}

fn start_nats(tls_dir: &Path, token: &str) -> NatsServer {
    let port = nadir_e2e::free_port();
    let logs = std::env::temp_dir().join("nadir-e2e").join("tls");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join(format!("nats-{port}.log"));
    let child = Command::new(nats_server_binary())
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--tls",
            "--tlscert",
        ])
        .arg(tls_dir.join("server.pem"))
        .arg("--tlskey")
        .arg(tls_dir.join("server.key"))
        .args(["--auth", token])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .expect("starting nats-server");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not listen on 127.0.0.1:{port}; log: {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    NatsServer { child, port, log }
}

fn nats(pairs: &[(&str, String)]) -> NatsSettings {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    NatsSettings::from(&env).expect("NATS settings")
}

async fn refused(settings: &NatsSettings) -> String {
    match tokio::time::timeout(
        Duration::from_secs(20),
        Bus::connect(settings, "nadir-e2e-tls"),
    )
    .await
    .expect("a refusal is reported at once, not retried for ever")
    {
        Ok(_) => panic!("connected with {settings:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn nats_over_tls_with_a_token() {
    let tls_dir = PathBuf::from(required("NADIR_TEST_TLS_DIR"));
    let token = uuid::Uuid::new_v4().simple().to_string();
    let server = start_nats(&tls_dir, &token);
    let ca = tls_dir.join("ca.pem").display().to_string();
    let other = tls_dir.join("other-ca.pem").display().to_string();
    let port = server.port;

    // tls:// with the CA and the token: a message goes round.
    let good = nats(&[
        ("NADIR_NATS_URL", format!("tls://localhost:{port}")),
        ("NADIR_NATS_TOKEN", token.clone()),
        ("NADIR_NATS_CA_FILE", ca.clone()),
    ]);
    let bus = Bus::connect(&good, "nadir-e2e-tls")
        .await
        .unwrap_or_else(|e| panic!("{e}; server log: {}", server.log.display()));
    let mut inbox = bus.client.subscribe("nadir.tls.check").await.unwrap();
    bus.client
        .publish("nadir.tls.check", "over TLS".into())
        .await
        .unwrap();
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut inbox),
    )
    .await
    .expect("the message came back")
    .unwrap();
    assert_eq!(&got.payload[..], b"over TLS");
    assert!(bus.is_connected());

    // nats:// with a CA file: TLS is required all the same.
    let plain_url = nats(&[
        ("NADIR_NATS_URL", format!("nats://localhost:{port}")),
        ("NADIR_NATS_TOKEN", token.clone()),
        ("NADIR_NATS_CA_FILE", ca.clone()),
    ]);
    Bus::connect(&plain_url, "nadir-e2e-tls")
        .await
        .expect("nats:// with NADIR_NATS_CA_FILE");

    // A wrong token, and none.
    let wrong_token = format!("{token}x");
    let err = refused(&nats(&[
        ("NADIR_NATS_URL", format!("tls://localhost:{port}")),
        ("NADIR_NATS_TOKEN", wrong_token.clone()),
        ("NADIR_NATS_CA_FILE", ca.clone()),
    ]))
    .await;
    assert!(
        err.contains(&format!(
            "connect to tls://localhost:{port}: the server refused the credentials of NADIR_NATS_TOKEN"
        )),
        "{err}"
    );
    assert!(
        !err.contains(&wrong_token) && !err.contains(&token),
        "{err}"
    );
    let err = refused(&nats(&[
        ("NADIR_NATS_URL", format!("tls://localhost:{port}")),
        ("NADIR_NATS_CA_FILE", ca.clone()),
    ]))
    .await;
    assert!(
        err.contains("asks for credentials and none are set"),
        "{err}"
    );

    // A CA that did not sign the server's certificate; a name it does not hold.
    let err = refused(&nats(&[
        ("NADIR_NATS_URL", format!("tls://localhost:{port}")),
        ("NADIR_NATS_TOKEN", token.clone()),
        ("NADIR_NATS_CA_FILE", other.clone()),
    ]))
    .await;
    assert!(
        err.contains(&format!(
            "the server certificate is not trusted by NADIR_NATS_CA_FILE={other}"
        )),
        "{err}"
    );
    let err = refused(&nats(&[
        ("NADIR_NATS_URL", format!("tls://127.0.0.1:{port}")),
        ("NADIR_NATS_TOKEN", token.clone()),
        ("NADIR_NATS_CA_FILE", ca.clone()),
    ]))
    .await;
    assert!(
        err.contains("not valid for the host name 127.0.0.1 (it names localhost)"),
        "{err}"
    );
    // A server that is not there is not a refusal: the client waits for it.
    let nobody = nats(&[
        (
            "NADIR_NATS_URL",
            format!("tls://localhost:{}", nadir_e2e::free_port()),
        ),
        ("NADIR_NATS_TOKEN", token.clone()),
        ("NADIR_NATS_CA_FILE", ca.clone()),
    ]);
    let waiting = tokio::time::timeout(
        Duration::from_secs(20),
        Bus::connect(&nobody, "nadir-e2e-tls"),
    )
    .await
    .expect("connect returns while the server is away")
    .expect("an absent server is waited for, not an error");
    assert!(!waiting.is_connected());

    // Without the CA file, the system's roots do not know the test CA.
    let err = refused(&nats(&[
        ("NADIR_NATS_URL", format!("tls://localhost:{port}")),
        ("NADIR_NATS_TOKEN", token.clone()),
    ]))
    .await;
    assert!(
        err.contains("not trusted by the system's root certificates"),
        "{err}"
    );
}

/// `openssl s_server` answering HTTPS with the test certificate: enough
/// to see whose CA the S3 client trusts (it is no S3 server).
struct HttpsServer {
    child: Child,
    port: u16,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_https(tls_dir: &Path) -> HttpsServer {
    let port = nadir_e2e::free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(tls_dir.join("server.pem"))
        .arg("-key")
        .arg(tls_dir.join("server.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is not installed: scripts/test installs it (nadir_install)");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    HttpsServer { child, port }
}

async fn s3_error(endpoint: &str, ca_file: Option<&Path>) -> String {
    let mut env: HashMap<String, String> = [
        ("NADIR_NATS_URL", "nats://127.0.0.1:1"),
        ("NADIR_DATABASE_URL", "postgres://nadir@127.0.0.1:1/nadir"),
        ("NADIR_S3_ENDPOINT", endpoint),
        ("NADIR_S3_ACCESS_KEY", "ak"),
        ("NADIR_S3_SECRET_KEY", "sk"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(ca) = ca_file {
        env.insert("NADIR_S3_CA_FILE".into(), ca.display().to_string());
    }
    let config = nadir_config::Config::from(&env).expect("settings");
    let store = nadir_store::ObjectStore::new(&config.s3);
    // A GET (s_server -www answers those with a status page).
    let listed = tokio::time::timeout(Duration::from_secs(60), store.list("tls-check", ""))
        .await
        .expect("an answer or an error within a minute");
    match listed {
        Ok(objects) => panic!("openssl s_server is no S3 server, yet: {objects:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn s3_over_https_trusts_the_ca_file_alone() {
    let tls_dir = PathBuf::from(required("NADIR_TEST_TLS_DIR"));
    let server = start_https(&tls_dir);
    let endpoint = format!("https://localhost:{}", server.port);

    // The system's roots do not know the test CA: the handshake fails.
    let err = s3_error(&endpoint, None).await;
    assert!(err.contains("UnknownIssuer"), "{err}");
    // With NADIR_S3_CA_FILE the handshake succeeds and the request gets an
    // HTTP answer (not an S3 one, which is all this server can give).
    let err = s3_error(&endpoint, Some(&tls_dir.join("ca.pem"))).await;
    assert!(
        err.contains("service error") && !err.contains("UnknownIssuer"),
        "{err}"
    );
    // Another CA alone: refused again, the system's roots not consulted.
    let err = s3_error(&endpoint, Some(&tls_dir.join("other-ca.pem"))).await;
    assert!(err.contains("UnknownIssuer"), "{err}");
}
