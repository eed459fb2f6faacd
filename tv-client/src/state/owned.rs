//! What this TV owns (the device's entitlements, `GET /v1/devices/{id}/entitlements`)
//! and the "My purchases" screen. A film owned is played, never sold again; a membership
//! is shown with its end date while active; goods can always be ordered again.

use std::collections::HashMap;

use protocol::{Entitlement, Entitlements, ItemId, ItemKind, Order};

use super::catalog::is_ownable;
use super::problem::unreachable_problem;
use super::{App, Back, Effect, Failure, Key, Problem, Retry, Screen};

/// One day, in milliseconds (membership periods are counted in days).
const DAY_MS: i64 = 86_400_000;

/// Whether this TV owns an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    NotOwned,
    /// A film: play it.
    Film,
    /// A membership that is still active (until then, when the TV knows).
    Membership {
        until_ms: Option<i64>,
    },
}

/// Each item once, newest purchase first. A membership bought several times shows the
/// latest end date (the server extends an active one); goods show the latest order.
pub fn dedupe_entitlements(mut list: Vec<Entitlement>) -> Vec<Entitlement> {
    list.sort_by_key(|e| std::cmp::Reverse(e.granted_at_ms));
    let mut until: HashMap<ItemId, i64> = HashMap::new();
    for e in &list {
        if let Some(u) = e.valid_until_ms {
            let best = until.entry(e.item.id.clone()).or_insert(u);
            *best = (*best).max(u);
        }
    }
    let mut seen = std::collections::HashSet::new();
    list.retain(|e| seen.insert(e.item.id.clone()));
    for e in &mut list {
        if e.valid_until_ms.is_some() {
            e.valid_until_ms = until.get(&e.item.id).copied();
        }
    }
    list
}

impl App {
    /// The device's purchases, each item once, newest first; `None` until loaded.
    pub fn purchases(&self) -> Option<&[Entitlement]> {
        self.purchases.as_deref()
    }

    /// Changes whenever what the TV owns changes.
    pub fn owned_version(&self) -> u64 {
        self.owned_version
    }

    /// The current time in Unix milliseconds as well as the TV knows it: its wall clock,
    /// else the server's latest timestamp plus the time since; `None` before either.
    pub fn unix_now_ms(&self) -> Option<i64> {
        let (unix, at) = self.wall?;
        Some(unix + i64::try_from(self.now_ms.saturating_sub(at)).unwrap_or(i64::MAX / 2))
    }

    pub(super) fn set_wall_clock(&mut self, unix_ms: i64) {
        let before = self.unix_now_ms();
        self.wall = Some((unix_ms, self.now_ms));
        if before.map(|b| b / DAY_MS) != Some(unix_ms / DAY_MS) {
            // A membership may have ended (or the first reading arrived).
            self.owned_version += 1;
            self.fix_item_focus();
        }
    }

    /// A timestamp from the server, used as the clock when the TV has none.
    pub(super) fn learn_server_time(&mut self, unix_ms: i64) {
        if self.wall.is_none() {
            self.wall = Some((unix_ms, self.now_ms));
        }
    }

    /// Whether this TV owns catalog item `id`.
    pub fn ownership(&self, id: &ItemId) -> Ownership {
        let now = self.unix_now_ms();
        if let Some(e) = self.purchases.iter().flatten().find(|e| &e.item.id == id) {
            match (e.item.kind, e.valid_until_ms) {
                (ItemKind::Video, _) => return Ownership::Film,
                (ItemKind::Membership, None) => return Ownership::Membership { until_ms: None },
                (ItemKind::Membership, Some(u)) if now.is_none_or(|n| u > n) => {
                    return Ownership::Membership { until_ms: Some(u) };
                }
                _ => {}
            }
        }
        if self.owned_hint.contains(id) {
            match self.items().iter().find(|i| &i.id == id).map(|i| i.kind) {
                Some(ItemKind::Video) => return Ownership::Film,
                Some(ItemKind::Membership) => return Ownership::Membership { until_ms: None },
                _ => {}
            }
        }
        Ownership::NotOwned
    }

    /// Whether entitlement `e` is still in force (films always; memberships until they end).
    pub fn is_active(&self, e: &Entitlement) -> bool {
        match (e.item.kind, e.valid_until_ms, self.unix_now_ms()) {
            (ItemKind::Membership, Some(u), Some(now)) => u > now,
            _ => true,
        }
    }

    /// The server refused to sell `item` because this TV owns it.
    pub(super) fn mark_owned(&mut self, item: ItemId) {
        self.owned_hint.insert(item);
        self.owned_version += 1;
    }

