//! Bluetooth LE discovery (SPEC P4): scan for Couchpay adverts, read the full discovery
//! record from the TV's GATT characteristic (the "which order?" request), and report TVs
//! as they appear and withdraw their order. [`Browser`](crate::Browser) merges these
//! into the same Nearby list as mDNS, deduplicated by TV id.
//!
//! The radio sits behind [`Central`] so the logic runs without a bus; [`BtleplugCentral`]
//! is the real one (btleplug; BlueZ over D-Bus on Linux).
//!
//! Liveness: an advert that stops is not always reported (BlueZ keeps the device object
//! for a while, and a mock may keep it for good), so a listed TV that has been quiet for
//! [`QUIET_MS`] is probed by re-reading its record. The TV unregisters its GATT service
//! when it withdraws the order, so a failed or different read means the order is gone.

use std::collections::HashMap;
use std::future::Future;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use protocol::ble::Advert;
use protocol::{Announcement, DiscoveryRecord, PacketsRecord, SERVICE_TYPE, ServerUrl};

use crate::discovery::{
    IgnoreFn, Lists, MAX_NEARBY_TVS, NearbyEvent, NearbyOrder, NearbyPackets, too_many,
};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Longest wait for connecting to a TV and reading its record.
pub const GATT_READ_TIMEOUT_MS: u64 = 5_000;
/// A listed TV not heard from for this long is probed.
pub const QUIET_MS: u64 = 1_500;
/// How often quiet TVs are looked at.
pub const PROBE_INTERVAL_MS: u64 = 1_000;
/// Reads of one advert's record before giving up on it until it changes.
pub const MAX_READ_ATTEMPTS: u32 = 3;
/// Most TVs tracked at once (a hostile neighbourhood must not grow memory without bound).
pub const MAX_TRACKED_DEVICES: usize = 64;
/// Largest record accepted from a GATT read, in bytes.
pub const MAX_RECORD_BYTES: usize = 4_096;

pub use protocol::ble::{BLUEZ_CALL_TIMEOUT_MS, BleError};

/// One advert report (or any sign of life) from a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// The radio's id for the device (stable while it is in range).
    pub device: String,
    /// The Couchpay service data, when this report carried it.
    pub payload: Option<Vec<u8>>,
}

/// A BLE central that can scan and read the record characteristic.
pub trait Central: Send + Sync + 'static {
    /// Starts scanning; every report arrives on the returned channel.
    fn scan(
        &self,
    ) -> impl Future<Output = Result<mpsc::UnboundedReceiver<Sighting>, BleError>> + Send;
    /// Connects to `device` (if needed) and reads the record characteristic.
    fn read_record(&self, device: &str) -> impl Future<Output = Result<Vec<u8>, BleError>> + Send;
    /// Lets go of `device` (closes a connection kept for probing).
    fn forget(&self, device: &str) -> impl Future<Output = ()> + Send;
}

/// What the scanner reports to the Nearby list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BleEvent {
    /// A TV offers this order (record read over GATT and checked against the advert).
    Found(DiscoveryRecord),
    /// The TV no longer offers this order.
    Lost(DiscoveryRecord),
    /// A TV offers this red-packet set (read over GATT, checked against the advert).
    PacketsFound(PacketsRecord),
    /// The TV no longer offers this set.
    PacketsLost(PacketsRecord),
    /// BLE discovery cannot run; sent once, other channels keep working.
    Unavailable(BleError),
}

/// A running BLE scan, reporting on a plain channel so the synchronous
/// [`Browser`](crate::Browser) can poll it.
#[derive(Debug)]
pub struct BleScanner {
    events: std_mpsc::Receiver<BleEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl BleScanner {
    /// Starts scanning on `handle`; `open` gives the central (it runs in the background,
    /// so a slow or absent BlueZ never blocks the caller).
    pub fn start<C, F>(handle: &Handle, open: F) -> Self
    where
        C: Central,
        F: Future<Output = Result<C, BleError>> + Send + 'static,
    {
        let (tx, events) = std_mpsc::channel();
        let task = handle.spawn(async move {
            let central = match open.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("{e}; TVs are still found over mDNS, QR and short code");
                    let _ = tx.send(BleEvent::Unavailable(e));
                    return;
                }
            };
            let sightings = match bounded(central.scan()).await.and_then(|r| r) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{e}; TVs are still found over mDNS, QR and short code");
                    let _ = tx.send(BleEvent::Unavailable(e));
                    return;
                }
            };
            Tracker::new(central, tx).run(sightings).await;
        });
        Self { events, task }
    }

    /// The next event, if one is waiting.
    pub fn try_next(&self) -> Option<BleEvent> {
        self.events.try_recv().ok()
    }

    /// Waits up to `timeout` for the next event.
    pub fn next_timeout(&self, timeout: Duration) -> Option<BleEvent> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl Drop for BleScanner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Tracked {
    advert: Advert,
    record: Option<Announcement>,
    last_seen: Instant,
    attempts: u32,
}

