//! Announces the order on screen over mDNS/DNS-SD (SPEC P2) and withdraws it the moment
//! the order is paid, expired or cancelled (SPEC P6).

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo, UnregisterStatus};
use protocol::{DiscoveryRecord, SERVICE_TYPE};

/// DNS-SD needs a port in the SRV record, but the TV serves nothing: companions read
/// the TXT record and talk to the server named there. Port 9 is the "discard" service.
pub const ANNOUNCED_PORT: u16 = 9;

/// Which network interfaces the announcer may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interfaces {
    /// Every interface (production default).
    All,
    /// Only these interfaces by name, e.g. `lo` in tests so nothing leaves the machine.
    Only(Vec<String>),
}

/// Why the announcer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceError {
    #[error("mDNS is unavailable: {0}")]
    Daemon(#[from] mdns_sd::Error),
}

/// Owns the mDNS daemon and at most one registered record (one per TV).
pub struct Announcer {
    daemon: ServiceDaemon,
    host_name: String,
    /// Full DNS-SD name of the registered record, if any.
    registered: Option<String>,
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
        })
    }

    /// Registers `record`, replacing this TV's previous announcement.
    pub fn announce(&mut self, record: &DiscoveryRecord) -> Result<(), AnnounceError> {
        // The receiver only reports when the goodbye went out; nothing waits for it.
        let _ = self.withdraw();
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
        self.daemon.register(info)?;
        self.registered = Some(fullname);
        Ok(())
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
        // Best effort: the daemon thread ends on its own when the process exits.
        let _ = self.daemon.shutdown();
    }
}
