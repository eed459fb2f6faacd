//! The companion's integration tests (one binary): decoding a generated camera set,
//! hostile pictures, property tests of picture loading and the GATT record, the
//! virtual-camera scan loop, mDNS discovery on `lo`, the pay-flow refusals that need no
//! server, and the wording of errors against a real server and through the CLI (the
//! cross-crate flows are in the workspace `tests/` crate).

mod camera_set;
mod discovery;
mod fuzz;
mod hostile;
mod multi_code;
mod packets_cli;
mod real_photos;
mod refusals;
mod rqrr_patch;
mod scan;
mod support;
mod vouchers_cli;
mod wording;