/// The scanner's state: which device offers which order, read or not.
struct Tracker<C> {
    central: C,
    tx: std_mpsc::Sender<BleEvent>,
    devices: HashMap<String, Tracked>,
}

impl<C: Central> Tracker<C> {
    fn new(central: C, tx: std_mpsc::Sender<BleEvent>) -> Self {
        Self {
            central,
            tx,
            devices: HashMap::new(),
        }
    }

    async fn run(mut self, mut sightings: mpsc::UnboundedReceiver<Sighting>) {
        let mut probe = tokio::time::interval(Duration::from_millis(PROBE_INTERVAL_MS));
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                s = sightings.recv() => match s {
                    Some(s) => self.saw(s).await,
                    None => break,
                },
                _ = probe.tick() => self.probe().await,
            }
        }
        for (device, t) in std::mem::take(&mut self.devices) {
            if let Some(r) = t.record {
                self.lost(r);
            }
            self.central.forget(&device).await;
        }
    }

    fn emit(&self, ev: BleEvent) {
        let _ = self.tx.send(ev);
    }

    fn found(&self, a: Announcement) {
        match a {
            Announcement::Order(r) => self.emit(BleEvent::Found(r)),
            Announcement::Packets(p) => self.emit(BleEvent::PacketsFound(p)),
            // Never advertised; `Advert::names` refuses it before this.
            Announcement::Tv(_) => {}
        }
    }

    fn lost(&self, a: Announcement) {
        match a {
            Announcement::Order(r) => self.emit(BleEvent::Lost(r)),
            Announcement::Packets(p) => self.emit(BleEvent::PacketsLost(p)),
            Announcement::Tv(_) => {}
        }
    }

    async fn saw(&mut self, s: Sighting) {
        let now = Instant::now();
        let Some(payload) = s.payload else {
            if let Some(t) = self.devices.get_mut(&s.device) {
                t.last_seen = now;
            }
            return;
        };
        let advert = match Advert::decode(&payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(device = %s.device, error = %e, "ignoring a foreign advert");
                return;
            }
        };
        let full = self.devices.len() >= MAX_TRACKED_DEVICES;
        match self.devices.get_mut(&s.device) {
            Some(t) if t.advert == advert => {
                t.last_seen = now;
                return;
            }
            Some(_) => {
                // The TV switched offers: the old one is gone.
                if let Some(old) = self.devices.remove(&s.device).and_then(|t| t.record) {
                    self.lost(old);
                }
            }
            None if full => {
                tracing::debug!(device = %s.device, "too many BLE devices; ignoring");
                return;
            }
            None => {}
        }
        self.devices.insert(
            s.device.clone(),
            Tracked {
                advert,
                record: None,
                last_seen: now,
                attempts: 0,
            },
        );
        self.read(&s.device).await;
    }

    /// Reads the record of a tracked device that has none yet.
    async fn read(&mut self, device: &str) {
        let result = self.fetch(device).await;
        let Some(t) = self.devices.get_mut(device) else {
            return;
        };
        t.attempts += 1;
        match result {
            Ok(record) if t.advert.names(&record) => {
                t.last_seen = Instant::now();
                t.record = Some(record.clone());
                self.found(record);
            }
            Ok(_) => {
                tracing::warn!(device, "GATT record does not match the advert");
            }
            Err(e) => tracing::debug!(device, error = %e, "could not read the TV's record"),
        }
    }

    async fn fetch(&self, device: &str) -> Result<Announcement, BleError> {
        let bytes = tokio::time::timeout(
            Duration::from_millis(GATT_READ_TIMEOUT_MS),
            self.central.read_record(device),
        )
        .await
        .map_err(|_| BleError::Timeout)??;
        parse_record(&bytes)
    }

    /// Re-reads quiet TVs; drops those whose record is gone or changed.
    async fn probe(&mut self) {
        let now = Instant::now();
        let quiet = Duration::from_millis(QUIET_MS);
        let due: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, t)| {
                (t.record.is_none() && t.attempts < MAX_READ_ATTEMPTS)
                    || (t.record.is_some() && now.duration_since(t.last_seen) >= quiet)
            })
            .map(|(d, _)| d.clone())
            .collect();
        for device in due {
            let unread = self
                .devices
                .get(&device)
                .is_some_and(|t| t.record.is_none());
            if unread {
                self.read(&device).await;
                continue;
            }
            let result = self.fetch(&device).await;
            let Some(t) = self.devices.get_mut(&device) else {
                continue;
            };
            match result {
                Ok(r) if Some(&r) == t.record.as_ref() => t.last_seen = Instant::now(),
                _ => {
                    if let Some(old) = self.devices.remove(&device).and_then(|t| t.record) {
                        self.lost(old);
                    }
                    self.central.forget(&device).await;
                }
            }
        }
    }
}

