//! Starting worker processes: this executable is re-executed (through `/proc/self/exe`,
//! which survives the file being replaced on disk) with a marker in its environment. A
//! hook in `.init_array`, which the dynamic loader runs before `main` in every program
//! that links this crate, sees the marker and runs the worker loop on a std thread,
//! then exits: the user's `main` (or the test harness, or a doctest) never runs in a
//! worker, and the user adds nothing to `main`.
//!
//! The marker and the spec it leads to are [`super::marker`]'s. A marker that is not
//! this process's is ignored with one warning on stderr and `main` runs as usual; the
//! process then refuses to spawn workers (see [`check_hook`]). In a setuid or otherwise
//! secure process (`AT_SECURE`), the marker is ignored silently.
//!
//! The stage a worker runs is named by its hash, looked up in the table of registered
//! stages ([`super::registry`]). Before that, the worker checks that it runs the same
//! build as the parent (executable identity plus code layout); the entry then checks
//! the stage's task layouts and slot geometry. A mismatch is refused with a message the
//! parent reports.
//!
//! No recursion: the parent refuses to spawn unless the hook demonstrably ran in its own
//! process (so it will run in the worker too), and the hook removes the marker before
//! anything else runs, so a worker's own children are ordinary processes.

use std::fs::File;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;

use super::channel::{EventFd, Region};
use super::exit;
use super::marker::{claim, Claim};
use super::registry;
use super::wire::{Geometry, WorkerState};
use crate::hash::Digest;
use crate::platform::{fd, process};
use crate::spin::IdleSpin;

/// The marker: `<fd>:<nonce>`, naming the descriptor that holds the worker's [`Spec`].
pub(crate) const WORKER_ENV: &str = "AQUEDUCT_WORKER";

static HOOK_RAN: AtomicBool = AtomicBool::new(false);

/// Set when this process was started with a marker that was not its parent's.
static BAD_MARKER: AtomicBool = AtomicBool::new(false);

// The dynamic loader calls every function pointer in `.init_array` before `main`.
// `#[used]` keeps the static through optimisation; the spawn path refers to it, so the
// object file holding it is always linked into a program that can spawn workers.
#[used]
#[link_section = ".init_array"]
static WORKER_HOOK: extern "C" fn() = worker_hook;

extern "C" fn worker_hook() {
    HOOK_RAN.store(true, Ordering::SeqCst);
    let Some(marker) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    // Before `main`, this thread is still the only one: removing the variable cannot
    // race with a reader.
    std::env::remove_var(WORKER_ENV);
    if process::secure_mode() {
        // Whoever set the environment may not be whoever owns this process.
        return;
    }
    let spec = match claim(&marker) {
        Claim::Worker(spec) => spec,
        Claim::NotOurs(why) => {
            BAD_MARKER.store(true, Ordering::SeqCst);
            eprintln!("aqueduct: ignoring {WORKER_ENV} in the environment ({why}); running main");
            return;
        }
        Claim::Broken(why) => {
            eprintln!("aqueduct worker: {why}; exiting");
            std::process::exit(exit::BAD_SPEC);
        }
    };
    // Life before `main` is kept minimal: the worker runs on an ordinary std thread,
    // and this process ends when it returns, never reaching `main`.
    let code = std::thread::Builder::new()
        .name("aqueduct-worker".into())
        .spawn(move || run_worker(spec))
        .map(|thread| thread.join().unwrap_or(exit::PANICKED))
        .unwrap_or(exit::NO_THREAD);
    std::process::exit(code);
}

/// Whether process workers can be started from this program: the hook ran here, so it
/// will run in a re-executed copy, and will recognise its marker there. Also pins the
/// hook into the link.
pub(crate) fn check_hook() -> Result<(), String> {
    let hook: extern "C" fn() = *std::hint::black_box(&WORKER_HOOK);
    let _ = hook;
    if std::env::var_os(WORKER_ENV).is_some() || !HOOK_RAN.load(Ordering::SeqCst) {
        return Err(
            "aqueduct's worker start-up hook did not run in this program (its `.init_array` \
             entry was dropped by the linker?), so a worker process would run `main` again; \
             refusing to spawn. Use `isolation = \"thread\"` for this stage"
                .into(),
        );
    }
    if BAD_MARKER.load(Ordering::SeqCst) {
        return Err(format!(
            "this process was started with an {WORKER_ENV} marker that its parent did not \
             make (ignored), so it may itself be a misdirected worker; refusing to spawn \
             workers from it"
        ));
    }
    if process::secure_mode() {
        return Err(
            "this program runs in secure mode (setuid or similar), where aqueduct ignores \
             worker markers, so a worker process would run `main` again; refusing to spawn. \
             Use `isolation = \"thread\"` for this stage"
                .into(),
        );
    }
    Ok(())
}

