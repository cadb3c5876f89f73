//! Starting worker processes: this executable is re-executed (through `/proc/self/exe`,
//! which survives the file being replaced on disk) with a marker in its environment. A
//! hook in `.init_array`, which the dynamic loader runs before `main` in every program
//! that links this crate, sees the marker and runs the worker loop on a std thread,
//! then exits: the user's `main` (or the test harness, or a doctest) never runs in a
//! worker, and the user adds nothing to `main`.
//!
//! The marker names only a descriptor and a nonce (`AQUEDUCT_WORKER=<fd>:<nonce>`). The
//! worker's [`Spec`] is in that descriptor, a small sealed memfd the parent wrote and
//! passed to this child alone, after a magic string and the same nonce. So the spec is
//! not in `/proc/<pid>/environ`, and a marker that did not come from an aqueduct parent
//! (a stray variable, an inherited environment, a guess) is recognised: its descriptor
//! is not open, not a regular file, or does not start with the magic and nonce. Such a
//! marker is ignored with one warning on stderr and `main` runs as usual; the process
//! then refuses to spawn workers (see [`check_hook`]). In a setuid or otherwise secure
//! process (`AT_SECURE`), the marker is ignored silently.
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

use std::ffi::OsStr;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use super::channel::{EventFd, Region};
use super::exit;
use super::registry;
use super::wire::{Geometry, WorkerState};
use crate::hash::Digest;

/// The marker: `<fd>:<nonce>`, naming the descriptor that holds the worker's [`Spec`].
pub(crate) const WORKER_ENV: &str = "AQUEDUCT_WORKER";

/// Starts the spec descriptor's contents, followed by `;<nonce>;` and the spec.
const SPEC_MAGIC: &str = "aqueduct-worker-spec";

/// Most bytes of a spec descriptor that are read.
const MAX_SPEC: usize = 4096;

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
    if secure_mode() {
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

/// Whether the process runs in secure mode (setuid, setgid, capabilities).
fn secure_mode() -> bool {
    // SAFETY: getauxval reads the auxiliary vector; it has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
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
    if secure_mode() {
        return Err(
            "this program runs in secure mode (setuid or similar), where aqueduct ignores \
             worker markers, so a worker process would run `main` again; refusing to spawn. \
             Use `isolation = \"thread\"` for this stage"
                .into(),
        );
    }
    Ok(())
}

/// What a marker turned out to be.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    /// Made by this process's parent for it.
    Worker(Spec),
    /// Not made for this process: ignored.
    NotOurs(String),
    /// Made for this process, but its spec cannot be used: the worker exits.
    Broken(String),
}

/// The marker's two parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker {
    fd: RawFd,
    nonce: u64,
}

impl Marker {
    fn encode(&self) -> String {
        format!("{}:{:016x}", self.fd, self.nonce)
    }

    fn parse(text: &OsStr) -> Option<Self> {
        let (fd, nonce) = text.to_str()?.split_once(':')?;
        if nonce.len() != 16 {
            return None;
        }
        Some(Self {
            fd: fd.parse().ok().filter(|fd: &RawFd| *fd >= 0)?,
            nonce: u64::from_str_radix(nonce, 16).ok()?,
        })
    }
}

/// What the spec descriptor holds for `spec` under `nonce`.
fn spec_contents(nonce: u64, spec: &Spec) -> String {
    format!("{SPEC_MAGIC};{nonce:016x};{}", spec.encode())
}

