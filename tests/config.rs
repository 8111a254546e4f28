//! The configuration and command line on the real binary: `--listen :PORT` listens on every
//! interface, and configuration errors are printed once each, TOML syntax errors with the file,
//! line, column and the line itself, and a `[models]` or `[features]` table that replaced the
//! default's with a hint saying what it lacks.

mod common;

use std::process::Command;

use common::{Agent, http};

/// Runs `canopy check-config --config FILE` on `toml`; returns (success, stderr).
fn check_config(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("canopy.toml");
    std::fs::write(&path, toml).expect("write");
    check_config_file(&path)
}

fn check_config_file(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["check-config", "--config"])
        .arg(path)
        // what a developer's shell often has: no backtrace may reach the person at the terminal
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run check-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn listen_colon_port_listens_on_every_interface() {
    let agent = Agent::start_listening("[source]\ndata_source = \"none\"\n", ":0");
    assert!(
        agent.addr.ip().is_unspecified() && agent.addr.is_ipv4(),
        "`:0` is 0.0.0.0:0, the agent says it listens on {}",
        agent.addr
    );
    assert_ne!(agent.addr.port(), 0);
    let status = http()
        .get(agent.url("/-/healthy"))
        .send()
        .expect("GET /-/healthy over loopback")
        .status();
    assert_eq!(status, 200);

    // a malformed address is refused by the command line, saying what it accepts
    let out = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["run", "--listen", "8080"])
        .output()
        .expect("run canopy");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--listen") && err.contains(":8080"), "{err}");
}

#[test]
fn each_config_error_is_printed_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("absent.toml");
    let (ok, err) = check_config_file(&missing);
    assert!(!ok);
    assert!(err.starts_with("error: cannot read config file "), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    assert!(!err.to_lowercase().contains("caused by"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // a feature the planner refuses: the reason once, not again under `Caused by:`
    let (ok, err) = check_config(
        "[features]\nf = 'x @ start()'\n[models.m]\nkind = \"isolation_forest\"\nfeatures = [\"f\"]\n",
    );
    assert!(!ok);
    assert_eq!(err.matches("unsupported \"@ start()\"").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_toml_syntax_error_shows_file_line_column_and_the_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("canopy.toml");
    std::fs::write(
        &path,
        "[limits]\nmax_series = 10\n[evaluation\nstep = \"1m\"\n",
    )
    .expect("write");
    let (ok, err) = check_config_file(&path);
    assert!(!ok);
    let file = path.display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[0].starts_with(&format!("error: {file} is not valid TOML: ")),
        "{err}"
    );
    assert_eq!(lines[1], format!(" --> {file}:3:12"), "{err}");
    assert_eq!(lines[3], "3 | [evaluation", "{err}");
    assert!(lines[4].ends_with('^'), "the place is marked: {err}");
}

#[test]
fn a_replaced_models_table_says_each_model_needs_its_kind() {
    // the user meant to change one key of the default detector
    let (ok, err) = check_config("[models.anomaly-detector]\ncontamination = 0.01\n");
    assert!(!ok);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0], "error: config key `models.anomaly-detector`: missing field `kind`",
        "{err}"
    );
    assert!(
        lines[1].starts_with("hint: ")
            && lines[1].contains("[models] table, which replaces the default's whole")
            && lines[1].contains("`anomaly-detector` has no `kind`"),
        "{err}"
    );
    assert_eq!(lines.len(), 2, "{err}");

    let (ok, err) = check_config("[features]\ncpu = 'avg(x)'\n");
    assert!(!ok);
    assert!(
        err.contains("`memory` is not defined in [features]")
            && err.contains("hint: ")
            && err.contains("[features] table, which replaces the default's whole"),
        "{err}"
    );
}