    /// A paid order grants its entitlement at once (the server did the same in the
    /// payment's transaction); the next load of the list confirms it.
    pub(super) fn record_paid(&mut self, order: &Order) {
        if let Some(paid_at) = order.paid_at_ms {
            self.learn_server_time(paid_at);
        }
        let granted = order.paid_at_ms.unwrap_or(order.created_at_ms);
        let valid_until_ms = match order.item.kind {
            ItemKind::Membership => {
                let days = self
                    .items()
                    .iter()
                    .find(|i| i.id == order.item.id)
                    .and_then(|i| i.period_days);
                let active_until = match self.ownership(&order.item.id) {
                    Ownership::Membership { until_ms } => until_ms,
                    _ => None,
                };
                days.map(|d| active_until.unwrap_or(granted).max(granted) + i64::from(d) * DAY_MS)
            }
            _ => None,
        };
        let mut list = self.purchases.take().unwrap_or_default();
        list.retain(|e| e.order_id != order.id);
        list.push(Entitlement {
            order_id: order.id.clone(),
            item: order.item.clone(),
            granted_at_ms: granted,
            valid_until_ms,
        });
        self.purchases = Some(dedupe_entitlements(list));
        self.owned_version += 1;
    }

    pub(super) fn open_purchases(&mut self, fx: &mut Vec<Effect>) {
        self.screen = Screen::Purchases {
            list: self.purchases.clone(),
            selected: 0,
        };
        fx.push(Effect::LoadEntitlements(self.identity.device_id.clone()));
    }

    pub(super) fn on_purchases_key(
        &mut self,
        list: Option<Vec<Entitlement>>,
        selected: usize,
        key: Key,
    ) {
        match key {
            Key::Up => {
                self.screen = Screen::Purchases {
                    list,
                    selected: selected.saturating_sub(1),
                };
            }
            Key::Down => {
                let len = list.as_ref().map_or(0, Vec::len);
                self.screen = Screen::Purchases {
                    list,
                    selected: (selected + 1).min(len.saturating_sub(1)),
                };
            }
            Key::Ok => {
                let Some(e) = list.as_ref().and_then(|l| l.get(selected)).cloned() else {
                    return;
                };
                let index = self.index_of(&e.item.id);
                match (e.item.kind, index) {
                    // A film plays; Back from the player returns here.
                    (ItemKind::Video, _) => {
                        let back_to = Box::new(self.screen.clone());
                        self.start_playing(e.item, index, back_to);
                    }
                    // A membership shows until when it is active; goods can be ordered
                    // again from their page.
                    (_, Some(index)) => self.open_item(index, Back::Purchases),
                    (_, None) => {}
                }
            }
            Key::Back => self.go_home(),
            _ => {}
        }
    }

    pub(super) fn on_entitlements(&mut self, result: Result<Entitlements, Failure>) {
        let waiting = matches!(
            self.screen,
            Screen::Purchases { list: None, .. }
                | Screen::Problem(Problem {
                    retry: Some(Retry::Purchases),
                    ..
                })
        );
        match result {
            Ok(e) => {
                let list = dedupe_entitlements(e.entitlements);
                // The server's list is the truth now; keep only hints it does not cover
                // yet (an answer that left before the refusal).
                self.owned_hint.retain(|id| {
                    !list
                        .iter()
                        .any(|e| &e.item.id == id && is_ownable(e.item.kind))
                });
                self.purchases = Some(list.clone());
                self.owned_version += 1;
                match &mut self.screen {
                    Screen::Purchases {
                        list: shown,
                        selected,
                    } => {
                        *selected = (*selected).min(list.len().saturating_sub(1));
                        *shown = Some(list);
                    }
                    Screen::Problem(_) if waiting => {
                        self.screen = Screen::Purchases {
                            list: Some(list),
                            selected: 0,
                        };
                    }
                    _ => self.fix_item_focus(),
                }
            }
            Err(failure) if waiting => {
                let attempts = match &self.screen {
                    Screen::Problem(p) => p.attempts + 1,
                    _ => 1,
                };
                self.screen = Screen::Problem(match failure {
                    Failure::Unreachable(_) => {
                        unreachable_problem(Retry::Purchases, attempts, self.now_ms)
                    }
                    Failure::Refused { .. } => Problem {
                        title: "Couldn't load your purchases".into(),
                        detail: "Please try again in a moment.".into(),
                        retry: Some(Retry::Purchases),
                        attempts,
                        next_retry_ms: None,
                    },
                });
            }
            // Not looking at the list: the item pages go by what was known before.
            Err(_) => {}
        }
    }

    /// After what the TV owns changed: an item page whose main button went away (an
    /// active membership) focuses Back.
    fn fix_item_focus(&mut self) {
        if let Screen::Item {
            index, focus, busy, ..
        } = self.screen.clone()
            && !busy
        {
            let fixed = self.item_focus(index, focus);
            if let Screen::Item { focus, .. } = &mut self.screen {
                *focus = fixed;
            }
        }
    }
}
