//! The one integration-test binary.
mod hubserver;
