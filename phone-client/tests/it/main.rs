//! The companion's integration tests (one binary): decoding a generated camera set,
//! hostile pictures, the virtual-camera scan loop, mDNS discovery on `lo`, and the
//! pay-flow refusals that need no server (server-backed flows are in the workspace
//! `tests/` crate).

mod camera_set;
mod discovery;
mod hostile;
mod real_photos;
mod refusals;
mod scan;
mod support;
