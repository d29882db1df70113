//! The one integration-test binary: `cargo test` builds and links it once.

mod header_props;
mod inventory;
mod util;
