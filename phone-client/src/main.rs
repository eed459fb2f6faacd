//! `couchpay`: the companion's command line. Parses arguments, shows progress and the
//! order to confirm, and calls the `phone_client` library for everything else.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use phone_client::companion::vouchers::{save_voucher_png, voucher_in_picture};
use phone_client::decode::picture_from_path;
use phone_client::discovery::IgnoreFn;
use phone_client::{
    Browser, Companion, CompanionError, Confirmation, Credentials, Decoder, FolderSource,
    FrameSource, Interfaces, NearbyEvent, OrderRef, ScanOptions, StateStore, accept_pay_link,
    frames,
};
use protocol::{
    AccountId, Currency, Money, PayLink, Pin, Receipt, ServerUrl, Voucher, VoucherFilter,
    VoucherId, VoucherKind, VoucherLink, VoucherState,
};

mod cli {
    pub(crate) mod packets;
}

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
    /// QR e-cash vouchers: make one for someone to redeem, or redeem one given to you.
    #[command(subcommand)]
    Voucher(VoucherCommand),
    /// Red packets: send money in packets behind one link; claim one sent to you.
    #[command(subcommand)]
    Packets(cli::packets::PacketsCommand),
}

#[derive(Args, Debug, Clone)]
struct WhoArgs {
    /// Account (defaults to the remembered one).
    #[arg(long, env = "COUCHPAY_ACCOUNT")]
    account: Option<AccountId>,
    /// PIN (else the remembered session is used, or the PIN is asked for).
    #[arg(long, env = "COUCHPAY_PIN", hide_env_values = true, value_parser = parse_pin)]
    pin: Option<Pin>,
}