#[inline(never)]
fn anchor() -> u64 {
    std::hint::black_box(0x5eed)
}

/// The anchor's address in this process.
fn anchor_address() -> i64 {
    let anchor: fn() -> u64 = anchor;
    anchor as usize as i64
}

/// Identifies this build: the executable file (device, inode, size, modification time)
/// and this crate's code layout. A worker with a different value is a different binary.
pub(crate) fn build_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        let mut digest = Digest::new();
        if let Ok(meta) = std::fs::metadata("/proc/self/exe") {
            digest = digest
                .word(meta.dev())
                .word(meta.ino())
                .word(meta.size())
                .word(meta.mtime() as u64)
                .word(meta.mtime_nsec() as u64);
        }
        let run: fn(Spec) -> i32 = run_worker;
        digest
            .word((run as usize as i64).wrapping_sub(anchor_address()) as u64)
            .str(env!("CARGO_PKG_VERSION"))
            .finish()
    })
}

/// Everything a worker needs, passed in its spec descriptor (the other fds it names
/// are inherited). The worker's settings travel here too: a worker never reads
/// `AQUEDUCT_*` settings from its environment (see [`crate::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub build_id: u64,
    pub stage_hash: u64,
    pub parent_pid: u32,
    pub ctl_fd: RawFd,
    pub ctl_len: usize,
    pub req_fd: RawFd,
    pub resp_fd: RawFd,
    pub arena_fd: RawFd,
    pub arena_len: usize,
    pub scratch_fd: RawFd,
    pub scratch_len: usize,
    pub geometry: Geometry,
    /// Microseconds to spin for the next request after answering one; [`AUTO_SPIN_US`]:
    /// [`IdleSpin::Auto`].
    pub spin_us: u64,
    /// The most verbose level the worker logs at.
    pub log_level: LevelFilter,
}

/// `spin_us` of [`IdleSpin::Auto`].
pub(crate) const AUTO_SPIN_US: u64 = u64::MAX;

impl Spec {
    /// The worker's idle spin, from `spin_us`.
    pub(crate) fn idle_spin(&self) -> IdleSpin {
        match self.spin_us {
            AUTO_SPIN_US => IdleSpin::Auto,
            us => IdleSpin::Fixed(std::time::Duration::from_micros(us)),
        }
    }

    /// `spin_us` for `spin`.
    pub(crate) fn spin_us(spin: IdleSpin) -> u64 {
        match spin {
            IdleSpin::Auto => AUTO_SPIN_US,
            IdleSpin::Fixed(budget) => u64::try_from(budget.as_micros())
                .unwrap_or(AUTO_SPIN_US - 1)
                .min(AUTO_SPIN_US - 1),
        }
    }
}

/// The first field of an encoded [`Spec`]: its layout's version.
const SPEC_VERSION: &str = "3";

impl Spec {
    /// The descriptors the worker inherits, as the parent names them.
    pub(crate) fn inherited_fds(&self) -> [RawFd; 5] {
        [
            self.ctl_fd,
            self.req_fd,
            self.resp_fd,
            self.arena_fd,
            self.scratch_fd,
        ]
    }

    pub(crate) fn encode(&self) -> String {
        let g = &self.geometry;
        format!(
            "{SPEC_VERSION};{};{};{};{};{};{};{};{};{};{};{};{};{};{};{};{};{}",
            self.build_id,
            self.stage_hash,
            self.parent_pid,
            self.ctl_fd,
            self.ctl_len,
            self.req_fd,
            self.resp_fd,
            self.arena_fd,
            self.arena_len,
            self.scratch_fd,
            self.scratch_len,
            g.batch_cap,
            g.input_size,
            g.output_size,
            g.lanes,
            self.spin_us,
            self.log_level,
        )
    }

    pub(crate) fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(';');
        if parts.next()? != SPEC_VERSION {
            return None;
        }
        fn field<T: std::str::FromStr>(parts: &mut std::str::Split<'_, char>) -> Option<T> {
            parts.next()?.parse().ok()
        }
        let p = &mut parts;
        let spec = Self {
            build_id: field(p)?,
            stage_hash: field(p)?,
            parent_pid: field(p)?,
            ctl_fd: field(p)?,
            ctl_len: field(p)?,
            req_fd: field(p)?,
            resp_fd: field(p)?,
            arena_fd: field(p)?,
            arena_len: field(p)?,
            scratch_fd: field(p)?,
            scratch_len: field(p)?,
            geometry: Geometry {
                batch_cap: field(p)?,
                input_size: field(p)?,
                output_size: field(p)?,
                lanes: field(p)?,
            },
            spin_us: field(p)?,
            log_level: field(p)?,
        };
        p.next().is_none().then_some(spec)
    }
}

