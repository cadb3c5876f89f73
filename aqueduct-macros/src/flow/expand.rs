//! Code generation for `flow!`: a builder chain, each link spanned at its stage.

use proc_macro2::TokenStream;
use quote::quote_spanned;
use syn::spanned::Spanned;

use super::parse::FlowDef;

pub fn expand(def: &FlowDef) -> TokenStream {
    let first = &def.stages[0];
    // Every token at the first stage, so that errors about it point there, not at `flow!`.
    let krate: TokenStream = std::iter::empty()
        .chain(
            quote::ToTokens::to_token_stream(&def.krate)
                .into_iter()
                .map(|mut token| {
                    token.set_span(first.span());
                    token
                }),
        )
        .collect();
    // One path into the runtime (the first call), so a wrong `crate = "…"` is one error.
    let mut chain =
        quote_spanned!(first.span()=> #krate::__private::FlowBuilder::first::<#first>());
    for stage in &def.stages[1..] {
        chain = quote_spanned!(stage.span()=> #chain.then::<#stage>());
    }
    chain
}
