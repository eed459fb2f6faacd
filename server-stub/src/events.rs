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
        }
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
