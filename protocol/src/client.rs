//! The typed async client for every `/v1` endpoint, including the server-sent event
//! streams. The TV, the companion, the load generator and the tests all use it.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::*;

/// Most pages [`Client::entitlements`] fetches (100 entitlements each).
pub const MAX_ENTITLEMENT_PAGES: usize = 100;
use crate::{
    AccountId, DeviceId, HardwareId, IdempotencyKey, OrderId, OsVersion, PacketSetId, PhoneNumber,
    ServerUrl, ShortCode, Token, VoucherId,
};

/// Time allowed to open a TCP connection to the server.
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;
/// Time allowed for one ordinary request, start to finish.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// An event stream that is silent this long is treated as dropped (the server sends a
/// keep-alive comment every 15 s).
pub const STREAM_IDLE_TIMEOUT_MS: u64 = 45_000;
/// Largest single server-sent event accepted, in bytes.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error body; match on `error.code`.
    #[error("{}", .error.message)]
    Api { status: u16, error: ErrorDetail },
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the Couchpay server at {server}: {source}")]
    Transport {
        server: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The API error code, if the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// True when retrying the same request later may succeed (network trouble, 503).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { error, .. } => matches!(error.code, ErrorCode::Unavailable),
            Self::Protocol(_) => false,
        }
    }
}

