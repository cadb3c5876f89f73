//! The path through which generated code reaches the runtime: `::aqueduct` unless the
//! user renamed the dependency and said so with `crate = "path"`.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

/// The runtime crate's path. Generated code only ever names `#path::__private::…`.
#[derive(Clone)]
pub struct CratePath(syn::Path);

impl CratePath {
    /// Parses the value of a `crate = "…"` argument.
    pub fn parse(lit: &syn::LitStr) -> syn::Result<Self> {
        lit.parse::<syn::Path>().map(Self).map_err(|_| {
            syn::Error::new(
                lit.span(),
                "`crate` must be a path, e.g. `crate = \"::aqueduct\"`",
            )
        })
    }

    /// `use #path::__private as __aqueduct;`, the one import through which a generated
    /// block reaches the runtime (as [`CratePath::private`]). A wrong `crate = "…"` path
    /// is then one unresolved import instead of an error at every use.
    pub fn import_private(&self) -> TokenStream {
        let (path, alias) = (&self.0, Self::private());
        quote!(use #path::__private as #alias;)
    }

    /// The name of `__private` inside a block that starts with
    /// [`CratePath::import_private`].
    pub fn private() -> syn::Ident {
        quote::format_ident!("__aqueduct")
    }
}

impl Default for CratePath {
    fn default() -> Self {
        Self(syn::parse_quote!(::aqueduct))
    }
}

impl ToTokens for CratePath {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.0.to_tokens(tokens);
    }
}
