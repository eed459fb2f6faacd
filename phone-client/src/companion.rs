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
    AccountEvent, AccountId, AccountView, DiscoveryRecord, ErrorCode, IdempotencyKey, ItemKind,
    LoginRequest, Order, OrderId, OrderStatus, Page, PayLink, PayRequest, PayerAuth, PhoneConfirm,
    PhoneNumber, Pin, Receipt, ServerUrl, ShortCode, SmsMessage,
};

use crate::state::{PendingPayment, SavedSession, StateError, StateStore};

pub mod packets;
pub mod share;
pub mod vouchers;

/// Attempts to send one payment when the outcome is unknown (network trouble, 503).
pub const MAX_PAY_ATTEMPTS: u32 = 3;
/// Wait before the first retry of a payment, in milliseconds; doubled each time.
pub const PAY_RETRY_BACKOFF_MS: u64 = 200;
/// A remembered session is not used in its last minute, in milliseconds.
pub const SESSION_EXPIRY_MARGIN_MS: i64 = 60_000;

/// Why the companion would not, or could not, go on. Each message is one plain
/// sentence a person can act on, says what happened to money where a payment was
/// involved, and carries the server's own wording when the server refused. Technical
/// details (addresses, OS errors) go to the log, not into these messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompanionError {
    #[error("No trusted Couchpay server is set up.")]
    NoServer,
    #[error(
        "Refused: this order is on {}, which is not a server this companion trusts. \
         Only pay on your own server; if this is unexpected, the code may be a fake. \
         Nothing was charged.",
        host(server)
    )]
    UntrustedServer { server: ServerUrl, trusted: String },
    #[error("You already paid this order from this device; nothing more was charged.")]
    AlreadyPaidHere { order: OrderId },
    #[error(
        "{0} is not a Couchpay code: a code has 8 letters without vowels, like BCDF-GHJK. \
         Check the code on the TV."
    )]
    NotACode(String),
    #[error("That is neither a Couchpay pay link nor a TV code (like BCDF-GHJK).")]
    NotAPayLink(String),
    #[error("{}", unknown_order(.code.as_ref()))]
    UnknownOrder { code: Option<ShortCode> },
    #[error("This order has expired; ask the TV for a new one. Nothing was charged.")]
    Expired,
    #[error("This order was cancelled on the TV. Nothing was charged.")]
    Cancelled,
    #[error("This order is already paid; nothing more was charged.")]
    AlreadyPaid,
    #[error(
        "The TV's announcement does not match the order on the server ({0}), so it was \
         not paid. Nothing was charged."
    )]
    RecordMismatch(&'static str),
    #[error("{}. Nothing was charged.", sentence(.message))]
    WrongPin { message: String },
    #[error("{}. Nothing was charged.", sentence(.message))]
    AccountLocked {
        message: String,
        retry_after_s: Option<u64>,
    },
    #[error("{}. Nothing was charged.", sentence(.message))]
    InsufficientFunds { message: String },
    #[error("The server knows no such account. Nothing was charged.")]
    UnknownAccount,
    #[error("This item is shipped: a delivery address is needed. Nothing was charged.")]
    DeliveryAddressRequired,
    #[error("Not signed in, or the session has expired: sign in again.")]
    NotLoggedIn,
    #[error(
        "Sign in again or pay with your PIN: there is no valid session on this device. \
         Nothing was charged."
    )]
    SessionNeeded,
    #[error("{}.", sentence(.message))]
    RateLimited {
        message: String,
        retry_after_s: Option<u64>,
    },
    #[error("{}.", sentence(.message))]
    WrongCode { message: String },
    #[error(
        "Cannot reach the Couchpay server at {}; check the connection and try again.{}",
        host(server),
        if *.payment { " Nothing was sent, so nothing was charged." } else { "" }
    )]
    Unreachable { server: ServerUrl, payment: bool },
    #[error(
        "The server did not answer the payment, and it could not be checked: it may or may \
         not have gone through. It is saved on this device: trying again sends the same \
         payment, which can never charge twice."
    )]
    OutcomeUnknown,
    #[error(
        "The server did not answer in time, but it has no payment from this attempt: \
         nothing was charged. Trying again is safe and can never charge twice."
    )]
    NotChargedYet,
    #[error("The server refused the payment: {}. Nothing was charged.", sentence_lower(.message))]
    PaymentRefused { message: String },
    #[error("The server refused: {}.", sentence_lower(&.0.to_string()))]
    Server(#[source] ClientError),
    #[error("{}.", sentence(.message))]
    WrongPinSignIn { message: String },
    #[error(
        "The server did not answer the code: tap Pay again to check (a code never pays twice)."
    )]
    OutcomeUnknownSms,
    #[error(
        "No Couchpay voucher was found in this picture: open the picture of the voucher's QR code."
    )]
    NoVoucherInPicture,
    #[error("That is not a Couchpay voucher link.")]
    NotAVoucher,
    #[error("{}.", sentence(.message))]
    Voucher { message: String },
    #[error(
        "No Couchpay red packets were found in this picture: open the picture of their QR code."
    )]
    NoPacketsInPicture,
    #[error("{}.", sentence(.message))]
    Packets { message: String },
    #[error(
        "Could not save the picture to {0}: check that the folder exists and can be written to."
    )]
    CannotSave(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// `http://127.0.0.1:8080` → `127.0.0.1:8080`: how a server is named on screen.
pub fn host(server: &ServerUrl) -> String {
    let s = server.as_str();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    s.trim_end_matches('/').to_owned()
}

/// A server message as the start of a sentence: capitalised, without a final stop.
fn sentence(message: &str) -> String {
    let m = message.trim().trim_end_matches('.');
    let mut c = m.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => "The server gave no reason".to_owned(),
    }
}

