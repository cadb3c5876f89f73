//! Code generation for `#[handler]`: the user's function unchanged, plus a marker type of
//! the same name implementing `Stage`, registered in the table of stages that worker
//! processes look their stage up in. Calls into the user's function are wrapped by
//! runtime helpers (one per signature shape) that catch panics per call.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::parse::{HandlerArgs, HandlerDef};
use super::signature::Shape;
use crate::common::CratePath;

pub fn expand(def: &HandlerDef) -> TokenStream {
    let import = def.args.krate.import_private();
    let private = CratePath::private();
    let func = &def.func;
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let vis = &func.vis;
    let sig = &def.signature;
    let (input, output) = (&sig.input, &sig.output);
    let state = sig.state.clone().unwrap_or_else(|| syn::parse_quote!(()));
    // Locals of the generated code are hygienic (`mixed_site`), so a handler or task named
    // `items`, `state` or `f` is never shadowed by them.
    let local = |name: &str| format_ident!("{}", name, span = Span::mixed_site());
    let (items, item, inputs, state_var) = (
        local("items"),
        local("item"),
        local("inputs"),
        local("state"),
    );
    let f = local("f");

    // The stage's associated types are spanned at the user's types, so "`String` is not a
    // #[task] type" points at the parameter or return type that says `String`.
    let input_decl = quote_spanned!(input.span()=> type Input = #input;);
    let output_decl = quote_spanned!(output.span()=> type Output = #output;);

    let state_arg = sig.state.as_ref().map(|_| quote!(#state_var,));
    let call = |data: TokenStream| quote!(#name(#state_arg #data));
    // The error type is named explicitly, so "`E` doesn't implement `Display`" points at
    // `E` in the return type (`_` when the return type is an alias such as `io::Result`).
    // Its `Display` is named as `<E as Display>::fmt` spanned at `E`, so a missing impl is
    // reported there as such, with no note pointing into the runtime.
    let display = match &sig.error {
        Some(e) => {
            let mut private = private.clone();
            private.set_span(e.span());
            quote_spanned!(e.span()=> <#e as #private::core::fmt::Display>::fmt)
        }
        None => quote!(<_ as #private::core::fmt::Display>::fmt),
    };
    // An alias of `Result` under another name: converted through `ResultAlias<T, _>`,
    // spanned at the return type, so a generic type that is not one is reported there.
    let call = |data: TokenStream| match &sig.alias {
        Some((ty, ok)) => {
            let call = call(data);
            let mut private = private.clone();
            private.set_span(ty.span());
            quote_spanned!(ty.span()=> <#ty as #private::ResultAlias<#ok, _>>::into_result(#call))
        }
        None => call(data),
    };
    let finish = |call: TokenStream| match &sig.fallible {
        Some(_) => quote!(#private::error_message(#call, #display)),
        None if matches!(sig.shape, Shape::InPlaceBatch | Shape::InPlaceEach) => {
            quote!({ #call; #private::core::result::Result::Ok(()) })
        }
        None => quote!(#private::core::result::Result::Ok(#call)),
    };
    let body = match sig.shape {
        Shape::InPlaceBatch => {
            let run = finish(call(quote!(#items)));
            quote!(#private::in_place_batch(#inputs, |#items: &mut [#input]| #run))
        }
        Shape::InPlaceEach => {
            let run = finish(call(quote!(#item)));
            quote!(#private::in_place_each(#inputs, |#item: &mut #input| #run))
        }
        Shape::TransformEach => {
            let run = finish(call(quote!(#item)));
            quote!(#private::transform_each(#inputs, |#item: #input| #run))
        }
        Shape::TransformBatch => {
            let run = finish(call(quote!(#items)));
            quote!(#private::transform_batch(#inputs, |#items: #private::Vec<#input>| #run))
        }
        Shape::InPlaceBatchEach => {
            let run = call(quote!(#items));
            quote!(#private::in_place_batch_each(#inputs, |#items: &mut [#input]| #private::task_errors(#run, #display)))
        }
        Shape::TransformBatchEach => {
            let run = call(quote!(#items));
            quote!(#private::transform_batch_each(#inputs, |#items: #private::Vec<#input>| #private::task_errors(#run, #display)))
        }
    };
    let each_on_its_own = matches!(sig.shape, Shape::InPlaceEach | Shape::TransformEach);
    let state_param = if sig.state.is_some() {
        quote!(#state_var)
    } else {
        quote!(_)
    };

    let init = match &def.args.init {
        Some(path) => {
            // Every token at `path`, so a wrong return type is reported there alone.
            let mut private = private.clone();
            private.set_span(path.span());
            quote_spanned!(path.span()=> #private::InitOutput::<#state>::into_state(#private::InitFn::call(#path)))
        }
        // `init = …` was written but rejected (already reported): never runs.
        None if sig.state.is_some() => quote!(#private::core::unreachable!()),
        None => quote!(#private::core::result::Result::Ok(())),
    };

    let usize_lit = |n: u64, span| syn::LitInt::new(&n.to_string(), span);
    let mut config = Vec::new();
    if let Some((n, span)) = def.args.batch_size {
        let n = usize_lit(n, span);
        config.push(quote!(batch_size: #n,));
    }
    if let Some((n, span)) = def.args.nprocs {
        let n = usize_lit(n, span);
        config.push(quote!(nprocs: #n,));
    }
    if let Some((n, span)) = def.args.queue_size {
        let n = usize_lit(n, span);
        config.push(quote!(queue_size: #private::core::option::Option::Some(#n),));
    }
    if let Some(ms) = def.args.batch_timeout_ms {
        config.push(quote!(batch_timeout: #private::core::time::Duration::from_millis(#ms),));
    }
    if let Some(ms) = def.args.start_timeout_ms {
        config.push(quote!(start_timeout: #private::core::time::Duration::from_millis(#ms),));
    }
    if let Some(ms) = def.args.exec_timeout_ms {
        config.push(quote!(exec_timeout: #private::core::option::Option::Some(#private::core::time::Duration::from_millis(#ms)),));
    }
    if let Some(ms) = def.args.take_timeout_ms {
        config.push(quote!(take_timeout: #private::core::time::Duration::from_millis(#ms),));
    }
    if let Some(retry) = def.args.crash_retry {
        config.push(quote!(crash_retry: #retry,));
    }
    if def.args.thread_isolation {
        config.push(quote!(isolation: #private::Isolation::Thread,));
    }

    let doc = format!(
        "Stage marker of the [`{name_str}()`] handler, named in `flow!(… -> {name_str} -> …)`."
    );
    quote! {
        #func

        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #name {}

        #[doc(hidden)]
        #[allow(clippy::needless_lifetimes, clippy::unused_unit)]
        const _: () = {
            #import

            #[automatically_derived]
            impl #private::core::fmt::Debug for #name {
                fn fmt(&self, #f: &mut #private::core::fmt::Formatter<'_>) -> #private::core::fmt::Result {
                    #f.write_str(#name_str)
                }
            }

            #[automatically_derived]
            impl #private::Stage for #name {
                #input_decl
                #output_decl
                type State = #state;
                const NAME: &'static str = #name_str;
                const EACH_ON_ITS_OWN: bool = #each_on_its_own;
                const CONFIG: #private::StageConfig = #private::StageConfig {
                    #(#config)*
                    ..#private::StageConfig::DEFAULT
                };

                fn init() -> #private::core::result::Result<#state, #private::String> {
                    #init
                }

                fn handle(
                    #state_param: &mut #state,
                    #inputs: #private::Vec<#input>,
                ) -> #private::Vec<#private::core::result::Result<#output, #private::String>> {
                    #body
                }
            }

            // The table worker processes find their stage in (see `register_stage!`).
            #[#private::linkme::distributed_slice(#private::STAGES)]
            #[linkme(crate = #private::linkme)]
            static __AQUEDUCT_STAGE: #private::StageEntry = #private::StageEntry::of::<#name>();
        };
    }
}

/// What a handler whose signature was rejected expands to: the function as written and a
/// stage type whose task types are the error itself, so that `flow!` and other code that
/// names the handler resolve without reporting the same mistake again.
pub fn stub(func: &syn::ItemFn, args: &HandlerArgs, error: &syn::Error) -> TokenStream {
    let import = args.krate.import_private();
    let private = CratePath::private();
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let vis = &func.vis;
    // `compile_error!` in type position: the one error, and a type rustc treats as
    // already reported wherever it is used.
    let first = error
        .clone()
        .into_iter()
        .next()
        .map(|e| crate::common::error_type(&e));
    let rest = error
        .clone()
        .into_iter()
        .skip(1)
        .map(|e| e.to_compile_error());
    quote! {
        #func

        #[allow(non_camel_case_types)]
        #vis struct #name {}

        #[doc(hidden)]
        const _: () = {
            #import

            impl #private::Stage for #name {
                type Input = #first;
                type Output = <Self as #private::Stage>::Input;
                type State = ();
                const NAME: &'static str = #name_str;
                const CONFIG: #private::StageConfig = #private::StageConfig::DEFAULT;

                fn init() -> #private::core::result::Result<(), #private::String> {
                    #private::core::result::Result::Ok(())
                }

                fn handle(
                    _: &mut (),
                    _: #private::Vec<<Self as #private::Stage>::Input>,
                ) -> #private::Vec<#private::core::result::Result<<Self as #private::Stage>::Output, #private::String>> {
                    #private::core::unreachable!()
                }
            }
        };
        #(#rest)*
    }
}
