//! `couchpay-server`: runs the stub server, or audits a database.

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use server_stub::{Config, SystemClock, TestClock};

#[derive(Parser, Debug)]
#[command(
    name = "couchpay-server",
    version,
    about = "Couchpay stub payment server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Check the ledger of the database and exit non-zero if anything is wrong.
    Audit,
    /// Sign a device update package with a vendor key and print its entry for the updates
    /// directory's `index.json` (see ARCHITECTURE.md, "Update packages").
    SignUpdate {
        /// File holding the vendor's Ed25519 secret key, 64 hex digits.
        #[arg(long)]
        key: std::path::PathBuf,
        /// The product the package is for, e.g. `couchpay-box`.
        #[arg(long)]
        product: String,
        /// The OS version the package installs, e.g. `1.1.0`.
        #[arg(long)]
        version: protocol::OsVersion,
        /// The package file (it is served from the updates directory under its own name).
        file: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Colour escapes only for a person at a terminal, never in files or pipes.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        // The PostgreSQL client blocks: not on the runtime's threads.
        Command::Audit => tokio::task::spawn_blocking(move || audit(cli.config)).await?,
        Command::SignUpdate {
            key,
            product,
            version,
            file,
        } => {
            let secret = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let key = protocol::VendorKey::from_hex(secret.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            let entry = server_stub::devices::sign(&key, &product, &version, &file)?;
            println!("{}", serde_json::to_string_pretty(&entry)?);
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let clock: Arc<dyn server_stub::Clock> = if config.test_clock {
        tracing::warn!("test clock on: the admin API can move this server's time forward");
        Arc::new(TestClock::new())
    } else {
        Arc::new(SystemClock)
    };
    let server = server_stub::serve(config, clock).await?;
    tracing::info!(url = %server.url, "Couchpay server listening");
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.stop().await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn audit(config: Config) -> anyhow::Result<()> {
    let conn = server_stub::store::open_for_audit(&config.database)
        .with_context(|| format!("opening {}", config.database))?;
    let report = server_stub::ledger::audit(&conn).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    anyhow::ensure!(
        report.ok,
        "ledger audit found {} problem(s)",
        report.problems.len()
    );
    Ok(())
}
