//! Couchpay companion core: find the TV's order (camera scan, saved picture, mDNS
//! discovery or a typed code), confirm it against a trusted server, pay, and keep the
//! receipts. The `couchpay` binary is a thin CLI over this library.
//!
//! Modules: [`decode`] (robust QR decoding), [`frames`] (camera / virtual camera and
//! the background scan loop), [`discovery`] (mDNS), [`companion`] (trust, pay flow),
//! [`state`] (what the device remembers).

pub mod ble;
pub mod companion;
pub mod decode;
pub mod discovery;
pub mod frames;
#[cfg(feature = "gui")]
pub mod gui;
pub mod state;
pub mod wallet;

pub use companion::{
    Companion, CompanionError, Confirmation, Credentials, OrderRef, SmsCode, accept_pay_link,
};
pub use decode::{Budget, DecodeReport, Decoder, FRAME_DECODE_BUDGET_MS};
pub use discovery::{Announcer, Browser, Interfaces, NearbyEvent, NearbyOrder, NearbyPackets};
pub use frames::{
    FolderSource, FrameSource, MemorySource, ScanHit, ScanOptions, ScanProgress, scan,
};
pub use state::{DeviceState, StateStore};
