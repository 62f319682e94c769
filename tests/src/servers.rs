//! Real servers for the fleet's tests, bench and demo: a NATS server with
//! JetStream and a PostgreSQL server, each on a free loopback port with
//! its own data directory, started from the Debian packages and stopped
//! by their own PID (also when a test fails: `Drop`).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// A free TCP port on loopback (the OS's choice).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(port: u16, limit: Duration, child: &mut Child, what: &str, log: &Path) -> Result<()> {
    let started = Instant::now();
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited ({status}) before listening:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if started.elapsed() > limit {
            bail!(
                "{what} does not listen on port {port} after {limit:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_child(child: &mut Child, signal: i32) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `nats-server -js` on loopback, or inside a network namespace.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    /// The namespace it runs in (None: this one) and the address it
    /// listens on there.
    ns: Option<String>,
    addr: String,
}

impl Nats {
    pub fn start(dir: &Path) -> Result<Nats> {
        let mut n = Nats {
            child: None,
            port: free_port()?,
            dir: dir.to_path_buf(),
            ns: None,
            addr: "127.0.0.1".into(),
        };
        n.restart()?;
        Ok(n)
    }

    /// Inside namespace `ns`, listening on `addr:4222` there.
    pub fn start_in(ns: &str, addr: &str, dir: &Path) -> Result<Nats> {
        let mut n = Nats {
            child: None,
            port: 4222,
            dir: dir.to_path_buf(),
            ns: Some(ns.to_string()),
            addr: addr.to_string(),
        };
        n.restart()?;
        Ok(n)
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.addr, self.port)
    }

    /// Starts it again (same port, same JetStream store) after [`Nats::stop`].
    pub fn restart(&mut self) -> Result<()> {
        std::fs::create_dir_all(self.dir.join("js"))?;
        let log = self.dir.join("nats.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nats-server"]);
                c
            }
            None => Command::new("nats-server"),
        };
        let mut child = cmd
            .args(["-js", "-sd"])
            .arg(self.dir.join("js"))
            .args(["-a", &self.addr, "-p", &self.port.to_string()])
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "cannot start nats-server (apt-get install nats-server; cargo xtask setup does)",
            )?;
        // Ready when it says so (its port may be in another namespace).
        let started = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Server is ready")
        {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "nats-server exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("nats-server is not ready after 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops it (SIGTERM to its PID, waited for).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, libc::SIGTERM);
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The PostgreSQL server programs (Debian's, not on PATH).
fn pg_bin(name: &str) -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort();
    for v in versions.iter().rev() {
        let p = v.join("bin").join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("PostgreSQL's `{name}` is not installed (apt-get install postgresql; cargo xtask setup does)")
}

/// A PostgreSQL server of its own (initdb'd into `dir`), on loopback with
/// trust authentication for the user `fireplot`. PostgreSQL refuses to
/// run as root: as root it runs as the `postgres` user (setpriv).
pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    /// Only a Unix socket (in the data directory), no TCP: reachable from
    /// every network namespace through the file system.
    unix_only: bool,
}

fn as_postgres(cmd: &Path) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(cmd);
        c
    } else {
        Command::new(cmd)
    }
}

impl Postgres {
    pub fn start(dir: &Path) -> Result<Postgres> {
        Self::start_with(dir, false)
    }

    /// A server reachable only through its Unix socket.
    pub fn start_unix(dir: &Path) -> Result<Postgres> {
        Self::start_with(dir, true)
    }

    fn start_with(dir: &Path, unix_only: bool) -> Result<Postgres> {
        let data = dir.join("data");
        if !data.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&data)?;
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                let ok = Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir)
                    .status()?
                    .success();
                if !ok {
                    bail!("cannot give {} to the postgres user", dir.display());
                }
            }
            let out = as_postgres(&pg_bin("initdb")?)
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "fireplot",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ])
                .output()
                .context("cannot run initdb")?;
            if !out.status.success() {
                bail!(
                    "initdb failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let mut p = Postgres {
            child: None,
            port: free_port()?,
            dir: dir.to_path_buf(),
            unix_only,
        };
        p.restart()?;
        Ok(p)
    }

    pub fn url(&self) -> String {
        if self.unix_only {
            format!(
                "host={} port={} user=fireplot dbname=postgres",
                self.dir.join("data").display(),
                self.port
            )
        } else {
            format!("postgres://fireplot@127.0.0.1:{}/postgres", self.port)
        }
    }

    /// How the client programs (pg_isready, psql) reach it.
    fn client_args(&self) -> [String; 6] {
        [
            "-h".into(),
            self.host(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "fireplot".into(),
        ]
    }

    /// Where clients connect: the TCP host or the socket directory.
    fn host(&self) -> String {
        if self.unix_only {
            self.dir.join("data").display().to_string()
        } else {
            "127.0.0.1".into()
        }
    }

    /// Starts it again on the same port and data after a stop or a kill
    /// (retried for a while: after a kill, the old backends may hold the
    /// shared memory for a moment).
    pub fn restart(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            match self.start_once() {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn start_once(&mut self) -> Result<()> {
        let log = self.dir.join("postgres.log");
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&log)
                .status();
        }
        let mut child = as_postgres(&pg_bin("postgres")?)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "-h",
                if self.unix_only { "" } else { "127.0.0.1" },
                "-p",
                &self.port.to_string(),
                "-k",
            ])
            .arg(self.dir.join("data"))
            // A test server: no fsync (a killed process loses nothing
            // committed; only a power cut would).
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .context("cannot start postgres")?;
        match self.ready(&mut child, &log) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                // Never left behind: a server that did not come up is stopped.
                stop_child(&mut child, libc::SIGKILL);
                Err(e)
            }
        }
    }

    fn ready(&self, child: &mut Child, log: &Path) -> Result<()> {
        if !self.unix_only {
            wait_port(self.port, Duration::from_secs(30), child, "postgres", log)?;
        }
        // Listening is not ready: wait until it accepts a connection.
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "postgres exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            let ok = Command::new(pg_bin("pg_isready")?)
                .args(self.client_args())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            if ok {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("postgres is not ready after 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// A clean stop (SIGINT: fast shutdown).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, libc::SIGINT);
        }
    }

    /// A crash: SIGKILL to the postmaster. Its backends notice and exit;
    /// the next start recovers from the WAL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, libc::SIGKILL);
        }
        // Backends orphaned by the kill end on their own when they see the
        // postmaster gone; wait for the port to close.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.unix_only
            && Instant::now() < deadline
            && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs SQL with psql; its output (unaligned, tuples only).
    /// `psql` on this server, as the user `fireplot` (for a session the
    /// test keeps open: a transaction it commits when it chooses).
    pub fn psql(&self) -> Result<Command> {
        let mut c = Command::new(pg_bin("psql")?);
        c.args(self.client_args()).args(["-d", "postgres", "-At"]);
        Ok(c)
    }

    pub fn sql(&self, sql: &str) -> Result<String> {
        let out = Command::new(pg_bin("psql")?)
            .args(self.client_args())
            .args(["-d", "postgres", "-At", "-c", sql])
            .output()
            .context("cannot run psql")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
