//! mDNS/DNS-SD discovery: live lists of nearby TVs offering a pending order or showing
//! red packets, updated as TVs announce and withdraw them, and of the TVs that are here
//! at all (their presence records), to pick one to show red packets on. BLE results
//! ([`crate::ble`]) join the same lists.
//!
//! Records are untrusted hints. A record naming a server the companion does not trust
//! is refused (and reported, so the person can see why a TV is missing); orders paid
//! from this device are ignored. Paying always re-fetches the order from the server.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use protocol::{Announcement, DiscoveryRecord, PacketsRecord, SERVICE_TYPE, ServerUrl, TvPresence};

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

/// A TV showing red packets, as announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NearbyPackets {
    /// The DNS-SD instance name (the TV's offer, shared with its orders).
    pub fullname: String,
    pub record: PacketsRecord,
    pub addresses: Vec<IpAddr>,
}

/// A change to the nearby lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NearbyEvent {
    /// A TV appeared with an order.
    Listed(NearbyOrder),
    /// A listed TV now offers a different order, or was seen at more addresses.
    Updated(NearbyOrder),
    /// A TV withdrew its order (paid, expired, cancelled or switched off).
    Withdrawn(NearbyOrder),
    /// A TV shows red packets (a new set, or the TV moved on to another one).
    PacketsListed(NearbyPackets),
    /// A TV stopped showing them (all opened, expired, or put away).
    PacketsWithdrawn(NearbyPackets),
    /// A TV is here (or changed its name).
    TvListed(TvPresence),
    /// A TV went away (switched off).
    TvGone(TvPresence),
    /// A TV announced something the companion will not use, and why.
    Refused { fullname: String, reason: String },
}

/// The refusal of one more TV when a list is full.
pub(crate) fn too_many(fullname: String) -> NearbyEvent {
    NearbyEvent::Refused {
        fullname,
        reason: format!("more than {MAX_NEARBY_TVS} TVs nearby"),
    }
}

/// Decides whether an announced order is shown at all (e.g. not if paid here).
pub type IgnoreFn = Box<dyn Fn(&DiscoveryRecord) -> bool + Send>;

/// What the browser knows, by DNS-SD instance name.
#[derive(Debug, Default)]
pub(crate) struct Lists {
    pub(crate) orders: BTreeMap<String, NearbyOrder>,
    pub(crate) packets: BTreeMap<String, NearbyPackets>,
    pub(crate) tvs: BTreeMap<String, TvPresence>,
    /// Entries only BLE has seen.
    pub(crate) ble_only: BTreeSet<String>,
}

/// A running mDNS browse for Couchpay TVs.
pub struct Browser {
    daemon: ServiceDaemon,
    events: mdns_sd::Receiver<ServiceEvent>,
    trusted: Vec<ServerUrl>,
    ignore: IgnoreFn,
    lists: Lists,
    /// Changes not handed out yet (one mDNS answer can make two: a TV that moves from an
    /// order to red packets withdraws one and lists the other).
    queued: VecDeque<NearbyEvent>,
    started: Instant,
    /// BLE results merged into the lists.
    ble: Option<crate::ble::BleScanner>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("trusted", &self.trusted)
            .field("lists", &self.lists)
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
            lists: Lists::default(),
            queued: VecDeque::new(),
            started: Instant::now(),
            ble: None,
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

    /// The TVs offering an order, by instance name.
    pub fn nearby(&self) -> impl Iterator<Item = &NearbyOrder> {
        self.lists.orders.values()
    }

    /// The TVs showing red packets, by instance name.
    pub fn packets(&self) -> impl Iterator<Item = &NearbyPackets> {
        self.lists.packets.values()
    }

