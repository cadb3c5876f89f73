//! The accepted handler signatures, recognised syntactically. Anything else is one error
//! at the function's parameters that lists every accepted form.

use crate::common::Errors;

/// How the handler takes its tasks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `fn(&mut [T])`: one call per batch, tasks changed in place.
    InPlaceBatch,
    /// `fn(&mut T)`: one call per task, changed in place.
    InPlaceEach,
    /// `fn(T) -> U`: one call per task.
    TransformEach,
    /// `fn(Vec<T>) -> Vec<U>`: one call per batch, one output per input.
    TransformBatch,
    /// `fn(&mut [T]) -> Vec<Result<(), E>>`: in place, one call per batch, a result per
    /// task (a failure fails only its task).
    InPlaceBatchEach,
    /// `fn(Vec<T>) -> Vec<Result<U, E>>`: one call per batch, a result per task.
    TransformBatchEach,
}

/// A handler's signature, reduced to what code generation needs.
pub struct Signature {
    pub shape: Shape,
    /// `T`, the task type the stage takes.
    pub input: syn::Type,
    /// `U`, the task type the stage emits (`T` for in-place shapes).
    pub output: syn::Type,
    /// The per-worker state type `S` of a `&mut S` first parameter (with `init`).
    pub state: Option<syn::Type>,
    /// The return type, if the function returns `Result<_, E>`.
    pub fallible: Option<syn::Type>,
    /// `(R, T)` when the return type `R` is a generic type not named `Result`, read as an
    /// alias of `Result<T, _>` (`type Fallible<T> = Result<T, MyError>`): the generated
    /// code converts it through `ResultAlias<T, _>`, so the type system, not the name,
    /// decides whether it is one.
    pub alias: Option<(syn::Type, syn::Type)>,
    /// `E` of a `Result<_, E>` return type, when written out (not for `io::Result<T>`);
    /// for the per-task shapes, `E` of each task's `Result<_, E>`.
    pub error: Option<syn::Type>,
}

const FORMS: &str = "expected one of these handler signatures:
    fn(&mut [T])            in place, one call per batch
    fn(&mut T)              in place, one call per task
    fn(T) -> U              transform, one call per task
    fn(Vec<T>) -> Vec<U>    transform, one call per batch
    fn(&mut [T]) -> Vec<Result<(), E>>    in place, one call per batch, a result per task
    fn(Vec<T>) -> Vec<Result<U, E>>       transform, one call per batch, a result per task
where `T` and `U` are `#[task]` types; each form may return `Result<_, E>` with `E: Display`,
and takes `&mut State` first when `init = …` is set";

