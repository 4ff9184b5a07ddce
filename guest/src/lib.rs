//! The order service's business logic, built as a WebAssembly guest (see ABI.md).
//!
//! `kit` is the ABI's plumbing (exports, inbox, suspension, the envelope, the database's codec);
//! the rest is the order logic, which uses only the kit's public types and also builds natively
//! so that `cargo test` runs it. It reads in one direction: `api` (the `kit::Guest`, dispatch)
//! -> `legacy` and `rest` (the two APIs) -> `error` (errors in both answer shapes), `input` ->
//! `store` (SQL, its own errors) -> `order`, `money`. `describe` lists routes, operations and
//! schemas from the same constants.

pub mod api;
pub mod describe;
pub mod error;
pub mod input;
pub mod kit;
pub mod legacy;
pub mod money;
pub mod order;
pub mod rest;
pub mod store;

pub use kit::ABI_VERSION;

export_guest!(api::Orders);
