//! Carries out the state machine's effects: server requests on a tokio runtime, the order
//! event stream with reconnects, the mDNS announcer. Answers go back as [`Input`]s through
//! a [`Sink`], which the UI thread (or a test) feeds to [`App::handle`](crate::state::App::handle).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use protocol::client::Client;
use protocol::{
    Catalog, CreateOrder, CreatedOrder, DeviceEvent, DeviceId, DeviceInfo, DeviceRefund,
    Entitlements, HardwareId, Order, OrderEvent, OrderId, OsVersion, PacketSetId, PacketsEvent,
    PhonePayRequest, PhonePayStarted, ServerUrl, Token, TvPresence, UpdateCheck, UpdateKey,
};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::announce::Announcer;
use crate::ble::BleAnnouncer;
use crate::state::{Effect, Failure, Input, Offer, Poster};
use crate::updates::Download;

/// Largest poster accepted, in bytes (PNG as served).
pub const MAX_POSTER_BYTES: usize = 4 * 1024 * 1024;
/// Largest poster accepted, in pixels per side (a decoded 4096² RGBA poster is 64 MiB).
pub const MAX_POSTER_SIDE_PX: u32 = 2048;
/// Time allowed for fetching one poster.
pub const POSTER_TIMEOUT_MS: u64 = 10_000;

/// Where the runtime delivers answers.
pub type Sink = Arc<dyn Fn(Input) + Send + Sync>;

/// A stream of order events, as the backend delivers them.
pub type EventStream = BoxStream<'static, Result<OrderEvent, Failure>>;
/// A stream of the device's events (offers to show something).
pub type DeviceStream = BoxStream<'static, Result<DeviceEvent, Failure>>;
/// A stream of one red-packet set's events.
pub type PacketsStream = BoxStream<'static, Result<PacketsEvent, Failure>>;

/// First wait before reopening the device's event stream; doubled up to the maximum.
pub const OFFERS_RETRY_INITIAL_MS: u64 = 1_000;
/// Longest wait between two attempts to reopen the device's event stream.
pub const OFFERS_RETRY_MAX_MS: u64 = 30_000;

/// The server as the TV uses it. [`HttpBackend`] is the real one; tests plug in fakes.
pub trait Backend: Clone + Send + Sync + 'static {
    fn catalog(&self) -> impl Future<Output = Result<Catalog, Failure>> + Send;
    fn create_order(
        &self,
        req: CreateOrder,
    ) -> impl Future<Output = Result<CreatedOrder, Failure>> + Send;
    fn order(&self, id: OrderId) -> impl Future<Output = Result<Order, Failure>> + Send;
    fn cancel(
        &self,
        id: OrderId,
        token: Token,
    ) -> impl Future<Output = Result<Order, Failure>> + Send;
    fn entitlements(
        &self,
        device: DeviceId,
    ) -> impl Future<Output = Result<Entitlements, Failure>> + Send;
    fn order_events(
        &self,
        id: OrderId,
    ) -> impl Future<Output = Result<EventStream, Failure>> + Send;
    /// Raw bytes of a server asset such as a poster (`/assets/posters/…`).
    fn asset(&self, path: String) -> impl Future<Output = Result<Vec<u8>, Failure>> + Send;
    /// Asks the server to text a phone number a code or the pay link for the order.
    fn pay_by_phone(
        &self,
        id: OrderId,
        req: PhonePayRequest,
    ) -> impl Future<Output = Result<PhonePayStarted, Failure>> + Send;
    /// What others ask this TV to show (a `hello` first).
    fn device_events(
        &self,
        device: DeviceId,
    ) -> impl Future<Output = Result<DeviceStream, Failure>> + Send;
    /// One red-packet set's events (a `snapshot` first).
    fn packets_events(
        &self,
        set: PacketSetId,
    ) -> impl Future<Output = Result<PacketsStream, Failure>> + Send;
    /// This box's register entry (device services, with its credential).
    fn device(
        &self,
        id: HardwareId,
        credential: Token,
    ) -> impl Future<Output = Result<DeviceInfo, Failure>> + Send;
    fn check_update(
        &self,
        id: HardwareId,
        credential: Token,
    ) -> impl Future<Output = Result<UpdateCheck, Failure>> + Send;
    fn report_version(
        &self,
        id: HardwareId,
        credential: Token,
        version: OsVersion,
    ) -> impl Future<Output = Result<DeviceInfo, Failure>> + Send;
    fn refund_device(
        &self,
        id: HardwareId,
        credential: Token,
    ) -> impl Future<Output = Result<DeviceRefund, Failure>> + Send;
    /// A package's bytes from byte `from` on (a range request when `from > 0`).
    fn download(
        &self,
        url: String,
        from: u64,
    ) -> impl Future<Output = Result<Download, Failure>> + Send;
}

