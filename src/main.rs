//! canopy's command line. Parses arguments, loads the configuration, sets up logging and hands
//! over to the library; nothing else lives here.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use canopy::config::{Config, ServerConfig};

#[derive(Parser)]
#[command(
    name = "canopy",
    version,
    about = "Streaming anomaly agent for Kubernetes metrics"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default command).
    Run(RunArgs),
    /// Validate a configuration (the embedded default when no file is given) and print it.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Fit a model on one CSV and score every row of another (a plain batch fit).
    Score {
        /// The model to fit, by its name in the config's [models].
        #[arg(long)]
        model: String,
        /// The CSV to fit on: timestamp, then one column per feature.
        #[arg(long)]
        fit: PathBuf,
        /// The CSV to score, in the same format.
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write the output CSV (stdout when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Stream a CSV through ingest, features and the detector in event time, as live data would go.
    Replay {
        /// The CSV to replay: timestamp, then one column per series. Repeat it, or name a folder
        /// (every `.csv` in it and below), to replay several files.
        #[arg(long, required = true)]
        input: Vec<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// NAB's windows.json: print windows detected and false positives to stderr.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Where to write the output CSV (stdout when absent); with several inputs, a folder to
        /// write one CSV per input into, named after it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also draw the replay as one self-contained HTML page: series, features, scores,
        /// alerts, labelled windows and forecasts on one time axis per file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// The forecast the report draws, in steps ahead (the forecaster's horizon when absent).
        #[arg(long, requires = "report")]
        report_horizon: Option<usize>,
    },
    /// Serve checkpoints read-only on the KServe endpoints, as a KServe custom runtime.
    Serve {
        /// The name to serve a single model file under (KServe passes the InferenceService's).
        #[arg(long = "model_name", alias = "model-name")]
        model_name: Option<String>,
        /// A model file directly in it, or one subfolder per model.
        #[arg(long = "model_dir", alias = "model-dir", default_value = "/mnt/models")]
        model_dir: PathBuf,
        /// The port (stronger than PORT; 8080 when neither is given).
        #[arg(long = "http_port", alias = "http-port")]
        http_port: Option<u16>,
    },
    /// Train one model from the configured data source and write its checkpoint to OUT/MODEL/model.ckpt.
    Train {
        #[arg(long)]
        model: String,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args, Default)]
struct RunArgs {
    /// A TOML file overriding the embedded default configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The address to listen on, e.g. 0.0.0.0:8080 or :8080 (stronger than PORT and the config's
    /// `listen`).
    #[arg(long, value_parser = canopy::config::parse_listen)]
    listen: Option<SocketAddr>,
    /// Where checkpoints live (overrides the config's `model_dir`).
    #[arg(long = "model-dir", alias = "model_dir")]
    model_dir: Option<PathBuf>,
}

/// Logs to stderr at `RUST_LOG`, else `default` (the agent says `info`; the file commands say only
/// `warn`, since their output is the CSV and a retrain per interval would drown the summary).
fn init_logging(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The listening address, strongest first: `--listen`, then `PORT`, then the config's `listen`.
fn listen_addr(flag: Option<SocketAddr>, config: &Config) -> Result<SocketAddr> {
    if let Some(addr) = flag {
        return Ok(addr);
    }
    if let Ok(port) = std::env::var("PORT") {
        let port: u16 = port
            .trim()
            .parse()
            .with_context(|| format!("PORT={port:?} is not a port number"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    Ok(config.listen)
}

/// Runs the command; an error is printed once as `error: …` (no backtrace: it is for the person
/// at the terminal) and exits 1.
fn main() -> ExitCode {
    return_large_buffers_to_the_system();
    match command(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// Makes glibc's malloc serve every buffer of 1 MiB or more (remote-write bodies, their decoded
/// form, training sets) with its own mapping, returned to the system when freed. By default the
/// threshold rises to 32 MiB after the first large free, so later bodies come from per-thread
/// arenas that keep their pages: with a few worker threads each keeping a freed 27 MiB body and
/// its decoding, resident memory grew past the in-flight budget it was meant to stay within.
///
/// Below that size, an arena keeps up to as much free memory at its top before it gives pages
/// back. Fixing the mmap threshold also fixes the trim threshold at its 128 KiB default, under
/// the few hundred KiB a request decodes into: every request's buffers were then given back on
/// free (`madvise`, a TLB shootdown) and faulted in again by the next, a tenth of the receiver's
/// CPU under load. An arena now keeps less than 1 MiB it does not use.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets tuning parameters of the allocator; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}

/// The error and its causes, each said once: canopy's errors mostly put their source into their
/// own message already (`cannot read config file X: No such file…`), so a cause whose text the
/// report already holds is left out rather than repeated under `caused by:`.
fn report(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str("\ncaused by: ");
            text.push_str(&cause);
        }
    }
    text
}

fn command(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::CheckConfig { config }) => {
            let c = Config::load(config.as_deref())?;
            let pipeline = canopy::pipeline::Pipeline::new(&c)?;
            let security = canopy::serve::Security::load(&c.server)?;
            for warning in pipeline.config_warnings(&c)? {
                println!("warning: {warning}");
            }
            println!(
                "configuration is valid: {} features, models: {}",
                c.features.len(),
                c.models.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            println!("server: {}", security.describe());
            Ok(())
        }
        Some(Command::Score {
            model,
            fit,
            input,
            config,
            out,
        }) => {
            init_logging("warn");
            let config = Config::load(config.as_deref())?;
            let mut out = output(out.as_deref())?;
            canopy::batch::score::score(&config, &model, &fit, &input, &mut out)?;
            out.flush().context("cannot write the output")?;
            Ok(())
        }
        Some(Command::Replay {
            input,
            config: config_path,
            labels,
            out,
            report,
            report_horizon,
        }) => {
            init_logging("warn");
            let config = Config::load(config_path.as_deref())?;
            let several = input.len() > 1 || input.iter().any(|p| p.is_dir());
            let inputs = csv_inputs(&input)?;
            if several && out.is_none() && report.is_none() {
                bail!(
                    "replay of {} files: give --out DIR for one output CSV each, or --report FILE.html, or both",
                    inputs.len()
                );
            }
            if let (Some(dir), true) = (&out, several) {
                let mut names: Vec<_> = inputs.iter().filter_map(|p| p.file_name()).collect();
                names.sort();
                if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
                    bail!(
                        "two inputs are named {}: their outputs in {} would overwrite each other; replay them separately",
                        twice[0].to_string_lossy(),
                        dir.display()
                    );
                }
            }
            let mut replayed = Vec::new();
            for path in &inputs {
                let mut csv = match (&out, several) {
                    (Some(dir), true) => output(Some(&output_in(dir, path)?))?,
                    (None, true) => Box::new(std::io::sink()),
                    (out, false) => output(out.as_deref())?,
                };
                let (outcome, trace) = canopy::batch::replay::replay_traced(
                    &config,
                    path,
                    labels.as_deref(),
                    &mut csv,
                )?;
                csv.flush().context("cannot write the output")?;
                eprintln!(
                    "replayed {} rows of {}: {} model steps, {} scored",
                    outcome.rows,
                    path.display(),
                    outcome.steps,
                    outcome.scored_steps
                );
                if let Some(summary) = &outcome.summary {
                    eprintln!("{summary}");
                }
                if report.is_some() {
                    replayed.push(canopy::report::Replayed {
                        input: path.clone(),
                        outcome,
                        trace,
                    });
                }
            }
            if let Some(report) = report {
                let options = canopy::report::ReportOptions {
                    config: config_path.map_or_else(
                        || "the embedded default".to_owned(),
                        |p| p.display().to_string(),
                    ),
                    horizon: report_horizon,
                    width: canopy::report::DEFAULT_WIDTH,
                };
                let mut page = output(Some(&report))?;
                canopy::report::write(&replayed, &options, &mut page)?;
                eprintln!("wrote the report {}", report.display());
            }
            Ok(())
        }
        Some(Command::Serve {
            model_name,
            model_dir,
            http_port,
        }) => {
            init_logging("info");
            let env: Vec<(String, String)> = std::env::vars().collect();
            let security = canopy::serve::Security::load(&ServerConfig::from_env(&env)?)?;
            let port = match http_port {
                Some(p) => p,
                None => match std::env::var("PORT") {
                    Ok(p) => p
                        .trim()
                        .parse()
                        .with_context(|| format!("PORT={p:?} is not a port number"))?,
                    Err(_) => 8080,
                },
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(canopy::agent::serve_checkpoints(
                    &model_dir,
                    model_name.as_deref(),
                    SocketAddr::from(([0, 0, 0, 0], port)),
                    security,
                ))?;
            Ok(())
        }
        Some(Command::Train { model, config, out }) => {
            init_logging("info");
            let config = Config::load(config.as_deref())?;
            let path = canopy::batch::train::train(&config, &model, &out)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

/// The CSV files `inputs` name: each file as given, and every `.csv` under each folder, sorted.
fn csv_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let before = files.len();
            collect_csv(input, &mut files)?;
            if files.len() == before {
                bail!("{} holds no .csv file to replay", input.display());
            }
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

fn collect_csv(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot read the folder {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_csv(&path, files)?;
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            files.push(path);
        }
    }
    Ok(())
}

/// Where the output CSV of `input` goes in the folder `dir` (created if missing): its file name.
fn output_in(dir: &Path, input: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = input
        .file_name()
        .with_context(|| format!("{} names no file", input.display()))?;
    let path = dir.join(name);
    if path.exists() && std::fs::canonicalize(&path).ok() == std::fs::canonicalize(input).ok() {
        bail!(
            "--out {} would overwrite the input {}: write the outputs elsewhere",
            dir.display(),
            input.display()
        );
    }
    Ok(path)
}

/// The output file, or stdout, buffered.
fn output(path: Option<&Path>) -> Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    })
}

fn run(args: RunArgs) -> Result<()> {
    init_logging("info");
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(dir) = args.model_dir {
        config.model_dir = dir;
    }
    let listen = listen_addr(args.listen, &config)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(canopy::agent::run(config, listen))?;
    Ok(())
}
