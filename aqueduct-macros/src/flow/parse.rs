//! `a -> b -> c`, optionally as `<a -> b -> c>` (the design card's spelling), into a
//! [`FlowDef`]. Separators other than `->` and dangling arrows are reported where they are.

use proc_macro2::TokenStream;
use syn::parse::{ParseStream, Parser};

use crate::common::args::{self, Arg};
use crate::common::{CratePath, Errors};

/// The stages of a flow, in order.
pub struct FlowDef {
    pub stages: Vec<syn::Path>,
    pub krate: CratePath,
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
        let mut krate = CratePath::default();
        let parsed = (|stream: ParseStream<'_>| {
            // `flow!(crate = "path"; a -> b)`, as `crate = "…"` in the other two macros.
            if stream.peek(syn::Token![crate]) && stream.peek2(syn::Token![=]) {
                let arg: Arg = stream.parse()?;
                stream.parse::<syn::Token![;]>().map_err(|e| {
                    syn::Error::new(e.span(), "expected `;` between `crate = \"…\"` and the stages: `flow!(crate = \"::aqueduct\"; decode -> detect)`")
                })?;
                args::for_each_known("flow", std::slice::from_ref(&arg), &["crate"], &[], errors, |arg, errors| {
                    if let Some(path) = args::string(arg, errors)
                        .and_then(|lit| CratePath::parse(&lit).map_err(|e| errors.push(e)).ok())
                    {
                        krate = path;
                    }
                });
            }
            parse_stages(stream)
        })
        .parse2(input);
        match parsed {
            Ok(stages) => Some(Self { stages, krate }),
            Err(error) => {
                errors.push(error);
                None
            }
        }
    }
}

fn parse_stages(input: ParseStream<'_>) -> syn::Result<Vec<syn::Path>> {
    let open: Option<syn::Token![<]> = input.parse()?;
    let mut stages = vec![stage(input)?];
    loop {
        if open.is_some() && input.peek(syn::Token![>]) {
            input.parse::<syn::Token![>]>()?;
            break;
        }
        if input.is_empty() {
            if let Some(open) = open {
                return Err(syn::Error::new(
                    open.span,
                    "this `<` is not closed: expected `>` after the last stage",
                ));
            }
            break;
        }
        if input.peek(syn::Token![->]) {
            let arrow: syn::Token![->] = input.parse()?;
            if input.is_empty() || (open.is_some() && input.peek(syn::Token![>])) {
                return Err(syn::Error::new_spanned(
                    arrow,
                    "expected a stage after `->`",
                ));
            }
            stages.push(stage(input)?);
        } else {
            let is_punct = input.cursor().punct().is_some();
            let separator = operator(input)?;
            let instead = if is_punct {
                format!(", not `{separator}`")
            } else {
                String::new()
            };
            return Err(syn::Error::new_spanned(
                &separator,
                format!(
                    "stages are joined with `->`{instead}: `flow!(decode -> detect -> annotate)`"
                ),
            ));
        }
    }
    if !input.is_empty() {
        return Err(input.error("unexpected tokens after the flow"));
    }
    Ok(stages)
}

fn stage(input: ParseStream<'_>) -> syn::Result<syn::Path> {
    if input.peek(syn::Token![->]) {
        let arrow: syn::Token![->] = input.parse()?;
        return Err(syn::Error::new_spanned(
            arrow,
            "expected a stage before `->`",
        ));
    }
    let path = input.call(syn::Path::parse_mod_style).map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected a stage: the name of a `#[handler]` function",
        )
    })?;
    // `decode()`: the stage is named, not called.
    if input.peek(syn::token::Paren) {
        let content;
        let parens = syn::parenthesized!(content in input);
        let _: TokenStream = content.parse()?;
        return Err(syn::Error::new(
            parens.span.join(),
            format!(
                "`flow!` names its stages, it does not call them: remove the parentheses after `{}`",
                quote::quote!(#path).to_string().replace(' ', "")
            ),
        ));
    }
    Ok(path)
}

/// The next token, or the whole operator if it is a punctuation sequence such as `=>`.
fn operator(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    let mut tokens = TokenStream::new();
    loop {
        let token: proc_macro2::TokenTree = input.parse()?;
        let joint = matches!(&token, proc_macro2::TokenTree::Punct(p) if p.spacing() == proc_macro2::Spacing::Joint);
        tokens.extend([token]);
        if !joint || input.is_empty() {
            return Ok(tokens);
        }
    }
}
