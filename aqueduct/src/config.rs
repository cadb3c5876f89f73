//! The runtime's settings from the environment: every `AQUEDUCT_*` variable it reads,
//! read once, here, with one policy.
//!
//! | variable | default | accepts | sets |
//! |---|---|---|---|
//! | `AQUEDUCT_ARENA_BYTES` | `1073741824` (1 GiB) | a byte count (decimal integer), rounded down to a power of two | the size (address space) of the process's shared-memory arena, unless [`crate::arena::configure`] set it |
//! | `AQUEDUCT_SCRATCH_BYTES` | `268435456` (256 MiB) | a byte count, clamped to at least one page and at most the arena's size | the scratch space (address space) of each request a worker process runs, where a handler's new blocks go; a worker holds two requests at a time, so its scratch area is twice this |
//! | `AQUEDUCT_WORKER_LOG` | `info` | `off`, `error`, `warn`, `info`, `debug`, `trace` (any case), or `0`-`5` | the most verbose `tracing` level a worker process forwards to the parent |
//! | `AQUEDUCT_SPIN_US` | unset: automatic | microseconds (decimal integer; `0`: never) | how long a worker polls for its next task after finishing one. Unset: up to 5 us, and only while tasks arrive back to back (see [`crate::spin::IdleSpin`]). Never on a single core. A set value polls after every task and holds a core meanwhile, which delays the tasks it waits for where workers and runtime threads outnumber the cores (see the README's settings). A set value also turns off the polls for a task the stage before says is coming (see [`crate::spin::NextWork::declines_expected`]) |
//!
//! The policy: an unset variable takes its default; a variable that is set must hold an
//! accepted value (surrounding whitespace aside; empty is not a value), or the runtime
//! refuses to start with an [`Error::Config`] that names the variable, the value and
//! what it accepts. The error surfaces where the settings are first needed: at the
//! arena's creation (the first shared-memory allocation) and at the start of a flow.
//!
//! Worker processes do not read these variables: the parent passes each worker what it
//! needs in its spawn spec, so a parent and its workers always agree. (`AQUEDUCT_WORKER`,
//! the marker a worker finds its spec by, is not a setting; see `exec::process::spawn`.)

use std::ffi::OsString;
use std::sync::OnceLock;
use std::time::Duration;

use tracing::level_filters::LevelFilter;

use crate::spin::IdleSpin;
use crate::Error;

/// Size of the shared-memory arena, in bytes.
pub(crate) const ARENA_BYTES: &str = "AQUEDUCT_ARENA_BYTES";
/// Scratch space of each request a worker process runs, in bytes.
pub(crate) const SCRATCH_BYTES: &str = "AQUEDUCT_SCRATCH_BYTES";
/// Most verbose level a worker process logs at.
pub(crate) const WORKER_LOG: &str = "AQUEDUCT_WORKER_LOG";
/// Microseconds a worker spins for its next request.
pub(crate) const SPIN_US: &str = "AQUEDUCT_SPIN_US";

/// Default arena size: 1 GiB of address space. Pages are only backed once written.
pub(crate) const DEFAULT_ARENA_BYTES: usize = 1 << 30;
/// Default scratch space of a worker's request (address space; only written pages cost
/// memory).
pub(crate) const DEFAULT_SCRATCH_BYTES: usize = 256 << 20;
/// Default worker log level.
pub(crate) const DEFAULT_WORKER_LOG: LevelFilter = LevelFilter::INFO;
/// Default worker spin: automatic, a short poll only while tasks arrive back to back. A
/// fixed spin pays only when cores are idle: measured on a loaded 2-core VM, a 20 us spin
/// after every answer made the 64-byte round trip slower (p50 47-55 us vs 33), while the
/// automatic 5 us one took it from 6.5 us to 2.1 us on a quiet one.
pub(crate) const DEFAULT_SPIN: IdleSpin = IdleSpin::Auto;

const BYTE_COUNT: &str = "a byte count (a decimal integer)";
const LEVEL: &str = "one of off, error, warn, info, debug, trace (any case), or 0-5";
const MICROSECONDS: &str = "microseconds (a decimal integer)";

/// The settings, as read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `AQUEDUCT_ARENA_BYTES`.
    pub arena_bytes: usize,
    /// `AQUEDUCT_SCRATCH_BYTES`.
    pub scratch_bytes: usize,
    /// `AQUEDUCT_WORKER_LOG`.
    pub worker_log: LevelFilter,
    /// `AQUEDUCT_SPIN_US`.
    pub spin: IdleSpin,
}

