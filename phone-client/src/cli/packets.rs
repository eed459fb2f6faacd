//! `couchpay packets …`: send red packets and share their claim link, open and claim
//! them from a link or a saved picture of the QR code, and the history of sets sent and
//! received, with who got how much.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use phone_client::Companion;
use phone_client::companion::packets::{PacketsToSend, packets_in_picture, save_packets_png};
use phone_client::discovery::{Interfaces, find_tv, first_packets};
use phone_client::wallet::when;
use protocol::{
    AccountId, Currency, DeviceId, Money, PacketLink, PacketSet, PacketSetState, PacketSplit,
    ServerUrl, ShortCode,
};

use crate::{WhoArgs, ask_yes, credentials_on};

#[derive(Subcommand, Debug)]
pub(crate) enum PacketsCommand {
    /// Send red packets: the total leaves your wallet into escrow at once; what nobody
    /// claims before they expire comes back. Prints the claim link and saves its QR code.
    Send {
        /// How many packets (at least 2).
        #[arg(long)]
        count: u32,
        /// A total cut at random into the packets, e.g. 20.00.
        #[arg(long, conflicts_with = "each", required_unless_present = "each")]
        total: Option<String>,
        /// The same amount in every packet, e.g. 2.00.
        #[arg(long)]
        each: Option<String>,
        #[arg(long, default_value = "EUR")]
        currency: Currency,
        /// A message shown with the packets.
        #[arg(long, default_value = "")]
        message: String,
        /// Only these accounts may claim (comma-separated); default anyone with the link.
        #[arg(long = "for", value_delimiter = ',')]
        allowed: Vec<AccountId>,
        /// Hours the packets can be claimed (default: one day).
        #[arg(long)]
        valid_hours: Option<u64>,
        /// Where to save the QR picture (default: packets-XXXXXX.png here).
        #[arg(long)]
        png: Option<PathBuf>,
        /// Send without asking for confirmation (the quote is still printed).
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        who: WhoArgs,
    },
    /// Show a set from its claim link or a saved picture of its QR code: who got how much.
    Show { link_or_picture: String },
    /// Open one packet of a set, from its claim link, a saved picture of its QR code, or
    /// the code a TV shows (XXXX-XXXX).
    Claim {
        #[arg(required_unless_present = "nearby")]
        link_picture_or_code: Option<String>,
        /// Open one from the TV nearby that shows red packets (found over mDNS).
        #[arg(long, conflicts_with = "link_picture_or_code")]
        nearby: bool,
        #[command(flatten)]
        near: NearbyArgs,
        #[command(flatten)]
        who: WhoArgs,
    },
    /// Put a set you sent on a TV: it asks the room, then shows the claim code and who
    /// got how much, live.
    Offer {
        link_or_picture: String,
        /// The TV: its name as Nearby lists it, or its device id. A TV found nearby
        /// is used; otherwise the value is taken as a device id.
        #[arg(long)]
        tv: String,
        #[command(flatten)]
        near: NearbyArgs,
        #[command(flatten)]
        who: WhoArgs,
    },
    /// The sets you sent (or, with --received, claimed from), newest first.
    List {
        #[arg(long)]
        received: bool,
    },
}

/// Where to look for TVs nearby.
#[derive(Debug, clap::Args)]
pub(crate) struct NearbyArgs {
    /// Network interface(s) to look for TVs on (default: all), e.g. --interface lo.
    #[arg(long = "interface")]
    interfaces: Vec<String>,
    /// How long to look for TVs nearby, in seconds.
    #[arg(long, default_value_t = 10)]
    nearby_timeout_s: u64,
}

impl NearbyArgs {
    fn interfaces(&self) -> Interfaces {
        if self.interfaces.is_empty() {
            Interfaces::All
        } else {
            Interfaces::Only(self.interfaces.clone())
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.nearby_timeout_s)
    }
}

