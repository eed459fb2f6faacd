//! Shared test fixtures: catalog and order builders, a scriptable fake backend, and a
//! harness that runs the real runtime with answers collected on a channel.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use protocol::{
    AccountId, Catalog, CatalogItem, CreateOrder, CreatedOrder, Currency, Device, DeviceId,
    Entitlement, Entitlements, ErrorCode, ItemId, ItemKind, Merchant, Money, Order, OrderEvent,
    OrderId, OrderItem, OrderStatus, PayLink, PhoneNumber, PhonePayKind, PhonePayRequest,
    PhonePayStarted, ServerUrl, ShortCode, Token,
};
use tv_client::runtime::{Backend, EventStream, Sink};
use tv_client::state::{Failure, Identity, Input};

/// Order lifetime used by fixtures, in milliseconds.
pub(crate) const FIXTURE_TTL_MS: i64 = 5 * 60 * 1000;

pub(crate) fn eur(minor: u64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

/// A TV with its own random serial, for tests that announce on `lo` while other tests
/// run in parallel (each TV's mDNS instance name is derived from its serial).
pub(crate) fn fresh_identity() -> Identity {
    Identity {
        device_id: DeviceId::random(),
        tv_name: "Living-room TV".into(),
    }
}

pub(crate) fn identity() -> Identity {
    Identity {
        device_id: DeviceId::parse("SN-TEST-0001").unwrap(),
        tv_name: "Test-room TV".into(),
    }
}

fn item(id: &str, title: &str, kind: ItemKind, minor: u64, merchant: &str) -> CatalogItem {
    CatalogItem {
        id: ItemId::parse(id).unwrap(),
        title: title.into(),
        kind,
        description: format!("{title}, for tests."),
        price: eur(minor),
        merchant: Merchant {
            id: AccountId::parse(merchant).unwrap(),
            name: format!("{merchant} Ltd"),
        },
        poster: format!("/assets/posters/{id}.png"),
        period_days: (kind == ItemKind::Membership).then_some(30),
        device_product: None,
    }
}

pub(crate) fn catalog() -> Catalog {
    let mut c = fixture_catalog();
    // Running times, as the real catalog gives them (the player shows them).
    c.items[0].description =
        "A thriller on the last sleeper from Vienna to Venice. 1 h 52 min, HD.".into();
    c.items[1].description =
        "Nature documentary: a year of migration across four continents. 1 h 31 min, 4K.".into();
    c
}

fn fixture_catalog() -> Catalog {
    Catalog {
        items: vec![
            item(
                "film-night-train",
                "Night Train",
                ItemKind::Video,
                499,
                "northwind-films",
            ),
            item(
                "film-cloud-atlas-of-birds",
                "An Atlas of Birds",
                ItemKind::Video,
                349,
                "northwind-films",
            ),
            item(
                "plus-monthly",
                "Couchpay Plus — 1 month",
                ItemKind::Membership,
                999,
                "couchpay-plus",
            ),
            item(
                "lamp-aurora",
                "Aurora Reading Lamp",
                ItemKind::Physical,
                5900,
                "aurora-home",
            ),
        ],
    }
}

pub(crate) fn order_for(item: &CatalogItem, server: &ServerUrl, created_at_ms: i64) -> Order {
    let id = OrderId::random();
    Order {
        pay_link: PayLink::new(server.clone(), id.clone()),
        id,
        short_code: ShortCode::random(),
        item: OrderItem {
            id: item.id.clone(),
            title: item.title.clone(),
            kind: item.kind,
        },
        amount: item.price,
        merchant: item.merchant.clone(),
        device: Device {
            id: identity().device_id,
            name: identity().tv_name,
        },
        status: OrderStatus::Pending,
        created_at_ms,
        expires_at_ms: created_at_ms + FIXTURE_TTL_MS,
        paid_at_ms: None,
    }
}

pub(crate) fn created(order: Order) -> CreatedOrder {
    CreatedOrder {
        order,
        tv_token: Token::random(),
    }
}

/// What the server lists for a purchase of `item` (`until` for memberships).
pub(crate) fn entitlement(
    item: &CatalogItem,
    granted_at_ms: i64,
    until: Option<i64>,
) -> Entitlement {
    Entitlement {
        order_id: OrderId::random(),
        item: OrderItem {
            id: item.id.clone(),
            title: item.title.clone(),
            kind: item.kind,
        },
        granted_at_ms,
        valid_until_ms: until,
    }
}

/// What a real client says when the server is down: developer text that must never
/// reach the screen.
pub(crate) const DOWN_MESSAGE: &str = "error sending request for url (http://127.0.0.1:8080/v1/catalog): client error (Connect): tcp connect error: Connection refused (os error 111)";

pub(crate) fn with_status(order: &Order, status: OrderStatus) -> Order {
    Order {
        status,
        paid_at_ms: (status == OrderStatus::Paid).then_some(order.created_at_ms + 1_000),
        ..order.clone()
    }
}

/// An in-memory server: serves the fixture catalog and real poster files, creates
/// orders, and can be switched "down" to simulate an unreachable server.
#[derive(Clone, Default)]
pub(crate) struct FakeBackend {
    pub(crate) state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
pub(crate) struct FakeState {
    pub(crate) down: bool,
    pub(crate) orders: HashMap<OrderId, Order>,
    pub(crate) created: usize,
    /// Every number an order was sent to, in order.
    pub(crate) phone_requests: Vec<(OrderId, PhoneNumber)>,
    /// Films added after the fixture catalog (a catalog longer than one screen row).
    pub(crate) extra_films: usize,
    /// What `entitlements` answers (the device's purchases, as listed).
    pub(crate) entitlements: Vec<Entitlement>,
    /// Items the server knows this TV owns: an order for one is refused (409
    /// already_owned), whether or not `entitlements` lists it yet.
    pub(crate) owned: Vec<ItemId>,
    /// When set, every order is refused with this.
    pub(crate) refuse_orders: Option<Failure>,
    /// The bytes `download` serves (an update package).
    pub(crate) package: Option<Vec<u8>>,
    /// The first download drops the connection after this many bytes.
    pub(crate) drop_download_at: Option<usize>,
    /// The offset of every download request, in order.
    pub(crate) download_offsets: Vec<u64>,
}

/// Chunk size of the fake's downloads.
pub(crate) const FAKE_CHUNK: usize = 4096;

fn no_device_services() -> Failure {
    Failure::Refused {
        code: Some(ErrorCode::NotFound),
        message: "the fake server has no device services".into(),
    }
}

/// The demo's bound phone numbers (alice, bob, carol), as the stub server seeds them.
pub(crate) fn is_bound(phone: &PhoneNumber) -> bool {
    ["+15550100001", "+15550100002", "+15550100003"].contains(&phone.as_str())
}

impl FakeBackend {
    fn check_up(&self) -> Result<(), Failure> {
        if self.state.lock().unwrap().down {
            Err(Failure::Unreachable(DOWN_MESSAGE.into()))
        } else {
            Ok(())
        }
    }
}

pub(crate) fn fake_server() -> ServerUrl {
    ServerUrl::parse("http://192.168.1.20:8080").unwrap()
}

impl Backend for FakeBackend {
    async fn catalog(&self) -> Result<Catalog, Failure> {
        self.check_up()?;
        let mut c = catalog();
        for k in 1..=self.state.lock().unwrap().extra_films {
            let mut film = item(
                &format!("film-extra-{k}"),
                &format!("Extra Film {k}"),
                ItemKind::Video,
                199,
                "northwind-films",
            );
            film.poster = "/assets/posters/film-night-train.png".into();
            c.items.push(film);
        }
        Ok(c)
    }

    async fn create_order(&self, req: CreateOrder) -> Result<CreatedOrder, Failure> {
        self.check_up()?;
        let item = catalog()
            .items
            .into_iter()
            .find(|i| i.id == req.item_id)
            .ok_or(Failure::Refused {
                code: Some(protocol::ErrorCode::UnknownItem),
                message: "unknown item".into(),
            })?;
        let order = order_for(&item, &fake_server(), 1_800_000_000_000);
        let mut st = self.state.lock().unwrap();
        if let Some(f) = &st.refuse_orders {
            return Err(f.clone());
        }
        if st.owned.contains(&req.item_id) {
            return Err(Failure::Refused {
                code: Some(ErrorCode::AlreadyOwned),
                message: "already_owned: HTTP 409 from http://127.0.0.1:8080/v1/orders".into(),
            });
        }
        st.created += 1;
        st.orders.insert(order.id.clone(), order.clone());
        Ok(created(order))
    }

    async fn order(&self, id: OrderId) -> Result<Order, Failure> {
        self.check_up()?;
        self.state
            .lock()
            .unwrap()
            .orders
            .get(&id)
            .cloned()
            .ok_or(Failure::Refused {
                code: Some(protocol::ErrorCode::UnknownOrder),
                message: "unknown order".into(),
            })
    }

    async fn cancel(&self, id: OrderId, _token: Token) -> Result<Order, Failure> {
        self.check_up()?;
        let mut st = self.state.lock().unwrap();
        let order = st.orders.get_mut(&id).ok_or(Failure::Refused {
            code: Some(protocol::ErrorCode::UnknownOrder),
            message: "unknown order".into(),
        })?;
        order.status = OrderStatus::Cancelled;
        Ok(order.clone())
    }

    async fn entitlements(&self, device: DeviceId) -> Result<Entitlements, Failure> {
        self.check_up()?;
        Ok(Entitlements {
            device_id: device,
            entitlements: self.state.lock().unwrap().entitlements.clone(),
            next_cursor: None,
        })
    }

    async fn order_events(&self, id: OrderId) -> Result<EventStream, Failure> {
        let order = self.order(id).await?;
        // A snapshot, then silence: the fake never pays on its own.
        let first = futures_util::stream::iter([Ok(OrderEvent::Snapshot { order })]);
        Ok(first.chain(futures_util::stream::pending()).boxed())
    }

    async fn device_events(
        &self,
        device: DeviceId,
    ) -> Result<tv_client::runtime::DeviceStream, Failure> {
        // A hello, then silence: nobody offers this fake TV anything.
        let first = futures_util::stream::iter([Ok(protocol::DeviceEvent::Hello { device })]);
        Ok(first.chain(futures_util::stream::pending()).boxed())
    }

    async fn device(
        &self,
        _id: protocol::HardwareId,
        _credential: Token,
    ) -> Result<protocol::DeviceInfo, Failure> {
        Err(no_device_services())
    }

    async fn check_update(
        &self,
        _id: protocol::HardwareId,
        _credential: Token,
    ) -> Result<protocol::UpdateCheck, Failure> {
        Err(no_device_services())
    }

    async fn report_version(
        &self,
        _id: protocol::HardwareId,
        _credential: Token,
        _version: protocol::OsVersion,
    ) -> Result<protocol::DeviceInfo, Failure> {
        Err(no_device_services())
    }

    async fn refund_device(
        &self,
        _id: protocol::HardwareId,
        _credential: Token,
    ) -> Result<protocol::DeviceRefund, Failure> {
        Err(no_device_services())
    }

    async fn download(
        &self,
        _url: String,
        from: u64,
    ) -> Result<tv_client::updates::Download, Failure> {
        self.check_up()?;
        let mut st = self.state.lock().unwrap();
        let bytes = st.package.clone().ok_or_else(no_device_services)?;
        st.download_offsets.push(from);
        let cut = st.drop_download_at.take();
        let from = from as usize;
        let end = cut.map_or(bytes.len(), |c| c.clamp(from, bytes.len()));
        let mut chunks: Vec<Result<Vec<u8>, Failure>> = bytes[from..end]
            .chunks(FAKE_CHUNK)
            .map(|c| Ok(c.to_vec()))
            .collect();
        if cut.is_some() {
            chunks.push(Err(Failure::Unreachable("connection reset by peer".into())));
        }
        Ok(tv_client::updates::Download {
            resumed: from > 0,
            chunks: futures_util::stream::iter(chunks).boxed(),
        })
    }

    async fn packets_events(
        &self,
        _set: protocol::PacketSetId,
    ) -> Result<tv_client::runtime::PacketsStream, Failure> {
        Err(Failure::Unreachable(
            "the fake server has no red packets".into(),
        ))
    }

    async fn pay_by_phone(
        &self,
        id: OrderId,
        req: PhonePayRequest,
    ) -> Result<PhonePayStarted, Failure> {
        self.check_up()?;
        let mut st = self.state.lock().unwrap();
        if !st.orders.contains_key(&id) {
            return Err(Failure::Refused {
                code: Some(protocol::ErrorCode::UnknownOrder),
                message: "unknown order".into(),
            });
        }
        st.phone_requests.push((id.clone(), req.phone.clone()));
        // Like the stub server: at most 3 numbers per order.
        if st.phone_requests.iter().filter(|(o, _)| *o == id).count() > 3 {
            return Err(Failure::Refused {
                code: Some(protocol::ErrorCode::TooManyAttempts),
                message: "too many attempts".into(),
            });
        }
        let bound = is_bound(&req.phone);
        Ok(PhonePayStarted {
            kind: if bound {
                PhonePayKind::CodeSent
            } else {
                PhonePayKind::LinkSent
            },
            phone_masked: req.phone.masked(),
            code_expires_at_ms: bound.then_some(1_800_000_300_000),
        })
    }

    async fn asset(&self, path: String) -> Result<Vec<u8>, Failure> {
        self.check_up()?;
        let file = format!(
            "{}/../{}",
            env!("CARGO_MANIFEST_DIR"),
            path.trim_start_matches('/')
        );
        std::fs::read(&file).map_err(|e| Failure::Refused {
            code: None,
            message: format!("{file}: {e}"),
        })
    }
}

/// A sink that collects inputs on a channel, for a test thread to pump.
pub(crate) fn channel_sink() -> (Sink, mpsc::Receiver<Input>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let sink: Sink = Arc::new(move |input| {
        // The receiver may be gone at the end of a test; nothing to do then.
        let _ = tx.lock().unwrap().send(input);
    });
    (sink, rx)
}

/// A multi-thread tokio runtime for the backend's I/O.
pub(crate) fn io_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Receives inputs until `done` returns true for the state after one, or `timeout`.
/// `apply` feeds each input to the app; returns whether `done` was reached.
pub(crate) fn pump_until(
    rx: &mpsc::Receiver<Input>,
    timeout: Duration,
    mut apply: impl FnMut(Input),
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(input) => apply(input),
            Err(_) => return done(),
        }
    }
    true
}
