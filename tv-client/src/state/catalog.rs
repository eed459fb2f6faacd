//! The catalog screen and the item page.

use protocol::{Catalog, CreateOrder, ItemKind};

use super::problem::unreachable_problem;
use super::{
    App, Back, CatalogFocus, Choice, Effect, Failure, Key, Ownership, Problem, Retry, Screen,
};

/// What the item page offers for an item, given what this TV owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemAction {
    /// Not owned (or goods, which can always be ordered again): buy it.
    Buy,
    /// A film this TV owns: play it.
    Play,
    /// A membership active on this TV (until then, when known): nothing to buy.
    Active { until_ms: Option<i64> },
}

impl App {
    /// What the item page of catalog item `index` offers.
    pub fn item_action(&self, index: usize) -> ItemAction {
        let Some(item) = self.item(index) else {
            return ItemAction::Buy;
        };
        match self.ownership(&item.id) {
            Ownership::NotOwned => ItemAction::Buy,
            Ownership::Film => ItemAction::Play,
            Ownership::Membership { until_ms } => ItemAction::Active { until_ms },
        }
    }

    /// The item page of `index`, its safe button focused: the main action, or Back
    /// when there is nothing to do (an active membership).
    pub(super) fn item_screen(&self, index: usize, back: Back) -> Screen {
        Screen::Item {
            index,
            focus: self.item_focus(index, Choice::Primary),
            busy: false,
            back,
        }
    }

    /// `wanted`, unless the item page of `index` has no primary button.
    pub(super) fn item_focus(&self, index: usize, wanted: Choice) -> Choice {
        match self.item_action(index) {
            ItemAction::Active { .. } => Choice::Secondary,
            ItemAction::Buy | ItemAction::Play => wanted,
        }
    }

    pub(super) fn on_catalog_key(&mut self, focus: CatalogFocus, key: Key, fx: &mut Vec<Effect>) {
        let n = self.items().len();
        match (focus, key) {
            (CatalogFocus::Purchases, Key::Left) => {
                self.screen = Screen::Catalog {
                    focus: CatalogFocus::Device,
                };
            }
            (CatalogFocus::Device, Key::Right) => {
                self.screen = Screen::Catalog {
                    focus: CatalogFocus::Purchases,
                };
            }
            (CatalogFocus::Device, Key::Ok) => self.open_device(fx),
            (CatalogFocus::Purchases | CatalogFocus::Device, Key::Down) if n > 0 => {
                self.screen = Screen::Catalog {
                    focus: CatalogFocus::Item(self.catalog_return.min(n - 1)),
                };
            }
            (CatalogFocus::Purchases, Key::Ok) | (_, Key::Digit(0)) => {
                self.open_purchases(fx);
            }
            (CatalogFocus::Item(i), Key::Up) => {
                self.catalog_return = i;
                self.screen = Screen::Catalog {
                    focus: CatalogFocus::Purchases,
                };
            }
            (CatalogFocus::Item(i), Key::Left) => {
                self.screen = Screen::Catalog {
                    focus: CatalogFocus::Item(i.saturating_sub(1)),
                };
            }
            (CatalogFocus::Item(i), Key::Right) => {
                self.screen = Screen::Catalog {
                    focus: CatalogFocus::Item((i + 1).min(n.saturating_sub(1))),
                };
            }
            (CatalogFocus::Item(i), Key::Ok) => self.open_item(i, Back::Catalog),
            (_, Key::Digit(d)) if usize::from(d) <= n => {
                self.open_item(usize::from(d) - 1, Back::Catalog)
            }
            _ => {}
        }
    }

    pub(super) fn on_item_key(
        &mut self,
        index: usize,
        focus: Choice,
        busy: bool,
        back: Back,
        key: Key,
        fx: &mut Vec<Effect>,
    ) {
        match key {
            Key::Left | Key::Right => {
                self.screen = Screen::Item {
                    index,
                    focus: self.item_focus(index, focus.toggled(key)),
                    busy,
                    back,
                };
            }
            // A second OK while the order is being created must not create another.
            Key::Ok if focus == Choice::Primary && busy => {}
            Key::Ok if focus == Choice::Primary => match self.item_action(index) {
                ItemAction::Buy => self.buy(index, fx),
                ItemAction::Play => self.play(index),
                ItemAction::Active { .. } => {}
            },
            // Leaving while an order is being created is allowed: the order is
            // cancelled as soon as it arrives (see `on_order_created`).
            Key::Ok | Key::Back => match back {
                Back::Catalog => {
                    self.screen = Screen::Catalog {
                        focus: CatalogFocus::Item(index),
                    };
                }
                Back::Purchases => self.open_purchases(fx),
            },
            _ => {}
        }
    }

    pub(super) fn open_item(&mut self, index: usize, back: Back) {
        if index < self.items().len() {
            self.screen = self.item_screen(index, back);
        }
    }

    /// Asks the server for an order for item `index`, unless this TV already owns it.
    pub(super) fn buy(&mut self, index: usize, fx: &mut Vec<Effect>) {
        let Some(item) = self.item(index) else {
            return;
        };
        if self.item_action(index) != ItemAction::Buy {
            // Owned after all (e.g. paid at the last second): show what it is.
            self.screen = self.item_screen(index, Back::Catalog);
            return;
        }
        fx.push(Effect::CreateOrder(CreateOrder {
            item_id: item.id.clone(),
            device_id: self.identity.device_id.clone(),
            device_name: self.identity.tv_name.clone(),
        }));
        self.screen = Screen::Item {
            index,
            focus: Choice::Primary,
            busy: true,
            back: Back::Catalog,
        };
    }

    pub(super) fn on_catalog(&mut self, result: Result<Catalog, Failure>, fx: &mut Vec<Effect>) {
        let waiting = matches!(
            self.screen,
            Screen::Starting
                | Screen::Problem(Problem {
                    retry: Some(Retry::Catalog),
                    ..
                })
        );
        match result {
            Ok(catalog) => {
                for item in &catalog.items {
                    if !self.posters.contains_key(&item.id) {
                        fx.push(Effect::LoadPoster {
                            item: item.id.clone(),
                            path: item.poster.clone(),
                        });
                    }
                }
                if self.purchases.is_none() {
                    // What this TV owns decides what the item pages offer.
                    fx.push(Effect::LoadEntitlements(self.identity.device_id.clone()));
                }
                let has_items = !catalog.items.is_empty();
                self.catalog = Some(catalog);
                self.owned_version += 1;
                if waiting {
                    self.screen = Screen::Catalog {
                        focus: if has_items {
                            CatalogFocus::Item(0)
                        } else {
                            CatalogFocus::Purchases
                        },
                    };
                }
            }
            Err(failure) if waiting => {
                let attempts = match &self.screen {
                    Screen::Problem(p) => p.attempts + 1,
                    _ => 1,
                };
                self.screen = Screen::Problem(match failure {
                    Failure::Unreachable(_) => {
                        unreachable_problem(Retry::Catalog, attempts, self.now_ms)
                    }
                    // A refusal of the catalog is still worth retrying: nothing else works
                    // without it.
                    Failure::Refused { .. } => Problem {
                        title: "Couchpay isn't available right now".into(),
                        detail: "The TV keeps trying by itself.".into(),
                        ..unreachable_problem(Retry::Catalog, attempts, self.now_ms)
                    },
                });
            }
            Err(_) => {}
        }
    }
}

/// Whether an item of this kind can be owned (bought once), rather than ordered again.
pub(super) fn is_ownable(kind: ItemKind) -> bool {
    matches!(kind, ItemKind::Video | ItemKind::Membership)
}
