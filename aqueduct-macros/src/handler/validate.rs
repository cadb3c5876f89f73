//! What `#[handler]` rejects in a signature it could otherwise read: types the runtime
//! can never move between processes, each at the offending type with the fix. Shape
//! mistakes (wrong parameter count, `&T`, …) are reported while reading the signature.

use crate::common::Errors;

/// `true` if the signature can become a stage; otherwise every mistake is recorded.
pub fn check(func: &syn::ItemFn, errors: &mut Errors) -> bool {
    let mut ok = true;
    for input in &func.sig.inputs {
        if let syn::FnArg::Typed(typed) = input {
            ok &= no_impl_trait(&typed.ty, "parameter", errors);
        }
    }
    if let syn::ReturnType::Type(_, ty) = &func.sig.output {
        ok &= no_impl_trait(ty, "return type", errors);
        if ok {
            if let Some(option) = find_named("Option", ty) {
                errors.spanned(option, "a handler returns one task for each task it takes, so `Option` cannot be an output; return `Result<U, E>` and an `Err` for the tasks you drop");
                ok = false;
            }
        }
    }
    ok
}

/// Rejects `impl Trait` anywhere in `ty`: the stage needs the concrete task type.
fn no_impl_trait(ty: &syn::Type, position: &str, errors: &mut Errors) -> bool {
    match ty {
        syn::Type::ImplTrait(_) => {
            errors.spanned(ty, format!("a handler's {position} names the task type itself (`Frame`, `Vec<Frame>`), not `impl Trait`: the stage's input and output types must be known"));
            false
        }
        syn::Type::Reference(r) => no_impl_trait(&r.elem, position, errors),
        syn::Type::Slice(s) => no_impl_trait(&s.elem, position, errors),
        syn::Type::Paren(p) => no_impl_trait(&p.elem, position, errors),
        syn::Type::Group(g) => no_impl_trait(&g.elem, position, errors),
        syn::Type::Path(path) => {
            path.path
                .segments
                .iter()
                .all(|segment| match &segment.arguments {
                    syn::PathArguments::AngleBracketed(args) => {
                        args.args.iter().all(|arg| match arg {
                            syn::GenericArgument::Type(ty) => no_impl_trait(ty, position, errors),
                            _ => true,
                        })
                    }
                    _ => true,
                })
        }
        _ => true,
    }
}

/// `ty`, or the output inside its `Result<…>` / `Vec<…>`, if its last segment is `name`.
fn find_named<'a>(name: &str, ty: &'a syn::Type) -> Option<&'a syn::Type> {
    let syn::Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident == name {
        return Some(ty);
    }
    if last.ident != "Result" && last.ident != "Vec" {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) => match args.args.first()? {
            syn::GenericArgument::Type(inner) => find_named(name, inner),
            _ => None,
        },
        _ => None,
    }
}
