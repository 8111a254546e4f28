//! canopy's command line. Parses arguments, loads the configuration, sets up logging and hands
//! over to the library; nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use canopy::config::Config;

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
}

#[derive(Args, Default)]
struct RunArgs {
    /// A TOML file overriding the embedded default configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The address to listen on (stronger than PORT and the config's `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where checkpoints live (overrides the config's `model_dir`).
    #[arg(long = "model-dir", alias = "model_dir")]
    model_dir: Option<PathBuf>,
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
    config
        .listen
        .parse()
        .with_context(|| format!("listen = {:?} is not an address", config.listen))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { config }) => {
            let c = Config::load(config.as_deref())?;
            canopy::features::FeatureSet::from_config(&c)?;
            println!(
                "configuration is valid: {} features, models: {}",
                c.features.len(),
                c.models.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn run(args: RunArgs) -> Result<()> {
    init_logging();
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
