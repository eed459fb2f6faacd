//! Couchpay's TV app: browse with the remote, show the order as a QR code and a short
//! code, announce it on the local network, unlock the purchase when the phone pays.
//!
//! [`state`] is the whole app as a plain state machine (keys, ticks and server answers
//! in; effects out). [`runtime`] carries out the effects, [`ui`] renders the state into
//! the Slint window, [`announce`] owns mDNS, [`ble`] the Bluetooth LE advert and GATT
//! record, [`qr`] draws the pay link and [`updates`] downloads and checks software updates.

pub mod announce;
pub mod ble;
pub mod config;
pub mod device_view;
pub mod qr;
pub mod runtime;
pub mod slint_ui;
pub mod state;
pub mod ui;
pub mod updates;