pub(crate) async fn run(
    companion: &Companion,
    server: &ServerUrl,
    cmd: PacketsCommand,
) -> Result<()> {
    match cmd {
        PacketsCommand::Send {
            count,
            total,
            each,
            currency,
            message,
            allowed,
            valid_hours,
            png,
            yes,
            who,
        } => {
            let amount = |a: &str| {
                Money::parse_decimal(a, currency)
                    .with_context(|| format!("{a:?} is not an amount like 12.50"))
            };
            let split = match (total, each) {
                (Some(t), _) => PacketSplit::Random { total: amount(&t)? },
                (None, Some(e)) => PacketSplit::Fixed { each: amount(&e)? },
                (None, None) => bail!("say how much: --total (split at random) or --each"),
            };
            let send = PacketsToSend {
                count,
                split,
                message,
                allowed: (!allowed.is_empty()).then_some(allowed),
                valid_for_s: valid_hours.map(|h| h.saturating_mul(3_600)),
            };
            let quote = companion.quote_packets(&send).await?;
            println!(
                "{count} packets: {} leaves your wallet now (about {} each).",
                quote.total, quote.average
            );
            if let Some(w) = &quote.warning {
                println!("  NOTE: {w}");
            }
            let credentials = credentials_on(companion, server, &who.account, &who.pin)?;
            if !yes
                && !ask_yes(&format!(
                    "Send {} as {count} red packets? [y/N] ",
                    quote.total
                ))?
            {
                println!("not sent");
                return Ok(());
            }
            let set = companion.send_packets(&credentials, &send).await?;
            let path = png
                .unwrap_or_else(|| PathBuf::from(format!("packets-{}.png", set.id.log_prefix())));
            save_packets_png(&set.link, &path)?;
            let shown = std::fs::canonicalize(&path).unwrap_or(path);
            println!("SENT {} as {} red packets.", set.total, set.count);
            print_set(&set);
            println!("  link      {}", set.link);
            println!("  picture   {}", shown.display());
            Ok(())
        }
        PacketsCommand::Show { link_or_picture } => {
            let link = packets_link(&link_or_picture).await?;
            print_set(&companion.open_packets(&link).await?);
            Ok(())
        }
        PacketsCommand::Claim {
            link_picture_or_code,
            nearby: _,
            near,
            who,
        } => {
            let link = match link_picture_or_code {
                Some(arg) => match ShortCode::parse(&arg) {
                    Ok(code) => companion.packets_by_code(&code).await?,
                    Err(_) => packets_link(&arg).await?,
                },
                None => {
                    let trusted: Vec<ServerUrl> = companion.servers().cloned().collect();
                    let (interfaces, timeout) = (near.interfaces(), near.timeout());
                    eprintln!("looking for a TV showing red packets…");
                    let found = tokio::task::spawn_blocking(move || {
                        first_packets(&interfaces, trusted, timeout)
                    })
                    .await
                    .context("discovery thread")??;
                    let Some(p) = found else {
                        bail!(
                            "no TV nearby is showing red packets; type the code it shows instead"
                        );
                    };
                    eprintln!("found red packets from {} on {}", p.sender_name, p.tv_name);
                    PacketLink {
                        server: p.server,
                        set: p.set,
                    }
                }
            };
            let credentials = credentials_on(companion, &link.server, &who.account, &who.pin)?;
            let claimed = companion.claim_packet(&link, &credentials).await?;
            println!(
                "CLAIMED {} from {}.",
                claimed.amount, claimed.set.sender_name
            );
            print_set(&claimed.set);
            Ok(())
        }
        PacketsCommand::Offer {
            link_or_picture,
            tv,
            near,
            who,
        } => {
            let link = packets_link(&link_or_picture).await?;
            let credentials = credentials_on(companion, &link.server, &who.account, &who.pin)?;
            let (interfaces, timeout) = (near.interfaces(), near.timeout());
            let trusted = vec![link.server.clone()];
            let wanted = tv.clone();
            let found = tokio::task::spawn_blocking(move || {
                find_tv(&interfaces, trusted, &wanted, timeout)
            })
            .await
            .context("discovery thread")??;
            let (id, name) = match found {
                Some(t) => (t.tv_id, t.tv_name),
                None => match DeviceId::parse(&tv) {
                    Ok(id) => (id, tv.clone()),
                    Err(_) => bail!("no TV called {tv:?} is nearby"),
                },
            };
            companion.offer_packets(&link, &credentials, &id).await?;
            println!("OFFERED to {name} ({id}): it asks the room before showing them.");
            Ok(())
        }
        PacketsCommand::List { received } => {
            let page = companion.packet_history(received, None).await?;
            if page.items.is_empty() {
                println!("no red packets");
            }
            for s in &page.items {
                println!(
                    "  {}  {:<8} {:>12}  {}/{} claimed  from {}  {}",
                    when(s.created_at_ms),
                    state_word(s.state),
                    s.total.to_string(),
                    s.claims.len(),
                    s.count,
                    s.sender,
                    s.link
                );
            }
            Ok(())
        }
    }
}

fn state_word(s: PacketSetState) -> &'static str {
    match s {
        PacketSetState::Open => "open",
        PacketSetState::Finished => "finished",
        PacketSetState::Refunded => "refunded",
    }
}

/// A claim link typed or pasted, else the path of a picture holding its QR code.
async fn packets_link(arg: &str) -> Result<PacketLink> {
    if let Ok(link) = PacketLink::parse(arg) {
        return Ok(link);
    }
    let path = PathBuf::from(arg);
    if !path.exists() {
        bail!("{arg:?} is neither a red-packet link nor a picture file");
    }
    Ok(
        tokio::task::spawn_blocking(move || packets_in_picture(&path))
            .await
            .context("decoder thread")??,
    )
}

fn print_set(s: &PacketSet) {
    println!("Red packets from {} ({}):", s.sender_name, s.sender);
    if !s.message.is_empty() {
        println!("  message   {}", s.message);
    }
    println!(
        "  packets   {} of {} left, {} in all ({})",
        s.remaining,
        s.count,
        s.total,
        if s.fixed { "equal" } else { "random" }
    );
    println!("  state     {}", state_word(s.state));
    if let (PacketSetState::Open, Some(code)) = (s.state, &s.short_code) {
        println!("  code      {}", code.display());
    }
    println!("  valid to  {}", when(s.expires_at_ms));
    if s.refunded.minor > 0 {
        println!("  refunded  {} went back to the sender", s.refunded);
    }
    for c in &s.claims {
        println!(
            "    {:<20} {:>12}{}",
            c.recipient_name,
            c.amount.to_string(),
            if c.largest { "  ★ largest" } else { "" }
        );
    }
}
