//! Red packets on the TV (SPEC R, "the family TV as the screen for a red packet"): a
//! sender's phone offers a set to this TV; the offer arrives on the device's event
//! stream and the TV asks the room first (OK shows it, Back refuses: a TV never shows
//! anything unasked). While shown, the set's claim code is on screen as a QR code and a
//! short code, and the set's own event stream keeps the list of who got how much live;
//! when the set is finished or expired the code is withdrawn and the final list stays
//! until Back.
//!
//! Offers never interrupt an order being paid: one that arrives then waits (the newest
//! only) until the TV is back on a quiet screen.
//!
//! A shown set is offered on the network like an order (mDNS and BLE, as a
//! [`PacketsRecord`]), so phones in the room find it under Nearby; the offer is
//! withdrawn when the set closes or the TV stops showing it.

use protocol::{Announcement, PacketSet, PacketSetId, PacketSetState, PacketsRecord};

use super::{
    AnnounceState, App, Choice, Effect, Key, STREAM_RETRY_INITIAL_MS, STREAM_RETRY_MAX_MS, Screen,
    backoff,
};

/// The red-packet screen: one set, its claim code while it is open, its claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketsScreen {
    pub set: PacketSet,
    /// The set's event stream: its generation, whether it is connected, and when to try
    /// again after it dropped.
    pub generation: u64,
    pub live: bool,
    pub failures: u32,
    pub reconnect_at_ms: Option<u64>,
    /// Whether the set is offered over mDNS and over Bluetooth LE.
    pub announce: AnnounceState,
    pub ble: AnnounceState,
    /// Where Back leads.
    pub back_to: Box<Screen>,
}

impl PacketsScreen {
    /// True while packets can be claimed (the code is on screen).
    pub fn is_open(&self) -> bool {
        self.set.state == PacketSetState::Open
    }
}

impl App {
    /// True on screens an offer may cover: never while an order is on screen or being
    /// made, nor over another offer or problem.
    fn quiet_screen(&self) -> bool {
        matches!(
            self.screen,
            Screen::Catalog { .. }
                | Screen::Item { busy: false, .. }
                | Screen::Purchases { .. }
                | Screen::Paid { .. }
                | Screen::Playing { .. }
        )
    }

    /// A sender asks this TV to show `set`.
    pub(super) fn on_packets_offered(&mut self, set: PacketSet) {
        if set.state != PacketSetState::Open {
            return;
        }
        let already = match &self.screen {
            Screen::PacketsPrompt { set: s, .. } => s.id == set.id,
            Screen::Packets(p) => p.set.id == set.id,
            _ => false,
        };
        if already {
            return;
        }
        self.pending_offer = Some(set);
        self.show_pending_offer();
    }

    /// Asks the room about a waiting offer, if the screen allows it.
    pub(super) fn show_pending_offer(&mut self) {
        if !self.quiet_screen() {
            return;
        }
        if let Some(set) = self.pending_offer.take() {
            let back_to = Box::new(self.screen.clone());
            self.screen = Screen::PacketsPrompt {
                set: Box::new(set),
                focus: Choice::Primary,
                back_to,
            };
        }
    }

    pub(super) fn on_packets_prompt_key(
        &mut self,
        set: PacketSet,
        focus: Choice,
        back_to: Screen,
        key: Key,
        fx: &mut Vec<Effect>,
    ) {
        match key {
            Key::Left | Key::Right => {
                self.screen = Screen::PacketsPrompt {
                    set: Box::new(set),
                    focus: focus.toggled(key),
                    back_to: Box::new(back_to),
                };
            }
            Key::Ok if focus == Choice::Primary => {
                let generation = self.next_generation;
                self.next_generation += 1;
                fx.push(Effect::FollowPackets {
                    set: set.id.clone(),
                    generation,
                });
                let (announce, ble) = match &set.short_code {
                    Some(code) => {
                        fx.push(Effect::Announce(Announcement::Packets(PacketsRecord::new(
                            set.id.clone(),
                            code.clone(),
                            set.link.server.clone(),
                            &self.identity.tv_name,
                            self.identity.device_id.clone(),
                            &set.sender_name,
                            &set.message,
                        ))));
                        (AnnounceState::Pending, AnnounceState::Pending)
                    }
                    // A set made before codes existed is shown by QR only.
                    None => {
                        let off = || AnnounceState::Failed("the set has no short code".to_owned());
                        (off(), off())
                    }
                };
                self.screen = Screen::Packets(Box::new(PacketsScreen {
                    set,
                    generation,
                    live: false,
                    failures: 0,
                    reconnect_at_ms: None,
                    announce,
                    ble,
                    back_to: Box::new(back_to),
                }));
            }
            Key::Ok | Key::Back => {
                tracing::info!(set = set.id.log_prefix(), "red packets refused on the TV");
                self.screen = back_to;
            }
            _ => {}
        }
    }

    pub(super) fn on_packets_key(&mut self, p: &PacketsScreen, key: Key, fx: &mut Vec<Effect>) {
        // Back stops showing them (the packets stay claimable by link); once they are
        // all taken or expired, OK closes the final list too.
        if key == Key::Back || (key == Key::Ok && !p.is_open()) {
            fx.extend([Effect::StopFollowingPackets, Effect::Withdraw]);
            self.screen = (*p.back_to).clone();
            self.show_pending_offer();
        }
    }

    fn packets_screen_of(&mut self, set: &PacketSetId) -> Option<&mut PacketsScreen> {
        match &mut self.screen {
            Screen::Packets(p) if p.set.id == *set => Some(p),
            _ => None,
        }
    }

    /// The set as its stream says it is now.
    pub(super) fn on_packets_update(&mut self, set: PacketSet, fx: &mut Vec<Effect>) {
        let Some(p) = self.packets_screen_of(&set.id) else {
            return;
        };
        // A closed set stays closed, whatever a late event says.
        if !p.is_open() {
            return;
        }
        let closed = set.state != PacketSetState::Open;
        p.set = set;
        if closed {
            fx.extend([Effect::StopFollowingPackets, Effect::Withdraw]);
        }
    }

    pub(super) fn on_packets_stream_opened(&mut self, set: &PacketSetId, generation: u64) {
        if let Some(p) = self.packets_screen_of(set)
            && p.generation == generation
        {
            p.live = true;
            p.failures = 0;
        }
    }

    pub(super) fn on_packets_stream_ended(&mut self, set: &PacketSetId, generation: u64) {
        let now = self.now_ms;
        if let Some(p) = self.packets_screen_of(set)
            && p.generation == generation
            && p.is_open()
        {
            p.live = false;
            p.failures += 1;
            p.reconnect_at_ms =
                Some(now + backoff(STREAM_RETRY_INITIAL_MS, STREAM_RETRY_MAX_MS, p.failures));
        }
    }

    /// Reopens a dropped set stream when its backoff is over.
    pub(super) fn tick_packets(&mut self, fx: &mut Vec<Effect>) {
        let now = self.now_ms;
        let next = self.next_generation;
        if let Screen::Packets(p) = &mut self.screen
            && p.is_open()
            && p.reconnect_at_ms.is_some_and(|t| now >= t)
        {
            p.reconnect_at_ms = None;
            p.generation = next;
            self.next_generation += 1;
            fx.push(Effect::FollowPackets {
                set: p.set.id.clone(),
                generation: next,
            });
        }
    }
}