/// A client for one Couchpay server.
#[derive(Clone, Debug)]
pub struct Client {
    base: ServerUrl,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: ServerUrl) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .tcp_nodelay(true)
            .build()
            .expect("reqwest client with static settings");
        Self { base, http }
    }

    /// A client that sends through `http` (for example one bound to a local address).
    pub fn with_http(base: ServerUrl, http: reqwest::Client) -> Self {
        Self { base, http }
    }

    pub fn server(&self) -> &ServerUrl {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.base.join(path))
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
    }

    fn transport(&self, source: reqwest::Error) -> ClientError {
        ClientError::Transport {
            server: self.base.to_string(),
            source,
        }
    }

    async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api {
                status: status.as_u16(),
                error: body.error,
            }),
            Err(_) => Err(ClientError::Protocol(format!(
                "HTTP {status} without an error body"
            ))),
        }
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json(self.request(Method::GET, path)).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.json(self.request(Method::POST, path).json(body)).await
    }

    /// `GET /v1/catalog`
    pub async fn catalog(&self) -> Result<Catalog, ClientError> {
        self.get("/v1/catalog").await
    }

    /// `POST /v1/orders`
    pub async fn create_order(&self, req: &CreateOrder) -> Result<CreatedOrder, ClientError> {
        self.post("/v1/orders", req).await
    }

    /// `GET /v1/orders/{id}`
    pub async fn order(&self, id: &OrderId) -> Result<Order, ClientError> {
        self.get(&format!("/v1/orders/{id}")).await
    }

    /// `GET /v1/orders/by-code/{code}` (rate-limited per client address).
    pub async fn order_by_code(&self, code: &ShortCode) -> Result<Order, ClientError> {
        self.get(&format!("/v1/orders/by-code/{code}")).await
    }

    /// `POST /v1/orders/{id}/pay`. Reuse the same `key` when retrying: the server answers
    /// a replay with the original receipt and never charges twice.
    pub async fn pay(
        &self,
        id: &OrderId,
        key: &IdempotencyKey,
        req: &PayRequest,
    ) -> Result<Receipt, ClientError> {
        self.json(
            self.request(Method::POST, &format!("/v1/orders/{id}/pay"))
                .header(IDEMPOTENCY_KEY_HEADER, key.as_str())
                .json(req),
        )
        .await
    }

    /// `POST /v1/orders/{id}/cancel` with the TV's token.
    pub async fn cancel(&self, id: &OrderId, tv_token: &Token) -> Result<Order, ClientError> {
        self.post(
            &format!("/v1/orders/{id}/cancel"),
            &CancelOrder {
                tv_token: tv_token.clone(),
            },
        )
        .await
    }

    /// `POST /v1/sessions`: account + PIN → short-lived session token.
    pub async fn login(&self, req: &LoginRequest) -> Result<Session, ClientError> {
        self.post("/v1/sessions", req).await
    }

    /// `GET /v1/accounts/{id}` with a session token.
    pub async fn account(
        &self,
        id: &AccountId,
        session: &Token,
    ) -> Result<AccountView, ClientError> {
        self.json(
            self.request(Method::GET, &format!("/v1/accounts/{id}"))
                .bearer_auth(session.expose()),
        )
        .await
    }

    /// `GET /v1/accounts/{id}/receipts` with a session token: the newest page.
    pub async fn receipts(
        &self,
        id: &AccountId,
        session: &Token,
    ) -> Result<Vec<Receipt>, ClientError> {
        Ok(self.receipts_page(id, session, None, None).await?.items)
    }

    /// `GET /v1/accounts/{id}/receipts?cursor=&limit=`: one page of receipts, newest first.
    pub async fn receipts_page(
        &self,
        id: &AccountId,
        session: &Token,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<Receipt>, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        self.json(
            self.request(Method::GET, &format!("/v1/accounts/{id}/receipts"))
                .query(&query)
                .bearer_auth(session.expose()),
        )
        .await
    }

    /// `POST /v1/vouchers`: freezes the amount and returns the new voucher.
    pub async fn create_voucher(&self, req: &CreateVoucher) -> Result<Voucher, ClientError> {
        self.post("/v1/vouchers", req).await
    }

    /// `GET /v1/vouchers/{id}`: the voucher as the server has it (what a payee checks
    /// before redeeming).
    pub async fn voucher(&self, id: &VoucherId) -> Result<Voucher, ClientError> {
        self.get(&format!("/v1/vouchers/{id}")).await
    }

    /// `POST /v1/vouchers/{id}/redeem`. Reuse `key` when retrying: a replay gets the
    /// original answer and the money moves once.
    pub async fn redeem_voucher(
        &self,
        id: &VoucherId,
        key: &IdempotencyKey,
        req: &RedeemVoucher,
    ) -> Result<Redemption, ClientError> {
        self.json(
            self.request(Method::POST, &format!("/v1/vouchers/{id}/redeem"))
                .header(IDEMPOTENCY_KEY_HEADER, key.as_str())
                .json(req),
        )
        .await
    }

    /// `POST /v1/vouchers/{id}/void` by its payer.
    pub async fn void_voucher(
        &self,
        id: &VoucherId,
        req: &VoidVoucher,
    ) -> Result<Voucher, ClientError> {
        self.post(&format!("/v1/vouchers/{id}/void"), req).await
    }

    /// `GET /v1/accounts/{id}/vouchers` with a session token: one page, newest first, of
    /// the vouchers the account made (or redeemed), filtered by state and creation time.
    pub async fn vouchers(
        &self,
        id: &AccountId,
        session: &Token,
        filter: &VoucherFilter,
    ) -> Result<Page<Voucher>, ClientError> {
        self.json(
            self.request(Method::GET, &format!("/v1/accounts/{id}/vouchers"))
                .query(filter)
                .bearer_auth(session.expose()),
        )
        .await
    }

    /// `POST /v1/packets/quote`: what a red-packet set would take.
    pub async fn quote_packets(
        &self,
        req: &PacketQuoteRequest,
    ) -> Result<PacketQuote, ClientError> {
        self.post("/v1/packets/quote", req).await
    }

    /// `POST /v1/packets`: sends a red-packet set (the total goes to escrow).
    pub async fn create_packets(&self, req: &CreatePackets) -> Result<PacketSet, ClientError> {
        self.post("/v1/packets", req).await
    }

    /// `GET /v1/packets/{id}`: the set, with who got how much.
    pub async fn packets(&self, id: &PacketSetId) -> Result<PacketSet, ClientError> {
        self.get(&format!("/v1/packets/{id}")).await
    }

    /// `POST /v1/packets/{id}/claim`: one packet for the caller.
    pub async fn claim_packet(
        &self,
        id: &PacketSetId,
        req: &ClaimPacket,
    ) -> Result<Claimed, ClientError> {
        self.post(&format!("/v1/packets/{id}/claim"), req).await
    }

    /// `GET /v1/accounts/{id}/packets` with a session token: the red-packet sets the
    /// account sent (or, with `received`, claimed from), newest first.
    pub async fn packet_sets(
        &self,
        id: &AccountId,
        session: &Token,
        received: bool,
        limit: Option<u32>,
    ) -> Result<Page<PacketSet>, ClientError> {
        let kind = if received { "received" } else { "sent" };
        let mut query = vec![("kind", kind.to_owned())];
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        self.json(
            self.request(Method::GET, &format!("/v1/accounts/{id}/packets"))
                .query(&query)
                .bearer_auth(session.expose()),
        )
        .await
    }

    /// `GET /v1/accounts/{id}/voucher-settings` with a session token.
    pub async fn voucher_settings(
        &self,
        id: &AccountId,
        session: &Token,
    ) -> Result<VoucherSettings, ClientError> {
        self.json(
            self.request(Method::GET, &format!("/v1/accounts/{id}/voucher-settings"))
                .bearer_auth(session.expose()),
        )
        .await
    }

    /// `PUT /v1/accounts/{id}/voucher-settings` with a session token.
    pub async fn set_voucher_settings(
        &self,
        id: &AccountId,
        session: &Token,
        settings: &VoucherSettings,
    ) -> Result<VoucherSettings, ClientError> {
        self.json(
            self.request(Method::PUT, &format!("/v1/accounts/{id}/voucher-settings"))
                .bearer_auth(session.expose())
                .json(settings),
        )
        .await
    }

    /// `GET /v1/accounts/{id}/payments/{key}`: the payment made with idempotency key
    /// `key`, or the API error `unknown_payment` if none was (nothing was charged).
    pub async fn payment(
        &self,
        id: &AccountId,
        session: &Token,
        key: &IdempotencyKey,
    ) -> Result<Receipt, ClientError> {
        self.json(
            self.request(Method::GET, &format!("/v1/accounts/{id}/payments/{key}"))
                .bearer_auth(session.expose()),
        )
        .await
    }

    /// `GET /v1/devices/{id}/entitlements`, every page (at most [`MAX_ENTITLEMENT_PAGES`]):
    /// a TV needs all of them to know what it owns.
    pub async fn entitlements(&self, device: &DeviceId) -> Result<Entitlements, ClientError> {
        let path = format!("/v1/devices/{device}/entitlements");
        let mut all: Entitlements = self.get(&format!("{path}?limit=100")).await?;
        let mut pages = 1;
        while let Some(cursor) = all.next_cursor.take() {
            if pages >= MAX_ENTITLEMENT_PAGES {
                break;
            }
            let next: Entitlements = self
                .json(
                    self.request(Method::GET, &path)
                        .query(&[("limit", "100"), ("cursor", cursor.as_str())]),
                )
                .await?;
            all.entitlements.extend(next.entitlements);
            all.next_cursor = next.next_cursor;
            pages += 1;
        }
        Ok(all)
    }

    /// `GET /v1/audit`
    pub async fn audit(&self) -> Result<AuditReport, ClientError> {
        self.get("/v1/audit").await
    }

    /// `GET /v1/devices/{id}` — the device's register entry (as the device, SPEC D2).
    pub async fn device(
        &self,
        id: &HardwareId,
        credential: &Token,
    ) -> Result<DeviceInfo, ClientError> {
        self.json(
            self.request(Method::GET, &format!("/v1/devices/{id}"))
                .bearer_auth(credential.expose()),
        )
        .await
    }

    /// `POST /v1/devices/{id}/refund` — refunds the device's sale (SPEC D3).
    pub async fn refund_device(
        &self,
        id: &HardwareId,
        credential: &Token,
    ) -> Result<DeviceRefund, ClientError> {
        self.json(
            self.request(Method::POST, &format!("/v1/devices/{id}/refund"))
                .bearer_auth(credential.expose()),
        )
        .await
    }

    /// `GET /v1/devices/{id}/update` — the newest package for the device (SPEC D4).
    pub async fn check_update(
        &self,
        id: &HardwareId,
        credential: &Token,
    ) -> Result<UpdateCheck, ClientError> {
        self.json(
            self.request(Method::GET, &format!("/v1/devices/{id}/update"))
                .bearer_auth(credential.expose()),
        )
        .await
    }

    /// `POST /v1/devices/{id}/os-version` — the device installed `version`.
    pub async fn report_version(
        &self,
        id: &HardwareId,
        credential: &Token,
        version: &OsVersion,
    ) -> Result<DeviceInfo, ClientError> {
        self.json(
            self.request(Method::POST, &format!("/v1/devices/{id}/os-version"))
                .bearer_auth(credential.expose())
                .json(&ReportVersion {
                    version: version.clone(),
                }),
        )
        .await
    }

    /// `GET <url>` from byte `from` on (a range request when `from > 0`): the response, to
    /// be read in chunks. The answer to a range request is `206 Partial Content`.
    pub async fn download_from(&self, url: &str, from: u64) -> Result<Response, ClientError> {
        let mut req = self.http.get(url);
        if from > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        self.send(req).await
    }

    /// `POST /v1/admin/devices` (developer endpoint, admin token).
    pub async fn register_device(
        &self,
        admin: &str,
        req: &RegisterDevice,
    ) -> Result<AdminDevice, ClientError> {
        self.json(
            self.request(Method::POST, "/v1/admin/devices")
                .bearer_auth(admin)
                .json(req),
        )
        .await
    }

    /// `POST /v1/admin/devices/{id}/credential` (developer endpoint, admin token).
    pub async fn issue_device_credential(
        &self,
        admin: &str,
        id: &HardwareId,
    ) -> Result<DeviceCredential, ClientError> {
        self.json(
            self.request(Method::POST, &format!("/v1/admin/devices/{id}/credential"))
                .bearer_auth(admin),
        )
        .await
    }

    /// `GET /v1/admin/devices?order=…` (developer endpoint, admin token).
    pub async fn devices_of_order(
        &self,
        admin: &str,
        order: &OrderId,
    ) -> Result<AdminDevices, ClientError> {
        self.json(
            self.request(Method::GET, &format!("/v1/admin/devices?order={order}"))
                .bearer_auth(admin),
        )
        .await
    }

    /// `POST /v1/admin/accounts` (stub developer endpoint, admin token).
    pub async fn create_account(
        &self,
        admin: &str,
        req: &CreateAccount,
    ) -> Result<AccountView, ClientError> {
        self.json(
            self.request(Method::POST, "/v1/admin/accounts")
                .bearer_auth(admin)
                .json(req),
        )
        .await
    }

    /// `POST /v1/admin/topups` (stub developer endpoint, admin token).
    pub async fn top_up(&self, admin: &str, req: &TopUp) -> Result<AccountView, ClientError> {
        self.json(
            self.request(Method::POST, "/v1/admin/topups")
                .bearer_auth(admin)
                .json(req),
        )
        .await
    }

    /// `POST /v1/admin/merchants` (stub developer endpoint, admin token).
    pub async fn create_merchant(
        &self,
        admin: &str,
        req: &CreateMerchant,
    ) -> Result<MerchantView, ClientError> {
        self.json(
            self.request(Method::POST, "/v1/admin/merchants")
                .bearer_auth(admin)
                .json(req),
        )
        .await
    }

    /// `POST /v1/admin/merchants/{id}/keys` (admin token): a new merchant API key.
    pub async fn create_merchant_key(
        &self,
        admin: &str,
        merchant: &AccountId,
        req: &CreateMerchantKey,
    ) -> Result<MerchantKey, ClientError> {
        self.json(
            self.request(
                Method::POST,
                &format!("/v1/admin/merchants/{merchant}/keys"),
            )
            .bearer_auth(admin)
            .json(req),
        )
        .await
    }

    /// `POST /v1/admin/webhooks` (admin token): registers a merchant's endpoint.
    pub async fn create_webhook(
        &self,
        admin: &str,
        req: &crate::webhook::CreateWebhook,
    ) -> Result<crate::webhook::WebhookEndpoint, ClientError> {
        self.json(
            self.request(Method::POST, "/v1/admin/webhooks")
                .bearer_auth(admin)
                .json(req),
        )
        .await
    }

    /// `GET /v1/admin/webhooks/{id}/deliveries` (admin token): the endpoint's delivery
    /// log, newest first.
    pub async fn webhook_deliveries(
        &self,
        admin: &str,
        endpoint: &str,
    ) -> Result<Vec<crate::webhook::WebhookDelivery>, ClientError> {
        self.json(
            self.request(
                Method::GET,
                &format!("/v1/admin/webhooks/{endpoint}/deliveries"),
            )
            .bearer_auth(admin),
        )
        .await
    }

    /// `POST /v1/admin/webhooks/deliveries/{id}/resend` (admin token): tries a delivery
    /// again now, whatever its state.
    pub async fn resend_webhook(
        &self,
        admin: &str,
        delivery: i64,
    ) -> Result<crate::webhook::WebhookDelivery, ClientError> {
        self.json(
            self.request(
                Method::POST,
                &format!("/v1/admin/webhooks/deliveries/{delivery}/resend"),
            )
            .bearer_auth(admin),
        )
        .await
    }

    /// `POST /v1/admin/cards` (admin token): links a card to a wallet.
    pub async fn create_card(
        &self,
        admin: &str,
        req: &CreateCard,
    ) -> Result<AccountView, ClientError> {
        self.json(
            self.request(Method::POST, "/v1/admin/cards")
                .bearer_auth(admin)
                .json(req),
        )
        .await
    }

    /// `GET /v1/merchants/{id}` with a merchant API key.
    pub async fn merchant(&self, id: &AccountId, key: &Token) -> Result<MerchantView, ClientError> {
        self.json(
            self.request(Method::GET, &format!("/v1/merchants/{id}"))
                .bearer_auth(key.expose()),
        )
        .await
    }

    /// `GET /v1/merchants/{id}/payments?cursor=` with a merchant API key, newest first.
    pub async fn merchant_payments(
        &self,
        id: &AccountId,
        key: &Token,
        cursor: Option<&str>,
    ) -> Result<Page<MerchantPayment>, ClientError> {
        let query: Vec<(&str, &str)> = cursor.map(|c| ("cursor", c)).into_iter().collect();
        self.json(
            self.request(Method::GET, &format!("/v1/merchants/{id}/payments"))
                .query(&query)
                .bearer_auth(key.expose()),
        )
        .await
    }

    /// `GET /v1/merchants/{id}/orders?cursor=` with a merchant API key, newest first.
    pub async fn merchant_orders(
        &self,
        id: &AccountId,
        key: &Token,
        cursor: Option<&str>,
    ) -> Result<Page<Order>, ClientError> {
        let query: Vec<(&str, &str)> = cursor.map(|c| ("cursor", c)).into_iter().collect();
        self.json(
            self.request(Method::GET, &format!("/v1/merchants/{id}/orders"))
                .query(&query)
                .bearer_auth(key.expose()),
        )
        .await
    }

    /// `GET /v1/admin/clock` (admin token): the server's time.
    pub async fn clock(&self, admin: &str) -> Result<ClockView, ClientError> {
        self.json(
            self.request(Method::GET, "/v1/admin/clock")
                .bearer_auth(admin),
        )
        .await
    }

    /// `POST /v1/admin/clock` (admin token, server started with `--test-clock`): moves
    /// the server's time forward; what falls due expires at once, with its events.
    pub async fn advance_clock(&self, admin: &str, by: Duration) -> Result<ClockView, ClientError> {
        let req = AdvanceClock {
            advance_ms: u64::try_from(by.as_millis()).unwrap_or(u64::MAX),
        };
        self.json(
            self.request(Method::POST, "/v1/admin/clock")
                .bearer_auth(admin)
                .json(&req),
        )
        .await
    }

    /// `POST /v1/orders/{id}/phone`: the TV sends the number typed on its pad.
    pub async fn pay_by_phone(
        &self,
        id: &OrderId,
        req: &PhonePayRequest,
    ) -> Result<PhonePayStarted, ClientError> {
        self.post(&format!("/v1/orders/{id}/phone"), req).await
    }

    /// `POST /v1/orders/{id}/phone/confirm`: the SMS code completes the payment.
    pub async fn confirm_phone_code(
        &self,
        id: &OrderId,
        req: &PhoneConfirm,
    ) -> Result<Receipt, ClientError> {
        self.post(&format!("/v1/orders/{id}/phone/confirm"), req)
            .await
    }

    /// `GET /v1/accounts/{id}/sms` with a session token: the newest page of SMS sent to
    /// the account's bound numbers.
    pub async fn account_sms(
        &self,
        id: &AccountId,
        session: &Token,
    ) -> Result<Vec<SmsMessage>, ClientError> {
        let page: Page<SmsMessage> = self
            .json(
                self.request(Method::GET, &format!("/v1/accounts/{id}/sms"))
                    .bearer_auth(session.expose()),
            )
            .await?;
        Ok(page.items)
    }

    /// `GET /v1/admin/sms/{phone}` (developer endpoint, admin token): the newest page of
    /// a number's outbox.
    pub async fn sms_outbox(
        &self,
        admin: &str,
        phone: &PhoneNumber,
    ) -> Result<Vec<SmsMessage>, ClientError> {
        let page: Page<SmsMessage> = self
            .json(
                self.request(Method::GET, &format!("/v1/admin/sms/{phone}"))
                    .bearer_auth(admin),
            )
            .await?;
        Ok(page.items)
    }

    /// `GET /v1/orders/{id}/events`: the order's server-sent events. The first item is
    /// always a `snapshot`; the stream ends after a final state or when the server stops.
    pub async fn order_events(
        &self,
        id: &OrderId,
    ) -> Result<impl Stream<Item = Result<OrderEvent, ClientError>> + Send + 'static, ClientError>
    {
        let req = self
            .http
            .get(self.base.join(&format!("/v1/orders/{id}/events")));
        self.event_stream(req).await
    }

    /// `GET /v1/accounts/{id}/events` with a session token: a `hello`, then receipts.
    pub async fn account_events(
        &self,
        id: &AccountId,
        session: &Token,
    ) -> Result<impl Stream<Item = Result<AccountEvent, ClientError>> + Send + 'static, ClientError>
    {
        let req = self
            .http
            .get(self.base.join(&format!("/v1/accounts/{id}/events")))
            .bearer_auth(session.expose());
        self.event_stream(req).await
    }

    /// `GET /v1/devices/{id}/events`: what others ask this TV to show (a `hello` first).
    pub async fn device_events(
        &self,
        id: &DeviceId,
    ) -> Result<impl Stream<Item = Result<DeviceEvent, ClientError>> + Send + 'static, ClientError>
    {
        let req = self
            .http
            .get(self.base.join(&format!("/v1/devices/{id}/events")));
        self.event_stream(req).await
    }

    /// `GET /v1/packets/{id}/events`: a `snapshot` of the set, then each claim; the stream
    /// ends when the set is finished or refunded.
    pub async fn packets_events(
        &self,
        id: &PacketSetId,
    ) -> Result<impl Stream<Item = Result<PacketsEvent, ClientError>> + Send + 'static, ClientError>
    {
        let req = self
            .http
            .get(self.base.join(&format!("/v1/packets/{id}/events")));
        self.event_stream(req).await
    }

    /// `POST /v1/packets/{id}/offer`: the sender asks a TV to show the set.
    pub async fn offer_packets(
        &self,
        id: &PacketSetId,
        req: &OfferPackets,
    ) -> Result<PacketSet, ClientError> {
        self.post(&format!("/v1/packets/{id}/offer"), req).await
    }

    /// `GET /v1/packets/by-code/{code}`: the open set with this short code.
    pub async fn packets_by_code(&self, code: &ShortCode) -> Result<PacketSet, ClientError> {
        self.get(&format!("/v1/packets/by-code/{code}")).await
    }

    async fn event_stream<T: DeserializeOwned + Send + 'static>(
        &self,
        req: RequestBuilder,
    ) -> Result<impl Stream<Item = Result<T, ClientError>> + Send + 'static, ClientError> {
        let req = req.header(reqwest::header::ACCEPT, "text/event-stream");
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::OK {
            return Err(ClientError::Protocol(format!(
                "event stream answered {}",
                resp.status()
            )));
        }
        let server = self.base.to_string();
        let bytes = resp.bytes_stream().boxed();
        let state = SseState {
            bytes,
            parser: SseParser::default(),
            server,
            done: false,
        };
        Ok(futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(data) = st.parser.next_event() {
                    let item = serde_json::from_str::<T>(&data)
                        .map_err(|e| ClientError::Protocol(format!("bad event: {e}")));
                    return Some((item, st));
                }
                if st.done {
                    return None;
                }
                let idle = Duration::from_millis(STREAM_IDLE_TIMEOUT_MS);
                match tokio::time::timeout(idle, st.bytes.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        if let Err(e) = st.parser.push(&chunk) {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                    }
                    Ok(Some(Err(source))) => {
                        st.done = true;
                        let server = st.server.clone();
                        return Some((Err(ClientError::Transport { server, source }), st));
                    }
                    Ok(None) => return None,
                    Err(_) => {
                        st.done = true;
                        return Some((
                            Err(ClientError::Protocol("event stream went silent".into())),
                            st,
                        ));
                    }
                }
            }
        }))
    }
}