/// A new nonce: unpredictable enough that no marker matches a descriptor by accident.
fn nonce() -> u64 {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

/// Parent side: a sealed memfd holding `spec` and the marker that names it. The memfd
/// is close-on-exec; the spawn clears that for the one child it is made for.
pub(crate) fn spec_file(spec: &Spec) -> io::Result<(File, String)> {
    let nonce = nonce();
    let contents = spec_contents(nonce, spec);
    let file = crate::shm::memfd::create_sealed("aqueduct-worker-spec", contents.len())?;
    file.write_all_at(contents.as_bytes(), 0)?;
    let marker = Marker {
        fd: file.as_raw_fd(),
        nonce,
    };
    Ok((file, marker.encode()))
}

/// Worker side: reads the spec the marker names and closes its descriptor, or says why
/// the marker is not this process's. Touches nothing that the marker does not prove is
/// its own: a descriptor is read without moving its offset, and closed only once its
/// contents matched.
fn claim(marker: &OsStr) -> Claim {
    let Some(marker) = Marker::parse(marker) else {
        return Claim::NotOurs("malformed".into());
    };
    let fd = marker.fd;
    // SAFETY: a zeroed `stat` is a valid out-buffer; fstat on a plain integer only
    // fails (EBADF) when it is not an open descriptor.
    let mut stat = unsafe { std::mem::zeroed::<libc::stat>() };
    // SAFETY: as above; `stat` is a valid, writable `struct stat`.
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return Claim::NotOurs(format!("descriptor {fd} is not open"));
    }
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Claim::NotOurs(format!("descriptor {fd} is not a spec file"));
    }
    let mut bytes = vec![0u8; MAX_SPEC];
    // SAFETY: reads at most `bytes.len()` bytes into `bytes`; pread leaves the
    // descriptor's offset alone, so a descriptor that is not ours is not disturbed.
    let read = unsafe { libc::pread(fd, bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let Ok(read) = usize::try_from(read) else {
        return Claim::NotOurs(format!("descriptor {fd} cannot be read"));
    };
    bytes.truncate(read);
    let prefix = format!("{SPEC_MAGIC};{:016x};", marker.nonce);
    let Some(encoded) = bytes.strip_prefix(prefix.as_bytes()) else {
        return Claim::NotOurs(format!("descriptor {fd} does not hold this marker's spec"));
    };
    // SAFETY: the contents prove that the parent made this descriptor for this process
    // and passed it for the worker to take: nothing else here uses it.
    drop(unsafe { File::from_raw_fd(fd) });
    match std::str::from_utf8(encoded).ok().and_then(Spec::decode) {
        Some(spec) => Claim::Worker(spec),
        None => Claim::Broken(format!("the spec in descriptor {fd} is malformed")),
    }
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
/// are inherited).
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
            "2;{};{};{};{};{};{};{};{};{};{};{};{};{};{};{}",
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
            g.lanes
        )
    }

    pub(crate) fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(';');
        if parts.next()? != "2" {
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
fn run_worker(spec: Spec) -> i32 {
    // What std's runtime start-up would have done in `main`: a closed log pipe must be
    // an error, not a fatal signal.
    // SAFETY: setting a signal's disposition to "ignore" has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    super::logs::install_worker_subscriber();
    // The parent cleared close-on-exec on these for the exec into this worker; set it
    // again before any handler code runs, so a process a handler starts inherits none.
    if let Err(e) = spec.inherited_fds().into_iter().try_for_each(close_on_exec) {
        eprintln!("aqueduct worker: an inherited descriptor is unusable: {e}; exiting");
        return exit::BAD_SPEC;
    }
    // SAFETY: these fds were inherited from the parent, which created them for this
    // worker and names them in the spec (whose descriptor proved it came from the
    // parent); nothing else in this fresh process owns them.
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
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } as u32 != spec.parent_pid {
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
mod tests {
    use std::os::fd::IntoRawFd;

    use super::*;

    fn spec() -> Spec {
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
        }
    }

    #[test]
    fn spec_round_trips_and_rejects_garbage() {
        assert_eq!(Spec::decode(&spec().encode()), Some(spec()));
        assert_eq!(Spec::decode("2;1;2"), None);
        assert_eq!(Spec::decode("2;x"), None);
        assert_eq!(Spec::decode(&spec().encode().replacen('2', "1", 1)), None);
    }

    #[test]
    fn markers_round_trip_and_malformed_ones_are_rejected() {
        let marker = Marker {
            fd: 12,
            nonce: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(marker.encode(), "12:0123456789abcdef");
        assert_eq!(Marker::parse(marker.encode().as_ref()), Some(marker));
        for bad in [
            "",
            "garbage",
            "7",
            "1;2;3",
            "-1:0123456789abcdef",
            "3:123",
            "3:",
        ] {
            assert_eq!(Marker::parse(bad.as_ref()), None, "{bad:?}");
            assert!(matches!(claim(bad.as_ref()), Claim::NotOurs(_)), "{bad:?}");
        }
    }

    #[test]
    fn the_spec_file_is_claimed_with_its_marker_and_then_closed() {
        let (file, marker) = spec_file(&spec()).unwrap();
        // `claim` takes the descriptor over (and closes it).
        let _ = file.into_raw_fd();
        assert_eq!(claim(marker.as_ref()), Claim::Worker(spec()));
    }

    #[test]
    fn a_marker_whose_descriptor_does_not_hold_its_nonce_is_not_ours() {
        let (file, marker) = spec_file(&spec()).unwrap();
        let (fd, _) = marker.split_once(':').unwrap();
        let other = format!("{fd}:{:016x}", 0x5eed_u64);
        assert!(matches!(claim(other.as_ref()), Claim::NotOurs(_)));
        assert!(file.metadata().is_ok(), "a descriptor not ours stays open");
    }

    #[test]
    fn a_marker_naming_a_closed_descriptor_or_a_pipe_is_not_ours() {
        let closed = format!("{}:0123456789abcdef", i32::MAX - 1);
        match claim(closed.as_ref()) {
            Claim::NotOurs(why) => assert!(why.contains("not open"), "{why}"),
            other => panic!("{other:?}"),
        }
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read, _write) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let pipe = format!("{}:0123456789abcdef", read.as_raw_fd());
        assert!(matches!(claim(pipe.as_ref()), Claim::NotOurs(_)));
    }

    #[test]
    fn a_spec_file_with_the_right_nonce_but_a_bad_spec_is_broken() {
        let contents = format!("{SPEC_MAGIC};{:016x};2;nonsense", 99);
        let file = crate::shm::memfd::create_sealed("test-spec", contents.len()).unwrap();
        file.write_all_at(contents.as_bytes(), 0).unwrap();
        let marker = Marker {
            fd: file.into_raw_fd(),
            nonce: 99,
        };
        assert!(matches!(claim(marker.encode().as_ref()), Claim::Broken(_)));
    }

    #[test]
    fn the_hook_ran_in_this_test_binary() {
        assert!(
            check_hook().is_ok(),
            "the .init_array hook must run before main"
        );
    }
}