/// A server message inside a sentence: without a final stop.
fn sentence_lower(message: &str) -> String {
    message.trim().trim_end_matches('.').to_owned()
}

fn unknown_order(code: Option<&ShortCode>) -> String {
    match code {
        Some(code) => format!(
            "No order is waiting for payment under the code {}. Check the code on the TV: \
             a code stops working once its order is paid, expires or is cancelled. \
             Nothing was charged.",
            code.display()
        ),
        None => "The server has no such order. Nothing was charged.".to_owned(),
    }
}

impl CompanionError {
    /// A failed call that is not a payment (fetch, login, lists): the server's refusal,
    /// or the server being out of reach.
    fn from_client(server: &ServerUrl, e: ClientError) -> Self {
        if e.is_transient() {
            tracing::warn!(server = %server, error = %e, "request failed");
            return Self::Unreachable {
                server: server.clone(),
                payment: false,
            };
        }
        Self::from_refusal(e)
    }

    /// A definitive answer from the server.
    fn from_refusal(e: ClientError) -> Self {
        let (message, retry_after_s) = match &e {
            ClientError::Api { error, .. } => (error.message.clone(), error.retry_after_s),
            other => (other.to_string(), None),
        };
        match e.code() {
            Some(ErrorCode::UnknownOrder) => Self::UnknownOrder { code: None },
            Some(ErrorCode::OrderExpired) => Self::Expired,
            Some(ErrorCode::OrderCancelled) => Self::Cancelled,
            Some(ErrorCode::AlreadyPaid) => Self::AlreadyPaid,
            Some(ErrorCode::WrongPin) => Self::WrongPin { message },
            Some(ErrorCode::AccountLocked) => Self::AccountLocked {
                message,
                retry_after_s,
            },
            Some(ErrorCode::InsufficientFunds) => Self::InsufficientFunds { message },
            Some(ErrorCode::UnknownAccount) => Self::UnknownAccount,
            Some(ErrorCode::DeliveryAddressRequired) => Self::DeliveryAddressRequired,
            Some(ErrorCode::Unauthorized) => Self::NotLoggedIn,
            Some(ErrorCode::RateLimited) => Self::RateLimited {
                message,
                retry_after_s,
            },
            Some(ErrorCode::WrongCode) => Self::WrongCode { message },
            Some(
                ErrorCode::UnknownVoucher
                | ErrorCode::VoucherRedeemed
                | ErrorCode::VoucherVoided
                | ErrorCode::VoucherExpired
                | ErrorCode::VoucherFailed
                | ErrorCode::PinRequired
                | ErrorCode::NotAllowed
                | ErrorCode::CurrencyMismatch,
            ) => Self::Voucher { message },
            _ => Self::Server(e),
        }
    }

