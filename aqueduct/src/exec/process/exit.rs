//! A worker process's exit codes, so that a parent (or a person reading `ps`) can tell
//! why a worker ended without a signal.

/// The parent asked it to close, or disappeared.
pub(crate) const CLOSED: i32 = 0;
/// The stage's `init` failed (the reason is in the control region).
pub(crate) const INIT_FAILED: i32 = 2;
/// The worker refused its spawn spec: another build, stage or geometry.
pub(crate) const REFUSED: i32 = 3;
/// The spawn spec could not be read or mapped.
pub(crate) const BAD_SPEC: i32 = 4;
/// The parent died before the worker started.
pub(crate) const ORPHANED: i32 = 5;
/// The control region broke the protocol (a request out of order, out of range, or
/// not matching its checksum).
pub(crate) const PROTOCOL: i32 = 6;
/// The worker thread panicked outside any handler.
pub(crate) const PANICKED: i32 = 101;
/// The worker thread could not be started.
pub(crate) const NO_THREAD: i32 = 102;
