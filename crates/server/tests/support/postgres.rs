//! A real PostgreSQL 15 server for the tests: `initdb` into a temp dir and `postgres` on a free
//! 127.0.0.1 port, with password (SCRAM) authentication for TCP, stopped on drop.
//!
//! The binaries come from `scripts/install-test-tools.sh` (Debian bookworm `postgresql`, linked
//! into `<cache>/bin`); when they are missing the test fails with the install command.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (uid 0), `initdb` and
//! `postgres` are started through `setpriv --reuid=65534 --regid=65534 --clear-groups` (util-linux,
//! present on every Debian): as `nobody`, which owns the temp dir. `setpriv` execs in place, so
//! the child's pid is the server's. As a normal user they run directly.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Superuser created by initdb, and its password (SCRAM; the tests check it never shows).
pub const USER: &str = "vulngate";
pub const PASSWORD: &str = "pg-Pa55-w0rd-9e1d7c";
/// The database initdb creates.
pub const DATABASE: &str = "postgres";

const INSTALL: &str = "scripts/install-test-tools.sh";
/// uid/gid of `nobody`/`nogroup` on Debian.
const NOBODY: u32 = 65534;

fn tools_bin() -> PathBuf {
    std::env::var_os("VULNGATE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/vulngate-tools")
        })
        .join("bin")
}

/// The real path of a PostgreSQL binary (symlinks resolved: `nobody` cannot traverse
/// `/root/.cache`). Panics with the install command when it is missing.
pub fn pg_tool(name: &str) -> PathBuf {
    let candidates = [
        tools_bin().join(name),
        PathBuf::from("/usr/lib/postgresql/15/bin").join(name),
    ];
    for c in candidates {
        if let Ok(real) = c.canonicalize() {
            return real;
        }
    }
    panic!(
        "PostgreSQL 15 {name:?} not found in {} or /usr/lib/postgresql/15/bin: run {INSTALL}",
        tools_bin().display()
    );
}

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub struct Postgres {
    dir: TempDir,
    port: u16,
    as_nobody: bool,
    child: Option<Child>,
    /// "ready to accept connections" lines in the log before the current start.
    ready_lines: usize,
}

impl Postgres {
    /// initdb + start.
    pub fn start() -> Postgres {
        Postgres::start_with(&[])
    }

    /// initdb + start with extra `postgresql.conf` settings.
    pub fn start_with(settings: &[(&str, &str)]) -> Postgres {
        Postgres::start_prepared(settings, |_| {})
    }

    /// initdb, the settings, then `prepare` (write files into [`dir`](Self::dir), rewrite
    /// `data/pg_hba.conf`...) before the server starts.
    pub fn start_prepared(settings: &[(&str, &str)], prepare: impl FnOnce(&Postgres)) -> Postgres {
        let initdb = pg_tool("initdb");
        pg_tool("postgres");
        let dir = tempfile::tempdir().expect("tempdir");
        let as_nobody = running_as_root();
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).expect("pwfile");
        std::fs::create_dir(dir.path().join("sock")).expect("sock dir");
        let mut pg = Postgres {
            dir,
            port: free_port(),
            as_nobody,
            child: None,
            ready_lines: 0,
        };
        pg.give_to_server_user(pg.dir.path());
        pg.give_to_server_user(&pwfile);
        pg.give_to_server_user(&pg.dir.path().join("sock"));
        let out = pg
            .command(&initdb)
            .args(["-D", "data", "-U", USER, "--pwfile", "pwfile"])
            .args([
                "--auth=scram-sha-256",
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = pg.dir.path().join("data/postgresql.conf");
        let mut extra = String::new();
        for (k, v) in settings {
            extra.push_str(&format!("{k} = '{v}'\n"));
        }
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&extra);
        std::fs::write(&conf, text).expect("postgresql.conf");
        prepare(&pg);
        // The port was free when picked, but initdb takes seconds and other tests start servers
        // too: a port taken meanwhile gets another try on a fresh one.
        for attempt in 1.. {
            match pg.try_launch() {
                Ok(()) => break,
                Err(log) if attempt < 5 && port_taken(&log) => pg.port = free_port(),
                Err(log) => panic!("{log}"),
            }
        }
        pg
    }

    /// The temp dir (owned by the server user); files the server reads go here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Makes a file or directory in the temp dir the server user's (root only).
    pub fn give_to_server_user(&self, path: &Path) {
        if self.as_nobody {
            std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
        }
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(program);
            c
        } else {
            Command::new(program)
        };
        c.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGPASSWORD")
            .env_remove("PGDATA");
        c
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn launch(&mut self) {
        self.try_launch().unwrap_or_else(|log| panic!("{log}"));
    }

    /// Starts the server and waits until it accepts connections; Err: what went wrong, with
    /// the server's log.
    fn try_launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("server log");
        self.ready_lines = self.log().matches("ready to accept connections").count();
        // Absolute: the server resolves paths against its data directory.
        let sock = self.dir.path().join("sock");
        let child = self
            .command(&pg_tool("postgres"))
            .args(["-D", "data", "-c", "listen_addresses=127.0.0.1", "-k"])
            .arg(sock)
            .args(["-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.log().matches("ready to accept connections").count() > self.ready_lines {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Err(format!("postgres exited ({status}):\n{}", self.log()));
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "postgres not ready after 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown (SIGINT: active connections are closed), waited for.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let started = Instant::now();
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    let _ = c.kill();
                    let _ = c.wait();
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts the stopped server again (same data, same port).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://vulngate@127.0.0.1:PORT/postgres?sslmode=disable` (no password in it).
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}@127.0.0.1:{}/{DATABASE}?sslmode=disable",
            self.port
        )
    }

    /// The URL with the password in its userinfo.
    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://{USER}:{password}@127.0.0.1:{}/{DATABASE}?sslmode=disable",
            self.port
        )
    }

    /// A file holding the password (outside the server's dir is fine: the client reads it).
    pub fn password_file(&self) -> PathBuf {
        let p = self.dir.path().join("client-password");
        std::fs::write(&p, format!("{PASSWORD}\n")).expect("password file");
        p
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a server log says its port was taken.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not create any TCP/IP sockets")
}
