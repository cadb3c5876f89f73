//! Code generation for `#[task]`. Everything the runtime relies on is asserted here, each
//! check spanned at the field it is about, so a layout mistake points at the user's code.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::parse::TaskDef;

pub fn expand(def: &TaskDef) -> TokenStream {
    let private = def.krate.private();
    let item = &def.item;
    let name = &item.ident;
    let name_str = name.to_string();

    let repr = (!def.has_repr_c).then(|| quote!(#[repr(C)]));
    let mut missing_derives = Vec::new();
    if !def.derives_clone {
        missing_derives.push(quote!(::core::clone::Clone));
    }
    if !def.derives_copy {
        missing_derives.push(quote!(::core::marker::Copy));
    }
    let derives = (!missing_derives.is_empty()).then(|| quote!(#[derive(#(#missing_derives),*)]));

    let fields: Vec<&syn::Field> = def.fields().collect();
    let idents: Vec<&syn::Ident> = fields.iter().filter_map(|f| f.ident.as_ref()).collect();
    let types: Vec<&syn::Type> = fields.iter().map(|f| &f.ty).collect();

    let field_checks = types.iter().map(|ty| {
        quote_spanned! {ty.span()=>
            const _: fn() = || { #private::assert_task_field::<#ty>(); };
        }
    });

    // `end(i)`: the offset just past field `i`; padding before field `i` is
    // `offset(i) - end(i - 1)`, and trailing padding is `size - end(last)`.
    let end = |i: usize| {
        let (field, ty) = (idents[i], types[i]);
        quote!(#private::core::mem::offset_of!(#name, #field) + #private::core::mem::size_of::<#ty>())
    };
    let padding_checks = idents.iter().enumerate().map(|(i, field)| {
        let previous_end = if i == 0 { quote!(0usize) } else { end(i - 1) };
        quote_spanned! {field.span()=>
            const _: fn() = || {
                #private::assert_no_padding_before::<
                    #private::PaddingBytes<{ #private::core::mem::offset_of!(#name, #field) - (#previous_end) }>,
                >();
            };
        }
    });
    let trailing_check = idents.last().map(|last| {
        let last_end = end(idents.len() - 1);
        quote_spanned! {last.span()=>
            const _: fn() = || {
                #private::assert_no_trailing_padding::<
                    #private::PaddingBytes<{ #private::core::mem::size_of::<#name>() - (#last_end) }>,
                >();
            };
        }
    });

    let field_layouts = idents.iter().zip(&types).map(|(field, ty)| {
        let field_str = field.to_string();
        let ty_str = quote!(#ty).to_string();
        quote! {
            #private::FieldLayout {
                name: #field_str,
                ty: #ty_str,
                offset: #private::core::mem::offset_of!(#name, #field),
                size: #private::core::mem::size_of::<#ty>(),
                fingerprint: <#ty as #private::TaskField>::FINGERPRINT,
            }
        }
    });

    quote! {
        #repr
        #derives
        #item

        #[doc(hidden)]
        #[allow(clippy::undocumented_unsafe_blocks, clippy::arithmetic_side_effects)]
        const _: () = {
            #(#field_checks)*
            #(#padding_checks)*
            #trailing_check

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
                const HAS_HANDLES: bool = false #(|| <#types as #private::TaskField>::HAS_HANDLES)*;
                const FINGERPRINT: u64 = <#name as #private::Task>::FINGERPRINT;
                #[inline]
                fn visit_handles(&self, visit: &mut dyn FnMut(#private::ShmHandle)) {
                    let _ = &visit;
                    #(#private::TaskField::visit_handles(&self.#idents, visit);)*
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
