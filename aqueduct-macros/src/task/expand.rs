//! Code generation for `#[task]`. Everything the runtime relies on is asserted here, each
//! check spanned at the field it is about, so a layout mistake points at the user's code.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::parse::TaskDef;
use crate::common::CratePath;

pub fn expand(def: &TaskDef) -> TokenStream {
    let import = def.krate.import_private();
    let private = CratePath::private();
    let item = &def.item;
    let name = &item.ident;
    let name_str = name.to_string();

    let repr = (!def.has_repr_c).then(|| quote!(#[repr(C)]));
    // What `#[derive(Clone, Copy)]` would generate for a non-generic struct, unless the
    // user derives them already; written here so the block below holds every runtime path.
    let clone = (!def.derives_clone).then(|| {
        quote! {
            #[automatically_derived]
            impl #private::core::clone::Clone for #name {
                #[inline]
                fn clone(&self) -> Self {
                    *self
                }
            }
        }
    });
    let copy = (!def.derives_copy).then(|| {
        quote! {
            #[automatically_derived]
            impl #private::core::marker::Copy for #name {}
        }
    });

    let fields: Vec<&syn::Field> = def.fields().collect();
    let idents: Vec<&syn::Ident> = fields.iter().filter_map(|f| f.ident.as_ref()).collect();
    let types: Vec<&syn::Type> = fields.iter().map(|f| &f.ty).collect();

    // Every use of a field type's `TaskField` impl goes through one constant per field,
    // built from `<#ty as TaskField>::…` spanned at the type, so a field type that is not
    // plain data is one error at the field.
    let consts: Vec<syn::Ident> = (0..types.len())
        .map(|i| format_ident!("__AQUEDUCT_FIELD_{}", i))
        .collect();
    let field_info = |ty: &syn::Type| {
        let i = types.iter().position(|t| std::ptr::eq(*t, ty)).unwrap_or(0);
        let name = &consts[i];
        quote!(#name)
    };
    // Hygienic locals: a unit struct or constant named `f` or `visit` is not matched.
    let f = format_ident!("f", span = Span::mixed_site());
    let visit = format_ident!("visit", span = Span::mixed_site());
    // Tasks come back inside `Result`s; `Debug` lets callers `unwrap` and log them.
    let debug = (!def.derives_debug).then(|| {
        let names = idents.iter().map(|i| i.to_string());
        let infos = types.iter().map(|ty| field_info(ty));
        quote! {
            #[automatically_derived]
            impl #private::core::fmt::Debug for #name {
                fn fmt(&self, #f: &mut #private::core::fmt::Formatter<'_>) -> #private::core::fmt::Result {
                    #f.debug_struct(#name_str)
                        #(.field(#names, &#private::FieldDebug(&self.#idents, (#infos).debug)))*
                        .finish()
                }
            }
        }
    });
    let field_checks = types.iter().zip(&consts).map(|(ty, name)| {
        quote_spanned! {ty.span()=>
            const #name: #private::FieldInfo<#ty> = #private::FieldInfo {
                has_handles: <#ty as #private::TaskField>::HAS_HANDLES,
                fingerprint: <#ty as #private::TaskField>::FINGERPRINT,
                visit_handles: <#ty as #private::TaskField>::visit_handles,
                debug: <#ty as #private::TaskField>::__debug_field,
            };
        }
    });
    let has_handles = types.iter().map(|ty| {
        let info = field_info(ty);
        quote!(|| #info.has_handles)
    });
    let visits = idents.iter().zip(&types).map(|(field, ty)| {
        let info = field_info(ty);
        quote!((#info.visit_handles)(&self.#field, #visit);)
    });
    let padding_checks = def
        .check_padding
        .then(|| padding_checks(def, &idents, &types));

    let field_layouts = idents.iter().zip(&types).map(|(field, ty)| {
        let field_str = field.to_string();
        let info = field_info(ty);
        let ty_str = quote!(#ty).to_string();
        quote! {
            #private::FieldLayout {
                name: #field_str,
                ty: #ty_str,
                offset: #private::core::mem::offset_of!(#name, #field),
                size: #private::core::mem::size_of::<#ty>(),
                fingerprint: #info.fingerprint,
            }
        }
    });

    quote! {
        #repr
        #item

        #[doc(hidden)]
        #[allow(clippy::undocumented_unsafe_blocks, clippy::arithmetic_side_effects)]
        const _: () = {
            #import
            #clone
            #copy
            #debug
            #(#field_checks)*
            #padding_checks

            // SAFETY: `#[repr(C)]` is set above, every field is asserted to be a
            // `TaskField` (which requires `Pod`), and the assertions above reject any
            // padding byte, so every bit pattern of the right size is a valid value.
            #[automatically_derived]
            unsafe impl #private::bytemuck::Zeroable for #name {}
            // SAFETY: as above.
            #[automatically_derived]
            unsafe impl #private::bytemuck::Pod for #name {}

            // SAFETY: `#name` is `Pod` (above) and reports every handle of its fields.
            #[automatically_derived]
            unsafe impl #private::TaskField for #name {
                const HAS_HANDLES: bool = false #(#has_handles)*;
                const FINGERPRINT: u64 = <#name as #private::Task>::FINGERPRINT;
                #[inline]
                fn visit_handles(&self, #visit: &mut dyn #private::core::ops::FnMut(#private::ShmHandle)) {
                    let _ = &#visit;
                    #(#visits)*
                }
            }

            #[automatically_derived]
            impl #private::Task for #name {
                const LAYOUT: #private::TaskLayout = #private::TaskLayout {
                    name: #name_str,
                    size: #private::core::mem::size_of::<#name>(),
                    align: #private::core::mem::align_of::<#name>(),
                    fields: &[#(#field_layouts),*],
                };
                const FINGERPRINT: u64 = #private::fingerprint(&<#name as #private::Task>::LAYOUT);
            }
        };
    }
}

/// Layout assertions: no padding before any field, none after the last. Each names its
/// field through a marker type `<Struct>::<field>` spanned at the field, so the error
/// reads "N padding bytes before field `offset`" and points at `offset`.
fn padding_checks(def: &TaskDef, idents: &[&syn::Ident], types: &[&syn::Type]) -> TokenStream {
    let private = CratePath::private();
    let name = &def.item.ident;
    // Inside the block below, the struct's name is the markers' module; the struct itself
    // is reached through this alias, declared outside it.
    let task = quote::format_ident!("__AqueductTask");
    // `marker(i)`: the path of field `i`'s marker, every token spanned at the field.
    let marker = |i: usize| {
        let field: &syn::Ident = idents[i];
        let mut module = name.clone();
        module.set_span(field.span());
        quote_spanned!(field.span()=> #module::#field)
    };
    // `end(i)`: the offset just past field `i`; padding before field `i` is
    // `offset(i) - end(i - 1)`, and trailing padding is `size - end(last)`.
    let end = |i: usize| {
        let (field, ty) = (idents[i], types[i]);
        quote!(#private::core::mem::offset_of!(#task, #field) + #private::core::mem::size_of::<#ty>())
    };
    let before = idents.iter().enumerate().map(|(i, field)| {
        let previous_end = if i == 0 { quote!(0usize) } else { end(i - 1) };
        let marker = marker(i);
        quote! {
            let _ = <#marker as #private::NoPaddingBefore<
                { #private::core::mem::offset_of!(#task, #field) - (#previous_end) },
            >>::PADDING;
        }
    });
    let trailing = (!idents.is_empty()).then(|| {
        let last = idents.len() - 1;
        let (marker, last_end) = (marker(last), end(last));
        quote! {
            let _ = <#marker as #private::NoTrailingPadding<
                { #private::core::mem::size_of::<#task>() - (#last_end) },
            >>::PADDING;
        }
    });
    let markers = idents
        .iter()
        .map(|field| quote_spanned!(field.span()=> pub(super) struct #field;));
    quote! {
        type #task = #name;
        const _: () = {
            #[allow(non_snake_case, non_camel_case_types, dead_code)]
            mod #name {
                #(#markers)*
            }
            const _: fn() = || {
                #(#before)*
                #trailing
            };
        };
    }
}
