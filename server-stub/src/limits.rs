//! Per-client-address caps on long-lived resources (connections, event streams), so one
//! client cannot hold what every other client needs.
//!
//! A slot is taken with [`PerAddress::acquire`] and given back when its [`Slot`] drops,
//! so a connection task or a stream that ends for any reason (including a panic or a
//! client that vanishes) returns what it held.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Default most open connections from one client address.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 512;
/// Default most open connections in total.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8_192;
/// Default most open event streams (SSE) from one client address.
pub const DEFAULT_MAX_STREAMS_PER_ADDRESS: usize = 256;
/// Default time a client has to send a request's headers before its connection closes.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;

/// The key a client is counted under. IPv6 clients are counted per /64, since one
/// host usually holds a whole /64 and could otherwise rotate addresses freely.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

/// Counts slots per client address (see [`client_key`]) and in total.
#[derive(Debug)]
pub struct PerAddress {
    per_address: usize,
    total: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    by_key: HashMap<IpAddr, usize>,
    total: usize,
}

/// Why a slot was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// This address already holds its share.
    Address,
    /// The server as a whole is full.
    Total,
}

impl PerAddress {
    pub fn new(per_address: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_address: per_address.max(1),
            total: total.max(1),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Takes a slot for `ip`, or says why not.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let key = client_key(ip);
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.total {
            return Err(Refused::Total);
        }
        let n = c.by_key.entry(key).or_insert(0);
        if *n >= self.per_address {
            return Err(Refused::Address);
        }
        *n += 1;
        c.total += 1;
        Ok(Slot {
            owner: self.clone(),
            key,
        })
    }

    /// Slots held now by `ip`'s key.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.by_key.get(&client_key(ip)).copied().unwrap_or(0)
    }

    /// Slots held now in total.
    pub fn held(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// One held slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<PerAddress>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_key.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.by_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_address_and_in_total_and_given_back() {
        let p = PerAddress::new(2, 3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = p.acquire(a).unwrap();
        let _a2 = p.acquire(a).unwrap();
        assert_eq!(p.acquire(a).unwrap_err(), Refused::Address);
        let _b1 = p.acquire(b).unwrap();
        assert_eq!(p.acquire(b).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(p.held_by(a), 1);
        assert!(p.acquire(b).is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let x: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let z: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(x), client_key(y));
        assert_ne!(client_key(x), client_key(z));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
