//! The paid screen (the film plays, the membership is active, the goods are ordered) and
//! the player for a film this TV already owns.

use protocol::{Order, OrderItem};

use super::{App, Back, CatalogFocus, Choice, Effect, Key, Screen};

impl App {
    pub(super) fn show_paid(&mut self, index: Option<usize>, order: Order) {
        self.record_paid(&order);
        self.screen = Screen::Paid {
            index,
            order: Box::new(order),
            since_ms: self.now_ms,
            focus: Choice::Primary,
        };
    }

    /// Plays owned film `index` from its item page; Back returns to that page.
    pub(super) fn play(&mut self, index: usize) {
        let Some(item) = self.item(index) else {
            return;
        };
        let item = OrderItem {
            id: item.id.clone(),
            title: item.title.clone(),
            kind: item.kind,
        };
        let back = match &self.screen {
            Screen::Item { back, .. } => *back,
            _ => Back::Catalog,
        };
        let back_to = Box::new(self.item_screen(index, back));
        self.start_playing(item, Some(index), back_to);
    }

    pub(super) fn start_playing(
        &mut self,
        item: OrderItem,
        index: Option<usize>,
        back_to: Box<Screen>,
    ) {
        self.screen = Screen::Playing {
            item,
            index,
            since_ms: self.now_ms,
            focus: Choice::Primary,
            back_to,
        };
    }

    pub(super) fn on_paid_key(
        &mut self,
        index: Option<usize>,
        focus: Choice,
        key: Key,
        fx: &mut Vec<Effect>,
    ) {
        match key {
            Key::Left | Key::Right => {
                if let Screen::Paid { focus, .. } = &mut self.screen {
                    *focus = focus.toggled(key);
                }
            }
            Key::Ok if focus == Choice::Secondary => self.open_purchases(fx),
            Key::Ok | Key::Back => {
                self.screen = Screen::Catalog {
                    focus: index.map_or(CatalogFocus::Purchases, CatalogFocus::Item),
                };
            }
            _ => {}
        }
    }

    pub(super) fn on_playing_key(
        &mut self,
        focus: Choice,
        back_to: Screen,
        key: Key,
        fx: &mut Vec<Effect>,
    ) {
        match key {
            Key::Left | Key::Right => {
                if let Screen::Playing { focus, .. } = &mut self.screen {
                    *focus = focus.toggled(key);
                }
            }
            Key::Ok if focus == Choice::Secondary => self.open_purchases(fx),
            Key::Ok | Key::Back => match back_to {
                // The list may have changed while the film played: load it again.
                Screen::Purchases { .. } => self.open_purchases(fx),
                other => self.screen = other,
            },
            _ => {}
        }
    }
}
