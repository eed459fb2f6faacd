//! Offers what is on screen (an order, or a red-packet set) over Bluetooth LE (SPEC P2):
//! an advertisement carrying the compact [`protocol::ble::Advert`], and a GATT service
//! whose read characteristic answers a companion's "which order?" with the full
//! [`Announcement`] as JSON. Both stop the moment the offer is withdrawn (paid, expired,
//! cancelled — SPEC P6).
//!
//! The radio sits behind [`Peripheral`] so the announce/withdraw logic runs without a bus;
//! [`BluezPeripheral`] is the real one (BlueZ over D-Bus via bluer, Linux only).
//! [`BleAnnouncer`] owns a task that applies the latest wish (announce this / withdraw) to
//! the peripheral, so the TV's event loop never waits for the radio.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use protocol::Announcement;
use protocol::ble::Advert;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};

/// Commands queued for the radio task; the task only ever needs the latest one.
const COMMAND_QUEUE_LEN: usize = 8;

pub use protocol::ble::{BLUEZ_CALL_TIMEOUT_MS, BleError};

/// What the TV's BLE side is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BleStatus {
    /// Nothing offered.
    Idle,
    /// Advertising and serving this record.
    Advertising(Announcement),
    /// The last announce failed.
    Failed(BleError),
}

/// A BLE peripheral that can offer one record at a time.
pub trait Peripheral: Send + 'static {
    /// Starts (or replaces) the advert `advert` and the GATT record `record_json`.
    fn start(
        &mut self,
        advert: [u8; Advert::LEN],
        record_json: Arc<Vec<u8>>,
    ) -> impl Future<Output = Result<(), BleError>> + Send;
    /// Stops advertising and unregisters the GATT service; idempotent.
    fn stop(&mut self) -> impl Future<Output = ()> + Send;
}

/// What the radio task answers to one announcement: on the air, or why not.
type Outcome = oneshot::Sender<Result<(), BleError>>;

enum Command {
    Announce(Announcement, Outcome),
    Withdraw,
}

/// Drives a [`Peripheral`] from the TV's synchronous effect loop.
#[derive(Debug)]
pub struct BleAnnouncer {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<BleStatus>,
}

impl BleAnnouncer {
    /// Starts the radio task on `handle` with an open peripheral.
    pub fn start<P: Peripheral>(handle: &Handle, peripheral: P) -> Self {
        Self::start_opening(handle, async move { Ok(peripheral) })
    }

    /// Starts the radio task on `handle`; the task first awaits `open`, so a slow or
    /// absent BlueZ never delays the caller. If opening fails, the reason is logged once
    /// and becomes the status; later commands are ignored.
    pub fn start_opening<P, F>(handle: &Handle, open: F) -> Self
    where
        P: Peripheral,
        F: Future<Output = Result<P, BleError>> + Send + 'static,
    {
        let (commands, mut rx) = mpsc::channel(COMMAND_QUEUE_LEN);
        let (status_tx, status) = watch::channel(BleStatus::Idle);
        handle.spawn(async move {
            let mut peripheral = match open.await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("{e}; orders are still offered by QR, code and mDNS");
                    status_tx.send_replace(BleStatus::Failed(e.clone()));
                    while let Some(cmd) = rx.recv().await {
                        if let Command::Announce(_, outcome) = cmd {
                            let _ = outcome.send(Err(e.clone()));
                        }
                    }
                    return;
                }
            };
            while let Some(mut cmd) = rx.recv().await {
                // Only the newest wish matters: skip announcements already superseded.
                while let Ok(next) = rx.try_recv() {
                    cmd = next;
                }
                match cmd {
                    Command::Announce(record, outcome) => {
                        let result = match (Advert::of(&record), serde_json::to_vec(&record)) {
                            (Some(advert), Ok(json)) => {
                                peripheral.start(advert.encode(), Arc::new(json)).await
                            }
                            (None, _) => Err(BleError::Other(
                                "a presence is not advertised over BLE".to_owned(),
                            )),
                            (_, Err(e)) => Err(BleError::Other(e.to_string())),
                        };
                        let status = match &result {
                            Ok(()) => BleStatus::Advertising(record),
                            Err(e) => {
                                tracing::warn!(error = %e, "order not offered over BLE");
                                BleStatus::Failed(e.clone())
                            }
                        };
                        status_tx.send_replace(status);
                        // The caller may not be listening: that is fine.
                        let _ = outcome.send(result);
                    }
                    Command::Withdraw => {
                        peripheral.stop().await;
                        status_tx.send_replace(BleStatus::Idle);
                    }
                }
            }
            // The announcer was dropped: take the order off the air.
            peripheral.stop().await;
            status_tx.send_replace(BleStatus::Idle);
        });
        Self { commands, status }
    }

    /// Offers `record` (replacing any earlier one). Returns at once, with a receiver
    /// for what the radio made of it: `Ok` once it is on the air, or why not. If a newer
    /// announcement or a withdrawal supersedes this one before the radio gets to it, the
    /// receiver sees its sender dropped. Callers that only want it offered drop it.
    pub fn announce(&self, record: &Announcement) -> oneshot::Receiver<Result<(), BleError>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Announce(record.clone(), tx));
        rx
    }

    /// Takes the order off the air. Returns at once.
    pub fn withdraw(&self) {
        self.send(Command::Withdraw);
    }

    fn send(&self, cmd: Command) {
        if let Err(e) = self.commands.try_send(cmd) {
            // A full queue means the radio is stuck on a call that has its own timeout;
            // a closed one means the runtime is shutting down. Neither is worth a panic.
            tracing::warn!(error = %e, "BLE command dropped");
        }
    }

    pub fn status(&self) -> BleStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (tests, UI).
    pub fn watch(&self) -> watch::Receiver<BleStatus> {
        self.status.clone()
    }
}

