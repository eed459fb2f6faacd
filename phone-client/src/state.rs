//! What the companion remembers on the device: the account (never the PIN), an optional
//! session token, payments in flight with their idempotency keys, and paid order ids.
//!
//! The file is small JSON, written atomically (temp file + rename) with owner-only
//! permissions, so a crash mid-write never loses the idempotency key of a payment that
//! may have reached the server.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use protocol::{AccountId, IdempotencyKey, OrderId, ServerUrl, ShortCode, Token};
use serde::{Deserialize, Serialize};

/// Most paid order ids remembered; the oldest are forgotten first (orders expire long
/// before a phone pays this many).
pub const MAX_REMEMBERED_PAID_ORDERS: usize = 1_000;
/// Most payments in flight remembered.
pub const MAX_PENDING_PAYMENTS: usize = 100;
/// Largest state file read, in bytes.
pub const MAX_STATE_FILE_BYTES: u64 = 1024 * 1024;
/// Name of the state file inside the data directory.
pub const STATE_FILE_NAME: &str = "companion.json";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("cannot read the companion state {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the companion state {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the companion state {path} is damaged ({reason}); move it away to start afresh")]
    Corrupt { path: String, reason: String },
    #[error("no data directory on this system; pass --state PATH")]
    NoDataDir,
}

/// A session token remembered for one server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSession {
    pub server: ServerUrl,
    pub account: AccountId,
    pub token: Token,
    pub expires_at_ms: i64,
}

/// A payment whose outcome is not known yet: retried with the same key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPayment {
    pub server: ServerUrl,
    pub order: OrderId,
    pub account: AccountId,
    pub key: IdempotencyKey,
}

/// An order this device has seen paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidOrder {
    pub server: ServerUrl,
    pub order: OrderId,
    /// The order's short code, so a code typed again is recognised as paid here (the
    /// server retires the codes of paid orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_code: Option<ShortCode>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    #[serde(default)]
    pub account: Option<AccountId>,
    #[serde(default)]
    pub sessions: Vec<SavedSession>,
    #[serde(default)]
    pub pending: Vec<PendingPayment>,
    #[serde(default)]
    pub paid: VecDeque<PaidOrder>,
}

impl DeviceState {
    pub fn is_paid(&self, server: &ServerUrl, order: &OrderId) -> bool {
        self.paid
            .iter()
            .any(|p| &p.server == server && &p.order == order)
    }

    pub fn mark_paid(&mut self, server: &ServerUrl, order: &OrderId) {
        self.mark_paid_code(server, order, None);
    }

    /// Like [`mark_paid`](Self::mark_paid), remembering the order's short code too.
    pub fn mark_paid_code(&mut self, server: &ServerUrl, order: &OrderId, code: Option<ShortCode>) {
        self.pending
            .retain(|p| !(&p.server == server && &p.order == order));
        if let Some(p) = self
            .paid
            .iter_mut()
            .find(|p| &p.server == server && &p.order == order)
        {
            if p.short_code.is_none() {
                p.short_code = code;
            }
            return;
        }
        if self.paid.len() >= MAX_REMEMBERED_PAID_ORDERS {
            self.paid.pop_front();
        }
        self.paid.push_back(PaidOrder {
            server: server.clone(),
            order: order.clone(),
            short_code: code,
        });
    }

    /// The order paid here whose short code was `code`, if any (newest first).
    pub fn paid_with_code(&self, code: &ShortCode) -> Option<&PaidOrder> {
        self.paid
            .iter()
            .rev()
            .find(|p| p.short_code.as_ref() == Some(code))
    }

    pub fn pending(
        &self,
        server: &ServerUrl,
        order: &OrderId,
        account: &AccountId,
    ) -> Option<&PendingPayment> {
        self.pending
            .iter()
            .find(|p| &p.server == server && &p.order == order && &p.account == account)
    }

    pub fn add_pending(&mut self, p: PendingPayment) {
        if self.pending.len() >= MAX_PENDING_PAYMENTS {
            self.pending.remove(0);
        }
        self.pending.push(p);
    }

