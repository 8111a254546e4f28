//! Shared test harness: starts the real `canopy` binary and real peers (Prometheus,
//! node-exporter) on loopback, and stops them when dropped.
#![allow(dead_code)] // each test file uses its own part of the harness

pub mod models;
mod python;
pub mod replay;

#[allow(unused_imports)] // the tests that start no Python peer do not use it
pub use python::python;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running canopy agent.
pub struct Agent {
    pub addr: SocketAddr,
    child: Child,
    logs: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `canopy run` with `config` (TOML over the embedded default) on a free loopback port.
    pub fn start(config: &str) -> Agent {
        Agent::start_with(config, &[])
    }

    pub fn start_with(config: &str, env: &[(&str, &str)]) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let models = dir.path().join("models");
        Agent::start_in(config, &models, env, dir, "127.0.0.1:0")
    }

    /// Starts `canopy run` with its checkpoints in `model_dir` (which outlives the agent, so a
    /// restarted agent finds them).
    pub fn start_with_models(config: &str, model_dir: &Path) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        Agent::start_in(config, model_dir, &[], dir, "127.0.0.1:0")
    }

    /// As [`Agent::start_with_models`], with extra environment variables.
    pub fn start_with_models_env(config: &str, model_dir: &Path, env: &[(&str, &str)]) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        Agent::start_in(config, model_dir, env, dir, "127.0.0.1:0")
    }

    /// Starts `canopy run --listen LISTEN`; [`Agent::addr`] is the address the agent logs, and
    /// [`Agent::url`] reaches an unspecified one (`0.0.0.0`) over loopback.
    pub fn start_listening(config: &str, listen: &str) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let models = dir.path().join("models");
        Agent::start_in(config, &models, &[], dir, listen)
    }

    fn start_in(
        config: &str,
        model_dir: &Path,
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
        listen: &str,
    ) -> Agent {
        let config_path = dir.path().join("canopy.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_canopy"));
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--listen")
            .arg(listen)
            .arg("--model-dir")
            .arg(model_dir)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env_remove("PORT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn canopy");
        let stderr = child.stderr.take().expect("stderr piped");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("canopy listening")
                    && let Some(addr) = json_field(&line, "addr")
                {
                    let _ = tx.send(addr);
                }
                let mut l = sink.lock().expect("log lock");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "canopy did not start listening; logs:\n{}",
                    logs.lock().expect("log lock")
                );
            }
        };
        Agent {
            addr,
            child,
            logs,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}{path}")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The agent's `/metrics` text.
    pub fn scrape(&self) -> String {
        http()
            .get(self.url("/metrics"))
            .send()
            .expect("GET /metrics")
            .text()
            .expect("text")
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").clone()
    }

    /// The value of one sample line of `/metrics` (name with its exact label text); `None` when
    /// the series is not exported, so a misspelt name fails the test rather than reading 0.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let body = http()
            .get(self.url("/metrics"))
            .send()
            .expect("GET /metrics")
            .text()
            .expect("text");
        metric_value(&body, series)
    }

    /// SIGKILL: the process dies at once, wherever it is.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_field(line: &str, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("fields")?.get(key)?.as_str().map(str::to_owned)
}

