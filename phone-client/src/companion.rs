//! The pay flow: from an order reference (pay link, discovery record or typed code) to
//! a confirmed order fetched from a trusted server, then to a receipt.
//!
//! Trust rule: nothing that arrives over the air (QR, mDNS, BLE) decides where money
//! goes. The companion talks only to its configured servers, refuses references naming
//! any other, and always re-fetches the order so the person confirms the server's
//! item, amount, merchant, TV name and short code — the RFC 8628 §3.3.1 check that
//! defeats a spoofed QR code or discovery record.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protocol::client::{Client, ClientError};
use protocol::{
    AccountEvent, AccountId, DiscoveryRecord, ErrorCode, IdempotencyKey, ItemKind, LoginRequest,
    Order, OrderId, OrderStatus, PayLink, PayRequest, PayerAuth, Pin, Receipt, ServerUrl,
    ShortCode,
};

use crate::state::{PendingPayment, SavedSession, StateError, StateStore};

/// Attempts to send one payment when the outcome is unknown (network trouble, 503).
pub const MAX_PAY_ATTEMPTS: u32 = 3;
/// Wait before the first retry of a payment, in milliseconds; doubled each time.
pub const PAY_RETRY_BACKOFF_MS: u64 = 200;
/// A remembered session is not used in its last minute, in milliseconds.
pub const SESSION_EXPIRY_MARGIN_MS: i64 = 60_000;

/// Why the companion would not, or could not, go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompanionError {
    #[error("no trusted server is configured; pass --server URL")]
    NoServer,
    #[error(
        "refused: this order is on {server}, which is not a server this companion trusts ({trusted}). \
         Only pay on your own server; if this is unexpected, the code may be a fake."
    )]
    UntrustedServer { server: ServerUrl, trusted: String },
    #[error("order {order} was already paid from this device; ignoring it")]
    AlreadyPaidHere { order: OrderId },
    #[error("that is not a Couchpay pay link: {0}")]
    NotAPayLink(String),
    #[error("no such order on the server (check the code on the TV)")]
    UnknownOrder,
    #[error("this order has expired; ask the TV for a new one")]
    Expired,
    #[error("this order was cancelled on the TV")]
    Cancelled,
    #[error("this order is already paid")]
    AlreadyPaid,
    #[error("the TV's announcement does not match the order on the server ({0}); not paying")]
    RecordMismatch(&'static str),
    #[error("wrong PIN")]
    WrongPin,
    #[error("the account is locked after too many wrong PINs{}", retry_hint(*.retry_after_s))]
    AccountLocked { retry_after_s: Option<u64> },
    #[error("not enough money in the account (nor on a linked card)")]
    InsufficientFunds,
    #[error("unknown account")]
    UnknownAccount,
    #[error("this item is shipped: a delivery address is required (--address)")]
    DeliveryAddressRequired,
    #[error("not logged in, or the session expired: log in again")]
    NotLoggedIn,
    #[error("too many attempts{}", retry_hint(*.retry_after_s))]
    RateLimited { retry_after_s: Option<u64> },
    #[error(
        "the payment's outcome is unknown ({0}); it is saved and retrying sends the same \
         payment again, which can never charge twice"
    )]
    OutcomeUnknown(String),
    #[error("the server refused the request: {0}")]
    Server(#[source] ClientError),
    #[error(transparent)]
    State(#[from] StateError),
}

fn retry_hint(s: Option<u64>) -> String {
    s.map(|s| format!("; try again in {s} s"))
        .unwrap_or_default()
}

impl CompanionError {
    fn from_client(e: ClientError) -> Self {
        if e.is_transient() {
            return Self::OutcomeUnknown(e.to_string());
        }
        let retry_after_s = match &e {
            ClientError::Api { error, .. } => error.retry_after_s,
            _ => None,
        };
        match e.code() {
            Some(ErrorCode::UnknownOrder) => Self::UnknownOrder,
            Some(ErrorCode::OrderExpired) => Self::Expired,
            Some(ErrorCode::OrderCancelled) => Self::Cancelled,
            Some(ErrorCode::AlreadyPaid) => Self::AlreadyPaid,
            Some(ErrorCode::WrongPin) => Self::WrongPin,
            Some(ErrorCode::AccountLocked) => Self::AccountLocked { retry_after_s },
            Some(ErrorCode::InsufficientFunds) => Self::InsufficientFunds,
            Some(ErrorCode::UnknownAccount) => Self::UnknownAccount,
            Some(ErrorCode::DeliveryAddressRequired) => Self::DeliveryAddressRequired,
            Some(ErrorCode::Unauthorized) => Self::NotLoggedIn,
            Some(ErrorCode::RateLimited) => Self::RateLimited { retry_after_s },
            _ => Self::Server(e),
        }
    }
}

/// Where an order reference came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderRef {
    /// A scanned or decoded QR code (or a pasted link).
    Link(PayLink),
    /// An mDNS (or BLE) announcement; its contents are checked against the server.
    Discovered(DiscoveryRecord),
    /// A short code typed by the person, looked up on the trusted servers.
    Code(ShortCode),
}