struct SseState {
    bytes: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: SseParser,
    server: String,
    done: bool,
}

/// An incremental parser for `text/event-stream`: collects the `data:` lines of each
/// event (events end with a blank line); comments and other fields are skipped.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buf: Vec<u8>,
    ready: VecDeque<String>,
}

impl SseParser {
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<(), ClientError> {
        self.buf.extend_from_slice(chunk);
        while let Some((end, sep)) = find_event_end(&self.buf) {
            let block: Vec<u8> = self.buf.drain(..end + sep).collect();
            let text = String::from_utf8_lossy(&block[..end]);
            let mut data = String::new();
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if !data.is_empty() {
                self.ready.push_back(data);
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(ClientError::Protocol("server-sent event too large".into()));
        }
        Ok(())
    }

    pub(crate) fn next_event(&mut self) -> Option<String> {
        self.ready.pop_front()
    }
}

/// Position and length of the first blank-line separator (`\n\n` or `\r\n\r\n`).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_handles_split_chunks_comments_and_multiline() {
        let mut p = SseParser::default();
        p.push(b": keep-alive\n\nevent: paid\ndata: {\"a\"")
            .unwrap();
        assert_eq!(p.next_event(), None);
        p.push(b":1}\n\ndata: x\ndata: y\r\n\r\n").unwrap();
        assert_eq!(p.next_event().as_deref(), Some("{\"a\":1}"));
        assert_eq!(p.next_event().as_deref(), Some("x\ny"));
        assert_eq!(p.next_event(), None);
    }

    #[test]
    fn sse_parser_refuses_endless_event() {
        let mut p = SseParser::default();
        let big = vec![b'a'; MAX_EVENT_BYTES + 1];
        assert!(p.push(&big).is_err());
    }
}