#[derive(Subcommand, Debug)]
enum VoucherCommand {
    /// Freeze an amount of your wallet as a voucher: prints its link and saves its QR
    /// code as a PNG. Whoever has the QR code can redeem it, so share it only with the
    /// payee (or restrict it with --for).
    Create {
        /// Amount, e.g. 12.50.
        amount: String,
        #[arg(long, default_value = "EUR")]
        currency: Currency,
        /// Hours it can be redeemed (default: one day).
        #[arg(long)]
        valid_hours: Option<u64>,
        /// Only this account may redeem it.
        #[arg(long = "for")]
        restrict_to: Option<AccountId>,
        /// Where to save the QR picture (default: voucher-XXXXXX.png here).
        #[arg(long)]
        png: Option<PathBuf>,
        /// Use the remembered session instead of the PIN (when your voucher settings
        /// ask for the PIN only on the first voucher).
        #[arg(long)]
        no_pin: bool,
        #[command(flatten)]
        who: WhoArgs,
    },
    /// Your vouchers, newest first.
    List {
        /// Only those in this state: unused, redeemed, failed, voided, expired.
        #[arg(long = "only", value_name = "STATE")]
        only: Option<String>,
        /// Those you redeemed, instead of those you made.
        #[arg(long)]
        received: bool,
        /// Only those made in the last N days.
        #[arg(long)]
        days: Option<u64>,
    },
    /// Show a voucher from its link or a saved picture of its QR code.
    Show { link_or_picture: String },
    /// Take back an unused voucher of yours: its money is free again at once.
    Void {
        /// The voucher's link or id.
        link_or_id: String,
        #[command(flatten)]
        who: WhoArgs,
    },
    /// Redeem a voucher from its link or a saved picture of its QR code.
    Redeem {
        link_or_picture: String,
        /// Take only this much (the rest goes back to the payer); default all of it.
        #[arg(long)]
        amount: Option<String>,
        /// Redeem without asking for confirmation (the voucher is still printed).
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        who: WhoArgs,
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
        Command::Voucher(cmd) => voucher(&companion, &first_server, cmd).await,
        Command::Packets(cmd) => cli::packets::run(&companion, &first_server, cmd).await,
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
        None if report.seen.iter().any(|t| VoucherLink::parse(t).is_ok()) => bail!(
            "this picture holds a Couchpay voucher, not an order: redeem it with \
             `couchpay voucher redeem {}`",
            path.display()
        ),
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
            &Decoder::for_camera(),
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
            Some(NearbyEvent::PacketsListed(n)) => println!(
                "+ {:<24} red packets from {:<14} {:>12}  code {}",
                n.record.tv_name,
                n.record.sender_name,
                "",
                n.record.short_code.display()
            ),
            Some(NearbyEvent::PacketsWithdrawn(n)) => {
                println!("- {:<24} (red packets put away)", n.record.tv_name)
            }
            Some(NearbyEvent::Refused { fullname, reason }) => {
                eprintln!("! ignoring {fullname}: {reason}")
            }
            // TVs with nothing on screen are for `couchpay packets offer`.
            Some(NearbyEvent::TvListed(_) | NearbyEvent::TvGone(_)) | None => {}
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
    credentials_on(companion, &c.server, &args.account, &args.pin)
}

fn credentials_on(
    companion: &Companion,
    server: &ServerUrl,
    account: &Option<AccountId>,
    pin: &Option<Pin>,
) -> Result<Credentials> {
    let args = WhoArgs {
        account: account.clone(),
        pin: pin.clone(),
    };
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
        .session(server, phone_client::companion::session_deadline())
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

async fn voucher(companion: &Companion, server: &ServerUrl, cmd: VoucherCommand) -> Result<()> {
    match cmd {
        VoucherCommand::Create {
            amount,
            currency,
            valid_hours,
            restrict_to,
            png,
            no_pin,
            who,
        } => {
            let amount = Money::parse_decimal(&amount, currency)
                .with_context(|| format!("{amount:?} is not an amount like 12.50"))?;
            let credentials = if no_pin {
                Credentials::Session
            } else {
                let account = who
                    .account
                    .clone()
                    .or_else(|| companion.state().get().account.clone())
                    .context("which account? pass --account")?;
                let pin = match who.pin {
                    Some(p) => p,
                    None => ask_pin(&account)?,
                };
                Credentials::Pin { account, pin }
            };
            let v = companion
                .create_voucher(
                    &credentials,
                    amount,
                    valid_hours.map(|h| h.saturating_mul(3_600)),
                    restrict_to,
                )
                .await?;
            let path =
                png.unwrap_or_else(|| PathBuf::from(format!("voucher-{}.png", v.id.log_prefix())));
            save_voucher_png(&v.link, &path)?;
            let shown = std::fs::canonicalize(&path).unwrap_or(path);
            println!(
                "VOUCHER {} made; {} is frozen in your wallet until it is used.",
                v.face_value, v.face_value
            );
            print_voucher(&v);
            println!("  link      {}", v.link);
            println!("  picture   {}", shown.display());
            println!(
                "Anyone who has this QR code or link can redeem it: share it only with the payee."
            );
            Ok(())
        }
        VoucherCommand::List {
            only,
            received,
            days,
        } => {
            let state = only
                .map(|s| {
                    VoucherState::parse(&s).with_context(|| {
                        format!("{s:?} is not a state: unused, redeemed, failed, voided or expired")
                    })
                })
                .transpose()?;
            let filter = VoucherFilter {
                kind: Some(if received {
                    VoucherKind::Redeemed
                } else {
                    VoucherKind::Issued
                }),
                state,
                from_ms: days.map(|d| {
                    phone_client::companion::session_deadline()
                        - i64::try_from(d.saturating_mul(86_400_000)).unwrap_or(i64::MAX)
                }),
                ..VoucherFilter::default()
            };
            let page = companion.vouchers(&filter).await?;
            if page.items.is_empty() {
                println!("no vouchers");
            }
            for v in &page.items {
                println!(
                    "  {}  {:<9} {:>12}  used {:>12}  {}",
                    phone_client::wallet::when(v.created_at_ms),
                    v.state,
                    v.face_value.to_string(),
                    v.used.to_string(),
                    v.link
                );
            }
            Ok(())
        }
        VoucherCommand::Show { link_or_picture } => {
            let link = voucher_link(&link_or_picture).await?;
            print_voucher(&companion.open_voucher(&link).await?);
            Ok(())
        }
        VoucherCommand::Void { link_or_id, who } => {
            let id = match VoucherLink::parse(&link_or_id) {
                Ok(l) => l.voucher,
                Err(_) => VoucherId::parse(link_or_id.trim())
                    .context("that is neither a voucher link nor a voucher id")?,
            };
            let credentials = credentials_on(companion, server, &who.account, &who.pin)?;
            let v = companion.void_voucher(&id, &credentials).await?;
            println!("VOIDED: {} is free in your wallet again.", v.face_value);
            Ok(())
        }
        VoucherCommand::Redeem {
            link_or_picture,
            amount,
            yes,
            who,
        } => {
            let link = voucher_link(&link_or_picture).await?;
            eprintln!("checking the voucher with its server…");
            let v = companion.open_voucher(&link).await?;
            print_voucher(&v);
            if v.state != VoucherState::Unused {
                bail!("this voucher is {} and cannot be redeemed", v.state);
            }
            let amount = amount
                .map(|a| {
                    Money::parse_decimal(&a, v.face_value.currency)
                        .with_context(|| format!("{a:?} is not an amount like 12.50"))
                })
                .transpose()?;
            let credentials = credentials_on(companion, &link.server, &who.account, &who.pin)?;
            let take = amount.unwrap_or(v.face_value);
            if !yes && !ask_yes(&format!("Redeem {take} from {}? [y/N] ", v.payer_name))? {
                println!("not redeemed");
                return Ok(());
            }
            let r = companion
                .redeem_voucher(&link, &credentials, amount)
                .await?;
            println!("REDEEMED {} into your wallet.", r.amount);
            if r.released.minor > 0 {
                println!("  {} went back to {}.", r.released, r.voucher.payer_name);
            }
            Ok(())
        }
    }
}

/// A voucher link typed or pasted, else the path of a picture holding its QR code.
async fn voucher_link(arg: &str) -> Result<VoucherLink> {
    if let Ok(link) = VoucherLink::parse(arg) {
        return Ok(link);
    }
    let path = PathBuf::from(arg);
    if !path.exists() {
        bail!("{arg:?} is neither a voucher link nor a picture file");
    }
    Ok(
        tokio::task::spawn_blocking(move || voucher_in_picture(&path))
            .await
            .context("decoder thread")??,
    )
}

fn print_voucher(v: &Voucher) {
    println!("Voucher from {} ({}):", v.payer_name, v.payer);
    println!("  amount    {}", v.face_value);
    println!("  state     {}", v.state);
    if v.used.minor > 0 {
        println!("  used      {}", v.used);
    }
    println!(
        "  made      {}",
        phone_client::wallet::when(v.created_at_ms)
    );
    println!(
        "  valid to  {}",
        phone_client::wallet::when(v.expires_at_ms)
    );
    if let Some(r) = &v.restricted_to {
        println!("  only for  {r}");
    }
    if let Some(p) = &v.payee {
        println!("  redeemed by {p}");
    }
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