impl OrderRef {
    /// Parses what a person pastes or types: a pay link or a short code.
    pub fn parse_input(s: &str) -> Result<Self, CompanionError> {
        if let Ok(link) = PayLink::parse(s) {
            return Ok(Self::Link(link));
        }
        if let Ok(code) = ShortCode::parse(s) {
            return Ok(Self::Code(code));
        }
        Err(CompanionError::NotAPayLink(s.chars().take(80).collect()))
    }
}

/// An order fetched from a trusted server, ready for the person to confirm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    pub server: ServerUrl,
    pub order: Order,
}

impl Confirmation {
    /// The lines shown before the person confirms: what, how much, to whom, on which
    /// TV, and the short code to compare with the TV screen.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let o = &self.order;
        vec![
            ("Item", o.item.title.clone()),
            ("Amount", o.amount.to_string()),
            ("Merchant", o.merchant.name.clone()),
            ("TV", o.device.name.clone()),
            ("Code", o.short_code.display()),
        ]
    }

    pub fn needs_address(&self) -> bool {
        self.order.item.kind == ItemKind::Physical
    }
}

/// Who pays and how they prove it.
#[derive(Clone, Debug)]
pub enum Credentials {
    Pin {
        account: AccountId,
        pin: Pin,
    },
    /// Use the session remembered for the order's server (see [`Companion::login`]).
    Session,
}

/// The companion's core: trusted servers, device state and the pay flow.
#[derive(Debug)]
pub struct Companion {
    servers: Vec<Client>,
    state: StateStore,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A remembered session must be valid past this time (Unix ms) to be used now.
pub fn session_deadline() -> i64 {
    now_ms() + SESSION_EXPIRY_MARGIN_MS
}

impl Companion {
    pub fn new(servers: Vec<ServerUrl>, state: StateStore) -> Result<Self, CompanionError> {
        if servers.is_empty() {
            return Err(CompanionError::NoServer);
        }
        let mut clients: Vec<Client> = Vec::new();
        for s in servers {
            if !clients.iter().any(|c| c.server() == &s) {
                clients.push(Client::new(s));
            }
        }
        Ok(Self {
            servers: clients,
            state,
        })
    }

    pub fn servers(&self) -> impl Iterator<Item = &ServerUrl> {
        self.servers.iter().map(Client::server)
    }

    pub fn state(&self) -> &StateStore {
        &self.state
    }

    pub fn client(&self, server: &ServerUrl) -> Result<&Client, CompanionError> {
        self.servers
            .iter()
            .find(|c| c.server() == server)
            .ok_or_else(|| CompanionError::UntrustedServer {
                server: server.clone(),
                trusted: self.trusted_list(),
            })
    }

