//! Per-client token buckets, used to make short-code guessing hopeless (RFC 8628 §5.1).
//!
//! A short code has 20^8 ≈ 2.56·10^10 values and lives [`crate::config::DEFAULT_ORDER_TTL_S`]
//! (10 minutes). At [`CODE_LOOKUP_BURST`] + 10 minutes × [`CODE_LOOKUPS_PER_MIN`] = 110
//! guesses per address per order lifetime, even with 10,000 live orders an address
//! hits one with probability 110 · 10^4 / 2.56·10^10 ≈ 4·10^-5.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Lookups an address may make at once.
pub const CODE_LOOKUP_BURST: u32 = 10;
/// Lookups an address regains per minute.
pub const CODE_LOOKUPS_PER_MIN: u32 = 10;
/// Addresses tracked before idle ones are forgotten.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_s: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(burst: u32, per_min: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_s: f64::from(per_min) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip`: `Ok` or `Err(seconds until one is available)`.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut map) = self.buckets.lock() else {
            return Err(1);
        };
        if map.len() >= MAX_TRACKED {
            let (burst, per_s) = (self.burst, self.per_s);
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_s < burst
            });
        }
        let (tokens, at) = map.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_s).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_s).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_per_address() {
        let rl = RateLimiter::new(3, 1);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(rl.check(a).is_ok());
        }
        let wait = rl.check(a).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(rl.check(b).is_ok(), "other addresses are not affected");
    }
}
