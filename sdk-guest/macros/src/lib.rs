//! The attribute macros of weir-sdk. Each turns one plain function into a weir module:
//! it generates the export side of the WIT world for its kind (reusing weir-sdk's import
//! bindings), an `init` that deserialises the typed config once, and the batch loop.
//! `#[weir::aggregate]` goes on an accumulator type instead and generates the window calls
//! around weir-sdk's `Windows`.
//! A function whose signature does not fit is a compile error pointing at the signature.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type, parse_macro_input};

/// The contract the generated bindings are built from.
const WIT: &str = include_str!("../../wit/weir.wit");

/// `#[weir::filter] fn name(msg: &Message[, config: &Config]) -> weir::Result<bool>`
#[proc_macro_attribute]
pub fn filter(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Filter, attr, item)
}

/// `#[weir::map] fn name(msg: &Message[, config: &Config]) -> weir::Result<weir::Output>`
#[proc_macro_attribute]
pub fn map(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Map, attr, item)
}

/// `#[weir::flat_map] fn name(msg: &Message[, config: &Config]) -> weir::Result<Vec<weir::Output>>`
#[proc_macro_attribute]
pub fn flat_map(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::FlatMap, attr, item)
}

/// `#[weir::aggregate]` on a type that implements `weir::Aggregate`: the host keeps one
/// value of it per open window (see the pipeline's `window` table).
#[proc_macro_attribute]
pub fn aggregate(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = Tokens::from(attr);
        return syn::Error::new(attr.span(), "#[weir::aggregate] takes no arguments").to_compile_error().into();
    }
    let item = parse_macro_input!(item as syn::Item);
    let name = match &item {
        syn::Item::Struct(item) if item.generics.params.is_empty() => item.ident.clone(),
        syn::Item::Enum(item) if item.generics.params.is_empty() => item.ident.clone(),
        syn::Item::Struct(syn::ItemStruct { generics, .. }) | syn::Item::Enum(syn::ItemEnum { generics, .. }) => {
            let err = syn::Error::new(generics.span(), "#[weir::aggregate] goes on a type without generic parameters").to_compile_error();
            return quote!(#item #err).into();
        }
        other => {
            let err = syn::Error::new(
                other.span(),
                "#[weir::aggregate] goes on the accumulator type (a struct or enum that implements weir::Aggregate), e.g. `#[weir::aggregate] #[derive(Default, Serialize, Deserialize)] struct Average { sum: f64, count: u64 }`",
            )
            .to_compile_error();
            return quote!(#other #err).into();
        }
    };
    let module_name = syn::Ident::new(&format!("__weir_{}_aggregate", name.to_string().to_lowercase()), Span::call_site());
    let check = quote_spanned!(name.span()=> const _: fn() = || {
        fn implements_weir_aggregate<T: ::weir::Aggregate>() {}
        implements_weir_aggregate::<#name>();
    };);
    let bindings = export_bindings("aggregate-module", &["accumulate"]);
    let (batch_params, take_batch) = raw_batch();
    quote! {
        #item

        #check

        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unused_imports, clippy::all)]
        mod #module_name {
            use super::*;

            #bindings

            use exports::weir::module::aggregate as contract;
            type Windows = ::weir::__private::Windows<super::#name>;

            ::std::thread_local! {
                static WINDOWS: ::std::cell::RefCell<Windows> = ::std::cell::RefCell::new(::std::default::Default::default());
            }

            fn with<R>(f: impl FnOnce(&mut Windows) -> R) -> R {
                WINDOWS.with(|windows| f(&mut windows.borrow_mut()))
            }

            struct Component;

            impl exports::weir::module::module::Guest for Component {
                fn init() -> ::std::result::Result<(), ::std::string::String> {
                    with(|windows| windows.init())
                }
            }

            impl contract::Guest for Component {
                fn open(openings: ::std::vec::Vec<contract::Opening>) -> ::std::result::Result<(), ::std::string::String> {
                    with(|windows| openings.into_iter().try_for_each(|opening| windows.open(opening.window.id, opening.snapshot)))
                }
                fn merge(target: u64, source: u64) -> ::std::result::Result<(), ::std::string::String> {
                    with(|windows| windows.merge(target, source))
                }
                fn snapshot(ids: ::std::vec::Vec<u64>) -> ::std::result::Result<::std::vec::Vec<::std::vec::Vec<u8>>, ::std::string::String> {
                    with(|windows| windows.snapshot(&ids))
                }
                fn close(
                    closing: ::std::vec::Vec<contract::Window>,
                ) -> ::std::result::Result<::std::vec::Vec<::std::vec::Vec<::weir::__private::types::OutputMessage>>, ::std::string::String> {
                    let closing = closing.into_iter().map(|w| (w.id, ::weir::Window { key: w.key, start_ms: w.start_ms, end_ms: w.end_ms })).collect();
                    with(|windows| windows.close(closing))
                }
            }

            export!(Component);

            // `accumulate` is written at the canonical ABI level over weir-sdk's `raw`
            // module, as a filter's call is (see `filter_exports`).
            #[unsafe(export_name = "weir:module/aggregate@0.1.0#accumulate")]
            unsafe extern "C" fn export_accumulate(#batch_params, ids: *mut u8, ids_len: usize) -> *mut u8 {
                ::weir::__private::wit_bindgen::rt::run_ctors_once();
                // SAFETY: these are the flattened `batch: batch, windows: list<u64>`
                // parameters of `weir:module/aggregate.accumulate`, allocated by the host
                // through `cabi_realloc`.
                let (batch, ids) = unsafe { (#take_batch, ::weir::raw::u64s_from_call(ids, ids_len)) };
                let outcomes = with(|windows| windows.accumulate(&batch, &ids));
                ::weir::raw::return_outcomes(outcomes.into_iter())
            }

            #[unsafe(export_name = "cabi_post_weir:module/aggregate@0.1.0#accumulate")]
            unsafe extern "C" fn post_accumulate(area: *mut u8) {
                // SAFETY: `area` is what `export_accumulate` returned; the host calls this once after reading it.
                unsafe { ::weir::raw::free_list(area) }
            }
        }
    }
    .into()
}

