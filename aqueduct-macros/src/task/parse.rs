//! Parsing `#[task(…)] struct …` into a [`TaskDef`].

use proc_macro2::TokenStream;

use crate::common::args::{self, parse_args};
use crate::common::{CratePath, Errors};

/// A `#[task]` struct as the rest of the macro sees it.
pub struct TaskDef {
    pub item: syn::ItemStruct,
    pub krate: CratePath,
    /// `true` if the user already wrote `#[repr(C)]`.
    pub has_repr_c: bool,
    /// `true` if the user already derives `Clone` / `Copy` / `Debug`.
    pub derives_clone: bool,
    pub derives_copy: bool,
    pub derives_debug: bool,
    /// `false` once a rejected `repr` option was removed: the layout is then not the one
    /// the user wrote, so its padding is not reported on top of the `repr` error.
    pub check_padding: bool,
}

impl TaskDef {
    pub fn parse(args: TokenStream, item: TokenStream, errors: &mut Errors) -> Option<Self> {
        let item: syn::ItemStruct = match syn::parse2(item) {
            Ok(item) => item,
            Err(error) => {
                errors.push(syn::Error::new(
                    error.span(),
                    "`#[task]` goes on a struct with named fields",
                ));
                return None;
            }
        };
        let mut krate = CratePath::default();
        let list = parse_args(args, errors);
        args::for_each_known("task", &list, &["crate"], &[], errors, |arg, errors| {
            if let Some(path) = args::string(arg, errors)
                .and_then(|lit| CratePath::parse(&lit).map_err(|e| errors.push(e)).ok())
            {
                krate = path;
            }
        });
        let mut has_repr_c = false;
        let (mut derives_clone, mut derives_copy, mut derives_debug) = (false, false, false);
        for attr in &item.attrs {
            if attr.path().is_ident("repr") {
                let _ = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("C") {
                        has_repr_c = true;
                    }
                    Ok(())
                });
            }
            if attr.path().is_ident("derive") {
                let _ = attr.parse_nested_meta(|meta| {
                    let last = meta.path.segments.last().map(|s| s.ident.to_string());
                    derives_clone |= last.as_deref() == Some("Clone");
                    derives_copy |= last.as_deref() == Some("Copy");
                    derives_debug |= last.as_deref() == Some("Debug");
                    Ok(())
                });
            }
        }
        Some(Self {
            item,
            krate,
            has_repr_c,
            derives_clone,
            derives_copy,
            derives_debug,
            check_padding: true,
        })
    }

    /// The named fields, mutably (see [`TaskDef::fields`]).
    pub fn fields_mut(&mut self) -> impl Iterator<Item = &mut syn::Field> {
        match &mut self.item.fields {
            syn::Fields::Named(named) => named.named.iter_mut().collect::<Vec<_>>().into_iter(),
            _ => Vec::new().into_iter(),
        }
    }

    /// Drops `repr` options other than `C` (already reported), so that the rest of the
    /// expansion still compiles.
    pub fn strip_bad_reprs(&mut self) {
        self.item.attrs.retain(|attr| {
            if !attr.path().is_ident("repr") {
                return true;
            }
            let mut only_c = true;
            let _ = attr.parse_nested_meta(|meta| {
                only_c &= meta.path.is_ident("C");
                if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                    let _: proc_macro2::TokenStream = meta.input.parse()?;
                }
                Ok(())
            });
            self.check_padding &= only_c;
            only_c
        });
        if !self.item.attrs.iter().any(|a| a.path().is_ident("repr")) {
            self.has_repr_c = false;
        }
    }

    /// The named fields (empty for tuple and unit structs, which validation rejects).
    pub fn fields(&self) -> impl Iterator<Item = &syn::Field> {
        match &self.item.fields {
            syn::Fields::Named(named) => named.named.iter().collect::<Vec<_>>().into_iter(),
            _ => Vec::new().into_iter(),
        }
    }
}