    fn trusted_list(&self) -> String {
        self.servers()
            .map(ServerUrl::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The checks that need no network: trusted server, not already paid here.
    /// A reference that fails them never causes a request.
    pub fn precheck(&self, r: &OrderRef) -> Result<(), CompanionError> {
        let (server, order) = match r {
            OrderRef::Link(l) => (&l.server, &l.order),
            OrderRef::Discovered(d) => (&d.server, &d.order),
            OrderRef::Code(_) => return Ok(()),
        };
        self.client(server)?;
        if self.state.get().is_paid(server, order) {
            return Err(CompanionError::AlreadyPaidHere {
                order: order.clone(),
            });
        }
        Ok(())
    }

    /// True if this device already paid `order` (so a new sighting is ignored).
    pub fn is_paid_here(&self, server: &ServerUrl, order: &OrderId) -> bool {
        self.state.get().is_paid(server, order)
    }

    fn has_pending(&self, server: &ServerUrl, order: &OrderId) -> bool {
        self.state
            .get()
            .pending
            .iter()
            .any(|p| &p.server == server && &p.order == order)
    }

    /// Fetches the order from its trusted server and checks it can be paid.
    pub async fn fetch(&self, r: &OrderRef) -> Result<Confirmation, CompanionError> {
        self.precheck(r)?;
        let (server, order) = match r {
            OrderRef::Link(l) => {
                let c = self.client(&l.server)?;
                (l.server.clone(), c.order(&l.order).await)
            }
            OrderRef::Discovered(d) => {
                let c = self.client(&d.server)?;
                (d.server.clone(), c.order(&d.order).await)
            }
            OrderRef::Code(code) => self.fetch_by_code(code).await?,
        };
        let order = order.map_err(CompanionError::from_client)?;
        let expected_id = match r {
            OrderRef::Link(l) => Some(&l.order),
            OrderRef::Discovered(d) => Some(&d.order),
            OrderRef::Code(_) => None,
        };
        if expected_id.is_some_and(|id| id != &order.id) {
            return Err(CompanionError::RecordMismatch("order id"));
        }
        if let OrderRef::Discovered(d) = r {
            // Names are shown from the server's copy; a record that lies about the
            // code or the amount is a spoof (or a stale announcement): refuse it.
            if d.short_code != order.short_code {
                return Err(CompanionError::RecordMismatch("short code"));
            }
            if d.amount != order.amount {
                return Err(CompanionError::RecordMismatch("amount"));
            }
        }
        if self.is_paid_here(&server, &order.id) {
            return Err(CompanionError::AlreadyPaidHere { order: order.id });
        }
        match order.status {
            // The server's status decides, not this device's clock (phone clocks drift;
            // the server refuses to pay an expired order anyway).
            OrderStatus::Pending => {}
            OrderStatus::Expired => return Err(CompanionError::Expired),
            // A payment of ours whose answer was lost: let `pay` replay its saved key,
            // which returns the original receipt instead of "already paid".
            OrderStatus::Paid if self.has_pending(&server, &order.id) => {}
            OrderStatus::Paid => return Err(CompanionError::AlreadyPaid),
            OrderStatus::Cancelled => return Err(CompanionError::Cancelled),
        }
        Ok(Confirmation { server, order })
    }

    /// Looks a typed code up on each trusted server in turn.
    async fn fetch_by_code(
        &self,
        code: &ShortCode,
    ) -> Result<(ServerUrl, Result<Order, ClientError>), CompanionError> {
        let mut last = None;
        for c in &self.servers {
            match c.order_by_code(code).await {
                Err(e) if e.code() == Some(ErrorCode::UnknownOrder) => last = Some(e),
                other => return Ok((c.server().clone(), other)),
            }
        }
        match last {
            Some(e) => Err(CompanionError::from_client(e)),
            None => Err(CompanionError::NoServer),
        }
    }

    /// Pays a confirmed order. The idempotency key is saved before the request is sent
    /// and reused for every retry (also after a crash: the next call finds it).
    pub async fn pay(
        &mut self,
        confirmation: &Confirmation,
        credentials: &Credentials,
        delivery_address: Option<String>,
    ) -> Result<Receipt, CompanionError> {
        let server = confirmation.server.clone();
        let order_id = confirmation.order.id.clone();
        if self.is_paid_here(&server, &order_id) {
            return Err(CompanionError::AlreadyPaidHere { order: order_id });
        }
        let client = self.client(&server)?.clone();
        let (account, auth) = match credentials {
            Credentials::Pin { account, pin } => (account.clone(), PayerAuth::Pin(pin.clone())),
            Credentials::Session => {
                let s = self
                    .state
                    .get()
                    .session(&server, session_deadline())
                    .ok_or(CompanionError::NotLoggedIn)?;
                (s.account.clone(), PayerAuth::Session(s.token.clone()))
            }
        };
        let delivery_address = delivery_address.filter(|a| !a.trim().is_empty());
        if confirmation.needs_address() && delivery_address.is_none() {
            return Err(CompanionError::DeliveryAddressRequired);
        }
        let key = match self.state.get().pending(&server, &order_id, &account) {
            Some(p) => p.key.clone(),
            None => {
                let key = IdempotencyKey::random();
                let pending = PendingPayment {
                    server: server.clone(),
                    order: order_id.clone(),
                    account: account.clone(),
                    key: key.clone(),
                };
                self.state.update(|s| {
                    s.account = Some(account.clone());
                    s.add_pending(pending);
                })?;
                key
            }
        };
        let req = PayRequest {
            account,
            auth,
            delivery_address,
        };
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match client.pay(&order_id, &key, &req).await {
                Err(e) if e.is_transient() && attempt < MAX_PAY_ATTEMPTS => {
                    let wait = PAY_RETRY_BACKOFF_MS << (attempt - 1);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                other => break other,
            }
        };
        match result {
            Ok(receipt) => {
                self.state.update(|s| s.mark_paid(&server, &order_id))?;
                Ok(receipt)
            }
            Err(e) if e.is_transient() => {
                // Keep the key: the server may have paid; the retry will tell.
                Err(CompanionError::from_client(e))
            }
            Err(e) => {
                let err = CompanionError::from_client(e);
                // The server answered definitively, so nothing was charged under this
                // key; a later attempt (say, with the right PIN) starts a fresh one.
                self.state.update(|s| {
                    if matches!(err, CompanionError::AlreadyPaid) {
                        s.mark_paid(&server, &order_id);
                    } else {
                        s.drop_pending(&server, &order_id);
                    }
                    if matches!(err, CompanionError::NotLoggedIn) {
                        s.forget_session(&server);
                    }
                })?;
                Err(err)
            }
        }
    }

    /// Logs in on `server` (or the first trusted server) and remembers the session
    /// token and account; the PIN itself is never stored.
    pub async fn login(
        &mut self,
        server: Option<&ServerUrl>,
        account: AccountId,
        pin: Pin,
    ) -> Result<SavedSession, CompanionError> {
        let client = match server {
            Some(s) => self.client(s)?,
            None => self.servers.first().ok_or(CompanionError::NoServer)?,
        };
        let session = client
            .login(&LoginRequest {
                account: account.clone(),
                pin,
            })
            .await
            .map_err(CompanionError::from_client)?;
        let saved = SavedSession {
            server: client.server().clone(),
            account: session.account,
            token: session.token,
            expires_at_ms: session.expires_at_ms,
        };
        self.state.update(|s| {
            s.account = Some(account);
            s.save_session(saved.clone());
        })?;
        Ok(saved)
    }

    /// Forgets the session for `server` (log out on this device).
    pub fn logout(&mut self, server: &ServerUrl) -> Result<(), CompanionError> {
        self.state.update(|s| s.forget_session(server))?;
        Ok(())
    }

    fn session_for(&self, server: &ServerUrl) -> Result<(Client, SavedSession), CompanionError> {
        let client = self.client(server)?.clone();
        let s = self
            .state
            .get()
            .session(server, now_ms())
            .cloned()
            .ok_or(CompanionError::NotLoggedIn)?;
        Ok((client, s))
    }

    /// The account's receipts on `server`, newest first (needs a session).
    pub async fn receipts(&self, server: &ServerUrl) -> Result<Vec<Receipt>, CompanionError> {
        let (client, s) = self.session_for(server)?;
        client
            .receipts(&s.account, &s.token)
            .await
            .map_err(CompanionError::from_client)
    }

    /// Streams receipts as payments complete (server-sent events, needs a session).
    /// Each receipt's order is remembered as paid, so a later sighting is ignored.
    pub async fn watch_receipts(
        &mut self,
        server: &ServerUrl,
        mut on_receipt: impl FnMut(&Receipt),
    ) -> Result<(), CompanionError> {
        use futures_util::StreamExt;
        let (client, s) = self.session_for(server)?;
        let stream = client
            .account_events(&s.account, &s.token)
            .await
            .map_err(CompanionError::from_client)?;
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev.map_err(CompanionError::from_client)? {
                AccountEvent::Hello { .. } => {}
                AccountEvent::Receipt { receipt } => {
                    self.state
                        .update(|st| st.mark_paid(server, &receipt.order_id))?;
                    on_receipt(&receipt);
                }
                AccountEvent::SecurityAlert { message, .. } => {
                    tracing::warn!(%message, "security alert for this account");
                }
                AccountEvent::Other => {}
            }
        }
        Ok(())
    }
}

/// A predicate for the decoder: only pay links count as a good decode.
pub fn accept_pay_link() -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
    Arc::new(|text: &str| PayLink::parse(text).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_parsing_prefers_links_then_codes() {
        let link = format!("HTTP://127.0.0.1:8080/P/{}", OrderId::random());
        assert!(matches!(
            OrderRef::parse_input(&link),
            Ok(OrderRef::Link(_))
        ));
        assert!(matches!(
            OrderRef::parse_input("bcdf ghjk"),
            Ok(OrderRef::Code(_))
        ));
        assert!(matches!(
            OrderRef::parse_input("hello"),
            Err(CompanionError::NotAPayLink(_))
        ));
    }
}