/// Parses the record characteristic's value (JSON, bounded): an order or a red-packet
/// set, with the clipping rules applied again.
pub fn parse_record(bytes: &[u8]) -> Result<Announcement, BleError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(BleError::Other(format!(
            "record of {} bytes is too large",
            bytes.len()
        )));
    }
    Announcement::from_json(bytes).map_err(|e| BleError::Other(format!("malformed record: {e}")))
}

/// Applies a BLE result to the Nearby lists (keyed by the TV's DNS-SD name, so a TV
/// seen over mDNS and BLE is one entry). `lists.ble_only` holds the entries only BLE has
/// seen. Untrusted servers are refused and ignored orders are not listed, as for mDNS.
pub(crate) fn merge(
    ev: BleEvent,
    lists: &mut Lists,
    trusted: &[ServerUrl],
    ignore: &IgnoreFn,
) -> Option<NearbyEvent> {
    let refused = |fullname: String, server: &ServerUrl| NearbyEvent::Refused {
        fullname,
        reason: format!("its offer is on {server}, which is not a trusted server"),
    };
    match ev {
        BleEvent::Found(record) => {
            let fullname = fullname(&record.instance_name());
            if !trusted.contains(&record.server) {
                return Some(refused(fullname, &record.server));
            }
            if ignore(&record) {
                return None;
            }
            let full = lists.orders.len() >= MAX_NEARBY_TVS;
            match lists.orders.get_mut(&fullname) {
                Some(existing) if existing.record.order == record.order => None,
                Some(existing) => {
                    existing.record = record;
                    existing.addresses.clear();
                    Some(NearbyEvent::Updated(existing.clone()))
                }
                None if full => Some(too_many(fullname)),
                None => {
                    let entry = NearbyOrder {
                        fullname: fullname.clone(),
                        record,
                        addresses: Vec::new(),
                    };
                    lists.orders.insert(fullname.clone(), entry.clone());
                    lists.ble_only.insert(fullname);
                    Some(NearbyEvent::Listed(entry))
                }
            }
        }
        BleEvent::Lost(record) => {
            let fullname = fullname(&record.instance_name());
            // Only the order the TV stopped offering goes; a newer one stays listed.
            if lists.orders.get(&fullname)?.record.order != record.order {
                return None;
            }
            lists.ble_only.remove(&fullname);
            lists.orders.remove(&fullname).map(NearbyEvent::Withdrawn)
        }
        BleEvent::PacketsFound(record) => {
            let fullname = fullname(&record.instance_name());
            if !trusted.contains(&record.server) {
                return Some(refused(fullname, &record.server));
            }
            if lists
                .packets
                .get(&fullname)
                .is_some_and(|p| p.record.set == record.set)
            {
                return None;
            }
            if !lists.packets.contains_key(&fullname) && lists.packets.len() >= MAX_NEARBY_TVS {
                return Some(too_many(fullname));
            }
            let entry = NearbyPackets {
                fullname: fullname.clone(),
                record,
                addresses: Vec::new(),
            };
            lists.packets.insert(fullname.clone(), entry.clone());
            lists.ble_only.insert(fullname);
            Some(NearbyEvent::PacketsListed(entry))
        }
        BleEvent::PacketsLost(record) => {
            let fullname = fullname(&record.instance_name());
            if lists.packets.get(&fullname)?.record.set != record.set {
                return None;
            }
            lists.ble_only.remove(&fullname);
            lists
                .packets
                .remove(&fullname)
                .map(NearbyEvent::PacketsWithdrawn)
        }
        // Already logged once by the scanner; mDNS, QR and codes carry on.
        BleEvent::Unavailable(_) => None,
    }
}

