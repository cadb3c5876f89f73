//! Code generation for `flow!`: a builder chain, each link spanned at its stage.

use proc_macro2::TokenStream;
use quote::quote_spanned;
use syn::spanned::Spanned;

use super::parse::FlowDef;

pub fn expand(def: &FlowDef) -> TokenStream {
    let first = &def.stages[0].path;
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
    // A stage with a condition is linked by `first_if`/`then_if`, spanned at the
    // condition, so "this stage cannot have a condition" points there.
    let mut chain = match &def.stages[0].condition {
        None => quote_spanned!(first.span()=> #krate::__private::FlowBuilder::first::<#first>()),
        Some(condition) => quote_spanned!(condition.span()=>
            #krate::__private::FlowBuilder::first_if::<#first>(#condition)
        ),
    };
    for stage in &def.stages[1..] {
        let path = &stage.path;
        chain = match &stage.condition {
            None => quote_spanned!(path.span()=> #chain.then::<#path>()),
            Some(condition) => {
                quote_spanned!(condition.span()=> #chain.then_if::<#path>(#condition))
            }
        };
    }
    chain
}