/// The bytes a GATT read at `offset` returns: BlueZ splits long values into Read Blob
/// requests, each asking for the rest from an offset.
pub fn read_at(value: &[u8], offset: u16) -> &[u8] {
    value.get(usize::from(offset)..).unwrap_or(&[])
}

#[cfg(target_os = "linux")]
pub use bluez::BluezPeripheral;

#[cfg(target_os = "linux")]
mod bluez {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bluer::adv::{Advertisement, AdvertisementHandle, Type};
    use bluer::gatt::local::{
        Application, ApplicationHandle, Characteristic, CharacteristicRead, Service,
    };
    use futures_util::FutureExt;
    use protocol::ble::{
        ADVERT_SERVICE_UUID, Advert, GATT_SERVICE_UUID, RECORD_CHARACTERISTIC_UUID,
    };
    use uuid::Uuid;

    use super::{BleError, Peripheral, bounded, read_at};

    /// Advertising + GATT through BlueZ on one adapter.
    pub struct BluezPeripheral {
        // Kept alive: dropping the session would end the handles below.
        _session: bluer::Session,
        adapter: bluer::Adapter,
        advert: Option<AdvertisementHandle>,
        gatt: Option<ApplicationHandle>,
    }

    impl std::fmt::Debug for BluezPeripheral {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("BluezPeripheral")
                .field("adapter", &self.adapter.name())
                .field("advertising", &self.advert.is_some())
                .finish_non_exhaustive()
        }
    }

    /// Maps bluer's errors onto the few cases a user can act on.
    pub(super) fn classify(e: &bluer::Error) -> BleError {
        match BleError::classify(&e.to_string(), &format!("{e} {:?}", e.kind)) {
            // bluer's message alone reads better than "kind: message" for a missing bus.
            BleError::NoBus(_) => BleError::NoBus(e.message.clone()),
            other => other,
        }
    }

    impl BluezPeripheral {
        /// Connects to BlueZ on the system bus and picks `adapter` (or the default one).
        /// Every call is bounded by [`super::BLUEZ_CALL_TIMEOUT_MS`].
        pub async fn open(adapter: Option<&str>) -> Result<Self, BleError> {
            let session = bounded(bluer::Session::new())
                .await?
                .map_err(|e| classify(&e))?;
            let names = bounded(session.adapter_names())
                .await?
                .map_err(|e| classify(&e))?;
            let name = match adapter {
                Some(want) if names.iter().any(|n| n == want) => want.to_owned(),
                Some(_) => return Err(BleError::NoAdapter),
                None => names.into_iter().min().ok_or(BleError::NoAdapter)?,
            };
            let adapter = session.adapter(&name).map_err(|e| classify(&e))?;
            bounded(adapter.set_powered(true))
                .await?
                .map_err(|e| classify(&e))?;
            Ok(Self {
                _session: session,
                adapter,
                advert: None,
                gatt: None,
            })
        }

        pub fn adapter_name(&self) -> &str {
            self.adapter.name()
        }
    }

    impl Peripheral for BluezPeripheral {
        async fn start(
            &mut self,
            advert: [u8; Advert::LEN],
            record_json: Arc<Vec<u8>>,
        ) -> Result<(), BleError> {
            self.stop().await;
            let app = Application {
                services: vec![Service {
                    uuid: Uuid::from_u128(GATT_SERVICE_UUID),
                    primary: true,
                    characteristics: vec![Characteristic {
                        uuid: Uuid::from_u128(RECORD_CHARACTERISTIC_UUID),
                        read: Some(CharacteristicRead {
                            read: true,
                            fun: Box::new(move |req| {
                                let json = record_json.clone();
                                async move { Ok(read_at(&json, req.offset).to_vec()) }.boxed()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            };
            let gatt = bounded(self.adapter.serve_gatt_application(app))
                .await?
                .map_err(|e| classify(&e))?;
            let adv = Advertisement {
                advertisement_type: Type::Peripheral,
                service_data: BTreeMap::from([(
                    Uuid::from_u128(ADVERT_SERVICE_UUID),
                    advert.to_vec(),
                )]),
                discoverable: Some(true),
                ..Default::default()
            };
            let handle = bounded(self.adapter.advertise(adv))
                .await?
                .map_err(|e| classify(&e))?;
            self.gatt = Some(gatt);
            self.advert = Some(handle);
            Ok(())
        }

        async fn stop(&mut self) {
            // Dropping the handles unregisters them; give BlueZ a moment to process it so
            // a following `start` does not race the unregistration.
            let had = self.advert.take().is_some() | self.gatt.take().is_some();
            if had {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Bounds a BlueZ call by [`BLUEZ_CALL_TIMEOUT_MS`].
#[cfg_attr(
    not(target_os = "linux"),
    allow(dead_code, reason = "BlueZ is Linux-only")
)]
async fn bounded<T>(fut: impl Future<Output = T>) -> Result<T, BleError> {
    tokio::time::timeout(Duration::from_millis(BLUEZ_CALL_TIMEOUT_MS), fut)
        .await
        .map_err(|_| BleError::Timeout)
}

/// Opens the platform's BLE peripheral on `adapter` (or the default one).
#[cfg(target_os = "linux")]
pub async fn open_default(adapter: Option<&str>) -> Result<BluezPeripheral, BleError> {
    BluezPeripheral::open(adapter).await
}

/// Elsewhere there is no peripheral stack wired up: BLE is reported off.
#[cfg(not(target_os = "linux"))]
pub async fn open_default(_adapter: Option<&str>) -> Result<Unsupported, BleError> {
    Err(BleError::Unsupported)
}

/// The peripheral of platforms without BLE peripheral support; never constructed.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub enum Unsupported {}

#[cfg(not(target_os = "linux"))]
impl Peripheral for Unsupported {
    async fn start(&mut self, _: [u8; Advert::LEN], _: Arc<Vec<u8>>) -> Result<(), BleError> {
        match *self {}
    }
    async fn stop(&mut self) {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{
        Currency, DeviceId, DiscoveryRecord, Money, OrderId, PacketSetId, PacketsRecord, ServerUrl,
        ShortCode, TvPresence,
    };
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Fake {
        log: Arc<Mutex<Vec<String>>>,
        fail: Option<BleError>,
    }

    impl Peripheral for Fake {
        async fn start(
            &mut self,
            advert: [u8; Advert::LEN],
            record_json: Arc<Vec<u8>>,
        ) -> Result<(), BleError> {
            if let Some(e) = &self.fail {
                return Err(e.clone());
            }
            let decoded = Advert::decode(&advert).expect("valid advert");
            let rec = Announcement::from_json(&record_json).unwrap();
            assert!(decoded.names(&rec), "{decoded:?} names {rec:?}");
            let what = match &rec {
                Announcement::Order(r) => r.order.to_string(),
                Announcement::Packets(p) => p.set.to_string(),
                Announcement::Tv(_) => unreachable!("a presence is never advertised"),
            };
            self.log.lock().unwrap().push(format!("start {what}"));
            Ok(())
        }
        async fn stop(&mut self) {
            self.log.lock().unwrap().push("stop".into());
        }
    }

    fn order_record() -> DiscoveryRecord {
        DiscoveryRecord::new(
            OrderId::random(),
            ShortCode::random(),
            Money::new(1299, Currency::parse("EUR").unwrap()),
            ServerUrl::parse("http://127.0.0.1:8080").unwrap(),
            "Living-room TV",
            DeviceId::parse("SN-0001").unwrap(),
            "Night Train",
        )
    }

    fn record() -> Announcement {
        Announcement::Order(order_record())
    }

    async fn settle(w: &mut watch::Receiver<BleStatus>, want: impl Fn(&BleStatus) -> bool) {
        tokio::time::timeout(Duration::from_secs(5), w.wait_for(|s| want(s)))
            .await
            .expect("status change")
            .expect("task alive");
    }

    #[tokio::test]
    async fn announce_then_withdraw_drives_the_peripheral() {
        let fake = Fake::default();
        let ble = BleAnnouncer::start(&Handle::current(), fake.clone());
        let mut w = ble.watch();
        let r = order_record();
        drop(ble.announce(&Announcement::Order(r.clone())));
        settle(
            &mut w,
            |s| matches!(s, BleStatus::Advertising(Announcement::Order(x)) if x.order == r.order),
        )
        .await;
        ble.withdraw();
        settle(&mut w, |s| *s == BleStatus::Idle).await;
        // A red-packet set is offered the same way, with its own advert.
        let p = PacketsRecord::new(
            PacketSetId::random(),
            ShortCode::random(),
            r.server.clone(),
            "Living-room TV",
            r.tv_id.clone(),
            "Alice",
            "Happy new year",
        );
        drop(ble.announce(&Announcement::Packets(p.clone())));
        settle(
            &mut w,
            |s| matches!(s, BleStatus::Advertising(Announcement::Packets(x)) if x.set == p.set),
        )
        .await;
        ble.withdraw();
        settle(&mut w, |s| *s == BleStatus::Idle).await;
        assert_eq!(
            *fake.log.lock().unwrap(),
            vec![
                format!("start {}", r.order),
                "stop".to_owned(),
                format!("start {}", p.set),
                "stop".to_owned()
            ]
        );
        // A bare presence is not put on the air.
        let presence = TvPresence::new(r.server.clone(), "Den", r.tv_id.clone());
        let answer = ble.announce(&Announcement::Tv(presence)).await;
        assert!(answer.expect("answered").is_err());
    }

    #[tokio::test]
    async fn failure_is_reported_not_panicked() {
        let fake = Fake {
            fail: Some(BleError::NoAdapter),
            ..Fake::default()
        };
        let ble = BleAnnouncer::start(&Handle::current(), fake);
        let mut w = ble.watch();
        drop(ble.announce(&record()));
        settle(&mut w, |s| *s == BleStatus::Failed(BleError::NoAdapter)).await;
        // Withdrawing after a failure is harmless.
        ble.withdraw();
        settle(&mut w, |s| *s == BleStatus::Idle).await;
    }

    /// The TV's order screen shows what `announce` answers.
    #[tokio::test]
    async fn reported_announce_answers_on_air_or_why_not() {
        let on_air = BleAnnouncer::start(&Handle::current(), Fake::default());
        let answer = on_air.announce(&record());
        let answer = tokio::time::timeout(Duration::from_secs(5), answer).await;
        assert_eq!(answer.expect("answered").expect("not dropped"), Ok(()));

        let no_adapter = BleAnnouncer::start(
            &Handle::current(),
            Fake {
                fail: Some(BleError::NoAdapter),
                ..Fake::default()
            },
        );
        let answer = no_adapter.announce(&record());
        let answer = tokio::time::timeout(Duration::from_secs(5), answer).await;
        assert_eq!(
            answer.expect("answered").expect("not dropped"),
            Err(BleError::NoAdapter)
        );

        // A radio that never opened still answers every announcement, at once.
        let no_bluez = BleAnnouncer::start_opening(&Handle::current(), async {
            Err::<Fake, _>(BleError::NoBluez)
        });
        for _ in 0..2 {
            let answer = no_bluez.announce(&record());
            let answer = tokio::time::timeout(Duration::from_secs(5), answer).await;
            assert_eq!(
                answer.expect("answered").expect("not dropped"),
                Err(BleError::NoBluez)
            );
        }
    }

    #[tokio::test]
    async fn dropping_the_announcer_stops_the_radio() {
        let fake = Fake::default();
        let ble = BleAnnouncer::start(&Handle::current(), fake.clone());
        let mut w = ble.watch();
        drop(ble.announce(&record()));
        settle(&mut w, |s| matches!(s, BleStatus::Advertising(_))).await;
        drop(ble);
        tokio::time::timeout(Duration::from_secs(5), async {
            while fake.log.lock().unwrap().last().map(String::as_str) != Some("stop") {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("stopped after drop");
    }

    #[tokio::test]
    async fn failed_open_is_one_status_and_commands_are_ignored() {
        let ble = BleAnnouncer::start_opening(&Handle::current(), async {
            Err::<Fake, _>(BleError::NoBluez)
        });
        let mut w = ble.watch();
        settle(&mut w, |s| *s == BleStatus::Failed(BleError::NoBluez)).await;
        drop(ble.announce(&record()));
        ble.withdraw();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(ble.status(), BleStatus::Failed(BleError::NoBluez));
    }

    #[test]
    fn long_reads_continue_at_the_offset() {
        let v = b"0123456789";
        assert_eq!(read_at(v, 0), v);
        assert_eq!(read_at(v, 4), b"456789");
        assert_eq!(read_at(v, 10), b"");
        assert_eq!(read_at(v, 200), b"");
    }
}