/// The key mDNS uses for the announcement with this instance name.
fn fullname(instance: &str) -> String {
    format!("{instance}.{SERVICE_TYPE}")
}

async fn bounded<T>(fut: impl Future<Output = T>) -> Result<T, BleError> {
    tokio::time::timeout(Duration::from_millis(BLUEZ_CALL_TIMEOUT_MS), fut)
        .await
        .map_err(|_| BleError::Timeout)
}

fn classify(display: &str, debug: &str) -> BleError {
    BleError::classify(display, debug)
}

pub use real::BtleplugCentral;

mod real {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use btleplug::api::{
        Central as _, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter,
    };
    use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
    use futures_util::StreamExt;
    use protocol::ble::{ADVERT_SERVICE_UUID, GATT_SERVICE_UUID, RECORD_CHARACTERISTIC_UUID};
    use tokio::sync::mpsc;
    use uuid::Uuid;

    use super::{BleError, Central, Sighting, bounded, classify};

    fn err(e: impl std::fmt::Display + std::fmt::Debug) -> BleError {
        classify(&e.to_string(), &format!("{e:?}"))
    }

    /// btleplug on one adapter.
    pub struct BtleplugCentral {
        // Kept alive: it owns the D-Bus connection on Linux.
        _manager: Manager,
        adapter: Adapter,
        name: String,
        ids: Arc<Mutex<HashMap<String, PeripheralId>>>,
    }

