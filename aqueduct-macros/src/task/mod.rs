//! `#[task]`: a struct becomes a plain-data, `repr(C)` layout that can live in shared
//! memory and cross processes as bytes.

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;

use crate::common::Errors;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let Some(mut def) = parse::TaskDef::parse(args, item.clone(), &mut errors) else {
        // Not a struct: keep the item as written, so code naming it resolves.
        let errors = errors.into_compile_errors();
        return quote::quote!(#item #errors);
    };
    let mut field_errors = Vec::new();
    def.validate(&mut errors, &mut field_errors);
    // A generic struct or a non-`C` repr cannot get the impls; the struct is kept as
    // written so the rest of the crate still resolves it.
    if !def.item.generics.params.is_empty() {
        let item = &def.item;
        let errors = errors.into_compile_errors();
        return quote::quote!(#item #errors);
    }
    // Otherwise the struct gets every impl even when something was rejected, so code that
    // uses it as a task (handlers, `flow!`) adds no error of its own: a rejected field's
    // type becomes the error itself, which rustc then treats as reported wherever the
    // field is used.
    for (field, error) in def.fields_mut().zip(field_errors) {
        if let Some(error) = error {
            field.ty = crate::common::error_type(&error);
        }
    }
    def.strip_bad_reprs();
    let errors = errors.into_compile_errors();
    let expanded = expand::expand(&def);
    quote::quote!(#expanded #errors)
}
