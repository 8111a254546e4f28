//! Authentication and HTTPS on the real binary: the bearer token on every endpoint but the probes
//! (401 with a JSON reason, counted by reason), a rotated token file, `/metrics` open or not,
//! `check-config` refusing files that cannot be used, the real Prometheus 2.42 remote-writing over
//! HTTPS with `authorization: credentials_file` and `bearer_token_file` while the certificate is
//! rotated under it, and the KServe clients (tritonclient, the kserve SDK, curl) sending the header
//! over HTTPS to `canopy serve`. Certificates are made at test time (rcgen); no key is committed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Agent, Peer, free_port, python, wait_for};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

const TOKEN: &str = "first-token";

/// A test certificate authority.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1 signed by this CA, and its key (PEM).
    fn server_pair(&self) -> (String, String) {
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// The files an operator mounts: the token, the CA, the server certificate and key.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// The `[server]` keys for these files, as TOML.
    fn server_toml(&self, tls: bool) -> String {
        let mut toml = format!(
            "[server]\nbearer_token_file = '{}'\n",
            self.path("token").display()
        );
        if tls {
            toml.push_str(&format!(
                "tls_cert_file = '{}'\ntls_key_file = '{}'\n",
                self.path("tls.crt").display(),
                self.path("tls.key").display()
            ));
        }
        toml
    }
}

struct Answer {
    status: u16,
    challenge: String,
    connection: String,
    body: String,
}

impl Answer {
    /// The `error` of a JSON body.
    fn error(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        v["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// An HTTP or HTTPS client on one base URL, trusting only the given CA.
struct Client {
    agent: reqwest::blocking::Client,
    base: String,
}

impl Client {
    fn http(port: u16) -> Client {
        Client::new(format!("http://127.0.0.1:{port}"), None)
    }

    /// A new client, so a new connection and handshake: a pooled connection would keep the
    /// certificate it was opened with.
    fn https(port: u16, ca_pem: &str) -> Client {
        Client::new(format!("https://127.0.0.1:{port}"), Some(ca_pem))
    }

    fn new(base: String, ca_pem: Option<&str>) -> Client {
        let roots = match ca_pem {
            Some(pem) => {
                canopy::http::pem_roots(Path::new("the test CA"), pem.as_bytes()).expect("CA PEM")
            }
            None => rustls::RootCertStore::empty(),
        };
        let agent = canopy::http::client_builder(roots)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        Client { agent, base }
    }

    fn get(&self, path: &str, token: Option<&str>) -> reqwest::Result<Answer> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        answer(request.send()?)
    }

    fn post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> reqwest::Result<Answer> {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type)
            .body(body.to_vec());
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        answer(request.send()?)
    }
}

fn answer(r: reqwest::blocking::Response) -> reqwest::Result<Answer> {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (challenge, connection) = (header("WWW-Authenticate"), header("Connection"));
    Ok(Answer {
        status: r.status().as_u16(),
        challenge,
        connection,
        body: r.text()?,
    })
}

/// A remote-write 1.0 body of one sample of a series the default features read.
fn write_body() -> Vec<u8> {
    use canopy::ingest::proto::v1;
    use prost::Message;
    let req = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![v1::Label {
                name: "__name__".into(),
                value: "node_cpu_seconds_total".into(),
            }],
            samples: vec![v1::Sample {
                value: 1.0,
                timestamp: 1_700_000_000_000,
            }],
            ..Default::default()
        }],
        metadata: vec![],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

