//! A private `redis-server` for tests and examples: started on a unix socket in a fresh
//! temporary directory, killed (and the directory removed) when dropped, panics included.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What to tell someone whose machine has no `redis-server`.
const INSTALL: &str = "redis-server is not installed and REDIS_URL is not set. Install it (Debian/Ubuntu: `apt-get install -y redis-server`; .ci/run does this) or point REDIS_URL at a server (e.g. redis://127.0.0.1:6379)";

/// A `redis-server` child process on a unix socket.
#[derive(Debug)]
pub struct LocalServer {
    child: Option<Child>,
    dir: PathBuf,
    persistent: bool,
}

impl LocalServer {
    /// Starts a server with no persistence (`--save '' --appendonly no`).
    pub fn start() -> Result<Self, String> {
        Self::start_with(false)
    }

    /// Starts a server that writes every command to an append-only file before replying
    /// (`--appendonly yes --appendfsync always`), so [`LocalServer::restart`] keeps the data.
    pub fn start_persistent() -> Result<Self, String> {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Result<Self, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aqueduct-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut server = Self {
            child: None,
            dir,
            persistent,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(self.socket())
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--save")
            .arg("");
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => INSTALL.to_string(),
                _ => format!("starting redis-server: {e}"),
            })?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls PING on the socket until PONG, for up to 10 s.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = UnixStream::connect(self.socket()) {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return Ok(());
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("redis-server exited at start: {status}"));
            }
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// The URL to connect to.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// SIGKILLs the server and waits for it (a crash: no shutdown save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same socket and directory (with
    /// [`LocalServer::start_persistent`], with the same data).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let _ = std::fs::remove_file(self.socket());
        self.spawn()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server tests and examples should use: `REDIS_URL` if set (no server started),
/// otherwise a private [`LocalServer`], or an error saying how to install one.
pub fn server_for_tests() -> Result<(Option<LocalServer>, String), String> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        if !url.is_empty() {
            return Ok((None, url));
        }
    }
    let server = LocalServer::start()?;
    let url = server.url();
    Ok((Some(server), url))
}
