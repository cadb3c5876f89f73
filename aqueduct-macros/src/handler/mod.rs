//! `#[handler(…)]`: a function becomes a pipeline stage. The function stays as written
//! (callable and unit-testable); beside it goes a marker type of the same name that
//! implements the runtime's `Stage` trait, which `flow!` names.
//!
//! On a mistake the function and the stage type are still emitted (with default settings
//! for a rejected argument, with an erroneous task type for a rejected signature), so that
//! `flow!` and calls naming the handler resolve and one mistake is exactly one error.

mod expand;
mod parse;
mod signature;
mod validate;

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
    let signature = signature::Signature::parse(&func, args.init_written, &mut errors);
    let signature = signature.filter(|_| validate::check(&func, &mut errors));
    let in_impl = func
        .sig
        .inputs
        .iter()
        .any(|arg| matches!(arg, syn::FnArg::Receiver(_)));
    match (signature, errors.finish()) {
        (Some(signature), result) => {
            // A rejected argument is left at its default, so the stage is still usable.
            let errors = result.err().map(|e| e.to_compile_error());
            let def = parse::HandlerDef {
                func,
                args,
                signature,
            };
            let stage = expand::expand(&def);
            quote::quote!(#stage #errors)
        }
        // A method: the stage type cannot be declared inside an `impl` block.
        (None, Err(error)) if in_impl => {
            let errors = error.to_compile_error();
            quote::quote!(#func #errors)
        }
        (None, Err(error)) => expand::stub(&func, &args, &error),
        (None, Ok(())) => {
            unreachable!("signature parsing yields nothing only after recording an error")
        }
    }
}
