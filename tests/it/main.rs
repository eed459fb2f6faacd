//! End-to-end checks across crates, hermetic on loopback: a real server (fresh database
//! per test), the TV's side of the flow, and the companion core paying.

mod ble;
mod companion_gui;
mod device_menu;
mod discover_pay;
mod idempotency;
mod lan;
mod multinode;
mod packets_tv;
mod picture_pay;
mod receipts;
mod refusals;
mod tv_screen;
mod typed_code;
mod vouchers;
