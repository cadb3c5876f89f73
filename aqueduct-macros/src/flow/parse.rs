//! `a -> b -> c`, optionally as `<a -> b -> c>` (the design card's spelling), into a
//! [`FlowDef`]. Separators other than `->` and dangling arrows are reported where they are.

use proc_macro2::TokenStream;
use syn::parse::{ParseStream, Parser};

use crate::common::args::{self, Arg};
use crate::common::{CratePath, Errors};

/// The stages of a flow, in order.
pub struct FlowDef {
    pub stages: Vec<Stage>,
    pub krate: CratePath,
}

/// One stage: its handler, and the condition after `if`, if it has one.
pub struct Stage {
    pub path: syn::Path,
    pub condition: Option<syn::Expr>,
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

fn parse_stages(input: ParseStream<'_>) -> syn::Result<Vec<Stage>> {
    let open: Option<syn::Token![<]> = input.parse()?;
    let angle = open.is_some();
    let mut stages = vec![stage(input, angle)?];
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
            stages.push(stage(input, angle)?);
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

/// A stage, and its condition if it has one; `angle`: the flow is written `<a -> b>`.
fn stage(input: ParseStream<'_>, angle: bool) -> syn::Result<Stage> {
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
    // `detect if needs_detection`: the stage runs only the tasks the condition accepts.
    let condition = if input.peek(syn::Token![if]) {
        let keyword: syn::Token![if] = input.parse()?;
        if input.is_empty() || input.peek(syn::Token![->]) {
            return Err(syn::Error::new_spanned(
                keyword,
                "expected a condition after `if`: a function `fn(&Task) -> bool`, as in `detect if needs_detection`",
            ));
        }
        Some(condition(input, angle)?)
    } else {
        None
    };
    Ok(Stage { path, condition })
}

/// The condition's expression: the tokens up to the next `->` (or the closing `>` of the
/// `<a -> b>` form), since `->` would otherwise read as a minus and a comparison.
fn condition(input: ParseStream<'_>, angle: bool) -> syn::Result<syn::Expr> {
    use proc_macro2::{Spacing, TokenTree};
    let tokens = input.step(|cursor| {
        let mut rest = *cursor;
        let mut tokens = TokenStream::new();
        while let Some((token, next)) = rest.token_tree() {
            if let TokenTree::Punct(punct) = &token {
                let arrow = punct.as_char() == '-'
                    && punct.spacing() == Spacing::Joint
                    && matches!(next.punct(), Some((gt, _)) if gt.as_char() == '>');
                let closing = angle && punct.as_char() == '>' && next.eof();
                if arrow || closing {
                    break;
                }
            }
            tokens.extend([token]);
            rest = next;
        }
        Ok((tokens, rest))
    })?;
    syn::parse2(tokens)
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
