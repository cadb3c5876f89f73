//! A program that links aqueduct is turned into a worker only by a marker its own
//! parent made for it. A stray or malformed `AQUEDUCT_WORKER` in the environment is
//! ignored with a warning: `main` runs as usual, and the program then refuses to spawn
//! workers (they would not recognise their marker either, and would run `main` again).
//!
//! The test re-runs its own binary (the `marker_role` test, a no-op unless
//! `AQUEDUCT_TEST_MARKER_ROLE` is set) with such markers.

use std::io::Write as _;
use std::process::{Command, Stdio};

const ROLE_ENV: &str = "AQUEDUCT_TEST_MARKER_ROLE";

#[aqueduct::task]
struct Ping {
    n: u64,
}

#[aqueduct::handler]
fn pong(ping: &mut Ping) {
    ping.n += 1;
}

/// Prints that `main` ran, then tries to start a process stage.
#[test]
fn marker_role() {
    if std::env::var_os(ROLE_ENV).is_none() {
        return;
    }
    println!("MAIN RAN");
    match aqueduct::flow!(pong).start_blocking() {
        Err(aqueduct::Error::Init { message, .. }) => println!("SPAWN REFUSED: {message}"),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(flow) => {
            let _ = flow.stop_blocking(false);
            panic!("a process that saw a bad marker started workers");
        }
    }
}

/// Runs `marker_role` with `AQUEDUCT_WORKER=marker` and a regular file as stdin.
fn run_with_marker(marker: &str) -> std::process::Output {
    let stdin = std::env::temp_dir().join(format!("aqueduct-marker-{}", std::process::id()));
    std::fs::File::create(&stdin)
        .unwrap()
        .write_all(b"not a worker spec\n")
        .unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["marker_role", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, "1")
        .env("AQUEDUCT_WORKER", marker)
        .stdin(std::fs::File::open(&stdin).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(stdin);
    output
}

#[test]
fn a_bad_marker_is_ignored_and_main_runs() {
    // Malformed; an fd that is not open; an fd that is open (stdin, a regular file) but
    // holds no spec; a pipe (stdout).
    for marker in [
        "garbage",
        "7",
        "1;2;3",
        "",
        "99:0123456789abcdef",
        "0:0123456789abcdef",
        "1:0123456789abcdef",
    ] {
        let output = run_with_marker(marker);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "marker {marker:?}: {}\nstdout: {stdout}\nstderr: {stderr}",
            output.status
        );
        assert!(stdout.contains("MAIN RAN"), "marker {marker:?}: {stdout}");
        assert!(
            stdout.contains("SPAWN REFUSED"),
            "marker {marker:?}: {stdout}"
        );
        let warnings = stderr
            .lines()
            .filter(|l| l.contains("AQUEDUCT_WORKER"))
            .count();
        assert_eq!(warnings, 1, "marker {marker:?}: one warning: {stderr}");
    }
}
