//! `#[handler(…)]`: a function becomes a pipeline stage. The function stays as written
//! (callable and unit-testable); beside it goes a marker type of the same name that
//! implements the runtime's `Stage` trait, which `flow!` names.

mod expand;
mod parse;
mod signature;

use proc_macro2::TokenStream;

use crate::common::Errors;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            errors.spanned(&item, "`#[handler]` goes on a function");
            let errors = errors.into_compile_errors();
            return quote::quote!(#item #errors);
        }
    };
    let args = parse::HandlerArgs::parse(args, &mut errors);
    let signature = signature::Signature::parse(&func, args.init.is_some(), &mut errors);
    match (signature, errors.finish()) {
        (Some(signature), Ok(())) => expand::expand(&parse::HandlerDef {
            func,
            args,
            signature,
        }),
        // On error keep the function so calls to it still resolve; only the stage is missing.
        (_, Err(error)) => {
            let errors = error.to_compile_error();
            quote::quote!(#func #errors)
        }
        (None, Ok(())) => {
            unreachable!("signature parsing yields nothing only after recording an error")
        }
    }
}
