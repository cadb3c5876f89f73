//! The worker marker: what tells a re-executed copy of this program that it is a worker,
//! and where its [`Spec`] is.
//!
//! The marker in the environment names only a descriptor and a nonce
//! (`AQUEDUCT_WORKER=<fd>:<nonce>`). The spec is in that descriptor, a small sealed memfd
//! the parent wrote and passed to this child alone, after a magic string and the same
//! nonce. So the spec is not in `/proc/<pid>/environ`, and a marker that did not come
//! from an aqueduct parent (a stray variable, an inherited environment, a guess) is
//! recognised: its descriptor is not open, not a regular file, or does not start with the
//! magic and nonce.

use std::ffi::OsStr;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::spawn::Spec;
use crate::platform::fd;

/// Starts the spec descriptor's contents, followed by `;<nonce>;` and the spec.
const SPEC_MAGIC: &str = "aqueduct-worker-spec";

/// Most bytes of a spec descriptor that are read.
const MAX_SPEC: usize = 4096;

/// What a marker turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
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
pub(crate) fn claim(marker: &OsStr) -> Claim {
    let Some(marker) = Marker::parse(marker) else {
        return Claim::NotOurs("malformed".into());
    };
    let fd = marker.fd;
    match fd::is_regular_file(fd) {
        Err(_) => return Claim::NotOurs(format!("descriptor {fd} is not open")),
        Ok(false) => return Claim::NotOurs(format!("descriptor {fd} is not a spec file")),
        Ok(true) => {}
    }
    let mut bytes = vec![0u8; MAX_SPEC];
    // pread leaves the descriptor's offset alone, so a descriptor that is not ours is
    // not disturbed.
    let Ok(read) = fd::read_at(fd, &mut bytes, 0) else {
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

#[cfg(test)]
mod tests {
    use std::os::fd::IntoRawFd;

    use super::*;
    use crate::exec::process::spawn::tests::spec;

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
        let (read, _write) = crate::platform::fd::pipe().unwrap();
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
}
