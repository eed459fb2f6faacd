//! Announces what the TV offers (the order on screen, or a red-packet set) over
//! mDNS/DNS-SD (SPEC P2) and withdraws it the moment it ends (paid, expired, cancelled:
//! SPEC P6); and announces the TV's presence for as long as it runs, under its own
//! instance name, so a phone can pick it from Nearby.

use std::time::Duration;

use mdns_sd::{DaemonEvent, IfKind, Receiver, ServiceDaemon, ServiceInfo, UnregisterStatus};
use protocol::{SERVICE_TYPE, TvPresence};

/// DNS-SD needs a port in the SRV record, but the TV serves nothing: companions read
/// the TXT record and talk to the server named there. Port 9 is the "discard" service.
pub const ANNOUNCED_PORT: u16 = 9;

/// How long the daemon has to report that it sent a new announcement out on at least
/// one interface; after that the TV says the order is not announced.
pub const ANNOUNCE_CONFIRM_TIMEOUT_MS: u64 = 3_000;

/// Which network interfaces the announcer may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interfaces {
    /// Every interface (production default).
    All,
    /// Only these interfaces by name, e.g. `lo` in tests so nothing leaves the machine.
    Only(Vec<String>),
}

impl Interfaces {
    /// From `--mdns-interface` values: none, or `all` (or `*`) among them, means every
    /// interface; empty names are ignored.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        let names: Vec<String> = names
            .iter()
            .map(|n| n.as_ref().trim())
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if names.is_empty()
            || names
                .iter()
                .any(|n| n.eq_ignore_ascii_case("all") || n == "*")
        {
            Self::All
        } else {
            Self::Only(names)
        }
    }
}

/// Why the announcer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceError {
    #[error("mDNS is unavailable: {0}")]
    Daemon(#[from] mdns_sd::Error),
    #[error(
        "the mDNS record was registered but no network interface sent it within {ANNOUNCE_CONFIRM_TIMEOUT_MS} ms (check --mdns-interface)"
    )]
    NotSent,
    #[error("the mDNS daemon stopped")]
    DaemonGone,
}

/// A registered record, until the daemon reports that it went out on the network.
#[must_use = "an announcement is only known to be out once `confirmed` says so"]
pub struct Announcement {
    monitor: Receiver<DaemonEvent>,
    fullname: String,
}

impl std::fmt::Debug for Announcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcement")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

impl Announcement {
    /// Waits until the daemon has multicast the record on at least one interface, at
    /// most [`ANNOUNCE_CONFIRM_TIMEOUT_MS`]: registering alone sends nothing when no
    /// enabled interface exists (say `--mdns-interface` names one that does not).
    pub async fn confirmed(mut self) -> Result<(), AnnounceError> {
        let wait = async {
            loop {
                match self.monitor.recv_async().await {
                    Ok(DaemonEvent::Announce(name, _))
                        if name.eq_ignore_ascii_case(&self.fullname) =>
                    {
                        return Ok(());
                    }
                    // A name conflict on the network: the daemon announces a new name.
                    Ok(DaemonEvent::NameChange(change))
                        if change.original.eq_ignore_ascii_case(&self.fullname) =>
                    {
                        self.fullname = change.new_name;
                    }
                    Ok(_) => {}
                    Err(_) => return Err(AnnounceError::DaemonGone),
                }
            }
        };
        tokio::time::timeout(Duration::from_millis(ANNOUNCE_CONFIRM_TIMEOUT_MS), wait)
            .await
            .unwrap_or(Err(AnnounceError::NotSent))
    }
}

