//! Every system call the runtime makes, in one place, as safe functions over owned or
//! borrowed descriptors (through `rustix`). The rest of the crate names no raw system
//! interface, so what the runtime asks of the kernel, and what it assumes about it, can
//! be read here.
//!
//! * [`fd`]: descriptor flags, the counters eventfds and timerfds are read as, and
//!   probes of descriptor numbers that are not known to be ours (a worker's marker names
//!   one).
//! * [`memfd`]: anonymous memory files and their seals.
//! * [`eventfd`]: the counters the parent and a worker wake each other with.
//! * [`timerfd`]: timers the runtime's reactor can watch, for deadlines kept to the
//!   microsecond.
//! * [`reactor`]: handing a descriptor to the tokio runtime's reactor to watch.
//! * [`process`]: parent death, the parent's pid, signals, exiting a forked child.
//!
//! Functions documented as *async-signal-safe* are raw system calls that allocate
//! nothing and take no lock, so they may run in a forked child before `exec`.
//!
//! `libc` is used only for the calls that rustix reserves to its runtime API for libc
//! implementers ([`process::secure_mode`], signal dispositions in
//! [`process::ignore_sigpipe`] and [`process::ignore_stop_requests`],
//! [`process::exit_immediately`]).

/// The page size the runtime lays shared memory out by (the smallest page of the
/// platforms it runs on): windows of a mapping that different writers use start on
/// multiples of it.
pub(crate) const PAGE: usize = 4096;

pub(crate) mod clock;
pub(crate) mod eventfd;
pub(crate) mod fd;
pub(crate) mod memfd;
pub(crate) mod process;
pub(crate) mod reactor;
pub(crate) mod timerfd;
