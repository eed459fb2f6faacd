//! `couchpay-gui`: the companion in a phone-sized window (Scan, Nearby, Code, Wallet, Gifts).

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use phone_client::gui::{GuiOptions, run};
use phone_client::{Interfaces, StateStore};
use protocol::ServerUrl;

#[derive(Parser, Debug)]
#[command(name = "couchpay-gui", version, about = "Couchpay companion window")]
struct Cli {
    /// Trusted Couchpay server(s); orders naming any other server are refused.
    #[arg(
        long = "server",
        env = "COUCHPAY_SERVER",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    servers: Vec<ServerUrl>,
    /// Where the companion remembers the account, session and paid orders.
    #[arg(long, env = "COUCHPAY_STATE")]
    state: Option<PathBuf>,
    /// mDNS interface(s) (default: all), e.g. --interface lo for a one-machine demo.
    #[arg(long = "interface")]
    interfaces: Vec<String>,
    /// A folder of pictures offered as the virtual camera.
    #[arg(long)]
    frames: Option<PathBuf>,
    /// Where saved voucher pictures go (default: your Pictures folder).
    #[arg(long)]
    pictures: Option<PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let state = match cli.state {
        Some(p) => p,
        None => StateStore::default_path()?,
    };
    run(GuiOptions {
        servers: cli.servers,
        state,
        interfaces: if cli.interfaces.is_empty() {
            Interfaces::All
        } else {
            Interfaces::Only(cli.interfaces)
        },
        frames: cli.frames,
        pictures: cli.pictures.unwrap_or_else(GuiOptions::default_pictures),
    })?;
    Ok(())
}
