//! `#[handler(…)]` arguments into a typed [`HandlerArgs`], every mistake collected.

use proc_macro2::{Span, TokenStream};

use super::signature::Signature;
use crate::common::args::{self, parse_args};
use crate::common::{CratePath, Errors};

/// A validated handler: the function, its arguments and its signature's shape.
pub struct HandlerDef {
    pub func: syn::ItemFn,
    pub args: HandlerArgs,
    pub signature: Signature,
}

/// The arguments of `#[handler(…)]`. `None` means "the runtime's default".
#[derive(Default)]
pub struct HandlerArgs {
    pub batch_size: Option<(u64, Span)>,
    pub batch_timeout_ms: Option<u64>,
    pub nprocs: Option<(u64, Span)>,
    pub queue_size: Option<(u64, Span)>,
    pub start_timeout_ms: Option<u64>,
    pub exec_timeout_ms: Option<u64>,
    pub take_timeout_ms: Option<u64>,
    pub crash_retry: Option<bool>,
    /// `true` for `isolation = "thread"`; processes are the default.
    pub thread_isolation: bool,
    pub init: Option<syn::Path>,
    /// `true` if `init = …` was written, even with a rejected value: the signature is
    /// then read as taking state first, so one mistake is not reported twice.
    pub init_written: bool,
    pub krate: CratePath,
}

const KEYS: &[&str] = &[
    "batch_size",
    "batch_timeout_ms",
    "nprocs",
    "queue_size",
    "init",
    "start_timeout_ms",
    "isolation",
    "exec_timeout_ms",
    "take_timeout_ms",
    "crash_retry",
    "crate",
];
/// Names other frameworks (Triton, Ray Serve, TorchServe, aqueduct for Python) use.
const SYNONYMS: &[(&str, &str)] = &[
    ("workers", "nprocs"),
    ("num_workers", "nprocs"),
    ("n_workers", "nprocs"),
    ("worker_count", "nprocs"),
    ("num_procs", "nprocs"),
    ("num_processes", "nprocs"),
    ("nproc", "nprocs"),
    ("replicas", "nprocs"),
    ("num_replicas", "nprocs"),
    ("instances", "nprocs"),
    ("concurrency", "nprocs"),
    ("parallelism", "nprocs"),
    ("max_batch", "batch_size"),
    ("batch_wait_timeout", "batch_timeout_ms"),
    ("batch_wait_timeout_ms", "batch_timeout_ms"),
    ("batch_wait_timeout_s", "batch_timeout_ms"),
    ("max_batch_delay", "batch_timeout_ms"),
    ("max_batch_delay_ms", "batch_timeout_ms"),
    ("max_queue_delay", "batch_timeout_ms"),
    ("batch_delay", "batch_timeout_ms"),
    ("batch_delay_ms", "batch_timeout_ms"),
    ("max_wait_ms", "batch_timeout_ms"),
    ("timeout", "exec_timeout_ms"),
    ("exec_timeout", "exec_timeout_ms"),
    ("response_timeout", "exec_timeout_ms"),
    ("queue", "queue_size"),
    ("max_queue_size", "queue_size"),
    ("capacity", "queue_size"),
    ("startup_timeout", "start_timeout_ms"),
    ("init_timeout", "start_timeout_ms"),
    ("init_fn", "init"),
    ("isolate", "isolation"),
    ("krate", "crate"),
    ("processes", "nprocs"),
    ("procs", "nprocs"),
    ("threads", "nprocs"),
    ("max_batch_size", "batch_size"),
    ("batch", "batch_size"),
    ("batch_timeout", "batch_timeout_ms"),
    ("timeout_ms", "batch_timeout_ms"),
    ("on_start", "init"),
    ("setup", "init"),
    ("queue_len", "queue_size"),
    ("queue_capacity", "queue_size"),
    ("start_timeout", "start_timeout_ms"),
    ("take_timeout", "take_timeout_ms"),
    ("retry_crashed", "crash_retry"),
    ("retry", "crash_retry"),
];

fn count(arg: &args::Arg, errors: &mut Errors) -> Option<(u64, Span)> {
    args::integer(arg, args::Unit::Count, false, errors)
}

fn millis(arg: &args::Arg, zero_ok: bool, errors: &mut Errors) -> Option<u64> {
    args::integer(arg, args::Unit::Millis, zero_ok, errors).map(|(ms, _)| ms)
}

impl HandlerArgs {
    pub fn parse(tokens: TokenStream, errors: &mut Errors) -> Self {
        let list = parse_args(tokens, errors);
        let mut parsed = Self::default();
        args::for_each_known(
            "handler",
            &list,
            KEYS,
            SYNONYMS,
            errors,
            |arg, errors| match arg.key.to_string().as_str() {
                "batch_size" => parsed.batch_size = count(arg, errors),
                "nprocs" => parsed.nprocs = count(arg, errors),
                "queue_size" => parsed.queue_size = count(arg, errors),
                // Zero is meaningful here: run with what is queued, without waiting.
                "batch_timeout_ms" => parsed.batch_timeout_ms = millis(arg, true, errors),
                "start_timeout_ms" => parsed.start_timeout_ms = millis(arg, false, errors),
                "exec_timeout_ms" => parsed.exec_timeout_ms = millis(arg, false, errors),
                "take_timeout_ms" => parsed.take_timeout_ms = millis(arg, false, errors),
                "crash_retry" => parsed.crash_retry = args::boolean(arg, errors),
                "init" => {
                    parsed.init_written = true;
                    parsed.init = args::path(arg, errors);
                }
                "isolation" => {
                    if let Some(mode) = args::string(arg, errors) {
                        match mode.value().as_str() {
                            "process" => parsed.thread_isolation = false,
                            "thread" => parsed.thread_isolation = true,
                            other => errors.at(mode.span(), format!("unknown isolation `{other}`; expected `isolation = \"process\"` (the default) or `isolation = \"thread\"`")),
                        }
                    }
                }
                "crate" => {
                    if let Some(path) = args::string(arg, errors)
                        .and_then(|lit| CratePath::parse(&lit).map_err(|e| errors.push(e)).ok())
                    {
                        parsed.krate = path;
                    }
                }
                _ => unreachable!("`for_each_known` only accepts keys from KEYS"),
            },
        );
        parsed
    }
}