/// The real server, through the protocol crate's typed client.
#[derive(Clone, Debug)]
pub struct HttpBackend {
    client: Client,
    http: reqwest::Client,
}

impl HttpBackend {
    pub fn new(server: ServerUrl) -> Self {
        Self {
            client: Client::new(server),
            http: reqwest::Client::new(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Backend for HttpBackend {
    async fn catalog(&self) -> Result<Catalog, Failure> {
        Ok(self.client.catalog().await?)
    }

    async fn create_order(&self, req: CreateOrder) -> Result<CreatedOrder, Failure> {
        Ok(self.client.create_order(&req).await?)
    }

    async fn order(&self, id: OrderId) -> Result<Order, Failure> {
        Ok(self.client.order(&id).await?)
    }

    async fn cancel(&self, id: OrderId, token: Token) -> Result<Order, Failure> {
        Ok(self.client.cancel(&id, &token).await?)
    }

    async fn entitlements(&self, device: DeviceId) -> Result<Entitlements, Failure> {
        Ok(self.client.entitlements(&device).await?)
    }

    async fn order_events(&self, id: OrderId) -> Result<EventStream, Failure> {
        let stream = self.client.order_events(&id).await?;
        Ok(stream.map(|r| r.map_err(Failure::from)).boxed())
    }

    async fn pay_by_phone(
        &self,
        id: OrderId,
        req: PhonePayRequest,
    ) -> Result<PhonePayStarted, Failure> {
        Ok(self.client.pay_by_phone(&id, &req).await?)
    }

    async fn device_events(&self, device: DeviceId) -> Result<DeviceStream, Failure> {
        let stream = self.client.device_events(&device).await?;
        Ok(stream.map(|r| r.map_err(Failure::from)).boxed())
    }

    async fn packets_events(&self, set: PacketSetId) -> Result<PacketsStream, Failure> {
        let stream = self.client.packets_events(&set).await?;
        Ok(stream.map(|r| r.map_err(Failure::from)).boxed())
    }

    async fn device(&self, id: HardwareId, credential: Token) -> Result<DeviceInfo, Failure> {
        Ok(self.client.device(&id, &credential).await?)
    }

    async fn check_update(
        &self,
        id: HardwareId,
        credential: Token,
    ) -> Result<UpdateCheck, Failure> {
        Ok(self.client.check_update(&id, &credential).await?)
    }

    async fn report_version(
        &self,
        id: HardwareId,
        credential: Token,
        version: OsVersion,
    ) -> Result<DeviceInfo, Failure> {
        Ok(self
            .client
            .report_version(&id, &credential, &version)
            .await?)
    }

    async fn refund_device(
        &self,
        id: HardwareId,
        credential: Token,
    ) -> Result<DeviceRefund, Failure> {
        Ok(self.client.refund_device(&id, &credential).await?)
    }

    async fn download(&self, url: String, from: u64) -> Result<Download, Failure> {
        let resp = self.client.download_from(&url, from).await?;
        let resumed = resp.status() == reqwest::StatusCode::PARTIAL_CONTENT;
        let chunks = resp
            .bytes_stream()
            .map(|c| {
                c.map(|b| b.to_vec())
                    .map_err(|e| Failure::Unreachable(e.to_string()))
            })
            .boxed();
        Ok(Download { resumed, chunks })
    }

    async fn asset(&self, path: String) -> Result<Vec<u8>, Failure> {
        // Assets are plain files, not API calls, so they are fetched here rather than
        // through the typed client.
        let url = self.client.server().join(&path);
        let unreachable = |e: reqwest::Error| Failure::Unreachable(e.to_string());
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_millis(POSTER_TIMEOUT_MS))
            .send()
            .await
            .map_err(unreachable)?;
        if !resp.status().is_success() {
            return Err(Failure::Refused {
                code: None,
                message: format!("{url}: HTTP {}", resp.status()),
            });
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_POSTER_BYTES as u64)
        {
            return Err(Failure::Refused {
                code: None,
                message: format!("{url}: larger than {MAX_POSTER_BYTES} bytes"),
            });
        }
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if bytes.len() > MAX_POSTER_BYTES {
            return Err(Failure::Refused {
                code: None,
                message: format!("{url}: larger than {MAX_POSTER_BYTES} bytes"),
            });
        }
        Ok(bytes.to_vec())
    }
}

/// Why a poster could not be shown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PosterError {
    #[error("poster is not a readable image: {0}")]
    Decode(#[from] image::ImageError),
    #[error("poster is {0}×{1} px, more than {MAX_POSTER_SIDE_PX} px on a side")]
    TooLarge(u32, u32),
}

/// Decodes a PNG poster into RGBA8, refusing oversized images before decoding pixels.
pub fn decode_poster(bytes: &[u8]) -> Result<Poster, PosterError> {
    let reader =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png);
    let (w, h) = reader.into_dimensions()?;
    if w > MAX_POSTER_SIDE_PX || h > MAX_POSTER_SIDE_PX {
        return Err(PosterError::TooLarge(w, h));
    }
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)?.into_rgba8();
    Ok(Poster {
        width: img.width(),
        height: img.height(),
        rgba: img.into_raw(),
    })
}

/// Executes effects. Owns the background tasks it starts.
pub struct Runtime<B: Backend> {
    backend: B,
    handle: Handle,
    sink: Sink,
    announcer: Option<Announcer>,
    /// Why there is no announcer, shown on the order screen.
    announcer_error: Option<String>,
    /// The BLE advert + GATT record, beside mDNS (absent when BLE is off).
    ble: Option<BleAnnouncer>,
    follower: Option<JoinHandle<()>>,
    /// The device's event stream, for as long as the app runs.
    offers: Option<JoinHandle<()>>,
    /// The event stream of the red-packet set on screen.
    packets: Option<JoinHandle<()>>,
    /// The vendor's key that update packages must be signed with.
    update_key: UpdateKey,
    /// The update download under way.
    download: Option<JoinHandle<()>>,
}

impl<B: Backend> std::fmt::Debug for Runtime<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field(
                "announcing",
                &self.announcer.as_ref().map(Announcer::is_announcing),
            )
            .field("following", &self.follower.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Runtime<B> {
    /// `announcer` is `Err(reason)` when mDNS is disabled or failed to start; the order
    /// screen then says so instead of claiming the order is announced.
    pub fn new(
        backend: B,
        handle: Handle,
        sink: Sink,
        announcer: Result<Announcer, String>,
    ) -> Self {
        let (announcer, announcer_error) = match announcer {
            Ok(a) => (Some(a), None),
            Err(e) => (None, Some(e)),
        };
        Self {
            backend,
            handle,
            sink,
            announcer,
            announcer_error,
            ble: None,
            follower: None,
            offers: None,
            packets: None,
            update_key: UpdateKey::demo(),
            download: None,
        }
    }

    /// Accepts update packages signed with `key` (the demo vendor's key by default).
    pub fn with_update_key(mut self, key: UpdateKey) -> Self {
        self.update_key = key;
        self
    }

    /// Also offers each announced order over Bluetooth LE, withdrawn at the same points
    /// as mDNS.
    pub fn with_ble(mut self, ble: BleAnnouncer) -> Self {
        self.ble = Some(ble);
        self
    }

    /// Announces the TV's presence over mDNS for as long as the runtime lives, so a
    /// phone can pick this TV from Nearby (to show red packets on it). Best effort: a
    /// TV without mDNS is still reachable by its device id.
    pub fn with_presence(mut self, presence: TvPresence) -> Self {
        if let Some(a) = &mut self.announcer {
            match a.present(&presence) {
                Ok(announcement) => self.handle.spawn(async move {
                    if let Err(e) = announcement.confirmed().await {
                        tracing::warn!(error = %e, "the TV's presence is not announced");
                    }
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "the TV's presence is not announced");
                    return self;
                }
            };
        }
        self
    }

    pub fn ble(&self) -> Option<&BleAnnouncer> {
        self.ble.as_ref()
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn is_announcing(&self) -> bool {
        self.announcer
            .as_ref()
            .is_some_and(Announcer::is_announcing)
    }

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = Input> + Send + 'static,
    {
        let sink = self.sink.clone();
        self.handle.spawn(async move { sink(fut.await) });
    }

    pub fn execute_all(&mut self, effects: Vec<Effect>) {
        for e in effects {
            self.execute(e);
        }
    }

    pub fn execute(&mut self, effect: Effect) {
        let b = self.backend.clone();
        match effect {
            Effect::LoadCatalog => self.spawn(async move {
                Input::CatalogLoaded(logged("loading the catalog", b.catalog().await))
            }),
            Effect::LoadPoster { item, path } => {
                let sink = self.sink.clone();
                self.handle.spawn(async move {
                    let poster = match b.asset(path.clone()).await {
                        Ok(bytes) => decode_poster(&bytes).map_err(|e| e.to_string()),
                        Err(f) => Err(f.message().to_owned()),
                    };
                    match poster {
                        Ok(p) => sink(Input::PosterLoaded {
                            item,
                            poster: Arc::new(p),
                        }),
                        // The card shows its title instead; not worth bothering anyone.
                        Err(e) => tracing::warn!(%path, error = %e, "poster unavailable"),
                    }
                });
            }
            Effect::CreateOrder(req) => self.spawn(async move {
                let item = req.item_id.clone();
                Input::OrderCreated {
                    item,
                    result: logged("creating an order", b.create_order(req).await),
                }
            }),
            Effect::FollowOrder { order, generation } => {
                self.stop_following();
                let sink = self.sink.clone();
                self.follower = Some(self.handle.spawn(follow(b, order, generation, sink)));
            }
            Effect::StopFollowing => self.stop_following(),
            Effect::ListenForOffers(device) => {
                if let Some(old) = self.offers.take() {
                    old.abort();
                }
                let sink = self.sink.clone();
                self.offers = Some(self.handle.spawn(listen_for_offers(b, device, sink)));
            }
            Effect::FollowPackets { set, generation } => {
                self.stop_following_packets();
                let sink = self.sink.clone();
                self.packets = Some(self.handle.spawn(follow_packets(b, set, generation, sink)));
            }
            Effect::StopFollowingPackets => self.stop_following_packets(),
            Effect::PollOrder(id) => self.spawn(async move {
                match logged("polling the order", b.order(id.clone()).await) {
                    Ok(order) => Input::OrderUpdate(order),
                    Err(failure) => Input::PollFailed { order: id, failure },
                }
            }),
            Effect::CancelOrder { order, tv_token } => self.spawn(async move {
                let result = logged(
                    "cancelling the order",
                    b.cancel(order.clone(), tv_token).await,
                );
                Input::CancelDone { order, result }
            }),
            Effect::PayByPhone {
                order,
                tv_token,
                phone,
            } => self.spawn(async move {
                let result = b
                    .pay_by_phone(order.clone(), PhonePayRequest { tv_token, phone })
                    .await;
                let result = logged("sending the order to a phone number", result);
                Input::PhonePayDone { order, result }
            }),
            Effect::LoadDevice { id, credential } => self.spawn(async move {
                Input::DeviceLoaded(logged("loading the device", b.device(id, credential).await))
            }),
            Effect::CheckUpdate { id, credential } => self.spawn(async move {
                Input::UpdateChecked(logged(
                    "checking for updates",
                    b.check_update(id, credential).await,
                ))
            }),
            Effect::DownloadUpdate(package) => {
                if let Some(old) = self.download.take() {
                    old.abort();
                }
                let (key, sink) = (self.update_key.clone(), self.sink.clone());
                self.download = Some(
                    self.handle
                        .spawn(crate::updates::download_update(b, package, key, sink)),
                );
            }
            Effect::ReportVersion {
                id,
                credential,
                version,
            } => self.spawn(async move {
                Input::VersionReported(logged(
                    "reporting the installed version",
                    b.report_version(id, credential, version).await,
                ))
            }),
            Effect::RefundDevice { id, credential } => self.spawn(async move {
                Input::RefundDone(logged(
                    "asking for the device refund",
                    b.refund_device(id, credential).await,
                ))
            }),
            Effect::LoadEntitlements(device) => {
                self.spawn(async move {
                    Input::EntitlementsLoaded(logged(
                        "loading the purchases",
                        b.entitlements(device).await,
                    ))
                });
            }
            Effect::Announce(record) => {
                let Some(offer) = Offer::of(&record) else {
                    tracing::warn!("a presence is announced by the runtime, not as an offer");
                    return;
                };
                match &self.ble {
                    Some(ble) => {
                        let outcome = ble.announce(&record);
                        let offer = offer.clone();
                        self.spawn(async move {
                            let result = match outcome.await {
                                Ok(r) => r.map_err(|e| e.to_string()),
                                Err(_) => Err("superseded by a newer offer".to_owned()),
                            };
                            if let Err(reason) = &result {
                                tracing::info!(%offer, %reason, "not offered over Bluetooth LE");
                            }
                            Input::BleAnnounced { offer, result }
                        });
                    }
                    None => {
                        tracing::info!(%offer, "not offered over Bluetooth LE: turned off");
                        (self.sink)(Input::BleAnnounced {
                            offer: offer.clone(),
                            result: Err("turned off".to_owned()),
                        });
                    }
                }
                let result = match (&mut self.announcer, &self.announcer_error) {
                    (Some(a), _) => match a.announce(&record) {
                        Ok(announcement) => {
                            // Out only once the daemon says it sent it on an interface.
                            self.spawn(async move {
                                let result =
                                    announcement.confirmed().await.map_err(|e| e.to_string());
                                if let Err(reason) = &result {
                                    tracing::warn!(%offer, %reason, "not announced on the network");
                                }
                                Input::Announced { offer, result }
                            });
                            return;
                        }
                        Err(e) => Err(e.to_string()),
                    },
                    (None, Some(e)) => Err(e.clone()),
                    (None, None) => Err("mDNS is off".to_owned()),
                };
                if let Err(reason) = &result {
                    tracing::warn!(%offer, %reason, "not announced on the network");
                }
                (self.sink)(Input::Announced { offer, result });
            }
            Effect::Withdraw => {
                if let Some(ble) = &self.ble {
                    ble.withdraw();
                }
                if let Some(a) = &mut self.announcer {
                    // Fire and forget: the goodbye is sent by the daemon's thread.
                    let _ = a.withdraw();
                }
            }
        }
    }

    fn stop_following(&mut self) {
        if let Some(task) = self.follower.take() {
            task.abort();
        }
    }

    fn stop_following_packets(&mut self) {
        if let Some(task) = self.packets.take() {
            task.abort();
        }
    }
}

impl<B: Backend> Drop for Runtime<B> {
    fn drop(&mut self) {
        self.stop_following();
        self.stop_following_packets();
        if let Some(task) = self.offers.take() {
            task.abort();
        }
        if let Some(task) = self.download.take() {
            task.abort();
        }
    }
}

/// Logs a failed request (what the server or the network said is for the log; the
/// screen says what happened in words of its own) and passes the result on.
fn logged<T>(what: &str, result: Result<T, Failure>) -> Result<T, Failure> {
    match &result {
        Err(Failure::Unreachable(m)) => tracing::warn!(error = %m, "{what}: server unreachable"),
        Err(Failure::Refused { code, message }) => {
            tracing::warn!(code = ?code, error = %message, "{what}: refused");
        }
        Ok(_) => {}
    }
    result
}

/// Follows one connection of the order's event stream: reports it opened on the first
/// event (always a snapshot), forwards every event's order, and reports when it ends.
/// Reconnecting is the state machine's decision (it knows the backoff and the clock).
async fn follow<B: Backend>(backend: B, order: OrderId, generation: u64, sink: Sink) {
    let reason = match backend.order_events(order.clone()).await {
        Err(f) => f.message().to_owned(),
        Ok(mut events) => {
            let mut opened = false;
            loop {
                match events.next().await {
                    Some(Ok(event)) => {
                        if !opened {
                            opened = true;
                            sink(Input::StreamOpened {
                                order: order.clone(),
                                generation,
                            });
                        }
                        let final_state = event.order().status.is_final();
                        sink(Input::OrderUpdate(event.order().clone()));
                        if final_state {
                            return;
                        }
                    }
                    Some(Err(f)) => break f.message().to_owned(),
                    None => break "the server closed the event stream".to_owned(),
                }
            }
        }
    };
    sink(Input::StreamEnded {
        order,
        generation,
        reason,
    });
}

/// Keeps the device's event stream open for as long as the app runs, reconnecting with
/// backoff, and passes every red-packet offer on.
async fn listen_for_offers<B: Backend>(backend: B, device: DeviceId, sink: Sink) {
    let mut failures = 0u32;
    loop {
        match backend.device_events(device.clone()).await {
            Ok(mut events) => {
                while let Some(event) = events.next().await {
                    match event {
                        Ok(DeviceEvent::PacketsOffered { set }) => {
                            failures = 0;
                            tracing::info!(set = set.id.log_prefix(), "red packets offered");
                            sink(Input::PacketsOffered(set));
                        }
                        Ok(_) => failures = 0,
                        Err(f) => {
                            tracing::info!(error = %f.message(), "device event stream broke");
                            break;
                        }
                    }
                }
            }
            Err(f) => tracing::info!(error = %f.message(), "device event stream unavailable"),
        }
        failures = failures.saturating_add(1);
        let shift = failures.saturating_sub(1).min(16);
        let wait = OFFERS_RETRY_INITIAL_MS
            .saturating_mul(1 << shift)
            .min(OFFERS_RETRY_MAX_MS);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// Follows one connection of a red-packet set's event stream: reports it opened on the
/// first event (a snapshot), forwards every state of the set, and reports when it ends
/// (reconnecting is the state machine's decision).
async fn follow_packets<B: Backend>(backend: B, set: PacketSetId, generation: u64, sink: Sink) {
    match backend.packets_events(set.clone()).await {
        Err(f) => tracing::info!(error = %f.message(), "red-packet event stream unavailable"),
        Ok(mut events) => {
            let mut opened = false;
            while let Some(event) = events.next().await {
                match event {
                    Ok(e) => {
                        if !opened {
                            opened = true;
                            sink(Input::PacketsStreamOpened {
                                set: set.clone(),
                                generation,
                            });
                        }
                        let last = e.is_final();
                        sink(Input::PacketsUpdate(e.set().clone()));
                        if last {
                            return;
                        }
                    }
                    Err(f) => {
                        tracing::info!(error = %f.message(), "red-packet event stream broke");
                        break;
                    }
                }
            }
        }
    }
    sink(Input::PacketsStreamEnded { set, generation });
}
