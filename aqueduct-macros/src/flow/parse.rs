//! `a -> b -> c`, optionally as `<a -> b -> c>` (the design card's spelling), into a
//! [`FlowDef`]. Separators other than `->` and dangling arrows are reported where they are.

use proc_macro2::TokenStream;
use syn::parse::{ParseStream, Parser};

use crate::common::Errors;

/// The stages of a flow, in order.
pub struct FlowDef {
    pub stages: Vec<syn::Path>,
}

impl FlowDef {
    pub fn parse(input: TokenStream, errors: &mut Errors) -> Option<Self> {
        if input.is_empty() {
            errors.at(
                proc_macro2::Span::call_site(),
                "a flow needs at least one stage: `flow!(decode -> detect)`",
            );
            return None;
        }
        match parse_stages.parse2(input) {
            Ok(stages) => Some(Self { stages }),
            Err(error) => {
                errors.push(error);
                None
            }
        }
    }
}

fn parse_stages(input: ParseStream<'_>) -> syn::Result<Vec<syn::Path>> {
    let angled = input.peek(syn::Token![<]);
    if angled {
        input.parse::<syn::Token![<]>()?;
    }
    let mut stages = vec![stage(input)?];
    loop {
        if angled && input.peek(syn::Token![>]) {
            input.parse::<syn::Token![>]>()?;
            break;
        }
        if input.is_empty() {
            if angled {
                return Err(input.error("expected `>` to close `<…>`"));
            }
            break;
        }
        if input.peek(syn::Token![->]) {
            let arrow: syn::Token![->] = input.parse()?;
            if input.is_empty() || (angled && input.peek(syn::Token![>])) {
                return Err(syn::Error::new_spanned(
                    arrow,
                    "expected a stage after `->`",
                ));
            }
            stages.push(stage(input)?);
        } else {
            let token: proc_macro2::TokenTree = input.parse()?;
            return Err(syn::Error::new_spanned(
                token,
                "stages are joined with `->`: `flow!(decode -> detect -> annotate)`",
            ));
        }
    }
    if !input.is_empty() {
        return Err(input.error("unexpected tokens after the flow"));
    }
    Ok(stages)
}

fn stage(input: ParseStream<'_>) -> syn::Result<syn::Path> {
    input.call(syn::Path::parse_mod_style).map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected a stage: the name of a `#[handler]` function",
        )
    })
}