/// Owns the mDNS daemon, at most one registered offer (one per TV) and the TV's
/// presence record.
pub struct Announcer {
    daemon: ServiceDaemon,
    host_name: String,
    /// Full DNS-SD name of the registered offer, if any.
    registered: Option<String>,
    /// Full DNS-SD name of the presence record, once announced.
    presence: Option<String>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("host_name", &self.host_name)
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

impl Announcer {
    pub fn new(interfaces: &Interfaces) -> Result<Self, AnnounceError> {
        let daemon = ServiceDaemon::new()?;
        if let Interfaces::Only(names) = interfaces {
            // Commands are processed in order, so nothing is sent on other interfaces
            // before the restriction takes effect.
            daemon.disable_interface(IfKind::All)?;
            for name in names {
                daemon.enable_interface(name.as_str())?;
            }
        }
        let host_name = format!(
            "couchpay-tv-{}.local.",
            protocol::hex(&protocol::random_bytes::<4>())
        );
        Ok(Self {
            daemon,
            host_name,
            registered: None,
            presence: None,
        })
    }

    /// Registers the offer `record` (an order or a red-packet set), replacing this TV's
    /// previous offer. Whether it really went out is for [`Announcement::confirmed`] to
    /// say.
    pub fn announce(
        &mut self,
        record: &protocol::Announcement,
    ) -> Result<Announcement, AnnounceError> {
        // The receiver only reports when the goodbye went out; nothing waits for it.
        let _ = self.withdraw();
        let (monitor, fullname) = self.register(record)?;
        self.registered = Some(fullname.clone());
        Ok(Announcement { monitor, fullname })
    }

    /// Announces the TV's presence (replacing an earlier one): it stays on while the
    /// offers come and go.
    pub fn present(&mut self, presence: &TvPresence) -> Result<Announcement, AnnounceError> {
        if let Some(old) = self.presence.take() {
            let _ = self.daemon.unregister(&old);
        }
        let (monitor, fullname) = self.register(&protocol::Announcement::Tv(presence.clone()))?;
        self.presence = Some(fullname.clone());
        Ok(Announcement { monitor, fullname })
    }

    fn register(
        &mut self,
        record: &protocol::Announcement,
    ) -> Result<(Receiver<DaemonEvent>, String), AnnounceError> {
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &record.instance_name(),
            &self.host_name,
            "",
            ANNOUNCED_PORT,
            record.to_txt().as_slice(),
        )?
        .enable_addr_auto();
        let fullname = info.get_fullname().to_owned();
        // Subscribed before registering, so the first announcement is not missed.
        let monitor = self.daemon.monitor()?;
        self.daemon.register(info)?;
        Ok((monitor, fullname))
    }

    /// Withdraws the announcement at once: the daemon multicasts a DNS-SD goodbye (TTL 0)
    /// for it. Returns a receiver that reports when the goodbye went out, or `None` when
    /// nothing was announced. Browsers drop the record one second after the goodbye
    /// (RFC 6762 §10.1).
    pub fn withdraw(&mut self) -> Option<mdns_sd::Receiver<UnregisterStatus>> {
        let fullname = self.registered.take()?;
        match self.daemon.unregister(&fullname) {
            Ok(done) => Some(done),
            Err(e) => {
                tracing::warn!(error = %e, "could not withdraw the mDNS announcement");
                None
            }
        }
    }

    pub fn is_announcing(&self) -> bool {
        self.registered.is_some()
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        let _ = self.withdraw();
        if let Some(presence) = self.presence.take() {
            let _ = self.daemon.unregister(&presence);
        }
        // Best effort: the daemon thread ends on its own when the process exits.
        let _ = self.daemon.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_from_the_command_line() {
        let none: [&str; 0] = [];
        assert_eq!(Interfaces::from_names(&none), Interfaces::All);
        assert_eq!(Interfaces::from_names(&["all"]), Interfaces::All);
        assert_eq!(Interfaces::from_names(&["ALL"]), Interfaces::All);
        assert_eq!(Interfaces::from_names(&["lo", "*"]), Interfaces::All);
        assert_eq!(Interfaces::from_names(&[""]), Interfaces::All);
        assert_eq!(
            Interfaces::from_names(&["lo", " eth0 "]),
            Interfaces::Only(vec!["lo".into(), "eth0".into()])
        );
    }
}