/// What the entry function of a worker receives.
#[derive(Debug)]
pub(crate) struct Boot {
    pub spec: Spec,
    pub ctl: Region,
    pub req: EventFd,
    pub resp: EventFd,
}

impl Boot {
    /// Tells the parent why this worker will not run, and returns the exit code.
    pub(crate) fn refuse(&self, why: &str) -> i32 {
        refuse(&self.ctl, &self.resp, why)
    }
}

fn refuse(ctl: &Region, resp: &EventFd, why: &str) -> i32 {
    ctl.set_state(WorkerState::Refused, why);
    resp.notify();
    exit::REFUSED
}

/// The worker process's life: checks, attach shared memory, run the stage.
fn run_worker(spec: Spec) -> i32 {
    // What std's runtime start-up would have done in `main`: a closed log pipe must be
    // an error, not a fatal signal.
    process::ignore_sigpipe();
    // Stopping is the parent's call: a SIGINT or SIGTERM meant for the whole process
    // group must not kill a worker while its parent drains (see the function).
    process::ignore_stop_requests();
    super::logs::install_worker_subscriber(spec.log_level);
    // The parent cleared close-on-exec on these for the exec into this worker; set it
    // again before any handler code runs, so a process a handler starts inherits none.
    // SAFETY: the descriptors were made by the parent for this worker alone and named in
    // its spec (whose descriptor proved it came from the parent); nothing else here
    // holds them.
    let sealed = spec
        .inherited_fds()
        .into_iter()
        .try_for_each(|raw| unsafe { fd::set_close_on_exec_raw(raw, true) });
    if let Err(e) = sealed {
        eprintln!("aqueduct worker: an inherited descriptor is unusable: {e}; exiting");
        return exit::BAD_SPEC;
    }
    // SAFETY: as above: this fresh process owns these descriptors, and nothing else in
    // it takes them over.
    let (ctl_file, req, resp, arena, scratch) = unsafe {
        (
            File::from_raw_fd(spec.ctl_fd),
            EventFd::from_raw(spec.req_fd),
            EventFd::from_raw(spec.resp_fd),
            File::from_raw_fd(spec.arena_fd),
            File::from_raw_fd(spec.scratch_fd),
        )
    };
    let ctl = match Region::map(ctl_file, spec.ctl_len) {
        Ok(ctl) => ctl,
        Err(e) => {
            eprintln!("aqueduct worker: cannot map the control region: {e}");
            return exit::BAD_SPEC;
        }
    };
    // The parent may have died between fork and `prctl(PR_SET_PDEATHSIG)`.
    if process::parent_pid() != spec.parent_pid {
        return exit::ORPHANED;
    }
    if spec.build_id != build_id() {
        return refuse(
            &ctl,
            &resp,
            "worker refused: its executable is not the parent's build",
        );
    }
    if let Err(e) =
        crate::shm::arena::attach_worker(arena, spec.arena_len, scratch, spec.scratch_len)
    {
        return refuse(&ctl, &resp, &format!("worker cannot map the arena: {e}"));
    }
    let entry = match registry::find(spec.stage_hash) {
        Ok(entry) => entry,
        Err(why) => return refuse(&ctl, &resp, &format!("worker refused: {why}")),
    };
    entry(Boot {
        spec,
        ctl,
        req,
        resp,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn spec() -> Spec {
        Spec {
            build_id: u64::MAX,
            stage_hash: 7,
            parent_pid: 42,
            ctl_fd: 3,
            ctl_len: 8192,
            req_fd: 4,
            resp_fd: 5,
            arena_fd: 6,
            arena_len: 1 << 30,
            scratch_fd: 7,
            scratch_len: 1 << 20,
            geometry: Geometry {
                batch_cap: 8,
                input_size: 24,
                output_size: 48,
                lanes: 2,
            },
            spin_us: 20,
            log_level: LevelFilter::DEBUG,
        }
    }

    #[test]
    fn spec_round_trips_and_rejects_garbage() {
        assert_eq!(Spec::decode(&spec().encode()), Some(spec()));
        assert_eq!(Spec::decode("2;1;2"), None);
        assert_eq!(Spec::decode("2;x"), None);
        assert_eq!(Spec::decode(&spec().encode().replacen('3', "2", 1)), None);
        let mut bad_level = spec().encode();
        bad_level.truncate(bad_level.rfind(';').unwrap());
        assert_eq!(Spec::decode(&format!("{bad_level};loud")), None);
    }

    #[test]
    fn the_hook_ran_in_this_test_binary() {
        assert!(
            check_hook().is_ok(),
            "the .init_array hook must run before main"
        );
    }
}