/// Finds `series` (e.g. `canopy_active_series` or `x_total{code="204"}`) in a text exposition.
pub fn metric_value(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A remote-write 1.0 body of `timeseries`, as senders send it: protobuf, then snappy.
pub fn write_request_v1(timeseries: Vec<canopy::ingest::proto::v1::TimeSeries>) -> Vec<u8> {
    use prost::Message;
    let raw = canopy::ingest::proto::v1::WriteRequest {
        timeseries,
        metadata: vec![],
    }
    .encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy")
}

/// Remote-writes `(metric name, timestamp ms, value)` samples as Prometheus sends them, one
/// sample per TimeSeries, and checks the agent accepted them all (204).
pub fn remote_write(agent: &Agent, samples: &[(&str, i64, f64)]) {
    use canopy::ingest::proto::v1;
    let timeseries = samples
        .iter()
        .map(|&(name, timestamp, value)| v1::TimeSeries {
            labels: vec![v1::Label {
                name: "__name__".into(),
                value: name.into(),
            }],
            samples: vec![v1::Sample { value, timestamp }],
            ..Default::default()
        })
        .collect();
    post_series(agent, timeseries);
}

/// Remote-writes `timeseries` (1.0) and checks the agent accepted them all (204).
pub fn post_series(agent: &Agent, timeseries: Vec<canopy::ingest::proto::v1::TimeSeries>) {
    let r = http()
        .post(agent.url("/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .body(write_request_v1(timeseries))
        .send()
        .expect("remote write");
    assert_eq!(r.status(), 204, "remote write refused");
}

pub fn http() -> reqwest::blocking::Client {
    canopy::http::client_builder(canopy::http::mozilla_roots())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A real peer process (Prometheus, node-exporter), killed on drop.
pub struct Peer {
    pub port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(binary: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(binary);
        if p.is_file() {
            return p;
        }
    }
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(binary);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{binary} is not installed: .ci/run installs it (apt-get install prometheus prometheus-node-exporter)"
    );
}

impl Peer {
    /// Starts Debian's Prometheus with `scrape_configs` (YAML, indented as a list under
    /// `scrape_configs:`) and a remote_write to `write_url`.
    pub fn prometheus(scrape_configs: &str, write_url: Option<&str>) -> Peer {
        Peer::prometheus_on(free_port(), scrape_configs, write_url)
    }

    /// As [`Peer::prometheus`], on a port chosen beforehand (so it can scrape itself).
    pub fn prometheus_on(port: u16, scrape_configs: &str, write_url: Option<&str>) -> Peer {
        let mut yml = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}\n"
        );
        if let Some(url) = write_url {
            yml.push_str(&format!(
                "remote_write:\n  - url: {url}\n    queue_config:\n      batch_send_deadline: 1s\n      max_samples_per_send: 500\n    metadata_config:\n      send_interval: 5s\n"
            ));
        }
        Peer::prometheus_with_config(port, &yml, &[])
    }

    /// Starts Debian's Prometheus with a whole configuration file, and `files` (name, text) written
    /// beside it (rule files the configuration names).
    pub fn prometheus_with_config(port: u16, yml: &str, files: &[(&str, &str)]) -> Peer {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write file beside prometheus.yml");
        }
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, yml).expect("write prometheus.yml");
        let child = Command::new(which("prometheus"))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        let peer = Peer { port, child, dir };
        wait_for(Duration::from_secs(30), "prometheus to be ready", || {
            http()
                .get(format!("http://127.0.0.1:{port}/-/ready"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        });
        peer
    }

    /// Starts Debian's node-exporter on a free loopback port.
    pub fn node_exporter() -> Peer {
        Peer::node_exporter_with(&[])
    }

    /// Starts Debian's node-exporter on a free loopback port with extra flags; `{dir}` in a flag
    /// stands for the peer's own temporary folder (e.g. a textfile collector's directory).
    pub fn node_exporter_with(flags: &[&str]) -> Peer {
        Peer::node_exporter_on_with(free_port(), flags)
    }

    /// As [`Peer::node_exporter`], on a given port (to restart one where Prometheus scrapes it).
    pub fn node_exporter_on(port: u16) -> Peer {
        Peer::node_exporter_on_with(port, &[])
    }

    fn node_exporter_on_with(port: u16, flags: &[&str]) -> Peer {
        let dir = tempfile::tempdir().expect("temp dir");
        let folder = dir.path().display().to_string();
        let child = Command::new(which("prometheus-node-exporter"))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags.iter().map(|f| f.replace("{dir}", &folder)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node-exporter");
        let peer = Peer { port, child, dir };
        wait_for(
            Duration::from_secs(30),
            "node-exporter to serve metrics",
            || {
                http()
                    .get(format!("http://127.0.0.1:{port}/metrics"))
                    .send()
                    .ok()
                    .filter(|r| r.status().is_success())
            },
        );
        peer
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Sends SIGTERM and waits for the process to exit (Prometheus flushes its remote-write
    /// queues on the way out); returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// An instant query's single value (`None` when the result is empty).
    pub fn query_scalar(&self, promql: &str) -> Option<f64> {
        let v: serde_json::Value = http()
            .get(self.url("/api/v1/query"))
            .query(&[("query", promql)])
            .send()
            .ok()?
            .json()
            .ok()?;
        v["data"]["result"].get(0)?["value"][1]
            .as_str()?
            .parse()
            .ok()
    }
}
