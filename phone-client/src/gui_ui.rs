//! The companion window compiled from `ui/companion.slint` by `build.rs`.
// Generated code: Slint emits `todo!()` in paths for Rust-embedded components, which
// this window does not use, and its own style of visibility and Debug impls.
#![allow(
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::todo,
    reason = "generated code"
)]

slint::include_modules!();