impl Settings {
    /// The process's settings, read from the environment at the first call; the same
    /// answer (settings or error) every time after.
    pub(crate) fn get() -> Result<&'static Settings, Error> {
        static SETTINGS: OnceLock<Result<Settings, Error>> = OnceLock::new();
        SETTINGS
            .get_or_init(|| Self::read(|name| std::env::var_os(name)))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The settings that `var` (an environment lookup) gives.
    fn read(var: impl Fn(&str) -> Option<OsString>) -> Result<Self, Error> {
        Ok(Self {
            arena_bytes: setting(
                &var,
                ARENA_BYTES,
                BYTE_COUNT,
                DEFAULT_ARENA_BYTES,
                parse_int,
            )?,
            scratch_bytes: setting(
                &var,
                SCRATCH_BYTES,
                BYTE_COUNT,
                DEFAULT_SCRATCH_BYTES,
                parse_int,
            )?,
            worker_log: setting(&var, WORKER_LOG, LEVEL, DEFAULT_WORKER_LOG, |v| {
                v.parse().ok()
            })?,
            spin: setting(&var, SPIN_US, MICROSECONDS, DEFAULT_SPIN, |v| {
                parse_int(v).map(|us| IdleSpin::Fixed(Duration::from_micros(us)))
            })?,
        })
    }
}

/// Variable `name`'s value through `parse`; `default` if it is unset.
fn setting<T>(
    var: impl Fn(&str) -> Option<OsString>,
    name: &'static str,
    expected: &'static str,
    default: T,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, Error> {
    let Some(raw) = var(name) else {
        return Ok(default);
    };
    raw.to_str()
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .and_then(parse)
        .ok_or_else(|| {
            let value = raw.to_string_lossy();
            Error::Config(format!("{name}={value:?}; {name} accepts {expected}"))
        })
}

/// A decimal integer (no sign, no separators).
fn parse_int<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Settings, Error> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), OsString::from(value)))
            .collect();
        Settings::read(|name| vars.get(name).cloned())
    }

    #[test]
    fn unset_variables_take_their_defaults() {
        assert_eq!(
            read(&[]).unwrap(),
            Settings {
                arena_bytes: DEFAULT_ARENA_BYTES,
                scratch_bytes: DEFAULT_SCRATCH_BYTES,
                worker_log: LevelFilter::INFO,
                spin: IdleSpin::Auto,
            }
        );
    }

    #[test]
    fn valid_values_are_read() {
        let settings = read(&[
            (ARENA_BYTES, "4096"),
            (SCRATCH_BYTES, " 65536\n"),
            (WORKER_LOG, "DEBUG"),
            (SPIN_US, "20"),
        ])
        .unwrap();
        assert_eq!(
            settings,
            Settings {
                arena_bytes: 4096,
                scratch_bytes: 65536,
                worker_log: LevelFilter::DEBUG,
                spin: IdleSpin::Fixed(Duration::from_micros(20)),
            }
        );
        assert_eq!(
            read(&[(WORKER_LOG, "0")]).unwrap().worker_log,
            LevelFilter::OFF
        );
    }

    #[test]
    fn an_invalid_value_is_an_error_naming_the_variable_value_and_what_it_accepts() {
        for (name, value) in [
            (ARENA_BYTES, "1G"),
            (ARENA_BYTES, "-1"),
            (SCRATCH_BYTES, "garbage"),
            (SCRATCH_BYTES, "+5"),
            (SCRATCH_BYTES, ""),
            (WORKER_LOG, "loud"),
            (WORKER_LOG, ""),
            (SPIN_US, "1.5"),
            (SPIN_US, "99999999999999999999999"),
        ] {
            let error = read(&[(name, value)]).unwrap_err();
            let Error::Config(message) = &error else {
                panic!("{name}={value:?}: {error:?}");
            };
            let expected = match name {
                WORKER_LOG => LEVEL,
                SPIN_US => MICROSECONDS,
                _ => BYTE_COUNT,
            };
            assert!(
                message.starts_with(&format!("{name}={value:?};")) && message.ends_with(expected),
                "{message}"
            );
        }
    }

    #[test]
    fn a_value_that_is_not_unicode_is_invalid() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'1', 0xff]);
        let error = Settings::read(|name| (name == SPIN_US).then(|| bad.clone())).unwrap_err();
        assert!(
            matches!(&error, Error::Config(message) if message.starts_with(SPIN_US)),
            "{error:?}"
        );
    }
}