/// The export side of `world`, reusing weir-sdk's bindings of the shared imports.
/// Functions in `skip` get no binding: their exports are written by hand (see `raw`).
fn export_bindings(world: &str, skip: &[&str]) -> Tokens {
    let wit = WIT;
    quote! {
        ::weir::__private::wit_bindgen::generate!({
            inline: #wit,
            world: #world,
            skip: [#(#skip),*],
            runtime_path: "::weir::__private::wit_bindgen::rt",
            with: {
                "weir:module/types@0.1.0": ::weir::__private::types,
                "weir:module/log@0.1.0": ::weir::__private::log,
                "weir:module/metrics@0.1.0": ::weir::__private::metrics,
                "weir:module/clock@0.1.0": ::weir::__private::clock,
                "weir:module/config@0.1.0": ::weir::__private::config,
            },
        });
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Filter,
    Map,
    FlatMap,
}

impl Kind {
    fn attribute(self) -> &'static str {
        match self {
            Kind::Filter => "#[weir::filter]",
            Kind::Map => "#[weir::map]",
            Kind::FlatMap => "#[weir::flat_map]",
        }
    }
    fn returns(self) -> &'static str {
        match self {
            Kind::Filter => "weir::Result<bool>",
            Kind::Map => "weir::Result<weir::Output>",
            Kind::FlatMap => "weir::Result<Vec<weir::Output>>",
        }
    }
}

fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = Tokens::from(attr);
        return syn::Error::new(attr.span(), format!("{} takes no arguments", kind.attribute())).to_compile_error().into();
    }
    let function = parse_macro_input!(item as ItemFn);
    match generate(kind, &function) {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            let err = err.to_compile_error();
            quote!(#function #err).into()
        }
    }
}

