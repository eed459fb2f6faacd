//! The event hub: per-order, per-account, per-device and per-red-packet-set broadcast
//! channels feeding the SSE streams.
//!
//! Channels exist only while someone listens: a publish with no subscriber costs one
//! map lookup, and channels whose last subscriber left are pruned.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use protocol::{
    AccountEvent, AccountId, DeviceEvent, DeviceId, OrderEvent, OrderId, PacketSetId, PacketsEvent,
};
use tokio::sync::broadcast;

use crate::error::{ApiError, ApiResult};

/// Most concurrent event-stream subscribers; beyond it subscribing answers `unavailable`.
pub const MAX_SUBSCRIBERS: usize = 20_000;
/// Events buffered per channel for a slow subscriber before it misses some.
const CHANNEL_CAPACITY: usize = 16;
/// Events buffered for a slow follower of every event (the developer console), which
/// then reconnects.
const ALL_CAPACITY: usize = 1_024;

/// What the stream of every event carries (`GET /v1/admin/events`, for the developer
/// console): a first `hello`, then each committed event.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "Hello is sent once per stream; boxing every event buys nothing"
)]
pub enum Activity {
    Hello,
    Event { event: Event },
}

impl crate::sse::Named for Activity {
    fn event_name(&self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Event { .. } => "event",
        }
    }
}

/// An event committed by the writer, to publish after the commit (and, on PostgreSQL,
/// to relay to the other nodes through the outbox, as JSON).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "events are built once and moved, boxing buys nothing"
)]
pub enum Event {
    Order(OrderEvent),
    Account(AccountId, AccountEvent),
    Device(DeviceId, DeviceEvent),
    Packets(PacketSetId, PacketsEvent),
}

#[derive(Debug)]
struct Topics<K, V> {
    channels: Mutex<HashMap<K, broadcast::Sender<V>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Topics<K, V> {
    fn new() -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn subscribe(&self, key: &K, limit: usize) -> ApiResult<broadcast::Receiver<V>> {
        let mut map = self.channels.lock().map_err(ApiError::internal)?;
        if let Some(tx) = map.get(key) {
            return Ok(tx.subscribe());
        }
        if map.len() >= limit {
            // Prune before refusing: channels of departed subscribers do not count.
            map.retain(|_, tx| tx.receiver_count() > 0);
            if map.len() >= limit {
                return Err(ApiError::Unavailable);
            }
        }
        let (tx, rx) = broadcast::channel(CHANNEL_CAPACITY);
        map.insert(key.clone(), tx);
        Ok(rx)
    }

    fn publish(&self, key: &K, value: V) {
        let Ok(mut map) = self.channels.lock() else {
            return;
        };
        if let Some(tx) = map.get(key)
            && tx.send(value).is_err()
        {
            map.remove(key);
        }
    }

    fn prune(&self) -> usize {
        let Ok(mut map) = self.channels.lock() else {
            return 0;
        };
        map.retain(|_, tx| tx.receiver_count() > 0);
        map.len()
    }
}

#[derive(Debug)]
pub struct Hub {
    orders: Topics<OrderId, OrderEvent>,
    accounts: Topics<AccountId, AccountEvent>,
    devices: Topics<DeviceId, DeviceEvent>,
    packets: Topics<PacketSetId, PacketsEvent>,
    all: broadcast::Sender<Activity>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            orders: Topics::new(),
            accounts: Topics::new(),
            devices: Topics::new(),
            packets: Topics::new(),
            all: broadcast::channel(ALL_CAPACITY).0,
        }
    }

    /// Every event from now on (the developer console).
    pub fn subscribe_all(&self) -> broadcast::Receiver<Activity> {
        self.all.subscribe()
    }

    pub fn subscribe_order(&self, id: &OrderId) -> ApiResult<broadcast::Receiver<OrderEvent>> {
        self.orders.subscribe(id, MAX_SUBSCRIBERS)
    }

    pub fn subscribe_account(
        &self,
        id: &AccountId,
    ) -> ApiResult<broadcast::Receiver<AccountEvent>> {
        self.accounts.subscribe(id, MAX_SUBSCRIBERS)
    }

    pub fn subscribe_device(&self, id: &DeviceId) -> ApiResult<broadcast::Receiver<DeviceEvent>> {
        self.devices.subscribe(id, MAX_SUBSCRIBERS)
    }

    pub fn subscribe_packets(
        &self,
        id: &PacketSetId,
    ) -> ApiResult<broadcast::Receiver<PacketsEvent>> {
        self.packets.subscribe(id, MAX_SUBSCRIBERS)
    }

    pub fn publish(&self, event: Event) {
        if self.all.receiver_count() > 0 {
            let _ = self.all.send(Activity::Event {
                event: event.clone(),
            });
        }
        match event {
            Event::Order(e) => {
                let id = e.order().id.clone();
                self.orders.publish(&id, e);
            }
            Event::Account(id, e) => self.accounts.publish(&id, e),
            Event::Device(id, e) => self.devices.publish(&id, e),
            Event::Packets(id, e) => self.packets.publish(&id, e),
        }
    }

    /// Drops channels nobody listens to; returns how many remain.
    pub fn prune(&self) -> usize {
        self.orders.prune() + self.accounts.prune() + self.devices.prune() + self.packets.prune()
    }
}