#[test]
fn the_bearer_token_guards_every_endpoint_but_the_probes_and_follows_its_file() {
    let files = Files::new();
    files.write("token", &format!("{TOKEN}\n"));
    let agent = Agent::start(&format!(
        "[source]\ndata_source = \"none\"\n{}",
        files.server_toml(false)
    ));
    let client = Client::http(agent.addr.port());
    let get = |path: &str, token: Option<&str>| client.get(path, token).expect(path);
    let predict = |path: &str, token: Option<&str>| {
        client
            .post(
                path,
                token,
                "application/json",
                b"{\"instances\": [[1, 2, 3, 4, 5]]}",
            )
            .expect(path)
    };
    let write = |token: Option<&str>| {
        client
            .post(
                "/api/v1/write",
                token,
                "application/x-protobuf",
                &write_body(),
            )
            .expect("remote write")
    };

    // the probes answer without a token (the models are not trained: readiness is 503, not 401)
    for (path, status) in [
        ("/-/healthy", 200),
        ("/-/ready", 200),
        ("/", 200),
        ("/v2/health/live", 200),
        ("/v2/health/ready", 503),
        ("/v2/models/anomaly-detector/ready", 503),
        ("/v1/models/anomaly-detector", 503),
    ] {
        assert_eq!(get(path, None).status, status, "{path}");
    }

    // everything else: 401 with a JSON reason and the challenge, without the token or with another
    let protected = [
        "/metrics",
        "/api/v1/features",
        "/api/v1/features/cpu",
        "/api/v1/series?match[]=up",
        "/v1/models",
        "/v2",
        "/v2/models/anomaly-detector",
        "/no/such/path",
    ];
    let mut missing = 0;
    let mut invalid = 0;
    for path in protected {
        let a = get(path, None);
        assert_eq!(a.status, 401, "{path}");
        assert_eq!(a.challenge, r#"Bearer realm="canopy""#, "{path}");
        assert!(
            a.error().contains("Authorization: Bearer"),
            "{path}: {}",
            a.body
        );
        let a = get(path, Some("not-the-token"));
        assert_eq!(a.status, 401, "{path}");
        assert!(
            a.challenge.contains("invalid_token"),
            "{path}: {}",
            a.challenge
        );
        assert!(
            a.error().contains("not the one configured"),
            "{path}: {}",
            a.body
        );
        missing += 1;
        invalid += 1;
    }
    for path in [
        "/v1/models/anomaly-detector:predict",
        "/v1/models/anomaly-detector:explain",
        "/v2/models/anomaly-detector/infer",
    ] {
        assert_eq!(predict(path, None).status, 401, "{path}");
        assert_eq!(predict(path, Some("x")).status, 401, "{path}");
        // with the token the request reaches the endpoint (the model is not trained yet)
        let a = predict(path, Some(TOKEN));
        assert!(
            a.status != 401 && !a.error().is_empty(),
            "{path}: {}",
            a.status
        );
        missing += 1;
        invalid += 1;
    }
    // a refused body is not read: the connection is closed rather than left to a race
    let a = write(None);
    assert_eq!((a.status, a.connection.as_str()), (401, "close"));
    assert_eq!(write(Some(&format!("{TOKEN}x"))).status, 401);
    assert_eq!(
        get("/api/v1/features", None).connection,
        "",
        "a GET keeps its connection"
    );
    missing += 2;
    invalid += 1;

    // with the token
    assert_eq!(write(Some(TOKEN)).status, 204);
    assert_eq!(get("/api/v1/features", Some(TOKEN)).status, 200);
    assert_eq!(get("/no/such/path", Some(TOKEN)).status, 404);
    let metrics = get("/metrics", Some(TOKEN));
    assert_eq!(metrics.status, 200);
    assert_eq!(
        common::metric_value(
            &metrics.body,
            r#"canopy_http_unauthorized_total{reason="missing"}"#
        ),
        Some(f64::from(missing)),
        "{}",
        metrics.body
    );
    assert_eq!(
        common::metric_value(
            &metrics.body,
            r#"canopy_http_unauthorized_total{reason="invalid"}"#
        ),
        Some(f64::from(invalid))
    );
    assert!(
        metrics
            .body
            .contains("# HELP canopy_http_unauthorized_total")
    );

    // rotation: the file is rewritten, the new token is accepted within seconds, the old refused
    files.write("token", "second-token\n");
    wait_for(
        Duration::from_secs(5),
        "the rotated token to be accepted",
        || (get("/api/v1/features", Some("second-token")).status == 200).then_some(()),
    );
    assert_eq!(get("/api/v1/features", Some(TOKEN)).status, 401);

    // a file that disappears keeps the last token, said once; a new file is read again
    std::fs::remove_file(files.path("token")).expect("remove token");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get("/api/v1/features", Some("second-token")).status, 200);
    assert_eq!(
        agent.logs().matches("cannot be re-read").count(),
        1,
        "{}",
        agent.logs()
    );
    files.write("token", "third-token");
    wait_for(Duration::from_secs(5), "the new file to be read", || {
        (get("/api/v1/features", Some("third-token")).status == 200).then_some(())
    });
    assert!(agent.logs().contains("readable again"), "{}", agent.logs());
}

