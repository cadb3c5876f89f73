//! `key = value, …` attribute arguments, parsed into a list the macros validate key by key
//! (unknown keys with a hint, duplicates, literal types, ranges), all errors collected.

use super::{did_you_mean, Errors};
use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;

/// One `key = value` pair as written.
pub struct Arg {
    /// The key; `batch_size` for a hyphenated `batch-size`.
    pub key: syn::Ident,
    /// The tokens of a hyphenated key (`batch-size`), which is an error.
    pub hyphenated: Option<TokenStream>,
    pub value: syn::Expr,
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut key = input.call(syn::Ident::parse_any)?;
        // `batch-size = 4`: read the whole hyphenated name, so the error can name the fix.
        let mut hyphenated = None;
        if input.peek(syn::Token![-]) && input.peek2(syn::Ident::peek_any) {
            let mut tokens = quote::quote!(#key);
            let mut name = key.to_string();
            while input.peek(syn::Token![-]) && input.peek2(syn::Ident::peek_any) {
                let dash: syn::Token![-] = input.parse()?;
                let part = input.call(syn::Ident::parse_any)?;
                name = format!("{name}_{part}");
                tokens.extend(quote::quote!(#dash #part));
            }
            key = syn::Ident::new(&name, key.span());
            hyphenated = Some(tokens);
        }
        if !input.peek(syn::Token![=]) {
            return Err(syn::Error::new(
                key.span(),
                format!("expected `{key} = <value>`"),
            ));
        }
        input.parse::<syn::Token![=]>()?;
        Ok(Self {
            key,
            hyphenated,
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
        if let Some(tokens) = &arg.hyphenated {
            let written = tokens.to_string().replace(' ', "");
            let fix = if known.contains(&key.as_str()) {
                format!("write `{key}`")
            } else {
                match did_you_mean(&key, known, synonyms) {
                    Some(suggestion) => format!("did you mean `{suggestion}`?"),
                    None => format!("expected one of: {}", list(known)),
                }
            };
            errors.spanned(
                tokens,
                format!("`{macro_name}` argument names use underscores, not hyphens: `{written}` is not an argument; {fix}"),
            );
            // The value is still read, so that the key's own checks run and the stage
            // keeps the setting the user meant.
            if known.contains(&key.as_str()) && !seen.iter().any(|k| **k == key) {
                seen.push(&arg.key);
                accept(arg, errors);
            }
            continue;
        }
        if !known.contains(&key.as_str()) {
            let expected = list(known);
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
        } else if seen.iter().any(|k| **k == key) {
            errors.at(arg.key.span(), format!("`{key}` is set more than once"));
        } else {
            seen.push(&arg.key);
            accept(arg, errors);
        }
    }
}

/// `known` as "`a`, `b`, `c`".
fn list(known: &[&str]) -> String {
    known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
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

/// What an integer argument counts, for the messages about its literal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A number of things (`batch_size`, `nprocs`).
    Count,
    /// Milliseconds (`…_ms`).
    Millis,
}

const INT_SUFFIXES: &[&str] = &[
    "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
];

/// An integer literal of `unit`: a suffix other than an integer type (`60s`, `10ms`) is
/// rejected at the literal with the value to write, and so is `0` unless `zero` says
/// what it means (`None`: zero is rejected with `at_least_one`).
pub fn integer(arg: &Arg, unit: Unit, zero_ok: bool, errors: &mut Errors) -> Option<(u64, Span)> {
    let key = &arg.key;
    match ungrouped(&arg.value) {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(int),
            ..
        }) => {
            let suffix = int.suffix();
            let value = match int.base10_parse::<u64>() {
                Ok(value) => value,
                Err(error) => {
                    errors.push(error);
                    return None;
                }
            };
            if !suffix.is_empty() && !INT_SUFFIXES.contains(&suffix) {
                let fix = match (unit, suffix) {
                    (Unit::Millis, "ms") => format!("write `{value}`"),
                    (Unit::Millis, "s" | "sec" | "secs") => {
                        format!("write `{}`", value.saturating_mul(1000))
                    }
                    (Unit::Millis, "m" | "min" | "mins") => {
                        format!("write `{}`", value.saturating_mul(60_000))
                    }
                    (Unit::Millis, "h") => format!("write `{}`", value.saturating_mul(3_600_000)),
                    (Unit::Millis, "us" | "µs") => format!(
                        "write the value in milliseconds, e.g. `{}`",
                        value.div_ceil(1000)
                    ),
                    _ => format!("write `{value}`"),
                };
                let what = match unit {
                    Unit::Millis => "a number of milliseconds without a unit",
                    Unit::Count => "a plain number",
                };
                errors.at(
                    int.span(),
                    format!("`{key}` takes {what}, not `{int}`: {fix}"),
                );
                return None;
            }
            if value == 0 && !zero_ok {
                let message = match unit {
                    Unit::Count => format!("`{key}` must be at least 1"),
                    Unit::Millis => format!("`{key} = 0` would fail every start or batch at once; give a limit of at least 1 millisecond, or leave `{key}` out for the default"),
                };
                errors.at(int.span(), message);
                return None;
            }
            Some((value, int.span()))
        }
        syn::Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            ..
        }) => {
            let least = if zero_ok { 0 } else { 1 };
            errors.spanned(
                &arg.value,
                format!("`{key}` cannot be negative; it must be at least {least}"),
            );
            None
        }
        _ => {
            let example = match unit {
                Unit::Count => 4,
                Unit::Millis => 10,
            };
            errors.spanned(
                &arg.value,
                format!("`{key}` takes an integer literal, e.g. `{key} = {example}`"),
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
        // `init = load_model()`: the function is meant; say so, and use it.
        syn::Expr::Call(call) => match ungrouped(&call.func) {
            syn::Expr::Path(p) if p.qself.is_none() => {
                let key = &arg.key;
                let name = quote::quote!(#p).to_string().replace(' ', "");
                errors.spanned(
                    &arg.value,
                    format!("`{key}` takes the function itself, which each worker calls: write `{key} = {name}`, without `()`"),
                );
                Some(p.path.clone())
            }
            _ => {
                let key = &arg.key;
                errors.spanned(
                    &arg.value,
                    format!("`{key}` takes the path of a function, e.g. `{key} = load_model`"),
                );
                None
            }
        },
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