    impl std::fmt::Debug for BtleplugCentral {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("BtleplugCentral")
                .field("adapter", &self.name)
                .finish_non_exhaustive()
        }
    }

    impl BtleplugCentral {
        /// Opens `adapter` (e.g. `hci1`) or the first one. Every call is bounded.
        pub async fn open(adapter: Option<&str>) -> Result<Self, BleError> {
            let manager = bounded(Manager::new()).await?.map_err(err)?;
            let adapters = bounded(manager.adapters()).await?.map_err(err)?;
            let mut chosen = None;
            for a in adapters {
                let info = bounded(a.adapter_info()).await?.map_err(err)?;
                let name = info.split_whitespace().next().unwrap_or("").to_owned();
                if adapter.is_none_or(|want| want == name) {
                    chosen = Some((a, name));
                    break;
                }
            }
            let (adapter, name) = chosen.ok_or(BleError::NoAdapter)?;
            Ok(Self {
                _manager: manager,
                adapter,
                name,
                ids: Arc::default(),
            })
        }

        pub fn adapter_name(&self) -> &str {
            &self.name
        }

        async fn peripheral(&self, device: &str) -> Result<Peripheral, BleError> {
            let id = self
                .ids
                .lock()
                .map_err(|_| BleError::Other("poisoned".into()))?
                .get(device)
                .cloned()
                .ok_or_else(|| BleError::Other(format!("unknown device {device}")))?;
            self.adapter.peripheral(&id).await.map_err(err)
        }
    }

    fn payload_of(service_data: &HashMap<Uuid, Vec<u8>>) -> Option<Vec<u8>> {
        service_data
            .get(&Uuid::from_u128(ADVERT_SERVICE_UUID))
            .cloned()
    }

    fn record_characteristic(p: &Peripheral) -> Option<Characteristic> {
        p.characteristics().into_iter().find(|c| {
            c.uuid == Uuid::from_u128(RECORD_CHARACTERISTIC_UUID)
                && c.service_uuid == Uuid::from_u128(GATT_SERVICE_UUID)
        })
    }

    impl Central for BtleplugCentral {
        async fn scan(&self) -> Result<mpsc::UnboundedReceiver<Sighting>, BleError> {
            let mut events = self.adapter.events().await.map_err(err)?;
            // No UUID filter at the radio: the advert carries only Service Data (a UUID
            // list would not fit in 31 bytes), which not every stack matches against a
            // discovery filter. Filtering happens on the service data key instead.
            self.adapter
                .start_scan(ScanFilter::default())
                .await
                .map_err(err)?;
            let (tx, rx) = mpsc::unbounded_channel();
            let adapter = self.adapter.clone();
            let ids = self.ids.clone();
            tokio::spawn(async move {
                while let Some(ev) = events.next().await {
                    let (id, payload) = match ev {
                        CentralEvent::ServiceDataAdvertisement { id, service_data } => {
                            let p = payload_of(&service_data);
                            (id, p)
                        }
                        CentralEvent::DeviceDiscovered(id) | CentralEvent::DeviceUpdated(id) => {
                            // The first report may come without a separate service data
                            // event: look at the device's properties.
                            let props = match adapter.peripheral(&id).await {
                                Ok(p) => p.properties().await.ok().flatten(),
                                Err(_) => None,
                            };
                            let p = props.and_then(|p| payload_of(&p.service_data));
                            (id, p)
                        }
                        CentralEvent::RssiUpdate { id, .. } => (id, None),
                        _ => continue,
                    };
                    let key = id.to_string();
                    if let Ok(mut m) = ids.lock() {
                        if m.len() < super::MAX_TRACKED_DEVICES * 4 || m.contains_key(&key) {
                            m.insert(key.clone(), id);
                        } else {
                            continue;
                        }
                    }
                    if tx
                        .send(Sighting {
                            device: key,
                            payload,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            });
            Ok(rx)
        }

        async fn read_record(&self, device: &str) -> Result<Vec<u8>, BleError> {
            let p = self.peripheral(device).await?;
            if !p.is_connected().await.map_err(err)? {
                p.connect().await.map_err(err)?;
            }
            if record_characteristic(&p).is_none() {
                p.discover_services().await.map_err(err)?;
            }
            let ch = record_characteristic(&p).ok_or_else(|| {
                BleError::Other("the TV serves no Couchpay record characteristic".into())
            })?;
            p.read(&ch).await.map_err(err)
        }

        async fn forget(&self, device: &str) {
            if let Ok(p) = self.peripheral(device).await {
                let _ = p.disconnect().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Currency, DeviceId, Money, OrderId, ServerUrl, ShortCode};
    use std::sync::{Arc, Mutex};

    /// A radio where tests place adverts and GATT records by hand.
    #[derive(Clone, Default)]
    struct Fake {
        tx: Arc<Mutex<Option<mpsc::UnboundedSender<Sighting>>>>,
        records: Arc<Mutex<HashMap<String, Vec<u8>>>>,
        reads: Arc<Mutex<u32>>,
    }

    impl Fake {
        fn advertise(&self, device: &str, payload: Option<Vec<u8>>) {
            let tx = self.tx.lock().unwrap();
            tx.as_ref()
                .expect("scanning")
                .send(Sighting {
                    device: device.into(),
                    payload,
                })
                .unwrap();
        }
        fn serve(&self, device: &str, record: Option<&DiscoveryRecord>) {
            let mut m = self.records.lock().unwrap();
            match record {
                Some(r) => m.insert(device.into(), serde_json::to_vec(r).unwrap()),
                None => m.remove(device),
            };
        }
    }

    impl Central for Fake {
        async fn scan(&self) -> Result<mpsc::UnboundedReceiver<Sighting>, BleError> {
            let (tx, rx) = mpsc::unbounded_channel();
            *self.tx.lock().unwrap() = Some(tx);
            Ok(rx)
        }
        async fn read_record(&self, device: &str) -> Result<Vec<u8>, BleError> {
            *self.reads.lock().unwrap() += 1;
            self.records
                .lock()
                .unwrap()
                .get(device)
                .cloned()
                .ok_or_else(|| BleError::Other("no such characteristic".into()))
        }
        async fn forget(&self, _device: &str) {}
    }

    fn record(tv: &str) -> DiscoveryRecord {
        DiscoveryRecord::new(
            OrderId::random(),
            ShortCode::random(),
            Money::new(1299, Currency::parse("EUR").unwrap()),
            ServerUrl::parse("http://127.0.0.1:8080").unwrap(),
            "Living-room TV",
            DeviceId::parse(tv).unwrap(),
            "Night Train",
        )
    }

    fn advert(r: &DiscoveryRecord) -> Vec<u8> {
        Advert::new(&r.order, &r.tv_id).encode().to_vec()
    }

    async fn next(s: &BleScanner) -> BleEvent {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(ev) = s.try_next() {
                return ev;
            }
            assert!(Instant::now() < deadline, "no BLE event within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn started(fake: &Fake) -> BleScanner {
        let f = fake.clone();
        let s = BleScanner::start(&Handle::current(), async move { Ok(f) });
        while fake.tx.lock().unwrap().is_none() {
            tokio::task::yield_now().await;
        }
        s
    }

    #[tokio::test]
    async fn advert_then_gatt_read_lists_then_withdraw_drops() {
        let fake = Fake::default();
        let s = started(&fake).await;
        let r = record("SN-0001");
        fake.serve("dev1", Some(&r));
        fake.advertise("dev1", Some(advert(&r)));
        assert_eq!(next(&s).await, BleEvent::Found(r.clone()));
        // Repeated adverts of the same order do not trigger another read.
        let reads = *fake.reads.lock().unwrap();
        fake.advertise("dev1", Some(advert(&r)));
        fake.advertise("dev1", None);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*fake.reads.lock().unwrap(), reads);
        // The TV withdraws: its GATT record goes; the quiet probe notices.
        fake.serve("dev1", None);
        assert_eq!(next(&s).await, BleEvent::Lost(r));
    }

    #[tokio::test]
    async fn a_new_order_from_the_same_tv_replaces_the_old() {
        let fake = Fake::default();
        let s = started(&fake).await;
        let a = record("SN-0001");
        let b = record("SN-0001");
        fake.serve("dev1", Some(&a));
        fake.advertise("dev1", Some(advert(&a)));
        assert_eq!(next(&s).await, BleEvent::Found(a.clone()));
        fake.serve("dev1", Some(&b));
        fake.advertise("dev1", Some(advert(&b)));
        assert_eq!(next(&s).await, BleEvent::Lost(a));
        assert_eq!(next(&s).await, BleEvent::Found(b));
    }

    #[tokio::test]
    async fn malformed_or_mismatched_input_is_never_listed() {
        let fake = Fake::default();
        let s = started(&fake).await;
        let r = record("SN-0001");
        // Foreign payloads under the same 16-bit UUID.
        fake.advertise("x1", Some(vec![1, 2, 3]));
        fake.advertise("x2", Some(vec![0; Advert::LEN]));
        // A valid advert whose GATT record names another order.
        let other = record("SN-0001");
        fake.serve("x3", Some(&other));
        fake.advertise("x3", Some(advert(&r)));
        // A valid advert whose GATT record is garbage.
        fake.records
            .lock()
            .unwrap()
            .insert("x4".into(), b"{not json".to_vec());
        fake.advertise("x4", Some(advert(&r)));
        // And one good TV, which must be the only thing reported.
        let good = record("SN-0002");
        fake.serve("ok", Some(&good));
        fake.advertise("ok", Some(advert(&good)));
        assert_eq!(next(&s).await, BleEvent::Found(good));
        tokio::time::sleep(Duration::from_millis(
            PROBE_INTERVAL_MS * u64::from(MAX_READ_ATTEMPTS + 1),
        ))
        .await;
        assert_eq!(s.try_next(), None);
    }

    #[tokio::test]
    async fn unavailable_radio_is_one_event() {
        let s = BleScanner::start(&Handle::current(), async {
            Err::<Fake, _>(BleError::NoAdapter)
        });
        assert_eq!(next(&s).await, BleEvent::Unavailable(BleError::NoAdapter));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(s.try_next(), None);
    }

    #[test]
    fn merge_dedups_by_tv_and_drops_only_the_lost_order() {
        let mut lists = Lists::default();
        let trusted = vec![ServerUrl::parse("http://127.0.0.1:8080").unwrap()];
        let ignore: IgnoreFn = Box::new(|r| r.item == "paid here");
        let mut m = |ev| merge(ev, &mut lists, &trusted, &ignore);

        let a = record("SN-0001");
        assert!(
            matches!(m(BleEvent::Found(a.clone())), Some(NearbyEvent::Listed(n)) if n.record == a)
        );
        // The same TV and order again (e.g. also over mDNS): still one entry, no event.
        assert_eq!(m(BleEvent::Found(a.clone())), None);
        // A newer order from the same TV replaces the entry.
        let b = DiscoveryRecord {
            order: OrderId::random(),
            ..a.clone()
        };
        assert!(
            matches!(m(BleEvent::Found(b.clone())), Some(NearbyEvent::Updated(n)) if n.record == b)
        );
        // Losing the old order does not drop the new one.
        assert_eq!(m(BleEvent::Lost(a.clone())), None);
        assert!(
            matches!(m(BleEvent::Lost(b.clone())), Some(NearbyEvent::Withdrawn(n)) if n.record == b)
        );
        assert_eq!(m(BleEvent::Lost(b)), None);
        // Untrusted servers are refused; ignored orders are not listed.
        let foreign = DiscoveryRecord {
            server: ServerUrl::parse("http://evil.example").unwrap(),
            ..record("SN-0003")
        };
        assert!(matches!(
            m(BleEvent::Found(foreign)),
            Some(NearbyEvent::Refused { .. })
        ));
        let paid = DiscoveryRecord {
            item: "paid here".into(),
            ..record("SN-0004")
        };
        assert_eq!(m(BleEvent::Found(paid)), None);
        assert_eq!(m(BleEvent::Unavailable(BleError::NoBluez)), None);
        // Red packets on a TV: listed once, dropped when that set is lost.
        let p = packets_record("SN-0005");
        assert!(matches!(
            m(BleEvent::PacketsFound(p.clone())),
            Some(NearbyEvent::PacketsListed(n)) if n.record == p
        ));
        assert_eq!(m(BleEvent::PacketsFound(p.clone())), None);
        let other = PacketsRecord {
            set: protocol::PacketSetId::random(),
            ..p.clone()
        };
        assert_eq!(m(BleEvent::PacketsLost(other)), None);
        assert!(matches!(
            m(BleEvent::PacketsLost(p.clone())),
            Some(NearbyEvent::PacketsWithdrawn(n)) if n.record == p
        ));
        let foreign = PacketsRecord {
            server: ServerUrl::parse("http://evil.example").unwrap(),
            ..p
        };
        assert!(matches!(
            m(BleEvent::PacketsFound(foreign)),
            Some(NearbyEvent::Refused { .. })
        ));
        assert!(lists.orders.is_empty());
        assert!(lists.packets.is_empty());
        assert!(lists.ble_only.is_empty());
    }

    fn packets_record(tv: &str) -> PacketsRecord {
        PacketsRecord::new(
            protocol::PacketSetId::random(),
            ShortCode::random(),
            ServerUrl::parse("http://127.0.0.1:8080").unwrap(),
            "Living-room TV",
            DeviceId::parse(tv).unwrap(),
            "Alice",
            "Happy new year",
        )
    }

    #[tokio::test]
    async fn red_packets_on_a_tv_are_found_and_lost() {
        let fake = Fake::default();
        let s = started(&fake).await;
        let p = packets_record("SN-0001");
        let json = serde_json::to_vec(&Announcement::Packets(p.clone())).unwrap();
        fake.records.lock().unwrap().insert("dev1".into(), json);
        let advert = Advert::packets(&p.set, &p.tv_id).encode().to_vec();
        fake.advertise("dev1", Some(advert));
        assert_eq!(next(&s).await, BleEvent::PacketsFound(p.clone()));
        fake.serve("dev1", None);
        assert_eq!(next(&s).await, BleEvent::PacketsLost(p));
    }

    #[test]
    fn records_are_bounded_and_clipped() {
        assert!(parse_record(&vec![b' '; MAX_RECORD_BYTES + 1]).is_err());
        assert!(parse_record(b"[]").is_err());
        let mut r = record("SN-0001");
        r.tv_name = "x".repeat(500);
        let back = parse_record(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back.tv_name().len(), protocol::discovery::MAX_NAME_CHARS);
    }

    #[test]
    fn errors_are_classified() {
        let unknown = "org.freedesktop.DBus.Error.ServiceUnknown: The name org.bluez was not provided by any .service files";
        assert_eq!(classify("x", unknown), BleError::NoBluez);
        let no_bus = "DbusError(D-Bus error: Failed to connect to socket /nope: No such file or directory (org.freedesktop.DBus.Error.FileNotFound))";
        assert_eq!(
            classify("no socket", no_bus),
            BleError::NoBus("no socket".into())
        );
        assert_eq!(
            classify("else", "something else"),
            BleError::Other("else".into())
        );
    }
}