#[test]
fn metrics_open_from_the_environment_leaves_only_metrics_and_the_probes_open() {
    let files = Files::new();
    let token = files.write("token", TOKEN);
    let agent = Agent::start_with(
        "[source]\ndata_source = \"none\"\n",
        &[
            (
                "CANOPY_SERVER__BEARER_TOKEN_FILE",
                &token.display().to_string(),
            ),
            ("CANOPY_SERVER__METRICS_OPEN", "true"),
        ],
    );
    let client = Client::http(agent.addr.port());
    let metrics = client.get("/metrics", None).expect("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("canopy_"), "{}", metrics.body);
    assert_eq!(client.get("/-/ready", None).expect("ready").status, 200);
    for path in ["/api/v1/features", "/v1/models"] {
        assert_eq!(client.get(path, None).expect(path).status, 401, "{path}");
        assert_eq!(
            client.get(path, Some(TOKEN)).expect(path).status,
            200,
            "{path}"
        );
    }
    assert!(
        agent
            .logs()
            .contains("bearer token required (not for the probes and /metrics)"),
        "{}",
        agent.logs()
    );
}

/// Runs `canopy check-config` on `toml`; returns (success, stdout + stderr).
fn check_config(files: &Files, toml: &str) -> (bool, String) {
    let path = files.write("canopy.toml", toml);
    let out = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .expect("run check-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_config_refuses_token_and_certificate_files_that_cannot_be_used() {
    let files = Files::new();
    let ca = Ca::new("canopy test CA");
    let (cert, key) = ca.server_pair();
    let (_, other_key) = ca.server_pair();
    files.write("tls.crt", &cert);
    files.write("tls.key", &key);

    // no token file
    let (ok, out) = check_config(&files, &files.server_toml(true));
    assert!(!ok, "{out}");
    assert!(
        out.contains("error: config key `server.bearer_token_file`: cannot read")
            && out.contains("token"),
        "{out}"
    );
    files.write("token", "\n");
    let (ok, out) = check_config(&files, &files.server_toml(true));
    assert!(!ok && out.contains("is empty"), "{out}");

    files.write("token", TOKEN);
    let (ok, out) = check_config(&files, &files.server_toml(true));
    assert!(ok, "{out}");
    assert!(
        out.contains("server: https, bearer token required (not for the probes)"),
        "{out}"
    );

    // a certificate without its key, a key that is not the certificate's, a file that is no PEM
    let (ok, out) = check_config(
        &files,
        &format!(
            "[server]\ntls_cert_file = '{}'\n",
            files.path("tls.crt").display()
        ),
    );
    assert!(
        !ok && out.contains("`server.tls_key_file`: is missing"),
        "{out}"
    );
    files.write("tls.key", &other_key);
    let (ok, out) = check_config(&files, &files.server_toml(true));
    assert!(
        !ok && out.contains("does not go with the certificate"),
        "{out}"
    );
    files.write("tls.key", &key);
    files.write("tls.crt", "not a certificate\n");
    let (ok, out) = check_config(&files, &files.server_toml(true));
    assert!(
        !ok && out.contains("`server.tls_cert_file`") && out.contains("no PEM certificate"),
        "{out}"
    );
}

#[test]
fn prometheus_remote_writes_over_https_with_its_token_while_the_certificate_rotates() {
    let files = Files::new();
    let ca = Ca::new("canopy test CA");
    let (cert, key) = ca.server_pair();
    files.write("ca.crt", &ca.pem);
    files.write("tls.crt", &cert);
    files.write("tls.key", &key);
    let token = files.write("token", &format!("{TOKEN}\n"));
    let agent = Agent::start(&format!(
        r#"
[source]
data_source = "none"
[features]
scrapes = 'sum(up)'
[models.m]
kind = "isolation_forest"
features = ["scrapes"]
{}"#,
        files.server_toml(true)
    ));
    let port = agent.addr.port();
    // plain HTTP is not answered on the HTTPS port
    assert!(Client::http(port).get("/-/healthy", None).is_err());

    // Prometheus scrapes itself and remote-writes to canopy twice: with `authorization`'s
    // credentials_file and with the older bearer_token_file, each labelled by the way it came.
    let prometheus_port = free_port();
    let write = |via: &str, auth: &str| {
        format!(
            "  - url: https://127.0.0.1:{port}/api/v1/write\n{auth}    tls_config:\n      ca_file: {ca}\n    write_relabel_configs:\n      - target_label: via\n        replacement: {via}\n    queue_config:\n      batch_send_deadline: 1s\n      max_samples_per_send: 500\n",
            ca = files.path("ca.crt").display()
        )
    };
    let yml = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{prometheus_port}']\nremote_write:\n{}{}",
        write(
            "credentials_file",
            &format!(
                "    authorization:\n      credentials_file: {}\n",
                token.display()
            )
        ),
        write(
            "bearer_token_file",
            &format!("    bearer_token_file: {}\n", token.display())
        ),
    );
    let prometheus = Peer::prometheus_with_config(prometheus_port, &yml, &[]);

    let client = Client::https(port, &ca.pem);
    wait_for(
        Duration::from_secs(60),
        "Prometheus's samples by both ways",
        || {
            let a = client.get("/api/v1/series?match[]=up", Some(TOKEN)).ok()?;
            assert_eq!(a.status, 200, "{}", a.body);
            (a.body.contains(r#""via":"credentials_file""#)
                && a.body.contains(r#""via":"bearer_token_file""#))
            .then_some(())
        },
    );
    let prometheus_metrics = common::http()
        .get(prometheus.url("/metrics"))
        .send()
        .expect("prometheus /metrics")
        .text()
        .expect("text");
    let failed: f64 = prometheus_metrics
        .lines()
        .filter(|l| l.starts_with("prometheus_remote_storage_samples_failed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(failed, 0.0, "Prometheus failed to send samples to canopy");
    let a = client.get("/metrics", None).expect("/metrics");
    assert_eq!(a.status, 401, "over HTTPS too");

    // rotation by another CA: a certificate whose key is not there yet is refused and the old
    // pair keeps serving; once the key follows, new connections get the new certificate
    let next_ca = Ca::new("canopy next test CA");
    let (next_cert, next_key) = next_ca.server_pair();
    files.write("tls.crt", &next_cert);
    wait_for(
        Duration::from_secs(5),
        "the mismatched pair to be refused",
        || agent.logs().contains("do not load").then_some(()),
    );
    let a = Client::https(port, &ca.pem)
        .get("/-/healthy", None)
        .expect("the old certificate still serves");
    assert_eq!(a.status, 200);
    files.write("tls.key", &next_key);
    wait_for(
        Duration::from_secs(5),
        "the new certificate to be served",
        || {
            Client::https(port, &next_ca.pem)
                .get("/-/healthy", None)
                .ok()
                .filter(|a| a.status == 200)
        },
    );
    assert!(
        Client::https(port, &ca.pem)
            .get("/-/healthy", None)
            .is_err(),
        "the old certificate is no longer served"
    );
    assert!(
        agent.logs().contains("the new certificate is in use"),
        "{}",
        agent.logs()
    );
}

/// `canopy serve` killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const DETECTOR_CONFIG: &str = r#"
[models.anomaly-detector]
kind = "isolation_forest"
features = ["cpu", "memory", "restarts", "net_rx", "net_tx"]
step = "1m"
training_days = 2
"#;

fn train_detector(dir: &Path, files: &Files) {
    let config = files.write("train.toml", DETECTOR_CONFIG);
    let out = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["train", "--model", "anomaly-detector", "--config"])
        .arg(config)
        .arg("--out")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run canopy train");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kserve_clients_send_the_token_over_https_to_canopy_serve() {
    let files = Files::new();
    let ca = Ca::new("canopy test CA");
    let (cert, key) = ca.server_pair();
    let ca_file = files.write("ca.crt", &ca.pem);
    let cert_file = files.write("tls.crt", &cert);
    let key_file = files.write("tls.key", &key);
    let token_file = files.write("token", &format!("{TOKEN}\n"));
    let models = files.path("models");
    train_detector(&models, &files);

    let port = free_port();
    let serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_canopy"))
            .arg("serve")
            .arg("--model_dir")
            .arg(&models)
            .arg("--http_port")
            .arg(port.to_string())
            .env_remove("PORT")
            .env("CANOPY_SERVER__BEARER_TOKEN_FILE", &token_file)
            .env("CANOPY_SERVER__TLS_CERT_FILE", &cert_file)
            .env("CANOPY_SERVER__TLS_KEY_FILE", &key_file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn canopy serve"),
    );
    let client = Client::https(port, &ca.pem);
    wait_for(Duration::from_secs(30), "canopy serve to be ready", || {
        client
            .get("/v2/health/ready", None)
            .ok()
            .filter(|a| a.status == 200)
    });
    assert_eq!(client.get("/metrics", None).expect("/metrics").status, 401);
    assert_eq!(
        client
            .get("/metrics", Some(TOKEN))
            .expect("/metrics")
            .status,
        200
    );

    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/auth_clients.py"))
        .arg(format!("127.0.0.1:{port}"))
        .arg(&ca_file)
        .arg(TOKEN)
        .output()
        .expect("run auth_clients.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "auth_clients.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "ok triton health without the token",
        "ok triton infer with the token",
        "ok kserve v1 with the token",
        "ok kserve v2 with the token",
        "ok curl with the token",
    ] {
        assert!(
            stdout.lines().any(|l| l == check),
            "{check} missing:\n{stdout}"
        );
    }
    drop(serve);
}
