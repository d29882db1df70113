//! The one integration-test binary: `cargo test` builds and links it once.

mod header_props;
mod hub;
mod hubserver;
mod inventory;
mod util;
