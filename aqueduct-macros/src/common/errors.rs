//! One error collector for all macros, so that every mistake in an invocation is reported
//! in one compile, each at its own token.

use proc_macro2::{Span, TokenStream};
use std::fmt::Display;

/// Collects spanned errors. Duplicates (same span, same message) are dropped, so a
/// check that runs twice cannot make rustc print an error twice.
///
/// The collector must be consumed with [`Errors::finish`] or [`Errors::into_compile_errors`];
/// dropping it unconsumed panics, so an error cannot be silently forgotten.
#[derive(Default)]
pub struct Errors {
    list: Vec<syn::Error>,
    seen: Vec<(String, String)>,
    consumed: bool,
}

impl Errors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message` at `span`.
    pub fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Records `message` spanning all of `tokens` (a caret under the whole construct).
    pub fn spanned(&mut self, tokens: impl quote::ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error produced by a parser (it may already hold several messages).
    pub fn push(&mut self, error: syn::Error) {
        for single in error {
            let key = (format!("{:?}", single.span()), single.to_string());
            if !self.seen.contains(&key) {
                self.seen.push(key);
                self.list.push(single);
            }
        }
    }

    /// `Ok` when nothing was recorded, otherwise every recorded error combined.
    pub fn finish(mut self) -> syn::Result<()> {
        self.consumed = true;
        let mut iter = std::mem::take(&mut self.list).into_iter();
        match iter.next() {
            None => Ok(()),
            Some(mut first) => {
                first.extend(iter);
                Err(first)
            }
        }
    }

    /// Every recorded error as `compile_error!` invocations.
    pub fn into_compile_errors(self) -> TokenStream {
        match self.finish() {
            Ok(()) => TokenStream::new(),
            Err(error) => error.to_compile_error(),
        }
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        if !self.consumed && !std::thread::panicking() {
            panic!("aqueduct-macros bug: an `Errors` collector was dropped without `finish()`");
        }
    }
}
