//! `#[task]`: a struct becomes a plain-data, `repr(C)` layout that can live in shared
//! memory and cross processes as bytes.

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;

use crate::common::Errors;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let def = parse::TaskDef::parse(args, item, &mut errors);
    if let Some(def) = &def {
        def.validate(&mut errors);
    }
    match (def, errors.finish()) {
        (Some(def), Ok(())) => expand::expand(&def),
        // On error, keep the user's struct as written so the rest of their crate still
        // resolves it, and report every mistake.
        (None, Ok(())) => {
            unreachable!("parsing yields no definition only after recording an error")
        }
        (def, Err(error)) => {
            let original = def.map(|d| d.item);
            let errors = error.to_compile_error();
            quote::quote!(#original #errors)
        }
    }
}