    pub fn drop_pending(&mut self, server: &ServerUrl, order: &OrderId) {
        self.pending
            .retain(|p| !(&p.server == server && &p.order == order));
    }

    /// The remembered session for `server`, if it is still valid at `now_ms`.
    pub fn session(&self, server: &ServerUrl, now_ms: i64) -> Option<&SavedSession> {
        self.sessions
            .iter()
            .find(|s| &s.server == server && s.expires_at_ms > now_ms)
    }

    pub fn save_session(&mut self, session: SavedSession) {
        self.sessions.retain(|s| s.server != session.server);
        self.sessions.push(session);
    }

    pub fn forget_session(&mut self, server: &ServerUrl) {
        self.sessions.retain(|s| &s.server != server);
    }
}

/// The state file and its in-memory copy.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    state: DeviceState,
}

impl StateStore {
    /// The default location: `<data dir>/couchpay/companion.json`.
    pub fn default_path() -> Result<PathBuf, StateError> {
        let dir = dirs::data_dir().ok_or(StateError::NoDataDir)?;
        Ok(dir.join("couchpay").join(STATE_FILE_NAME))
    }

    /// Loads `path`, or starts empty when it does not exist yet.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let read_err = |source| StateError::Read {
            path: path.display().to_string(),
            source,
        };
        let state = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DeviceState::default(),
            Err(e) => return Err(read_err(e)),
            Ok(meta) if meta.len() > MAX_STATE_FILE_BYTES => {
                return Err(StateError::Corrupt {
                    path: path.display().to_string(),
                    reason: format!("larger than {MAX_STATE_FILE_BYTES} bytes"),
                });
            }
            Ok(_) => {
                let bytes = std::fs::read(path).map_err(read_err)?;
                serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?
            }
        };
        Ok(Self {
            path: path.to_owned(),
            state,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self) -> &DeviceState {
        &self.state
    }

    /// Changes the state and writes it to disk before returning.
    pub fn update<T>(&mut self, f: impl FnOnce(&mut DeviceState) -> T) -> Result<T, StateError> {
        let mut next = self.state.clone();
        let out = f(&mut next);
        write_atomically(&self.path, &next)?;
        self.state = next;
        Ok(out)
    }
}

fn write_atomically(path: &Path, state: &DeviceState) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let json = serde_json::to_vec_pretty(state).expect("state serialises");
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // The file holds session tokens: owner-only.
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(err)?;
        f.write_all(&json).map_err(err)?;
        // The idempotency key must be on disk before the payment is sent.
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerUrl {
        ServerUrl::parse("http://127.0.0.1:8080").unwrap()
    }

    #[test]
    fn paid_orders_are_bounded_and_remembered() {
        let mut s = DeviceState::default();
        let first = OrderId::random();
        s.mark_paid(&server(), &first);
        assert!(s.is_paid(&server(), &first));
        for _ in 0..MAX_REMEMBERED_PAID_ORDERS {
            s.mark_paid(&server(), &OrderId::random());
        }
        assert_eq!(s.paid.len(), MAX_REMEMBERED_PAID_ORDERS);
        assert!(!s.is_paid(&server(), &first));
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(STATE_FILE_NAME);
        let mut store = StateStore::open(&path).unwrap();
        let order = OrderId::random();
        let key = IdempotencyKey::random();
        store
            .update(|s| {
                s.account = Some(AccountId::parse("alice").unwrap());
                s.add_pending(PendingPayment {
                    server: server(),
                    order: order.clone(),
                    account: AccountId::parse("alice").unwrap(),
                    key: key.clone(),
                });
            })
            .unwrap();
        let again = StateStore::open(&path).unwrap();
        assert_eq!(again.get(), store.get());
        let alice = AccountId::parse("alice").unwrap();
        assert_eq!(
            again.get().pending(&server(), &order, &alice).unwrap().key,
            key
        );
    }

    #[test]
    fn corrupt_state_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE_NAME);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            StateStore::open(&path),
            Err(StateError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
    }
}
