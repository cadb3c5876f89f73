//! `flow!(a -> b -> c)`: a typed pipeline builder. Each stage after the first is linked
//! by a call spanned at that stage, so a type mismatch is reported at the stage that
//! does not accept the previous stage's output, naming both types.

mod expand;
mod parse;

use proc_macro2::TokenStream;

use crate::common::Errors;

pub fn expand(input: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let def = parse::FlowDef::parse(input, &mut errors);
    match (def, errors.finish()) {
        (Some(def), Ok(())) => expand::expand(&def),
        (_, Err(error)) => error.to_compile_error(),
        (None, Ok(())) => {
            unreachable!("parsing yields no definition only after recording an error")
        }
    }
}
