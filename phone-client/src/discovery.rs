//! mDNS/DNS-SD discovery: a live list of nearby TVs offering a pending order, updated
//! as TVs announce and withdraw orders. BLE results ([`crate::ble`]) join the same list.
//!
//! Records are untrusted hints. A record naming a server the companion does not trust
//! is refused (and reported, so the person can see why a TV is missing); orders paid
//! from this device are ignored. Paying always re-fetches the order from the server.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use protocol::{DiscoveryRecord, SERVICE_TYPE, ServerUrl};

/// Most TVs listed at once; announcements beyond this are dropped (a hostile network
/// must not grow the list without bound).
pub const MAX_NEARBY_TVS: usize = 64;
/// Longest wait on mDNS before looking at BLE results again.
const BLE_POLL_MS: u64 = 50;
/// Port advertised by [`Announcer`] when the server URL has none.
const DEFAULT_ANNOUNCE_PORT: u16 = 80;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    #[error("cannot start mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
}

/// Which network interfaces mDNS uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interfaces {
    /// Every interface (the default on a phone or laptop).
    All,
    /// Only these interfaces by name, e.g. `lo` in tests: nothing leaves the machine.
    Only(Vec<String>),
}

impl Interfaces {
    pub fn loopback() -> Self {
        Self::Only(vec!["lo".into()])
    }

    fn apply(&self, daemon: &ServiceDaemon) -> Result<(), DiscoveryError> {
        if let Self::Only(names) = self {
            daemon.disable_interface(IfKind::All)?;
            for n in names {
                daemon.enable_interface(n.as_str())?;
            }
        }
        Ok(())
    }
}

/// A TV offering an order, as announced (names are the TV's claim until fetched).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NearbyOrder {
    /// The DNS-SD instance name, unique per TV.
    pub fullname: String,
    pub record: DiscoveryRecord,
    /// Every address the TV was resolved at (the first answer may carry only one).
    pub addresses: Vec<IpAddr>,
}

/// A change to the nearby list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NearbyEvent {
    /// A TV appeared with an order.
    Listed(NearbyOrder),
    /// A listed TV now offers a different order, or was seen at more addresses.
    Updated(NearbyOrder),
    /// A TV withdrew its order (paid, expired, cancelled or switched off).
    Withdrawn(NearbyOrder),
    /// A TV announced something the companion will not use, and why.
    Refused { fullname: String, reason: String },
}

/// Decides whether an announced order is shown at all (e.g. not if paid here).
pub type IgnoreFn = Box<dyn Fn(&DiscoveryRecord) -> bool + Send>;

/// A running mDNS browse for Couchpay TVs.
pub struct Browser {
    daemon: ServiceDaemon,
    events: mdns_sd::Receiver<ServiceEvent>,
    trusted: Vec<ServerUrl>,
    ignore: IgnoreFn,
    nearby: BTreeMap<String, NearbyOrder>,
    started: Instant,
    /// BLE results merged into `nearby`, and which entries only BLE has seen.
    ble: Option<crate::ble::BleScanner>,
    ble_only: std::collections::BTreeSet<String>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("trusted", &self.trusted)
            .field("nearby", &self.nearby)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts browsing on `interfaces`, listing only orders on `trusted` servers.
    pub fn start(
        interfaces: &Interfaces,
        trusted: Vec<ServerUrl>,
        ignore: IgnoreFn,
    ) -> Result<Self, DiscoveryError> {
        let daemon = ServiceDaemon::new()?;
        interfaces.apply(&daemon)?;
        let events = daemon.browse(SERVICE_TYPE)?;
        Ok(Self {
            daemon,
            events,
            trusted,
            ignore,
            nearby: BTreeMap::new(),
            started: Instant::now(),
            ble: None,
            ble_only: Default::default(),
        })
    }

    /// Also lists TVs found over Bluetooth LE, in the same list (one entry per TV id).
    pub fn with_ble(mut self, scanner: crate::ble::BleScanner) -> Self {
        self.ble = Some(scanner);
        self
    }

    /// Time since the browse started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The current list, by instance name.
    pub fn nearby(&self) -> impl Iterator<Item = &NearbyOrder> {
        self.nearby.values()
    }

