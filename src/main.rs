//! canopy's command line. Parses arguments, loads the configuration, sets up logging and hands
//! over to the library; nothing else lives here.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
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
        /// The CSV to replay: timestamp, then one column per series.
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// NAB's windows.json: print windows detected and false positives to stderr.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Where to write the output CSV (stdout when absent).
        #[arg(long)]
        out: Option<PathBuf>,
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
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets a tuning parameter of the allocator; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
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
            let pipeline = canopy::agent::Pipeline::new(&c)?;
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
            config,
            labels,
            out,
        }) => {
            init_logging("warn");
            let config = Config::load(config.as_deref())?;
            let mut out = output(out.as_deref())?;
            let outcome =
                canopy::batch::replay::replay(&config, &input, labels.as_deref(), &mut out)?;
            out.flush().context("cannot write the output")?;
            eprintln!(
                "replayed {} rows of {}: {} model steps, {} scored",
                outcome.rows,
                input.display(),
                outcome.steps,
                outcome.scored_steps
            );
            if let Some(summary) = outcome.summary {
                eprintln!("{summary}");
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
