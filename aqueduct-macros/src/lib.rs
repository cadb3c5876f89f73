//! Procedural macros for [`aqueduct`](https://docs.rs/aqueduct). Do not depend on this
//! crate directly: use the re-exports `aqueduct::task`, `aqueduct::handler` and
//! `aqueduct::flow`, which are documented there.
//!
//! Each macro is a `parse -> validate -> expand` pipeline in its own module; this file
//! only holds the entry points.

mod common;
mod flow;
mod handler;
mod task;

use proc_macro::TokenStream;

/// See `aqueduct::task`.
///
/// `#[task]` implements `Clone`, `Copy` and `Debug` for the struct unless they are derived
/// *below* it. Derive them below `#[aqueduct::task]` or not at all: derives above it are
/// invisible to it and conflict (E0119), as does a hand-written `impl Debug` (implement
/// `Display` to format a task your own way). Every other derive may go above or below.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    common::emit("task", task::expand(args.into(), item.into()))
}

/// See `aqueduct::handler`.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    common::emit("handler", handler::expand(args.into(), item.into()))
}

/// See `aqueduct::flow`.
#[proc_macro]
pub fn flow(input: TokenStream) -> TokenStream {
    common::emit("flow", flow::expand(input.into()))
}