    /// Waits up to `timeout` for the next change to the list.
    pub fn next_event(&mut self, timeout: Duration) -> Option<NearbyEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if let Some(ev) = self.ble.as_ref().and_then(crate::ble::BleScanner::try_next) {
                if let Some(change) = self.handle_ble(ev) {
                    return Some(change);
                }
                continue;
            }
            // With BLE on, wake up often enough to merge its results promptly.
            let wait = match self.ble {
                Some(_) => left.min(Duration::from_millis(BLE_POLL_MS)),
                None => left,
            };
            let ev = match self.events.recv_timeout(wait) {
                Ok(ev) => ev,
                Err(_) if wait < left => continue,
                Err(_) => return None,
            };
            if let Some(change) = self.handle(ev) {
                return Some(change);
            }
        }
    }

    /// Applies one raw mDNS event to the list; returns the visible change, if any.
    fn handle(&mut self, ev: ServiceEvent) -> Option<NearbyEvent> {
        match ev {
            ServiceEvent::ServiceResolved(info) => {
                let fullname = info.fullname.clone();
                self.ble_only.remove(&fullname);
                let props = info.txt_properties.clone().into_property_map_str();
                let record = match DiscoveryRecord::from_txt(&props) {
                    Ok(r) => r,
                    Err(e) => {
                        return Some(NearbyEvent::Refused {
                            fullname,
                            reason: format!("malformed announcement: {e}"),
                        });
                    }
                };
                if !self.trusted.contains(&record.server) {
                    // A spoofed or foreign TV; drop any earlier listing under that name.
                    self.nearby.remove(&fullname);
                    return Some(NearbyEvent::Refused {
                        fullname,
                        reason: format!(
                            "its order is on {}, which is not a trusted server",
                            record.server
                        ),
                    });
                }
                if (self.ignore)(&record) {
                    tracing::debug!(order = %record.order, "ignoring an order paid here");
                    return self.nearby.remove(&fullname).map(NearbyEvent::Withdrawn);
                }
                let mut addresses: Vec<IpAddr> =
                    info.addresses.iter().map(|a| a.to_ip_addr()).collect();
                addresses.sort();
                match self.nearby.get_mut(&fullname) {
                    Some(existing) => {
                        let mut merged = if existing.record.order == record.order {
                            existing.addresses.clone()
                        } else {
                            Vec::new()
                        };
                        for a in addresses {
                            if !merged.contains(&a) {
                                merged.push(a);
                            }
                        }
                        merged.sort();
                        if existing.record == record && existing.addresses == merged {
                            return None;
                        }
                        existing.record = record;
                        existing.addresses = merged;
                        Some(NearbyEvent::Updated(existing.clone()))
                    }
                    None => {
                        if self.nearby.len() >= MAX_NEARBY_TVS {
                            return Some(NearbyEvent::Refused {
                                fullname,
                                reason: format!("more than {MAX_NEARBY_TVS} TVs nearby"),
                            });
                        }
                        let entry = NearbyOrder {
                            fullname: fullname.clone(),
                            record,
                            addresses,
                        };
                        self.nearby.insert(fullname, entry.clone());
                        Some(NearbyEvent::Listed(entry))
                    }
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                self.nearby.remove(&fullname).map(NearbyEvent::Withdrawn)
            }
            _ => None,
        }
    }

    /// Applies one BLE result to the list, keyed like mDNS entries so a TV seen on both
    /// channels is listed once.
    fn handle_ble(&mut self, ev: crate::ble::BleEvent) -> Option<NearbyEvent> {
        crate::ble::merge(
            ev,
            &mut self.nearby,
            &mut self.ble_only,
            &self.trusted,
            &self.ignore,
        )
    }

    /// Stops browsing and shuts the mDNS daemon down.
    pub fn stop(self) {
        let _ = self.daemon.stop_browse(SERVICE_TYPE);
        let _ = self.daemon.shutdown();
    }
}

/// Announces one order the way a TV does. The companion does not need this to pay;
/// it exists for tests, benchmarks and demos (`couchpay announce`), so discovery can be
/// exercised without a TV.
pub struct Announcer {
    daemon: ServiceDaemon,
    fullname: Option<String>,
    interfaces: Interfaces,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

impl Announcer {
    pub fn start(interfaces: &Interfaces) -> Result<Self, DiscoveryError> {
        let daemon = ServiceDaemon::new()?;
        interfaces.apply(&daemon)?;
        Ok(Self {
            daemon,
            fullname: None,
            interfaces: interfaces.clone(),
        })
    }

    /// Announces `record`, replacing the previous announcement of this announcer.
    pub fn announce(&mut self, record: &DiscoveryRecord) -> Result<(), DiscoveryError> {
        let host = format!("{}.local.", record.instance_name());
        let port = record
            .server
            .as_str()
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(DEFAULT_ANNOUNCE_PORT);
        // Loopback always; on all interfaces mdns-sd adds each interface's own address.
        let ip: IpAddr = [127, 0, 0, 1].into();
        let txt = record.to_txt();
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &record.instance_name(),
            &host,
            ip,
            port,
            txt.as_slice(),
        )?;
        let info = if matches!(self.interfaces, Interfaces::All) {
            info.enable_addr_auto()
        } else {
            info
        };
        let fullname = info.get_fullname().to_owned();
        self.daemon.register(info)?;
        self.fullname = Some(fullname);
        Ok(())
    }

    /// Withdraws the current announcement (as a TV does once its order is paid).
    pub fn withdraw(&mut self) -> Result<(), DiscoveryError> {
        if let Some(name) = self.fullname.take() {
            let rx = self.daemon.unregister(&name)?;
            // Wait briefly so the goodbye packet is sent before a caller shuts down.
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
        Ok(())
    }

    pub fn stop(mut self) {
        let _ = self.withdraw();
        let _ = self.daemon.shutdown();
    }
}