/// The config type of the second argument, if there is one; checks the signature's shape.
fn check_signature(kind: Kind, function: &ItemFn) -> syn::Result<Option<Type>> {
    let sig = &function.sig;
    let usage = format!(
        "{} expects `fn {}(msg: &weir::Message) -> {}` or `fn {}(msg: &weir::Message, config: &YourConfig) -> {}`",
        kind.attribute(),
        sig.ident,
        kind.returns(),
        sig.ident,
        kind.returns()
    );
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new(asyncness.span(), format!("{usage}; it cannot be async")));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(sig.generics.span(), format!("{usage}; it cannot be generic")));
    }
    if matches!(sig.output, ReturnType::Default) {
        return Err(syn::Error::new(sig.span(), format!("{usage}; it returns nothing")));
    }
    let mut inputs = sig.inputs.iter();
    let by_reference = |arg: &FnArg, what: &str| -> syn::Result<Type> {
        match arg {
            FnArg::Typed(pat) => match &*pat.ty {
                Type::Reference(reference) if reference.mutability.is_none() => Ok((*reference.elem).clone()),
                other => Err(syn::Error::new(other.span(), format!("{usage}; the {what} is taken by shared reference (&)"))),
            },
            FnArg::Receiver(receiver) => Err(syn::Error::new(receiver.span(), format!("{usage}; it is a free function, not a method"))),
        }
    };
    let Some(first) = inputs.next() else {
        return Err(syn::Error::new(sig.paren_token.span.join(), format!("{usage}; it takes the message")));
    };
    by_reference(first, "message")?;
    let config = inputs.next().map(|arg| by_reference(arg, "config")).transpose()?;
    if let Some(extra) = inputs.next() {
        return Err(syn::Error::new(extra.span(), format!("{usage}; there is no third argument")));
    }
    Ok(config)
}

fn generate(kind: Kind, function: &ItemFn) -> syn::Result<Tokens> {
    let config_type = check_signature(kind, function)?;
    let name = &function.sig.ident;
    let ReturnType::Type(_, return_type) = &function.sig.output else { unreachable!("checked above") };
    let return_span = return_type.span();

    let (world, export_trait, call_item) = match kind {
        // A filter's exports are written by `filter_exports`, not through wit-bindgen's trait.
        Kind::Filter => ("filter-module", quote!(), quote!()),
        Kind::Map => (
            "map-module",
            quote!(map),
            quote!(fn map(_input: ::std::string::String, batch: ::weir::__private::types::Batch) -> ::std::vec::Vec<::std::result::Result<exports::weir::module::map::OutputMessage, ::std::string::String>>),
        ),
        Kind::FlatMap => (
            "flat-map-module",
            quote!(flat_map),
            quote!(fn flat_map(_input: ::std::string::String, batch: ::weir::__private::types::Batch) -> ::std::vec::Vec<::std::result::Result<::std::vec::Vec<exports::weir::module::flat_map::OutputMessage>, ::std::string::String>>),
        ),
    };
    let expected: Tokens = match kind {
        Kind::Filter => quote!(::weir::Result<bool>),
        Kind::Map => quote!(::weir::Result<::weir::Output>),
        Kind::FlatMap => quote!(::weir::Result<::std::vec::Vec<::weir::Output>>),
    };
    let convert = match kind {
        Kind::Filter => quote!(result),
        Kind::Map => quote!(result.map(::weir::Output::into_wit)),
        Kind::FlatMap => quote!(result.map(|outputs| outputs.into_iter().map(::weir::Output::into_wit).collect())),
    };
    // What a call answers when the config could not be read: every message rejected.
    let fail_all = match kind {
        Kind::Filter => quote!(return ::weir::raw::return_verdicts((0..batch.len()).map(|_| Err(reason.clone())))),
        Kind::Map | Kind::FlatMap => quote!(return batch.messages.iter().map(|_| Err(reason.clone())).collect()),
    };
    let (config_static, config_init, config_get, call) = match &config_type {
        Some(config) => (
            quote!(static CONFIG: ::std::sync::OnceLock<#config> = ::std::sync::OnceLock::new();),
            quote! {
                let config: #config = ::weir::__private::load_config()?;
                let _ = CONFIG.set(config);
                Ok(())
            },
            quote! {
                let config = match CONFIG.get() {
                    Some(config) => config,
                    None => match ::weir::__private::load_config::<#config>() {
                        Ok(config) => CONFIG.get_or_init(|| config),
                        Err(reason) => #fail_all,
                    },
                };
            },
            quote_spanned!(return_span=> let result: #expected = super::#name(message, config);),
        ),
        None => (quote!(), quote!(Ok(())), quote!(), quote_spanned!(return_span=> let result: #expected = super::#name(message);)),
    };
    let module_name = syn::Ident::new(&format!("__weir_{}_module", name), Span::call_site());
    let bindings = export_bindings(world, &[]);
    let exports = match kind {
        Kind::Filter => filter_exports(&config_static, &config_init, &config_get, &call),
        Kind::Map | Kind::FlatMap => quote! {
            struct Component;
            #config_static

            impl exports::weir::module::module::Guest for Component {
                fn init() -> ::std::result::Result<(), ::std::string::String> {
                    #config_init
                }
            }

            impl exports::weir::module::#export_trait::Guest for Component {
                #call_item {
                    #config_get
                    ::weir::__private::messages(&batch)
                        .map(|message| {
                            let message = &message;
                            #call
                            #convert.map_err(::weir::Error::into_reason)
                        })
                        .collect()
                }
            }

            export!(Component);
        },
    };
    Ok(quote! {
        #function

        // The exports exist only in the wasm build; on the host the function stays a plain
        // function, so authors unit-test it with `cargo test`.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unused_imports, clippy::all)]
        mod #module_name {
            use super::*;

            #bindings

            #exports
        }
    })
}