    /// Every TV known to be here (by its presence, or by what it offers), once each,
    /// by name.
    pub fn tvs(&self) -> Vec<TvPresence> {
        let mut by_id: BTreeMap<String, TvPresence> = BTreeMap::new();
        let offers = self
            .lists
            .orders
            .values()
            .map(|o| Announcement::Order(o.record.clone()).presence())
            .chain(
                self.lists
                    .packets
                    .values()
                    .map(|p| Announcement::Packets(p.record.clone()).presence()),
            );
        // Presence records win: they are what the TV says about itself.
        for t in offers.chain(self.lists.tvs.values().cloned()) {
            by_id.insert(t.tv_id.to_string(), t);
        }
        let mut tvs: Vec<TvPresence> = by_id.into_values().collect();
        tvs.sort_by(|a, b| a.tv_name.cmp(&b.tv_name).then(a.tv_id.cmp(&b.tv_id)));
        tvs
    }

    /// Waits up to `timeout` for the next change to the lists.
    pub fn next_event(&mut self, timeout: Duration) -> Option<NearbyEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(change) = self.queued.pop_front() {
                return Some(change);
            }
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

    /// Applies one raw mDNS event to the lists; returns the first visible change, if
    /// any (a second one waits in `queued`).
    fn handle(&mut self, ev: ServiceEvent) -> Option<NearbyEvent> {
        match ev {
            ServiceEvent::ServiceResolved(info) => {
                let fullname = info.fullname.clone();
                self.lists.ble_only.remove(&fullname);
                let props = info.txt_properties.clone().into_property_map_str();
                let record = match Announcement::from_txt(&props) {
                    Ok(r) => r,
                    Err(e) => {
                        return Some(NearbyEvent::Refused {
                            fullname,
                            reason: format!("malformed announcement: {e}"),
                        });
                    }
                };
                if !self.trusted.contains(record.server()) {
                    // A spoofed or foreign TV; drop any earlier listing under that name.
                    self.removed(&fullname);
                    self.queued.clear();
                    return Some(NearbyEvent::Refused {
                        fullname,
                        reason: format!(
                            "its offer is on {}, which is not a trusted server",
                            record.server()
                        ),
                    });
                }
                let mut addresses: Vec<IpAddr> =
                    info.addresses.iter().map(|a| a.to_ip_addr()).collect();
                addresses.sort();
                match record {
                    Announcement::Order(record) => {
                        if let Some(p) = self.lists.packets.remove(&fullname) {
                            self.queued.push_back(NearbyEvent::PacketsWithdrawn(p));
                        }
                        let change = self.order_resolved(fullname, record, addresses);
                        self.queued.extend(change);
                    }
                    Announcement::Packets(record) => {
                        if let Some(o) = self.lists.orders.remove(&fullname) {
                            self.queued.push_back(NearbyEvent::Withdrawn(o));
                        }
                        let change = self.packets_resolved(fullname, record, addresses);
                        self.queued.extend(change);
                    }
                    Announcement::Tv(t) => {
                        let known = self.lists.tvs.get(&fullname) == Some(&t);
                        let full = self.lists.tvs.len() >= MAX_NEARBY_TVS
                            && !self.lists.tvs.contains_key(&fullname);
                        if !known && !full {
                            self.lists.tvs.insert(fullname, t.clone());
                            self.queued.push_back(NearbyEvent::TvListed(t));
                        }
                    }
                }
                self.queued.pop_front()
            }
            ServiceEvent::ServiceRemoved(_, fullname) => self.removed(&fullname),
            _ => None,
        }
    }

    /// Drops whatever was listed under `fullname`.
    fn removed(&mut self, fullname: &str) -> Option<NearbyEvent> {
        if let Some(o) = self.lists.orders.remove(fullname) {
            return Some(NearbyEvent::Withdrawn(o));
        }
        if let Some(p) = self.lists.packets.remove(fullname) {
            return Some(NearbyEvent::PacketsWithdrawn(p));
        }
        self.lists.tvs.remove(fullname).map(NearbyEvent::TvGone)
    }

