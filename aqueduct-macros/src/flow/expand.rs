//! Code generation for `flow!`: a builder chain, each link spanned at its stage.

use proc_macro2::TokenStream;
use quote::quote_spanned;
use syn::spanned::Spanned;

use super::parse::FlowDef;

pub fn expand(def: &FlowDef) -> TokenStream {
    let first = &def.stages[0];
    let mut chain =
        quote_spanned!(first.span()=> ::aqueduct::__private::FlowBuilder::first::<#first>());
    for stage in &def.stages[1..] {
        chain = quote_spanned!(stage.span()=> #chain.then::<#stage>());
    }
    chain
}
