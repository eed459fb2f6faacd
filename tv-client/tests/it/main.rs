//! The TV client's integration tests, in one test binary: state machine, headless UI,
//! mDNS on loopback, and flows against the real stub server.

mod device;
mod mdns;
mod packets;
mod server;
mod state;
mod support;
mod ui;