    fn order_resolved(
        &mut self,
        fullname: String,
        record: DiscoveryRecord,
        addresses: Vec<IpAddr>,
    ) -> Option<NearbyEvent> {
        if (self.ignore)(&record) {
            tracing::debug!(order = %record.order, "ignoring an order paid here");
            return self
                .lists
                .orders
                .remove(&fullname)
                .map(NearbyEvent::Withdrawn);
        }
        match self.lists.orders.get_mut(&fullname) {
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
                if self.lists.orders.len() >= MAX_NEARBY_TVS {
                    return Some(too_many(fullname));
                }
                let entry = NearbyOrder {
                    fullname: fullname.clone(),
                    record,
                    addresses,
                };
                self.lists.orders.insert(fullname, entry.clone());
                Some(NearbyEvent::Listed(entry))
            }
        }
    }

    fn packets_resolved(
        &mut self,
        fullname: String,
        record: PacketsRecord,
        addresses: Vec<IpAddr>,
    ) -> Option<NearbyEvent> {
        if let Some(existing) = self.lists.packets.get_mut(&fullname)
            && existing.record == record
        {
            // The same set seen again, maybe at another address.
            for a in addresses {
                if !existing.addresses.contains(&a) {
                    existing.addresses.push(a);
                }
            }
            existing.addresses.sort();
            return None;
        }
        if !self.lists.packets.contains_key(&fullname) && self.lists.packets.len() >= MAX_NEARBY_TVS
        {
            return Some(too_many(fullname));
        }
        let entry = NearbyPackets {
            fullname: fullname.clone(),
            record,
            addresses,
        };
        self.lists.packets.insert(fullname, entry.clone());
        Some(NearbyEvent::PacketsListed(entry))
    }

    /// Applies one BLE result to the list, keyed like mDNS entries so a TV seen on both
    /// channels is listed once.
    fn handle_ble(&mut self, ev: crate::ble::BleEvent) -> Option<NearbyEvent> {
        crate::ble::merge(ev, &mut self.lists, &self.trusted, &self.ignore)
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
        self.announce_any(&Announcement::Order(record.clone()))
    }

    /// Announces any kind of record (an order, red packets, a TV's presence),
    /// replacing the previous announcement of this announcer.
    pub fn announce_any(&mut self, record: &Announcement) -> Result<(), DiscoveryError> {
        let host = format!("{}.local.", record.instance_name());
        let port = record
            .server()
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

/// Browses on `interfaces` for up to `timeout` and returns the first TV showing red
/// packets on one of the `trusted` servers.
pub fn first_packets(
    interfaces: &Interfaces,
    trusted: Vec<ServerUrl>,
    timeout: Duration,
) -> Result<Option<PacketsRecord>, DiscoveryError> {
    let mut browser = Browser::start(interfaces, trusted, Box::new(|_| false))?;
    let found = loop {
        let left = timeout.saturating_sub(browser.elapsed());
        if left.is_zero() {
            break None;
        }
        if let Some(p) = browser.packets().next() {
            break Some(p.record.clone());
        }
        let _ = browser.next_event(left);
    };
    browser.stop();
    Ok(found)
}

/// Browses on `interfaces` for up to `timeout` for a TV working with one of the
/// `trusted` servers whose name (ignoring case) or device id is `name`.
pub fn find_tv(
    interfaces: &Interfaces,
    trusted: Vec<ServerUrl>,
    name: &str,
    timeout: Duration,
) -> Result<Option<TvPresence>, DiscoveryError> {
    let mut browser = Browser::start(interfaces, trusted, Box::new(|_| false))?;
    let wanted = |t: &TvPresence| {
        t.tv_name.eq_ignore_ascii_case(name.trim()) || t.tv_id.as_str() == name.trim()
    };
    let found = loop {
        if let Some(t) = browser.tvs().into_iter().find(|t| wanted(t)) {
            break Some(t);
        }
        let left = timeout.saturating_sub(browser.elapsed());
        if left.is_zero() {
            break None;
        }
        let _ = browser.next_event(left);
    };
    browser.stop();
    Ok(found)
}
