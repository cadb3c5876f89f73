//! Settings come from `AQUEDUCT_*` environment variables with one policy: unset takes the
//! default, a valid value is used (by the worker processes too, which get it from their
//! parent), and a value that is set but invalid makes `start()` fail with
//! `Error::Config` naming the variable.
//!
//! The settings are read once per process, so each case runs in a fresh copy of this
//! test binary (the `settings_role` test, which does nothing unless
//! `AQUEDUCT_TEST_CONFIG_ROLE` is set) with the variables it needs.

use std::process::Command;

use aqueduct::Error;

const ROLE_ENV: &str = "AQUEDUCT_TEST_CONFIG_ROLE";
const SETTINGS: [&str; 4] = [
    "AQUEDUCT_ARENA_BYTES",
    "AQUEDUCT_SCRATCH_BYTES",
    "AQUEDUCT_WORKER_LOG",
    "AQUEDUCT_SPIN_US",
];

#[aqueduct::task]
struct Num {
    n: u64,
}

#[aqueduct::handler]
fn double(num: &mut Num) {
    tracing::debug!("debug line from the worker");
    num.n *= 2;
}

/// Starts a flow with a process stage and runs one task through it, reporting on stdout.
/// (No `tracing` subscriber here: worker lines then go to this process's stderr.)
#[test]
fn settings_role() {
    if std::env::var_os(ROLE_ENV).is_none() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    match runtime.block_on(aqueduct::flow!(double).start()) {
        Ok(flow) => {
            let out = runtime.block_on(flow.process(Num { n: 21 })).unwrap();
            println!("START OK {}", out.n);
            runtime.block_on(flow.stop(true));
        }
        Err(Error::Config(message)) => println!("START CONFIG-ERROR {message}"),
        Err(other) => println!("START OTHER-ERROR {other}"),
    }
}

/// Runs `settings_role` with `vars` set and no other setting; returns (stdout, stderr).
fn run_with(vars: &[(&str, &str)]) -> (String, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "settings_role",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, "1");
    for name in SETTINGS {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied());
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_setting_that_is_set_but_invalid_fails_start_naming_the_variable() {
    for (name, value) in [
        ("AQUEDUCT_SCRATCH_BYTES", "garbage"),
        ("AQUEDUCT_ARENA_BYTES", "1G"),
        ("AQUEDUCT_WORKER_LOG", "loud"),
        ("AQUEDUCT_SPIN_US", "-3"),
    ] {
        let (stdout, _) = run_with(&[(name, value)]);
        assert!(
            stdout.contains(&format!("START CONFIG-ERROR {name}={value:?};")),
            "{name}={value}: {stdout}"
        );
    }
}

#[test]
fn valid_settings_are_used_and_reach_the_workers() {
    let (stdout, stderr) = run_with(&[
        ("AQUEDUCT_ARENA_BYTES", "16777216"),
        ("AQUEDUCT_SCRATCH_BYTES", "1048576"),
        ("AQUEDUCT_WORKER_LOG", "debug"),
        ("AQUEDUCT_SPIN_US", "50"),
    ]);
    assert!(stdout.contains("START OK 42"), "{stdout}");
    // The worker logs at DEBUG only because its parent's setting said so.
    assert!(stderr.contains("debug line from the worker"), "{stderr}");
}

#[test]
fn unset_settings_take_their_defaults() {
    let (stdout, stderr) = run_with(&[]);
    assert!(stdout.contains("START OK 42"), "{stdout}");
    // INFO by default: the worker's DEBUG line is not forwarded.
    assert!(!stderr.contains("debug line from the worker"), "{stderr}");
}