impl Signature {
    pub fn parse(func: &syn::ItemFn, has_init: bool, errors: &mut Errors) -> Option<Self> {
        let sig = &func.sig;
        let mut ok = true;
        let mut reject = |tokens: &dyn quote::ToTokens, message: &str| {
            errors.spanned(tokens, message);
            ok = false;
        };
        if let Some(token) = &sig.asyncness {
            reject(token, "handlers run on worker threads or processes and must not be `async`; do blocking work directly, or create a runtime in `init`");
        }
        // Lifetime parameters (`fn scale<'a>(frames: &'a mut [Frame])`) are fine: the stage
        // calls the function, which infers them.
        for param in &sig.generics.params {
            if !matches!(param, syn::GenericParam::Lifetime(_)) {
                reject(
                    param,
                    "handlers cannot have type or const parameters: each stage is one concrete function; name the task types instead",
                );
            }
        }
        if let Some(token) = &sig.unsafety {
            reject(
                token,
                "handlers cannot be `unsafe fn`: the runtime calls them without any precondition",
            );
        }
        if let Some(variadic) = &sig.variadic {
            reject(variadic, FORMS);
        }
        let mut params = Vec::new();
        for input in &sig.inputs {
            match input {
                syn::FnArg::Receiver(receiver) => reject(
                    receiver,
                    "a handler is a free function, not a method: move it out of the `impl` block and take the task instead of `self`",
                ),
                syn::FnArg::Typed(typed) => params.push(&*typed.ty),
            }
        }
        if !ok {
            return None;
        }

        let expected = if has_init { 2 } else { 1 };
        if params.len() != expected {
            let message = match (has_init, params.len()) {
                (false, 2) => format!("this handler takes two parameters, but only handlers with `init = …` take state first\n{FORMS}"),
                (true, 1) => "with `init = …` the handler takes the worker's state first: `fn(state: &mut State, tasks: …)`".to_string(),
                _ => FORMS.to_string(),
            };
            if sig.inputs.is_empty() {
                errors.spanned(&sig.ident, message);
            } else {
                errors.spanned(&sig.inputs, message);
            }
            return None;
        }

        let state = if has_init {
            match params[0] {
                syn::Type::Reference(r) if r.mutability.is_some() => Some((*r.elem).clone()),
                other => {
                    errors.spanned(other, "with `init = …` the first parameter is the worker's state and must be `&mut State`");
                    return None;
                }
            }
        } else {
            None
        };

        let data = params[expected - 1];
        let (shape, input) = match data {
            syn::Type::Reference(r) if r.mutability.is_some() => match &*r.elem {
                syn::Type::Slice(slice) => (Shape::InPlaceBatch, (*slice.elem).clone()),
                elem => (Shape::InPlaceEach, elem.clone()),
            },
            syn::Type::Reference(r) => {
                errors.spanned(r, format!("handlers take tasks by value or by `&mut`, not by shared reference\n{FORMS}"));
                return None;
            }
            other => match generic_arg("Vec", other) {
                Some(elem) => (Shape::TransformBatch, elem),
                None => (Shape::TransformEach, other.clone()),
            },
        };

        let returned = match &sig.output {
            syn::ReturnType::Default => None,
            syn::ReturnType::Type(_, ty) if is_unit(ty) => None,
            syn::ReturnType::Type(_, ty) => Some((**ty).clone()),
        };
        // A task type is never generic, so a returned `Name<T, …>` other than `Vec<…>`
        // (and `Option<…>`, rejected by validation) can only be an alias of `Result`.
        let alias = returned
            .as_ref()
            .and_then(|ty| result_alias(ty).map(|ok| (ty.clone(), ok)));
        let (ok_type, fallible) = match &returned {
            Some(ty) => match generic_arg("Result", ty).or_else(|| alias.clone().map(|(_, ok)| ok))
            {
                Some(ok) => (if is_unit(&ok) { None } else { Some(ok) }, Some(ty.clone())),
                None => (Some(ty.clone()), None),
            },
            None => (None, None),
        };
        let error = fallible
            .as_ref()
            .and_then(|ty| generic_args("Result", ty).into_iter().nth(1));

        // A batch handler returning `Vec<Result<_, E>>` reports a result per task.
        let per_task = match (&fallible, &ok_type) {
            (None, Some(ty)) => generic_arg("Vec", ty).and_then(|elem| {
                let ok = generic_arg("Result", &elem)?;
                Some((ok, generic_args("Result", &elem).into_iter().nth(1)))
            }),
            _ => None,
        };
        let (shape, ok_type, error) = match (shape, per_task) {
            (Shape::InPlaceBatch, Some((ok, item_error))) if is_unit(&ok) => {
                (Shape::InPlaceBatchEach, None, item_error)
            }
            (Shape::InPlaceBatch, Some((ok, _))) => {
                errors.spanned(&ok, "an in-place batch handler that reports a result per task returns `Vec<Result<(), E>>`: the tasks themselves are its output");
                return None;
            }
            (Shape::TransformBatch, Some((ok, item_error))) => (
                Shape::TransformBatchEach,
                Some(syn::parse_quote!(Vec<#ok>)),
                item_error,
            ),
            (shape, _) => (shape, ok_type, error),
        };

        let output = match (shape, ok_type) {
            (Shape::InPlaceBatchEach, _) => input.clone(),
            (Shape::InPlaceBatch | Shape::InPlaceEach, None) => input.clone(),
            (Shape::InPlaceBatch | Shape::InPlaceEach, Some(ty)) => {
                errors.spanned(&ty, "in-place handlers (`&mut [T]` or `&mut T`) return nothing or `Result<(), E>`; to emit another type, take `T` by value and return `U`");
                return None;
            }
            (Shape::TransformEach, Some(ty)) => ty,
            (Shape::TransformBatch | Shape::TransformBatchEach, Some(ty)) => {
                match generic_arg("Vec", &ty) {
                    Some(elem) => elem,
                    None => {
                        errors.spanned(&ty, "a handler that takes `Vec<T>` returns `Vec<U>` (or `Result<Vec<U>, E>`): one output per input, in order");
                        return None;
                    }
                }
            }
            (Shape::TransformEach | Shape::TransformBatch | Shape::TransformBatchEach, None) => {
                errors.spanned(
                    data,
                    format!("a handler that takes tasks by value must return its output\n{FORMS}"),
                );
                return None;
            }
        };
        Some(Self {
            shape,
            input,
            output,
            state,
            fallible,
            alias,
            error,
        })
    }
}

fn is_unit(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Tuple(t) if t.elems.is_empty())
}

/// `T` if `ty` is `Name<T, …>` with a name other than `Result`, `Vec` or `Option`: what
/// an alias of `Result<T, E>` under another name looks like.
fn result_alias(ty: &syn::Type) -> Option<syn::Type> {
    let syn::Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if ["Result", "Vec", "Option"]
        .iter()
        .any(|name| last.ident == name)
    {
        return None;
    }
    generic_args(&last.ident.to_string(), ty).into_iter().next()
}

/// `T` if `ty` is `Name<T, …>` (by the last path segment, so `std::vec::Vec<T>` and
/// aliases such as `anyhow::Result<T>` count).
fn generic_arg(name: &str, ty: &syn::Type) -> Option<syn::Type> {
    generic_args(name, ty).into_iter().next()
}

/// The type arguments of `ty` if it is `Name<…>` (by the last path segment).
fn generic_args(name: &str, ty: &syn::Type) -> Vec<syn::Type> {
    let syn::Type::Path(path) = ty else {
        return Vec::new();
    };
    let Some(last) = path.path.segments.last().filter(|last| last.ident == name) else {
        return Vec::new();
    };
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return Vec::new();
    };
    args.args
        .iter()
        .filter_map(|arg| match arg {
            syn::GenericArgument::Type(ty) => Some(ty.clone()),
            _ => None,
        })
        .collect()
}
