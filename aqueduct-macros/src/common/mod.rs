//! Pieces shared by every macro: the error collector, the runtime crate path, spelling
//! hints, and the single place where expansions are printed for debugging.

pub mod args;
mod crate_path;
mod errors;
mod suggest;

pub use crate_path::CratePath;
pub use errors::Errors;
pub use suggest::did_you_mean;

use proc_macro2::TokenStream;

/// Converts a macro's output for the compiler. With `AQUEDUCT_MACROS_DEBUG=1` in the
/// environment of `cargo build`, every expansion is also printed to stderr; this is the
/// only place that variable is read.
pub fn emit(macro_name: &str, output: TokenStream) -> proc_macro::TokenStream {
    if std::env::var_os("AQUEDUCT_MACROS_DEBUG").is_some_and(|v| v == "1") {
        eprintln!("--- aqueduct::{macro_name} expansion ---\n{output}\n");
    }
    output.into()
}

/// A type that reports `error` and then stands for "already reported": an array whose
/// length is `compile_error!(…)`. rustc treats a type containing an erroneous constant as
/// an error type and stays silent about every use of it, where `compile_error!` alone in
/// type position would leave `()` behind and every use would be a new error.
pub fn error_type(error: &syn::Error) -> syn::Type {
    let error = error.to_compile_error();
    syn::parse_quote!([u8; #error])
}