/// A `batch` parameter flattened by the canonical ABI (its three lists, each a pointer and a
/// length), and the expression that takes ownership of it as a `weir::raw::RawBatch` (in an
/// `unsafe` block: see `RawBatch::from_call`).
fn raw_batch() -> (Tokens, Tokens) {
    (
        quote!(data: *mut u8, data_len: usize, messages: *mut u8, count: usize, properties: *mut u8, property_count: usize),
        quote!(::weir::raw::RawBatch::from_call(data, data_len, messages, count, properties, property_count)),
    )
}

/// A filter's exports, written at the canonical ABI level over weir-sdk's `raw` module: the
/// batch is read where the host put it and the verdicts are written straight into the list
/// the host reads (see sdk-guest/rust/src/raw.rs). `generate!` still embeds the world, so
/// the component's type is the contract's; `init` is exported the same way because
/// wit-bindgen's `export!` exports a world's functions all together.
fn filter_exports(config_static: &Tokens, config_init: &Tokens, config_get: &Tokens, call: &Tokens) -> Tokens {
    let (batch_params, take_batch) = raw_batch();
    quote! {
        #config_static

        fn init() -> ::std::result::Result<(), ::std::string::String> {
            #config_init
        }

        #[unsafe(export_name = "weir:module/module@0.1.0#init")]
        unsafe extern "C" fn export_init() -> *mut u8 {
            ::weir::__private::wit_bindgen::rt::run_ctors_once();
            ::weir::raw::return_unit_result(init())
        }

        #[unsafe(export_name = "cabi_post_weir:module/module@0.1.0#init")]
        unsafe extern "C" fn post_init(area: *mut u8) {
            // SAFETY: `area` is what `export_init` returned; the host calls this once after reading it.
            unsafe { ::weir::raw::free_unit_result(area) }
        }

        #[unsafe(export_name = "weir:module/filter@0.1.0#filter")]
        unsafe extern "C" fn export_filter(input: *mut u8, input_len: usize, #batch_params) -> *mut u8 {
            ::weir::__private::wit_bindgen::rt::run_ctors_once();
            // SAFETY: these are the flattened `input: string, batch: batch` parameters of
            // `weir:module/filter.filter`, allocated by the host through `cabi_realloc`.
            let batch = unsafe {
                ::weir::raw::drop_string(input, input_len);
                #take_batch
            };
            #config_get
            ::weir::raw::return_verdicts(::weir::__private::raw_messages(&batch).map(|message| {
                let message = &message;
                #call
                result.map_err(::weir::Error::into_reason)
            }))
        }

        #[unsafe(export_name = "cabi_post_weir:module/filter@0.1.0#filter")]
        unsafe extern "C" fn post_filter(area: *mut u8) {
            // SAFETY: `area` is what `export_filter` returned; the host calls this once after reading it.
            unsafe { ::weir::raw::free_list(area) }
        }
    }
}
