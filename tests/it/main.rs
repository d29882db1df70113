//! The one integration-test binary.
mod lab;
