//! `couchpay`: the companion's command line. Parses arguments, shows progress and the
//! order to confirm, and calls the `phone_client` library for everything else.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use phone_client::decode::picture_from_path;
use phone_client::discovery::IgnoreFn;
use phone_client::{
    Browser, Companion, CompanionError, Confirmation, Credentials, Decoder, FolderSource,
    FrameSource, Interfaces, NearbyEvent, OrderRef, ScanOptions, StateStore, accept_pay_link,
    frames,
};
use protocol::{AccountId, PayLink, Pin, Receipt, ServerUrl};

#[derive(Parser, Debug)]
#[command(
    name = "couchpay",
    version,
    about = "Couchpay companion: pay the order shown on the TV"
)]
struct Cli {
    /// Trusted Couchpay server(s); orders naming any other server are refused.
    #[arg(
        long = "server",
        env = "COUCHPAY_SERVER",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    servers: Vec<ServerUrl>,
    /// Where the companion remembers the account, session and paid orders.
    #[arg(long, env = "COUCHPAY_STATE", global = true)]
    state: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct PayArgs {
    /// Account to pay from (defaults to the remembered one).
    #[arg(long, env = "COUCHPAY_ACCOUNT")]
    account: Option<AccountId>,
    /// PIN (else the remembered session is used, or the PIN is asked for).
    #[arg(long, env = "COUCHPAY_PIN", hide_env_values = true, value_parser = parse_pin)]
    pin: Option<Pin>,
    /// Delivery address, for physical goods.
    #[arg(long)]
    address: Option<String>,
    /// Pay without asking for confirmation (the order is still printed).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Only show the order; do not pay.
    #[arg(long, conflicts_with = "yes")]
    no_pay: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Scan the TV's QR code with the camera (or a folder of frames with --frames).
    Scan {
        /// Camera number.
        #[arg(long, default_value_t = 0)]
        camera: u32,
        /// Use a folder of pictures / recorded frames as a virtual camera.
        #[arg(long)]
        frames: Option<PathBuf>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        #[command(flatten)]
        pay: PayArgs,
    },
    /// Decode the QR code in a saved picture (PNG, JPEG, WebP) and pay it.
    Decode {
        picture: PathBuf,
        #[command(flatten)]
        pay: PayArgs,
    },
    /// List nearby TVs offering an order (mDNS and Bluetooth LE), live; pick one to pay with
    /// --pick. BLE: `COUCHPAY_BLE_ADAPTER=hci1` picks the adapter, `COUCHPAY_NO_BLE=1` turns it off.
    Discover {
        /// Network interface(s) to use (default: all), e.g. --interface lo.
        #[arg(long = "interface")]
        interfaces: Vec<String>,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
        /// Pay the first trusted order found.
        #[arg(long)]
        pick: bool,
        #[command(flatten)]
        pay: PayArgs,
    },
    /// Pay the order whose short code (XXXX-XXXX) is shown on the TV.
    Code {
        code: String,
        #[command(flatten)]
        pay: PayArgs,
    },
    /// Log in and remember a session on this device (the PIN is not stored).
    Login {
        #[arg(long, env = "COUCHPAY_ACCOUNT")]
        account: AccountId,
        #[arg(long, env = "COUCHPAY_PIN", hide_env_values = true, value_parser = parse_pin)]
        pin: Option<Pin>,
    },
    /// Forget the session on this device.
    Logout,
    /// Pay a pay link or short code given on the command line.
    Pay {
        link_or_code: String,
        #[command(flatten)]
        pay: PayArgs,
    },
    /// List receipts; with --watch, stream new ones as payments complete.
    Receipts {
        #[arg(long)]
        watch: bool,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.downcast_ref::<CompanionError>().and_then(cli_hint) {
                eprintln!("hint: {hint}");
            }
            for cause in e.chain().skip(1) {
                tracing::debug!("caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// What to type next, for the errors the CLI's flags can fix (the messages themselves
/// are shared with the window and name no flags).
fn cli_hint(e: &CompanionError) -> Option<String> {
    Some(match e {
        CompanionError::NoServer => "pass --server URL".into(),
        CompanionError::UntrustedServer { server, trusted } => {
            format!("the order names {server}; trusted: {trusted} (add a server with --server)")
        }
        CompanionError::DeliveryAddressRequired => "pass --address \"street, city\"".into(),
        CompanionError::SessionNeeded | CompanionError::NotLoggedIn => {
            "run `couchpay login --account NAME`, or pass --account and --pin".into()
        }
        CompanionError::OutcomeUnknown | CompanionError::NotChargedYet => {
            "run the same command again: it retries with the same key".into()
        }
        _ => return None,
    })
}

async fn run(cli: Cli) -> Result<()> {
    let state_path = match &cli.state {
        Some(p) => p.clone(),
        None => StateStore::default_path()?,
    };
    let store = StateStore::open(&state_path)?;
    let mut companion = Companion::new(cli.servers.clone(), store)?;
    let first_server = cli.servers[0].clone();

    match cli.command {
        Command::Scan {
            camera,
            frames,
            timeout_s,
            pay,
        } => {
            let source: Box<dyn FrameSource> = match frames {
                Some(dir) => Box::new(FolderSource::open(&dir)?),
                None => frames::open_camera(camera)?,
            };
            let link = scan_for_link(source, Duration::from_secs(timeout_s)).await?;
            confirm_and_pay(&mut companion, OrderRef::Link(link), &pay).await
        }
        Command::Decode { picture, pay } => {
            let link = tokio::task::spawn_blocking(move || decode_picture_file(&picture))
                .await
                .context("decoder thread")??;
            confirm_and_pay(&mut companion, OrderRef::Link(link), &pay).await
        }
        Command::Discover {
            interfaces,
            timeout_s,
            pick,
            pay,
        } => {
            let interfaces = if interfaces.is_empty() {
                Interfaces::All
            } else {
                Interfaces::Only(interfaces)
            };
            let paid: Vec<_> = companion.state().get().paid.iter().cloned().collect();
            let ignore: IgnoreFn = Box::new(move |r| {
                paid.iter()
                    .any(|p| p.server == r.server && p.order == r.order)
            });
            let trusted: Vec<ServerUrl> = companion.servers().cloned().collect();
            let timeout = Duration::from_secs(timeout_s);
            let picked = tokio::task::spawn_blocking(move || {
                discover(&interfaces, trusted, ignore, timeout, pick)
            })
            .await
            .context("discovery thread")??;
            match picked {
                Some(r) => confirm_and_pay(&mut companion, r, &pay).await,
                None => Ok(()),
            }
        }
        Command::Code { code, pay }
        | Command::Pay {
            link_or_code: code,
            pay,
        } => {
            let r = OrderRef::parse_input(&code)?;
            confirm_and_pay(&mut companion, r, &pay).await
        }
        Command::Login { account, pin } => {
            let pin = match pin {
                Some(p) => p,
                None => ask_pin(&account)?,
            };
            eprintln!("logging in as {account} on {first_server}…");
            let s = companion.login(None, account, pin).await?;
            println!(
                "logged in as {} on {} (session saved in {})",
                s.account,
                s.server,
                companion.state().path().display()
            );
            Ok(())
        }
        Command::Logout => {
            for s in cli.servers {
                companion.logout(&s)?;
            }
            println!("session forgotten");
            Ok(())
        }
        Command::Receipts { watch } => {
            for r in companion.receipts(&first_server).await? {
                print_receipt(&r);
            }
            if watch {
                eprintln!("waiting for new receipts (Ctrl-C to stop)…");
                companion
                    .watch_receipts(&first_server, print_receipt)
                    .await?;
            }
            Ok(())
        }
    }
}

fn decode_picture_file(path: &std::path::Path) -> Result<PayLink> {
    let frame = picture_from_path(path)?;
    let report = Decoder::default().decode(&frame, &|t| PayLink::parse(t).is_ok());
    match report.text {
        Some(t) => {
            eprintln!(
                "decoded in {} ms ({})",
                report.elapsed.as_millis(),
                report.method.unwrap_or("?")
            );
            Ok(PayLink::parse(&t)?)
        }
        None if !report.seen.is_empty() => bail!(
            "the picture holds a QR code, but not a Couchpay pay link: {:?}",
            report.seen[0].chars().take(80).collect::<String>()
        ),
        None => bail!(
            "no QR code found in {} (tried {} views in {} ms)",
            path.display(),
            report.attempts,
            report.elapsed.as_millis()
        ),
    }
}

async fn scan_for_link(source: Box<dyn FrameSource>, timeout: Duration) -> Result<PayLink> {
    eprintln!(
        "scanning {} — point it at the TV's QR code…",
        source.describe()
    );
    let hit = tokio::task::spawn_blocking(move || {
        let cancel = AtomicBool::new(false);
        let options = ScanOptions {
            timeout,
            ..ScanOptions::default()
        };
        frames::scan(
            source,
            &Decoder::default(),
            accept_pay_link(),
            &options,
            &cancel,
            |p| {
                eprint!(
                    "\rscanning… {} frames, {} decoded, {:.1} s   ",
                    p.frames_captured,
                    p.frames_decoded,
                    p.elapsed.as_secs_f32()
                );
                let _ = std::io::stderr().flush();
            },
        )
    })
    .await
    .context("scan thread")?;
    eprintln!();
    let hit = hit?;
    eprintln!(
        "found a pay link in frame {} ({} ms, {})",
        hit.frame,
        hit.report.elapsed.as_millis(),
        hit.report.method.unwrap_or("?")
    );
    Ok(PayLink::parse(&hit.text)?)
}

/// Lists TVs as they come and go; with `pick`, returns the first trusted order.
fn discover(
    interfaces: &Interfaces,
    trusted: Vec<ServerUrl>,
    ignore: IgnoreFn,
    timeout: Duration,
    pick: bool,
) -> Result<Option<OrderRef>> {
    let mut browser = Browser::start(interfaces, trusted, ignore)?;
    if let (Ok(io), None) = (
        tokio::runtime::Handle::try_current(),
        std::env::var_os("COUCHPAY_NO_BLE"),
    ) {
        let adapter = std::env::var("COUCHPAY_BLE_ADAPTER").ok();
        browser = browser.with_ble(phone_client::ble::BleScanner::start(&io, async move {
            phone_client::ble::BtleplugCentral::open(adapter.as_deref()).await
        }));
    }
    eprintln!("looking for TVs nearby…");
    let result = loop {
        let left = timeout.saturating_sub(browser.elapsed());
        if left.is_zero() {
            break None;
        }
        match browser.next_event(left) {
            Some(NearbyEvent::Listed(n)) => {
                println!(
                    "+ {:<24} {:<28} {:>12}  code {}",
                    n.record.tv_name,
                    n.record.item,
                    n.record.amount.to_string(),
                    n.record.short_code.display()
                );
                if pick {
                    break Some(OrderRef::Discovered(n.record));
                }
            }
            Some(NearbyEvent::Updated(n)) => println!(
                "~ {:<24} {:<28} {:>12}  code {}",
                n.record.tv_name,
                n.record.item,
                n.record.amount.to_string(),
                n.record.short_code.display()
            ),
            Some(NearbyEvent::Withdrawn(n)) => {
                println!("- {:<24} (order withdrawn)", n.record.tv_name)
            }
            Some(NearbyEvent::Refused { fullname, reason }) => {
                eprintln!("! ignoring {fullname}: {reason}")
            }
            None => {}
        }
    };
    browser.stop();
    Ok(result)
}

async fn confirm_and_pay(companion: &mut Companion, r: OrderRef, args: &PayArgs) -> Result<()> {
    eprintln!("fetching the order from the server…");
    let confirmation = companion.fetch(&r).await?;
    print_confirmation(&confirmation);
    if args.no_pay {
        return Ok(());
    }
    let address = match (&args.address, confirmation.needs_address()) {
        (Some(a), _) => Some(a.clone()),
        (None, true) => Some(ask_line("Delivery address: ")?),
        (None, false) => None,
    };
    let credentials = credentials(companion, &confirmation, args)?;
    if !args.yes && !ask_yes("Check the code matches the TV. Pay? [y/N] ")? {
        println!("not paid");
        return Ok(());
    }
    eprintln!("paying…");
    let receipt = companion.pay(&confirmation, &credentials, address).await?;
    println!("PAID");
    print_receipt(&receipt);
    Ok(())
}

fn credentials(companion: &Companion, c: &Confirmation, args: &PayArgs) -> Result<Credentials> {
    let remembered = companion.state().get().account.clone();
    if let Some(pin) = &args.pin {
        let account = args
            .account
            .clone()
            .or(remembered)
            .context("which account? pass --account")?;
        return Ok(Credentials::Pin {
            account,
            pin: pin.clone(),
        });
    }
    let has_session = companion
        .state()
        .get()
        .session(&c.server, phone_client::companion::session_deadline())
        .is_some_and(|s| args.account.as_ref().is_none_or(|a| a == &s.account));
    if has_session {
        return Ok(Credentials::Session);
    }
    let account = args
        .account
        .clone()
        .or(remembered)
        .context("not logged in: pass --account (and --pin), or run `couchpay login`")?;
    let pin = ask_pin(&account)?;
    Ok(Credentials::Pin { account, pin })
}

fn print_confirmation(c: &Confirmation) {
    println!("Order on {}:", c.server);
    for (k, v) in c.summary() {
        println!("  {k:<9} {v}");
    }
}

fn print_receipt(r: &Receipt) {
    println!(
        "  {} receipt {}: {} — {} to {} (TV {}), paid by {}",
        phone_client::wallet::when(r.paid_at_ms),
        r.payment_id,
        r.item.title,
        r.amount,
        r.merchant.name,
        r.device.name,
        r.payer
    );
}

fn parse_pin(s: &str) -> Result<Pin, protocol::ParseError> {
    Pin::parse(s)
}

fn ask_line(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

fn ask_yes(prompt: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "confirmation needed but stdin is not a terminal: pass --yes after checking the order"
        );
    }
    Ok(matches!(ask_line(prompt)?.as_str(), "y" | "Y" | "yes"))
}

fn ask_pin(account: &AccountId) -> Result<Pin> {
    let prompt = format!("PIN for {account}: ");
    // On a terminal the PIN is read with echo off; piped input is read as a line.
    let line = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(&prompt)?.trim().to_owned()
    } else {
        ask_line(&prompt)?
    };
    Ok(Pin::parse(&line)?)
}
