//! A real PostgreSQL server for tests: `initdb` into a temporary directory and `postgres` on a
//! free 127.0.0.1 port, password authentication (scram-sha-256) for the user `vulngate`.
//! PostgreSQL refuses to run as root: as root, the data directory is given to the `postgres`
//! system user (created by Debian's `postgresql` package) and the server runs as that user
//! through `setpriv`. Binaries come from the tools cache (`scripts/install-test-tools.sh`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "vulngate";
pub const PASSWORD: &str = "s3cret-Pg-pass";
const INSTALL_HINT: &str =
    "PostgreSQL is missing: run scripts/install-test-tools.sh (installs the bookworm postgresql package)";

fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("VULNGATE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/vulngate-tools")
        });
    let p = dir.join("bin").join(name);
    assert!(p.exists(), "{}: {INSTALL_HINT}", p.display());
    // The link points into /usr/lib/postgresql/<v>/bin; resolve it so `postgres` finds its
    // share directory next to its real path.
    std::fs::canonicalize(&p).unwrap_or(p)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as the server's user (`postgres` when we are root).
fn as_server_user(bin: &Path) -> Command {
    if is_root() {
        // setpriv execs the server itself (no intermediate process), so signals reach it.
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

pub struct Postgres {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Postgres {
    /// initdb + start; waits until the port accepts connections.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
        if is_root() {
            for p in [dir.path(), pwfile.as_path()] {
                let ok = Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(p)
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                assert!(ok, "chown postgres {}", p.display());
            }
        }
        let out = as_server_user(&tool("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::crd_apiserver::free_port();
        let mut pg = Postgres {
            port,
            dir,
            child: None,
        };
        pg.start_server();
        pg
    }

    pub fn start_server(&mut self) {
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.dir.path().join(format!("log-{}", self.port)))
            .or_else(|_| std::fs::File::create("/dev/null"))
            .expect("log file");
        let child = as_server_user(&tool("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Accepting TCP precedes accepting logins by a moment.
                std::thread::sleep(Duration::from_millis(300));
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("postgres exited with {st}: {}", self.log());
                }
            }
            assert!(Instant::now() < deadline, "postgres not up: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("log-{}", self.port)))
            .unwrap_or_default()
    }

    /// Stops the server (fast shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `postgres://vulngate@127.0.0.1:<port>/<db>?sslmode=disable` (no password in it).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// The same URL with the password in it.
    pub fn url_with_password(&self, db: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
