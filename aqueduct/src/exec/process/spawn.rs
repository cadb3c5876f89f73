//! Starting worker processes: this executable is re-executed (through `/proc/self/exe`,
//! which survives the file being replaced on disk) with a marker in its environment. A
//! hook in `.init_array`, which the dynamic loader runs before `main` in every program
//! that links this crate, sees the marker and runs the worker loop on a std thread,
//! then exits: the user's `main` (or the test harness, or a doctest) never runs in a
//! worker, and the user adds nothing to `main`.
//!
//! The stage a worker runs is named by a *function handle*: the distance from an anchor
//! function to the monomorphised `worker_entry::<S>`, valid in the same image. Before it
//! is used, the worker checks that it runs the same build as the parent (executable
//! identity plus code layout); the entry then checks the stage's name and task layout
//! fingerprints. A mismatch is refused with a message the parent reports.
//!
//! No recursion: the parent refuses to spawn unless the hook demonstrably ran in its own
//! process (so it will run in the worker too), and the hook removes the marker before
//! anything else runs, so a worker's own children are ordinary processes.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use super::channel::{EventFd, Geometry, Region, STATE_REFUSED};

/// The marker: its value is the worker's [`Spec`].
pub(crate) const WORKER_ENV: &str = "AQUEDUCT_WORKER";

/// What a worker runs: `worker_entry::<S>`, reached through a function handle.
pub(crate) type Entry = fn(Boot) -> i32;

static HOOK_RAN: AtomicBool = AtomicBool::new(false);

// The dynamic loader calls every function pointer in `.init_array` before `main`.
// `#[used]` keeps the static through optimisation; the spawn path refers to it, so the
// object file holding it is always linked into a program that can spawn workers.
#[used]
#[link_section = ".init_array"]
static WORKER_HOOK: extern "C" fn() = worker_hook;

extern "C" fn worker_hook() {
    HOOK_RAN.store(true, Ordering::SeqCst);
    let Some(spec) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    // Before `main`, this thread is still the only one: removing the variable cannot
    // race with a reader.
    std::env::remove_var(WORKER_ENV);
    // Life before `main` is kept minimal: the worker runs on an ordinary std thread,
    // and this process ends when it returns, never reaching `main`.
    let code = std::thread::Builder::new()
        .name("aqueduct-worker".into())
        .spawn(move || run_worker(spec))
        .map(|thread| thread.join().unwrap_or(101))
        .unwrap_or(102);
    std::process::exit(code);
}

/// Whether process workers can be started from this program: the hook ran here, so it
/// will run in a re-executed copy. Also pins the hook into the link.
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

/// The function handle of `entry`: its distance from the anchor in this image.
pub(crate) fn handle_of(entry: Entry) -> i64 {
    (entry as usize as i64).wrapping_sub(anchor_address())
}

/// Identifies this build: the executable file (device, inode, size, modification time)
/// and this crate's code layout. A worker with a different value is a different binary.
pub(crate) fn build_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let mut mix = |value: u64| {
            for byte in value.to_le_bytes() {
                hash = (hash ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        if let Ok(meta) = std::fs::metadata("/proc/self/exe") {
            mix(meta.dev());
            mix(meta.ino());
            mix(meta.size());
            mix(meta.mtime() as u64);
            mix(meta.mtime_nsec() as u64);
        }
        let run: fn(OsString) -> i32 = run_worker;
        mix((run as usize as i64).wrapping_sub(anchor_address()) as u64);
        for byte in env!("CARGO_PKG_VERSION").bytes() {
            mix(byte as u64);
        }
        hash
    })
}

/// Everything a worker needs, passed in its environment (fds are inherited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub build_id: u64,
    pub entry: i64,
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
}

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
            "1;{};{};{};{};{};{};{};{};{};{};{};{};{};{};{};{}",
            self.build_id,
            self.entry,
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
            g.lanes
        )
    }

    pub(crate) fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(';');
        if parts.next()? != "1" {
            return None;
        }
        fn field<T: std::str::FromStr>(parts: &mut std::str::Split<'_, char>) -> Option<T> {
            parts.next()?.parse().ok()
        }
        let p = &mut parts;
        let spec = Self {
            build_id: field(p)?,
            entry: field(p)?,
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
    ctl.write_message(why);
    ctl.u32(super::channel::OFF_STATE)
        .store(STATE_REFUSED, Ordering::Release);
    resp.notify();
    3
}

/// Sets `FD_CLOEXEC` on `fd`.
fn close_on_exec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a plain integer: an fd that is not open yields EBADF, nothing more.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The worker process's life: checks, attach shared memory, run the stage.
fn run_worker(spec: OsString) -> i32 {
    // What std's runtime start-up would have done in `main`: a closed log pipe must be
    // an error, not a fatal signal.
    // SAFETY: setting a signal's disposition to "ignore" has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    super::logs::install_worker_subscriber();
    let Some(spec) = spec.to_str().and_then(Spec::decode) else {
        eprintln!("aqueduct worker: malformed {WORKER_ENV}; exiting");
        return 4;
    };
    // The parent cleared close-on-exec on these for the exec into this worker; set it
    // again before any handler code runs, so a process a handler starts inherits none.
    if let Err(e) = spec.inherited_fds().into_iter().try_for_each(close_on_exec) {
        eprintln!("aqueduct worker: an inherited descriptor is unusable: {e}; exiting");
        return 4;
    }
    // SAFETY: these fds were inherited from the parent, which created them for this
    // worker and names them in the spec; nothing else in this fresh process owns them.
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
            return 4;
        }
    };
    // The parent may have died between fork and `prctl(PR_SET_PDEATHSIG)`.
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } as u32 != spec.parent_pid {
        return 5;
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
    let address = anchor_address().wrapping_add(spec.entry) as usize;
    // SAFETY: the build check above established that this is the parent's executable,
    // whose `handle_of` computed `spec.entry` from a real `Entry`; the same image
    // relocated to another base keeps the distance between its functions, so `address`
    // is that same function, of type `Entry`.
    let entry: Entry = unsafe { std::mem::transmute::<usize, Entry>(address) };
    entry(Boot {
        spec,
        ctl,
        req,
        resp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_and_rejects_garbage() {
        let spec = Spec {
            build_id: u64::MAX,
            entry: -12345,
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
        };
        assert_eq!(Spec::decode(&spec.encode()), Some(spec));
        assert_eq!(Spec::decode("2;1;2"), None);
        assert_eq!(Spec::decode("1;x"), None);
    }

    #[test]
    fn the_hook_ran_in_this_test_binary() {
        assert!(
            check_hook().is_ok(),
            "the .init_array hook must run before main"
        );
    }
}
