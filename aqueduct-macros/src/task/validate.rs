//! What `#[task]` rejects before generating anything, each at the offending token with
//! the fix. Layout facts the macro cannot see (sizes, padding, whether a named type is
//! plain data) are checked by spanned assertions in the expansion instead.

use super::parse::TaskDef;
use crate::common::Errors;

impl TaskDef {
    /// Records every mistake. A field type that can never be a task field is recorded in
    /// `field_errors` (by field index) instead, so the expansion can put the error in the
    /// field's place and the struct stays usable by the code around it.
    pub fn validate(&self, errors: &mut Errors, field_errors: &mut Vec<Option<syn::Error>>) {
        let item = &self.item;
        if !item.generics.params.is_empty() {
            errors.spanned(&item.generics, "`#[task]` structs cannot be generic: a shared-memory layout must be one concrete type");
        }
        match &item.fields {
            syn::Fields::Named(named) if named.named.is_empty() => errors.spanned(&item.ident, "`#[task]` needs at least one named field: a task without data has no layout to share; add a field such as `id: u64`"),
            syn::Fields::Named(_) => {}
            syn::Fields::Unnamed(fields) => errors.spanned(fields, "`#[task]` needs named fields (`struct Frame { id: u64 }`), so layouts can be compared by field name"),
            syn::Fields::Unit => errors.spanned(&item.ident, "`#[task]` needs at least one named field: a task without data has no layout to share; add a field such as `id: u64`"),
        }
        for attr in &item.attrs {
            if attr.path().is_ident("repr") {
                let _ = attr.parse_nested_meta(|meta| {
                    if !meta.path.is_ident("C") {
                        errors.spanned(&meta.path, "`#[task]` lays the struct out as `#[repr(C)]`; remove this `repr` option");
                    }
                    Ok(())
                });
            }
        }
        for field in self.fields() {
            let mut found = Errors::new();
            check_field_type(&field.ty, &mut found);
            field_errors.push(found.finish().err());
        }
    }
}

/// Rejects types that can never live in shared memory, naming the replacement.
fn check_field_type(ty: &syn::Type, errors: &mut Errors) {
    match ty {
        syn::Type::Reference(_) => errors.spanned(ty, "references cannot cross processes; store the value inline, or its bytes in `aqueduct::ShmBytes`"),
        syn::Type::Ptr(_) => errors.spanned(ty, "raw pointers are meaningless in another process; store an index, or the data in `aqueduct::ShmBytes`"),
        syn::Type::Tuple(t) if !t.elems.is_empty() => errors.spanned(ty, "tuples have no stable layout; use a nested `#[task]` struct or a fixed array"),
        syn::Type::Slice(_) => errors.spanned(ty, "a slice has no fixed size; use a fixed array `[T; N]` or `aqueduct::ShmVec<T>`"),
        syn::Type::Array(array) => check_field_type(&array.elem, errors),
        syn::Type::Paren(inner) => check_field_type(&inner.elem, errors),
        syn::Type::Group(inner) => check_field_type(&inner.elem, errors),
        syn::Type::Path(path) if path.qself.is_none() => {
            let Some(last) = path.path.segments.last() else { return };
            if last.ident == "ShmVec" {
                if let Some(inner) = first_type_arg(last) {
                    if let Some(kind) = handle_type(inner) {
                        errors.spanned(inner, format!("`ShmVec` elements cannot hold shared-memory handles themselves, and `{kind}` is one; flatten the data into one `ShmVec` and keep the row offsets in another (`ShmVec<u32>`)"));
                        return;
                    }
                }
            }
            let fix = match last.ident.to_string().as_str() {
                "String" | "str" => "`String` cannot live in shared memory; use `aqueduct::ShmStr`",
                "Vec" => "`Vec` cannot live in shared memory; use `aqueduct::ShmVec<T>` (or `aqueduct::ShmBytes` for bytes)",
                "Box" | "Rc" | "Arc" => "heap pointers cannot cross processes; store the value inline, or its bytes in `aqueduct::ShmBytes`",
                "Option" => "`Option` has no plain-data layout; use a sentinel value or a `u8` flag field",
                "bool" => "`bool` is not plain data (only 0 and 1 are valid bytes, and another process may write any); use `u8` with 0 or 1",
                "char" => "`char` is not plain data (not every `u32` is a valid `char`); use `u32` and convert with `char::from_u32`",
                _ => return,
            };
            errors.spanned(ty, fix);
        }
        _ => {}
    }
}

/// The first type argument of `Name<T, …>`.
fn first_type_arg(segment: &syn::PathSegment) -> Option<&syn::Type> {
    match &segment.arguments {
        syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
            syn::GenericArgument::Type(ty) => Some(ty),
            _ => None,
        }),
        _ => None,
    }
}

/// The name of a shared-memory handle type (`ShmVec`, `ShmBytes`, `ShmStr`), if `ty` is one.
fn handle_type(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(path) => {
            let last = path.path.segments.last()?;
            ["ShmVec", "ShmBytes", "ShmStr"]
                .contains(&last.ident.to_string().as_str())
                .then(|| last.ident.to_string())
        }
        syn::Type::Array(array) => handle_type(&array.elem),
        syn::Type::Paren(inner) => handle_type(&inner.elem),
        syn::Type::Group(inner) => handle_type(&inner.elem),
        _ => None,
    }
}
