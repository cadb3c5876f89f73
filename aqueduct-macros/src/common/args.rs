//! `key = value, …` attribute arguments, parsed into a list the macros validate key by key
//! (unknown keys with a hint, duplicates, literal types, ranges), all errors collected.

use super::{did_you_mean, Errors};
use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;

/// One `key = value` pair as written.
pub struct Arg {
    pub key: syn::Ident,
    pub value: syn::Expr,
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = input.call(syn::Ident::parse_any)?;
        if !input.peek(syn::Token![=]) {
            return Err(syn::Error::new(
                key.span(),
                format!("expected `{key} = <value>`"),
            ));
        }
        input.parse::<syn::Token![=]>()?;
        Ok(Self {
            key,
            value: input.parse()?,
        })
    }
}

/// Parses the argument list; a syntax error is recorded and yields no arguments.
pub fn parse_args(tokens: TokenStream, errors: &mut Errors) -> Vec<Arg> {
    match Punctuated::<Arg, syn::Token![,]>::parse_terminated.parse2(tokens) {
        Ok(list) => list.into_iter().collect(),
        Err(error) => {
            errors.push(error);
            Vec::new()
        }
    }
}

/// Checks keys against `known` and calls `accept` with each argument whose key is known
/// and appears for the first time, in source order, so that every error of the list comes
/// out in the order it was written. Unknown keys get a "did you mean" hint, repeated keys
/// an error at the repetition.
pub fn for_each_known(
    macro_name: &str,
    args: &[Arg],
    known: &[&str],
    synonyms: &[(&str, &str)],
    errors: &mut Errors,
    mut accept: impl FnMut(&Arg, &mut Errors),
) {
    let mut seen: Vec<&syn::Ident> = Vec::new();
    for arg in args {
        let key = arg.key.to_string();
        if !known.contains(&key.as_str()) {
            let expected = known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let hint = match did_you_mean(&key, known, synonyms) {
                Some(suggestion) => format!("; did you mean `{suggestion}`?"),
                None => String::new(),
            };
            errors.at(
                arg.key.span(),
                format!(
                    "unknown `{macro_name}` argument `{key}`{hint}\nexpected one of: {expected}"
                ),
            );
        } else if seen.contains(&&arg.key) {
            errors.at(arg.key.span(), format!("`{key}` is set more than once"));
        } else {
            seen.push(&arg.key);
            accept(arg, errors);
        }
    }
}

/// The literal of `value`, if it is one.
fn literal(value: &syn::Expr) -> Option<&syn::Lit> {
    match ungrouped(value) {
        syn::Expr::Lit(expr) => Some(&expr.lit),
        _ => None,
    }
}

/// `value` without the invisible group a `macro_rules!` fragment (`$x:literal`,
/// `$x:path`) is wrapped in, so arguments forwarded by a user's macro are accepted.
fn ungrouped(value: &syn::Expr) -> &syn::Expr {
    match value {
        syn::Expr::Group(group) => ungrouped(&group.expr),
        other => other,
    }
}

/// A positive integer literal (`>= 1`), with the value's span.
pub fn positive_int(arg: &Arg, errors: &mut Errors) -> Option<(u64, Span)> {
    let key = &arg.key;
    match literal(&arg.value) {
        Some(syn::Lit::Int(int)) => match int.base10_parse::<u64>() {
            Ok(0) => {
                errors.at(int.span(), format!("`{key}` must be at least 1"));
                None
            }
            Ok(n) => Some((n, int.span())),
            Err(error) => {
                errors.push(error);
                None
            }
        },
        _ => {
            errors.spanned(
                &arg.value,
                format!("`{key}` takes an integer literal, e.g. `{key} = 4`"),
            );
            None
        }
    }
}

/// A non-negative integer literal (`0` allowed), with the value's span.
pub fn int(arg: &Arg, errors: &mut Errors) -> Option<u64> {
    let key = &arg.key;
    match literal(&arg.value) {
        Some(syn::Lit::Int(int)) => int.base10_parse::<u64>().map_err(|e| errors.push(e)).ok(),
        _ => {
            errors.spanned(
                &arg.value,
                format!("`{key}` takes an integer literal, e.g. `{key} = 10`"),
            );
            None
        }
    }
}

/// A boolean literal.
pub fn boolean(arg: &Arg, errors: &mut Errors) -> Option<bool> {
    match literal(&arg.value) {
        Some(syn::Lit::Bool(b)) => Some(b.value),
        _ => {
            let key = &arg.key;
            errors.spanned(
                &arg.value,
                format!("`{key}` takes `true` or `false`, e.g. `{key} = false`"),
            );
            None
        }
    }
}

/// A string literal.
pub fn string(arg: &Arg, errors: &mut Errors) -> Option<syn::LitStr> {
    match literal(&arg.value) {
        Some(syn::Lit::Str(s)) => Some(s.clone()),
        _ => {
            let key = &arg.key;
            errors.spanned(
                &arg.value,
                format!("`{key}` takes a string literal, e.g. `{key} = \"…\"`"),
            );
            None
        }
    }
}

/// A path (`init = load_model`).
pub fn path(arg: &Arg, errors: &mut Errors) -> Option<syn::Path> {
    match ungrouped(&arg.value) {
        syn::Expr::Path(p) if p.qself.is_none() => Some(p.path.clone()),
        other => {
            let key = &arg.key;
            errors.spanned(
                other,
                format!("`{key}` takes the path of a function, e.g. `{key} = load_model`"),
            );
            None
        }
    }
}