    /// A definitive refusal of a payment request: nothing was charged under its key.
    fn from_payment_refusal(e: ClientError) -> Self {
        match Self::from_refusal(e) {
            Self::NotLoggedIn => Self::SessionNeeded,
            Self::Server(e) => {
                tracing::warn!(error = %e, "payment refused");
                Self::PaymentRefused {
                    message: e.to_string(),
                }
            }
            other => other,
        }
    }

    /// True when the server answered and nothing was charged (the person may retry
    /// with other details); false for an unknown outcome or a local problem.
    pub fn nothing_charged(&self) -> bool {
        !matches!(
            self,
            Self::OutcomeUnknown | Self::OutcomeUnknownSms | Self::State(_)
        )
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
        let t = s.trim();
        let letters: String = t
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .collect();
        if letters.len() == ShortCode::LEN && letters.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CompanionError::NotACode(t.to_ascii_uppercase()));
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
        let order = order.map_err(|e| match CompanionError::from_client(&server, e) {
            CompanionError::UnknownOrder { .. } => CompanionError::UnknownOrder {
                code: match r {
                    OrderRef::Code(c) => Some(c.clone()),
                    _ => None,
                },
            },
            other => other,
        })?;
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
        for c in &self.servers {
            match c.order_by_code(code).await {
                Err(e) if e.code() == Some(ErrorCode::UnknownOrder) => {}
                other => return Ok((c.server().clone(), other)),
            }
        }
        // Codes of paid orders are retired by the server; say so if it was paid here.
        if let Some(p) = self.state.get().paid_with_code(code) {
            return Err(CompanionError::AlreadyPaidHere {
                order: p.order.clone(),
            });
        }
        Err(CompanionError::UnknownOrder {
            code: Some(code.clone()),
        })
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
                    .ok_or(CompanionError::SessionNeeded)?;
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
            account: account.clone(),
            auth,
            delivery_address,
        };
        let mut attempt = 0;
        // True while every failure was a refused connection: the request never left.
        let mut never_sent = true;
        let result = loop {
            attempt += 1;
            match client.pay(&order_id, &key, &req).await {
                Err(e) if e.is_transient() && attempt < MAX_PAY_ATTEMPTS => {
                    never_sent &= is_connect_error(&e);
                    tracing::info!(attempt, error = %e, "payment not answered; retrying with the same key");
                    let wait = PAY_RETRY_BACKOFF_MS << (attempt - 1);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                other => break other,
            }
        };
        match result {
            Ok(receipt) => {
                let code = confirmation.order.short_code.clone();
                // Paid is paid: failing to remember it must not turn into an error.
                if let Err(e) = self
                    .state
                    .update(|s| s.mark_paid_code(&server, &order_id, Some(code)))
                {
                    tracing::warn!(error = %e, "paid, but cannot remember it on this device");
                }
                Ok(receipt)
            }
            Err(e) if e.is_transient() => {
                never_sent &= is_connect_error(&e);
                tracing::warn!(order = %order_id, error = %e, "payment not answered");
                if never_sent {
                    // Keep the key anyway: a retry reuses it, which is always safe.
                    return Err(CompanionError::Unreachable {
                        server,
                        payment: true,
                    });
                }
                // The server may have paid: ask it what happened under this key.
                self.resolve_unknown(confirmation, &account, &key, credentials)
                    .await
            }
            Err(e) => {
                let err = CompanionError::from_payment_refusal(e);
                // The server answered definitively, so nothing was charged under this
                // key; a later attempt (say, with the right PIN) starts a fresh one.
                self.state.update(|s| {
                    if matches!(err, CompanionError::AlreadyPaid) {
                        s.mark_paid(&server, &order_id);
                    } else {
                        s.drop_pending(&server, &order_id);
                    }
                    if matches!(err, CompanionError::SessionNeeded) {
                        s.forget_session(&server);
                    }
                })?;
                Err(err)
            }
        }
    }

    /// After a payment went unanswered: looks it up by its idempotency key with the
    /// remembered session (or one opened with the PIN just given). A receipt means it
    /// was paid; `unknown_payment` means nothing was charged under the key (kept for a
    /// retry); no way to ask leaves the outcome unknown, the key kept.
    async fn resolve_unknown(
        &mut self,
        confirmation: &Confirmation,
        account: &AccountId,
        key: &IdempotencyKey,
        credentials: &Credentials,
    ) -> Result<Receipt, CompanionError> {
        let server = confirmation.server.clone();
        let client = self.client(&server)?.clone();
        let remembered = self
            .state
            .get()
            .session(&server, now_ms())
            .filter(|s| &s.account == account)
            .map(|s| s.token.clone());
        let token = match (remembered, credentials) {
            (Some(t), _) => Some(t),
            (None, Credentials::Pin { pin, .. }) => {
                match self
                    .login(Some(&server), account.clone(), pin.clone())
                    .await
                {
                    Ok(s) => Some(s.token),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot sign in to check the payment");
                        None
                    }
                }
            }
            (None, Credentials::Session) => None,
        };
        let Some(token) = token else {
            return Err(CompanionError::OutcomeUnknown);
        };
        match client.payment(account, &token, key).await {
            Ok(receipt) => {
                tracing::info!(order = %receipt.order_id, "the unanswered payment went through");
                let code = confirmation.order.short_code.clone();
                self.state
                    .update(|s| s.mark_paid_code(&server, &receipt.order_id, Some(code)))?;
                Ok(receipt)
            }
            Err(e) if e.code() == Some(ErrorCode::UnknownPayment) => {
                Err(CompanionError::NotChargedYet)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the unanswered payment");
                Err(CompanionError::OutcomeUnknown)
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
        }
        .clone();
        let session = client
            .login(&LoginRequest {
                account: account.clone(),
                pin,
            })
            .await
            .map_err(|e| CompanionError::from_client(client.server(), e))
            .map_err(|e| match e {
                // Signing in charges nothing: drop the payment wording.
                CompanionError::WrongPin { message } => CompanionError::WrongPinSignIn { message },
                other => other,
            })?;
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

    /// The account signed in on `server`, if its session is still valid.
    pub fn signed_in(&self, server: &ServerUrl) -> Option<AccountId> {
        self.state
            .get()
            .session(server, now_ms())
            .map(|s| s.account.clone())
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

    /// A list call failed: a refused session is forgotten, so the window asks again.
    fn list_error(&mut self, server: &ServerUrl, e: ClientError) -> CompanionError {
        let err = CompanionError::from_client(server, e);
        if matches!(err, CompanionError::NotLoggedIn) {
            let _ = self.state.update(|s| s.forget_session(server));
        }
        err
    }

    /// The account's receipts on `server`, newest first (needs a session).
    pub async fn receipts(&self, server: &ServerUrl) -> Result<Vec<Receipt>, CompanionError> {
        let (client, s) = self.session_for(server)?;
        client
            .receipts(&s.account, &s.token)
            .await
            .map_err(|e| CompanionError::from_client(server, e))
    }

    /// The signed-in account's balances on `server`.
    pub async fn account_view(
        &mut self,
        server: &ServerUrl,
    ) -> Result<AccountView, CompanionError> {
        let (client, s) = self.session_for(server)?;
        match client.account(&s.account, &s.token).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.list_error(server, e)),
        }
    }

    /// One page of the signed-in account's receipts, newest first; pass the page's
    /// `next_cursor` to get the next one.
    pub async fn receipts_page(
        &mut self,
        server: &ServerUrl,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<Receipt>, CompanionError> {
        let (client, s) = self.session_for(server)?;
        match client
            .receipts_page(&s.account, &s.token, cursor, limit)
            .await
        {
            Ok(p) => Ok(p),
            Err(e) => Err(self.list_error(server, e)),
        }
    }

    /// The SMS sent to the signed-in account's phone numbers (the stub's outbox),
    /// newest first.
    pub async fn sms_inbox(
        &mut self,
        server: &ServerUrl,
    ) -> Result<Vec<SmsMessage>, CompanionError> {
        let (client, s) = self.session_for(server)?;
        match client.account_sms(&s.account, &s.token).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.list_error(server, e)),
        }
    }

    /// Completes a TV phone-number payment with the code from its SMS. The order is
    /// fetched from the trusted server first: it must still be waiting for payment and
    /// match what the SMS names.
    pub async fn confirm_sms_code(
        &mut self,
        r: &OrderRef,
        sms: &SmsCode,
        to: &PhoneNumber,
    ) -> Result<Receipt, CompanionError> {
        let c = self.fetch(r).await?;
        if !sms.matches(&c.order) {
            return Err(CompanionError::RecordMismatch(
                "the SMS names another order",
            ));
        }
        let client = self.client(&c.server)?.clone();
        let req = PhoneConfirm {
            phone: to.clone(),
            code: sms.code.clone(),
        };
        match client.confirm_phone_code(&c.order.id, &req).await {
            Ok(receipt) => {
                let code = c.order.short_code.clone();
                self.state
                    .update(|s| s.mark_paid_code(&c.server, &c.order.id, Some(code)))?;
                Ok(receipt)
            }
            // One request, no retry here: a second try with the same code is safe (the
            // server replays a used code's payment), so the person can simply tap again.
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "SMS code not answered");
                Err(CompanionError::OutcomeUnknownSms)
            }
            Err(e) => Err(match CompanionError::from_payment_refusal(e) {
                CompanionError::Server(e) => CompanionError::PaymentRefused {
                    message: e.to_string(),
                },
                other => other,
            }),
        }
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
            .map_err(|e| CompanionError::from_client(server, e))?;
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev.map_err(|e| CompanionError::from_client(server, e))? {
                AccountEvent::Hello { .. } => {}
                AccountEvent::Receipt { receipt } => {
                    self.state
                        .update(|st| st.mark_paid(server, &receipt.order_id))?;
                    on_receipt(&receipt);
                }
                AccountEvent::SecurityAlert { message, .. } => {
                    tracing::warn!(%message, "security alert for this account");
                }
                AccountEvent::VoucherRedeemed { voucher }
                | AccountEvent::VoucherExpired { voucher }
                | AccountEvent::VoucherFailed { voucher } => {
                    tracing::info!(
                        voucher = voucher.id.log_prefix(), state = %voucher.state,
                        used = %voucher.used, "one of this account's vouchers changed"
                    );
                }
                AccountEvent::PacketClaimed { set, amount, .. } => {
                    tracing::info!(set = set.id.log_prefix(), %amount, "a red packet was claimed");
                }
                AccountEvent::PacketsFinished { set } | AccountEvent::PacketsRefunded { set } => {
                    tracing::info!(set = set.id.log_prefix(), state = ?set.state, "red packets closed");
                }
                AccountEvent::DeviceRefunded { refund } => {
                    tracing::info!(device = %refund.device, amount = %refund.amount, "a device was refunded");
                }
                AccountEvent::Other => {}
            }
        }
        Ok(())
    }
}

/// What an SMS for a TV phone-number payment says: the 6-digit code and the order it
/// is for, as "item (amount) on TV" (the server's text, see `server-stub/src/phone.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsCode {
    pub code: String,
    pub item: String,
    pub amount: String,
    pub tv: String,
    /// The order's short code as the TV shows it, when the SMS names it.
    pub short_code: Option<ShortCode>,
}

impl SmsCode {
    /// Reads `Couchpay: pay {item} ({amount}) on {tv}? Your code is {code}. …`.
    pub fn parse(body: &str) -> Option<Self> {
        let rest = body.trim().strip_prefix("Couchpay: pay ")?;
        let (what, after) = rest.split_once("? Your code is ")?;
        let code: String = after.chars().take_while(char::is_ascii_digit).collect();
        if code.len() != 6 {
            return None;
        }
        let (item_amount, tv) = what.rsplit_once(") on ")?;
        let (item, amount) = item_amount.rsplit_once(" (")?;
        // "… Your code is 123456. TV code BCDF-GHJK. …" (servers before it omit it).
        let short_code = after
            .split_once(" TV code ")
            .and_then(|(_, rest)| rest.split('.').next())
            .and_then(|c| ShortCode::parse(c.trim()).ok());
        Some(Self {
            code,
            item: item.to_owned(),
            amount: amount.to_owned(),
            tv: tv.to_owned(),
            short_code,
        })
    }

    /// True if `order` is the one this SMS names.
    pub fn matches(&self, order: &Order) -> bool {
        order.item.title == self.item
            && order.amount.to_string() == self.amount
            && order.device.name == self.tv
    }

    /// True if the announcement `r` is the order this SMS names.
    pub fn matches_record(&self, r: &DiscoveryRecord) -> bool {
        r.item == self.item && r.amount.to_string() == self.amount && r.tv_name == self.tv
    }
}

/// True when the request failed while connecting, so it never reached the server.
fn is_connect_error(e: &ClientError) -> bool {
    matches!(e, ClientError::Transport { source, .. } if source.is_connect())
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
