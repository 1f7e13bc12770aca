//! The multi-process harness: N servers as child processes on 127.0.0.1, each with its own
//! dataDir, zoo.cfg and log file, either zabd (`CARGO_BIN_EXE_zabd`) or Apache ZooKeeper
//! (`ENSEMBLE_IMPL=zookeeper`: `java ... QuorumPeerMain zoo.cfg`), so that the same tests can be
//! proved right on ZooKeeper before zabd passes them.
//!
//! Every wait is bounded; a failure names the server and prints the tail of its log. Dropping
//! an [`Ensemble`] kills (SIGKILL) every process it started, also while a test panics, and
//! removes the temporary directory (kept when `ENSEMBLE_KEEP=1`).
//!
//! Environment: `ENSEMBLE_IMPL` (`zabd`, the default, or `zookeeper`); for ZooKeeper,
//! `ZOOKEEPER_CLASSPATH` (default: Debian's jars, with slf4j-simple logging to stderr), `JAVA`
//! and `ENSEMBLE_JAVA_OPTS` (extra JVM options); `RUST_LOG` for zabd (default `info`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zabd::client::{Client, SessionExpired};
use zabd::jute::proto::ConnectRequest;

/// tickTime of every test ensemble: short, so that elections and syncs take about a second.
pub const TICK_MS: u64 = 200;
pub const INIT_LIMIT_TICKS: u64 = 10;
pub const SYNC_LIMIT_TICKS: u64 = 5;
/// The session timeout clients ask for; maxSessionTimeout is raised to allow it.
pub const SESSION_MS: i32 = 10_000;
const MAX_SESSION_MS: i32 = 20_000;
/// The default bound of every wait in the suite.
pub const WAIT: Duration = Duration::from_secs(30);
/// How long one four-letter word or one handshake may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(100);
/// Cold starts tried before giving up when a reserved port was taken meanwhile.
const START_ATTEMPTS: u32 = 3;
const TAIL_LINES: usize = 40;
const LOG_MARKER: &str = "=== ensemble harness: start #";

/// The default Debian classpath: the server jar (its manifest names its dependencies) and
/// slf4j-simple, which logs INFO and above to stderr, where the harness captures it.
const ZK_CLASSPATH: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar";

static NEXT_ROOT: AtomicUsize = AtomicUsize::new(0);

/// Which server binary the harness runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    Zabd,
    ZooKeeper,
}

impl Impl {
    /// `ENSEMBLE_IMPL`: unset or `zabd`, or `zookeeper`.
    pub fn from_env() -> Impl {
        match std::env::var("ENSEMBLE_IMPL").as_deref() {
            Err(_) | Ok("") | Ok("zabd") => Impl::Zabd,
            Ok("zookeeper") => Impl::ZooKeeper,
            Ok(other) => panic!("ENSEMBLE_IMPL={other}: expected zabd or zookeeper"),
        }
    }
}

/// What `srvr` says about a server (or why it said nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Leader,
    Follower,
    Observer,
    Standalone,
    ReadOnly,
    /// "This ZooKeeper instance is not currently serving requests": electing or syncing.
    NotServing,
    /// Connection refused, closed or timed out (starting, frozen by SIGSTOP, ...).
    NoAnswer,
    /// The harness is not running this server.
    Down,
    Unknown(String),
}

impl Mode {
    /// Serving clients with a quorum behind it (or standalone).
    pub fn is_serving(&self) -> bool {
        matches!(
            self,
            Mode::Leader | Mode::Follower | Mode::Observer | Mode::Standalone
        )
    }

    fn parse(srvr: &str) -> Mode {
        if srvr.contains("not currently serving requests") {
            return Mode::NotServing;
        }
        let Some(line) = srvr.lines().find_map(|l| l.strip_prefix("Mode: ")) else {
            return Mode::Unknown(srvr.to_owned());
        };
        match line.trim() {
            "leader" => Mode::Leader,
            "follower" => Mode::Follower,
            "observer" => Mode::Observer,
            "standalone" => Mode::Standalone,
            "read-only" => Mode::ReadOnly,
            other => Mode::Unknown(other.to_owned()),
        }
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct Builder {
    voters: usize,
    observers: usize,
    read_only: bool,
    standalone: bool,
    squat_first_attempt: bool,
    proxied: bool,
}

impl Builder {
    pub fn voters(mut self, n: usize) -> Builder {
        self.voters = n;
        self
    }

    pub fn observers(mut self, n: usize) -> Builder {
        self.observers = n;
        self
    }

    /// `-Dreadonlymode.enabled=true` on every server.
    pub fn read_only(mut self, on: bool) -> Builder {
        self.read_only = on;
        self
    }

    /// For the harness's own tests: on the first attempt a listener holds server 0's client
    /// port, so that the start must detect the collision and retry with new ports.
    pub fn squat_first_attempt(mut self) -> Builder {
        self.squat_first_attempt = true;
        self
    }

    /// Peer traffic through a [`Proxy`]: each server gets its own zoo.cfg in which every other
    /// server's quorum and election ports are a proxy listener for that directed pair, so that
    /// links can be cut and healed ([`Ensemble::cut`]).
    pub fn proxied(mut self, on: bool) -> Builder {
        self.proxied = on;
        self
    }

    /// Starts every server and waits (bounded) until all serve with exactly one leader.
    pub fn start(self) -> Ensemble {
        Ensemble::start_with(self)
    }
}

struct Server {
    /// The `myid` (index + 1).
    id: u64,
    observer: bool,
    dir: PathBuf,
    cfg: PathBuf,
    log: PathBuf,
    client_port: u16,
    quorum_port: u16,
    election_port: u16,
    child: Option<Child>,
    frozen: bool,
    starts: u32,
    /// Per other server: the (quorum, election) ports this server's zoo.cfg names for it
    /// (proxy listeners); empty when not proxied.
    peer_ports: Vec<(u16, u16)>,
}

/// N servers run as child processes; see the module doc.
pub struct Ensemble {
    imp: Impl,
    spec: Builder,
    root: PathBuf,
    servers: Vec<Server>,
    attempts: u32,
    proxy: Option<Proxy>,
}

impl Ensemble {
    /// `voters` participants (3 or 5 in the tests), no observers, read-only mode off.
    pub fn builder(voters: usize) -> Builder {
        Builder {
            voters,
            observers: 0,
            read_only: false,
            standalone: false,
            squat_first_attempt: false,
            proxied: false,
        }
    }

    /// One server with no `server.N` lines: what zabd can run today.
    pub fn standalone() -> Builder {
        Builder {
            standalone: true,
            ..Ensemble::builder(1)
        }
    }

    fn start_with(spec: Builder) -> Ensemble {
        assert!(spec.voters >= 1, "an ensemble needs a voter");
        assert!(
            !spec.standalone || (spec.voters == 1 && spec.observers == 0),
            "standalone is one server"
        );
        let imp = Impl::from_env();
        let n = NEXT_ROOT.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("zabd-ensemble-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the ensemble's temporary directory");
        let mut ens = Ensemble {
            imp,
            spec,
            root,
            servers: Vec::new(),
            attempts: 0,
            proxy: None,
        };
        while ens.attempts < START_ATTEMPTS {
            ens.attempts += 1;
            ens.layout();
            let squatter = (ens.spec.squat_first_attempt && ens.attempts == 1).then(|| {
                TcpListener::bind(("127.0.0.1", ens.servers[0].client_port))
                    .expect("hold server 0's client port")
            });
            for i in 0..ens.len() {
                ens.start(i);
            }
            match ens.wait_formed(WAIT) {
                Ok(_) => return ens,
                Err(i) => {
                    drop(squatter);
                    eprintln!(
                        "ensemble harness: server {} could not bind a port (attempt {}); \
                         retrying with new ports",
                        ens.servers[i].id, ens.attempts
                    );
                    for j in 0..ens.len() {
                        ens.kill9(j);
                    }
                }
            }
        }
        panic!("ports kept colliding: {START_ATTEMPTS} attempts to start the ensemble failed");
    }

    /// Reserves ports and writes each server's dataDir, myid and zoo.cfg (fresh per attempt).
    fn layout(&mut self) {
        let count = self.spec.voters + self.spec.observers;
        let ports = reserve_ports(3 * count);
        let attempt = self.root.join(format!("attempt-{}", self.attempts));
        self.servers = (0..count)
            .map(|i| {
                let id = i as u64 + 1;
                let dir = attempt.join(format!("server-{id}"));
                std::fs::create_dir_all(&dir).expect("create a dataDir");
                std::fs::write(dir.join("myid"), format!("{id}\n")).expect("write myid");
                Server {
                    id,
                    observer: i >= self.spec.voters,
                    cfg: attempt.join(format!("zoo-{id}.cfg")),
                    log: attempt.join(format!("server-{id}.log")),
                    dir,
                    client_port: ports[3 * i],
                    quorum_port: ports[3 * i + 1],
                    election_port: ports[3 * i + 2],
                    child: None,
                    frozen: false,
                    starts: 0,
                    peer_ports: Vec::new(),
                }
            })
            .collect();
        if let Some(old) = self.proxy.take() {
            old.shutdown();
        }
        if self.spec.proxied && !self.spec.standalone {
            let targets: Vec<(u16, u16)> = self
                .servers
                .iter()
                .map(|s| (s.quorum_port, s.election_port))
                .collect();
            let proxy = Proxy::start(&targets);
            for (i, s) in self.servers.iter_mut().enumerate() {
                s.peer_ports = (0..count).map(|j| proxy.listen_ports(i, j)).collect();
            }
            self.proxy = Some(proxy);
        }
        for s in &self.servers {
            std::fs::write(&s.cfg, self.zoo_cfg(s)).expect("write zoo.cfg");
        }
    }

    fn zoo_cfg(&self, me: &Server) -> String {
        let mut cfg = format!(
            "tickTime={TICK_MS}\ninitLimit={INIT_LIMIT_TICKS}\nsyncLimit={SYNC_LIMIT_TICKS}\n\
             dataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
             maxSessionTimeout={MAX_SESSION_MS}\n4lw.commands.whitelist=*\n\
             admin.enableServer=false\n\
             # A learner older than the leader's committed log (500 proposals) gets a snapshot:\n\
             # ZooKeeper would otherwise also replay its on-disk log when that is small.\n\
             snapshotSizeFactor=-1\n",
            me.dir.display(),
            me.client_port
        );
        if self.spec.read_only {
            // ZooKeeper 3.8's read-only server opens new sessions only as local sessions; it
            // answers createSession with NOTREADONLY without this.
            cfg.push_str("localSessionsEnabled=true\n");
        }
        if self.spec.standalone {
            return cfg;
        }
        if me.observer {
            cfg.push_str("peerType=observer\n");
        }
        for (j, s) in self.servers.iter().enumerate() {
            let (quorum_port, election_port) = match me.peer_ports.get(j) {
                Some(&ports) if s.id != me.id => ports,
                _ => (s.quorum_port, s.election_port),
            };
            let role = if s.observer {
                "observer"
            } else {
                "participant"
            };
            cfg.push_str(&format!(
                "server.{}=127.0.0.1:{}:{}:{role}\n",
                s.id, quorum_port, election_port
            ));
        }
        cfg
    }

    // ---------- processes ----------

    /// Starts server `i` (again) with its own dataDir and config; does not wait.
    pub fn start(&mut self, i: usize) {
        assert!(
            !self.is_running(i),
            "server {} is already running",
            self.servers[i].id
        );
        let imp = self.imp;
        let read_only = self.spec.read_only;
        let s = &mut self.servers[i];
        s.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)
            .expect("open the server's log file");
        writeln!(
            log,
            "{LOG_MARKER}{} of server {} ({imp:?}) ===",
            s.starts, s.id
        )
        .expect("write the log marker");
        let mut cmd = match imp {
            Impl::Zabd => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_zabd"));
                if std::env::var_os("RUST_LOG").is_none() {
                    c.env("RUST_LOG", "info");
                }
                if read_only {
                    c.arg("-Dreadonlymode.enabled=true");
                }
                c
            }
            Impl::ZooKeeper => {
                let cp = zookeeper_classpath();
                let mut c = Command::new(std::env::var("JAVA").unwrap_or_else(|_| "java".into()));
                c.args([
                    "-Xmx256m",
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    "-Dzookeeper.admin.enableServer=false",
                    "-Dzookeeper.jmx.log4j.disable=true",
                ]);
                if read_only {
                    c.arg("-Dreadonlymode.enabled=true");
                }
                // Extra JVM options, e.g. to check that a test fails when ZooKeeper is made
                // to sync differently (-Dzookeeper.forceSnapshotSync=true).
                if let Ok(opts) = std::env::var("ENSEMBLE_JAVA_OPTS") {
                    c.args(opts.split_whitespace());
                }
                c.args([
                    "-cp",
                    &cp,
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                ]);
                c
            }
        };
        cmd.arg(&s.cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        match cmd.spawn() {
            Ok(child) => s.child = Some(child),
            Err(e) => panic!(
                "cannot spawn server {} ({imp:?}, {:?}): {e}",
                s.id,
                cmd.get_program()
            ),
        }
        s.frozen = false;
    }

    /// SIGKILL, then reaps the process. Nothing if it is not running.
    pub fn kill9(&mut self, i: usize) {
        let s = &mut self.servers[i];
        if let Some(mut child) = s.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        s.frozen = false;
    }

    /// SIGTERM (after SIGCONT if frozen) and waits up to 30 s for the exit.
    pub fn stop(&mut self, i: usize) {
        if self.servers[i].frozen {
            self.sigcont(i);
        }
        let Some(pid) = self.pid(i) else { return };
        signal(pid, "TERM");
        let deadline = Instant::now() + WAIT;
        loop {
            let child = self.servers[i].child.as_mut().expect("running");
            if let Ok(Some(_)) = child.try_wait() {
                self.servers[i].child = None;
                return;
            }
            if Instant::now() >= deadline {
                self.kill9(i);
                self.fail(i, "did not exit within 30 s of SIGTERM (killed)");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Freezes server `i` (SIGSTOP): its sockets stay open but it answers nothing.
    pub fn sigstop(&mut self, i: usize) {
        let pid = self.pid(i).expect("sigstop: the server is not running");
        signal(pid, "STOP");
        // kill(2) returns once the signal is queued; wait until every thread has stopped.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !all_threads_stopped(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.servers[i].frozen = true;
    }

    pub fn sigcont(&mut self, i: usize) {
        let pid = self.pid(i).expect("sigcont: the server is not running");
        signal(pid, "CONT");
        self.servers[i].frozen = false;
    }

    /// Whether the harness has a live process for server `i` (reaping it if it exited).
    pub fn is_running(&mut self, i: usize) -> bool {
        let s = &mut self.servers[i];
        match s.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                s.child = None;
                false
            }
            None => false,
        }
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.servers[i].child.as_ref().map(Child::id)
    }

    /// Panics (with the log tail) if a server the harness started has exited by itself.
    fn check_alive(&mut self) {
        for i in 0..self.len() {
            if let Some(child) = self.servers[i].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.servers[i].child = None;
                    self.fail(i, &format!("exited by itself ({status})"));
                }
            }
        }
    }

    // ---------- facts ----------

    pub fn imp(&self) -> Impl {
        self.imp
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// How many cold starts it took (more than 1 after a port collision).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn is_observer(&self, i: usize) -> bool {
        self.servers[i].observer
    }

    pub fn voters(&self) -> usize {
        self.spec.voters
    }

    pub fn client_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.servers[i].client_port))
    }

    /// "127.0.0.1:p1,127.0.0.1:p2,..." for every server.
    pub fn connect_string(&self) -> String {
        self.connect_string_of(&(0..self.len()).collect::<Vec<_>>())
    }

    pub fn connect_string_of(&self, servers: &[usize]) -> String {
        servers
            .iter()
            .map(|&i| self.client_addr(i).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.servers[i].dir
    }

    /// The root of everything this ensemble wrote (removed on drop).
    pub fn root(&self) -> &Path {
        &self.root
    }

    // ---------- four-letter words ----------

    /// The answer to `word`, or `None` if the server refused, closed or stayed silent.
    pub fn four_letter(&self, i: usize, word: &str) -> Option<String> {
        four_letter(self.client_addr(i), word)
    }

    pub fn mode(&mut self, i: usize) -> Mode {
        if !self.is_running(i) {
            return Mode::Down;
        }
        match self.four_letter(i, "srvr") {
            Some(text) if !text.is_empty() => Mode::parse(&text),
            _ => Mode::NoAnswer,
        }
    }

    /// `mntr` as a map; panics (with the log tail) if the server does not answer.
    pub fn mntr(&self, i: usize) -> BTreeMap<String, String> {
        let text = self
            .four_letter(i, "mntr")
            .unwrap_or_else(|| self.fail(i, "no answer to mntr"));
        text.lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect()
    }

    /// One integer of `mntr`; panics naming the server if it is missing.
    pub fn mntr_i64(&self, i: usize, key: &str) -> i64 {
        let m = self.mntr(i);
        match m.get(key).map(|v| v.parse::<i64>()) {
            Some(Ok(n)) => n,
            _ => self.fail(i, &format!("mntr has no integer {key}: {m:?}")),
        }
    }

    // ---------- waits ----------

    /// Waits until exactly one running server leads and a quorum of voters serves as leader or
    /// follower; returns the leader's index.
    pub fn wait_leader(&mut self, timeout: Duration) -> usize {
        let quorum = self.spec.voters / 2 + 1;
        self.wait_for("a leader with a quorum of followers", timeout, |modes| {
            let leaders: Vec<usize> = (0..modes.len())
                .filter(|&i| modes[i] == Mode::Leader)
                .collect();
            let voting = modes
                .iter()
                .filter(|m| matches!(m, Mode::Leader | Mode::Follower))
                .count();
            (leaders.len() == 1 && voting >= quorum).then(|| leaders[0])
        })
    }

    /// Waits until every running server serves (exactly one leader unless standalone); returns
    /// the leader's index (0 when standalone).
    pub fn wait_all_serving(&mut self, timeout: Duration) -> usize {
        match self.wait_formed(timeout) {
            Ok(leader) => leader,
            Err(i) => self.fail(i, "exited: a port it needs is in use"),
        }
    }

    /// Waits until server `i` serves; returns its mode.
    pub fn wait_serving(&mut self, i: usize, timeout: Duration) -> Mode {
        let id = self.servers[i].id;
        self.wait_for(&format!("server {id} to serve"), timeout, |modes| {
            modes[i].is_serving().then(|| modes[i].clone())
        })
    }

    /// Like `wait_all_serving`, but a server that exited because a port was taken is returned
    /// as `Err(index)` so that the cold start can retry on new ports.
    fn wait_formed(&mut self, timeout: Duration) -> Result<usize, usize> {
        let deadline = Instant::now() + timeout;
        let standalone = self.spec.standalone;
        loop {
            for i in 0..self.len() {
                if self.servers[i].child.is_some() && !self.is_running(i) {
                    if port_in_use(&self.log_since_start(i)) {
                        return Err(i);
                    }
                    self.fail(i, "exited by itself while the ensemble was forming");
                }
            }
            let modes = self.modes();
            let running: Vec<usize> = (0..self.len())
                .filter(|&i| modes[i] != Mode::Down)
                .collect();
            let leaders: Vec<usize> = running
                .iter()
                .copied()
                .filter(|&i| modes[i] == Mode::Leader)
                .collect();
            let all_serving = running.iter().all(|&i| modes[i].is_serving());
            if all_serving && standalone {
                return Ok(0);
            }
            if all_serving && leaders.len() == 1 {
                return Ok(leaders[0]);
            }
            if Instant::now() >= deadline {
                self.fail_all(
                    &format!("every running server serving with one leader within {timeout:?}"),
                    &modes,
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls every server's mode until `done` returns a value; fails with every mode and log
    /// tail on timeout, and with the log of any server that exits by itself meanwhile.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Mode]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive();
            let modes = self.modes();
            if let Some(v) = done(&modes) {
                return v;
            }
            if Instant::now() >= deadline {
                self.fail_all(&format!("{what} within {timeout:?}"), &modes);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Every server's mode. A server that runs standalone although its zoo.cfg lists the
    /// ensemble fails at once rather than after a timeout.
    pub fn modes(&mut self) -> Vec<Mode> {
        let modes: Vec<Mode> = (0..self.len()).map(|i| self.mode(i)).collect();
        if !self.spec.standalone {
            if let Some(i) = modes.iter().position(|m| *m == Mode::Standalone) {
                self.fail(
                    i,
                    "runs standalone although its zoo.cfg lists server.N lines",
                );
            }
        }
        modes
    }

    // ---------- network (proxied ensembles) ----------

    fn proxy(&self) -> &Proxy {
        self.proxy
            .as_ref()
            .expect("network faults need Ensemble::builder(n).proxied(true)")
    }

    /// Cuts the directed link `from` -> `to`: connections `from` opened to `to` are closed and
    /// new ones refused until [`Ensemble::heal`].
    pub fn cut(&self, from: usize, to: usize) {
        self.proxy().set_cut(from, to, true);
    }

    pub fn heal(&self, from: usize, to: usize) {
        self.proxy().set_cut(from, to, false);
    }

    /// Cuts both directions between every pair in different `groups`, heals the rest. Servers
    /// in no group are cut from everyone.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let group_of = |i: usize| groups.iter().position(|g| g.contains(&i));
        for i in 0..self.len() {
            for j in 0..self.len() {
                if i != j {
                    let same = group_of(i).is_some() && group_of(i) == group_of(j);
                    self.proxy().set_cut(i, j, !same);
                }
            }
        }
    }

    /// Stalls every byte `from` sends to `to` (a one-way partition); `to` still reaches `from`.
    pub fn stall(&self, from: usize, to: usize, on: bool) {
        self.proxy().set_stalled(from, to, on);
    }

    pub fn heal_all(&self) {
        for i in 0..self.len() {
            for j in 0..self.len() {
                if i != j {
                    self.proxy().set_stalled(i, j, false);
                    self.proxy().set_cut(i, j, false);
                }
            }
        }
    }

    // ---------- clients ----------

    /// A new session on server `i` through zabd's blocking client (10 s session, 10 s I/O
    /// timeout); panics with the server's log tail if it cannot be opened.
    pub fn client(&self, i: usize) -> Client {
        connect(self.client_addr(i), SESSION_MS, Duration::from_secs(10))
            .unwrap_or_else(|e| self.fail(i, &format!("cannot open a session: {e}")))
    }

    // ---------- logs ----------

    /// The whole log file of server `i` (every run of it).
    pub fn log(&self, i: usize) -> String {
        let mut text = Vec::new();
        if let Ok(mut f) = File::open(&self.servers[i].log) {
            let _ = f.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The log of the latest run of server `i`.
    pub fn log_since_start(&self, i: usize) -> String {
        let log = self.log(i);
        match log.rfind(LOG_MARKER) {
            Some(at) => log[at..].to_owned(),
            None => log,
        }
    }

    /// The last `lines` lines of server `i`'s log, without the lines the harness's own
    /// four-letter probes cause.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let log = self.log(i);
        let all: Vec<&str> = log.lines().filter(|l| !is_probe_line(l)).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Panics naming server `i` with `msg` and the tail of its log.
    pub fn fail(&self, i: usize, msg: &str) -> ! {
        let s = &self.servers[i];
        panic!(
            "server {} ({:?}, client port {}): {msg}\n--- last {TAIL_LINES} lines of {} ---\n{}",
            s.id,
            self.imp,
            s.client_port,
            s.log.display(),
            self.log_tail(i, TAIL_LINES)
        )
    }

    fn fail_all(&self, what: &str, modes: &[Mode]) -> ! {
        let mut msg = format!("timed out waiting for {what}; modes:");
        for (i, m) in modes.iter().enumerate() {
            msg.push_str(&format!(" {}={m:?}", self.servers[i].id));
        }
        for i in 0..self.len() {
            msg.push_str(&format!(
                "\n--- server {}: last 15 lines of {} ---\n{}",
                self.servers[i].id,
                self.servers[i].log.display(),
                self.log_tail(i, 15)
            ));
        }
        panic!("{msg}")
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for i in 0..self.servers.len() {
            self.kill9(i);
        }
        if let Some(proxy) = self.proxy.take() {
            proxy.shutdown();
        }
        if panicking {
            for i in 0..self.servers.len() {
                eprintln!(
                    "--- server {} ({:?}): last {TAIL_LINES} lines of its log ---\n{}",
                    self.servers[i].id,
                    self.imp,
                    self.log_tail(i, TAIL_LINES)
                );
            }
        }
        if std::env::var("ENSEMBLE_KEEP").as_deref() == Ok("1") {
            eprintln!("ensemble harness: kept {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// `n` distinct free ports on 127.0.0.1: all bound at once (so none repeats), then released
/// for the servers to bind. Another process may take one meanwhile; the cold start retries.
pub fn reserve_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// "Processing srvr command" and the like, logged for every probe by both servers.
fn is_probe_line(line: &str) -> bool {
    ["srvr", "mntr", "ruok"]
        .iter()
        .any(|w| line.contains(&format!("Processing {w} command")))
}

fn port_in_use(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use") || log.contains("address in use")
}

fn zookeeper_classpath() -> String {
    let cp = std::env::var("ZOOKEEPER_CLASSPATH").unwrap_or_else(|_| ZK_CLASSPATH.to_owned());
    for jar in cp.split(':').filter(|p| p.ends_with(".jar")) {
        assert!(
            Path::new(jar).exists(),
            "{jar} is missing: apt-get install -y zookeeper zookeeper-bin libslf4j-java, \
             or set ZOOKEEPER_CLASSPATH"
        );
    }
    cp
}

/// True when /proc says every thread of `pid` is stopped (state T).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|t| {
        std::fs::read_to_string(t.path().join("status")).is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("State:") && l.contains('T'))
        })
    })
}

/// Sends a signal by name with /usr/bin/kill (the tests add no crate for libc).
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("run kill -s {name} {pid}: {e}"));
    assert!(status.success(), "kill -s {name} {pid}: {status}");
}

/// Sends a four-letter word and reads until the server closes, `PROBE_TIMEOUT` per step.
pub fn four_letter(addr: SocketAddr, word: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    s.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    s.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    s.write_all(word.as_bytes()).ok()?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if out.len() + n <= 1 << 20 => out.extend_from_slice(&buf[..n]),
            Ok(_) => return None,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// A new session through zabd's client, `io_timeout` for the handshake and each reply.
pub fn connect(addr: SocketAddr, session_ms: i32, io_timeout: Duration) -> io::Result<Client> {
    handshake(addr, session_ms, io_timeout, 0, &[0; 16], false)
}

/// A handshake with every field chosen: an existing session (`session_id`, `passwd`) moved to
/// `addr`, or a read-only one. An answer with session 0 or timeout 0 (the session expired) is
/// the error `zabd::client::is_session_expired` recognises.
pub fn handshake(
    addr: SocketAddr,
    session_ms: i32,
    io_timeout: Duration,
    session_id: i64,
    passwd: &[u8],
    read_only: bool,
) -> io::Result<Client> {
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        time_out: session_ms,
        session_id,
        passwd: Bytes::copy_from_slice(passwd),
        read_only: Some(read_only),
    };
    let mut c = Client::connect_with(addr, &req, io_timeout)?;
    let resp = c.connect_response();
    if resp.session_id == 0 || resp.time_out <= 0 {
        let expired = SessionExpired { session_id };
        return Err(io::Error::new(io::ErrorKind::ConnectionRefused, expired));
    }
    c.set_io_timeout(io_timeout)?;
    Ok(c)
}

// ---------- the peer proxy ----------

/// How often proxy threads look at their flags.
const PROXY_POLL: Duration = Duration::from_millis(50);
/// Live connections per link; more are refused (peers keep one or two per link).
const PROXY_MAX_CONNS: usize = 16;

struct Link {
    cut: std::sync::atomic::AtomicBool,
    /// One-way stalls: the proxy stops reading the data `from` sends on this link's
    /// connections (`forward`), or the data `to` sends back (`backward`). The bytes wait in
    /// the kernel's buffers, as on a network that drops one direction until TCP gives up.
    stall_forward: std::sync::atomic::AtomicBool,
    stall_backward: std::sync::atomic::AtomicBool,
    /// Pump threads alive (two per connection).
    live_pumps: AtomicUsize,
    /// Handles to close on a cut; entries of closed connections are trimmed when it grows.
    conns: std::sync::Mutex<Vec<TcpStream>>,
}

/// A byte-forwarding TCP proxy between peers on 127.0.0.1: one listener per directed pair
/// (i -> j) and port kind (quorum, election), forwarding to j's real port. A cut link closes
/// its connections and refuses new ones until healed. Threads: one acceptor for all
/// listeners, two pumps per live connection; all stop on [`Proxy::shutdown`].
pub struct Proxy {
    n: usize,
    /// Indexed by `from * n + to`: (quorum, election) listen ports.
    ports: Vec<(u16, u16)>,
    links: Vec<std::sync::Arc<Link>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: std::sync::Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl Proxy {
    /// `targets[j]`: server j's real (quorum, election) ports.
    pub fn start(targets: &[(u16, u16)]) -> Proxy {
        use std::sync::{atomic::AtomicBool, Arc, Mutex};
        let n = targets.len();
        let stop = Arc::new(AtomicBool::new(false));
        let threads = Arc::new(Mutex::new(Vec::new()));
        let mut ports = Vec::with_capacity(n * n);
        let mut links = Vec::with_capacity(n * n);
        let mut listeners = Vec::new();
        for from in 0..n {
            for (to, &(quorum, election)) in targets.iter().enumerate() {
                let link = Arc::new(Link {
                    cut: AtomicBool::new(false),
                    stall_forward: AtomicBool::new(false),
                    stall_backward: AtomicBool::new(false),
                    live_pumps: AtomicUsize::new(0),
                    conns: Mutex::new(Vec::new()),
                });
                let mut pair = (0, 0);
                if from != to {
                    for (k, target) in [quorum, election].into_iter().enumerate() {
                        let l = TcpListener::bind("127.0.0.1:0").expect("bind a proxy listener");
                        l.set_nonblocking(true).expect("nonblocking proxy listener");
                        let port = l.local_addr().expect("proxy local_addr").port();
                        if k == 0 {
                            pair.0 = port;
                        } else {
                            pair.1 = port;
                        }
                        listeners.push((l, target, link.clone()));
                    }
                }
                ports.push(pair);
                links.push(link);
            }
        }
        let (stop2, threads2) = (stop.clone(), threads.clone());
        let acceptor = std::thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || accept_loop(listeners, stop2, threads2))
            .expect("spawn the proxy acceptor");
        threads.lock().expect("proxy threads").push(acceptor);
        Proxy {
            n,
            ports,
            links,
            stop,
            threads,
        }
    }

    /// The (quorum, election) ports server `from` uses to reach server `to`.
    pub fn listen_ports(&self, from: usize, to: usize) -> (u16, u16) {
        self.ports[from * self.n + to]
    }

    pub fn set_cut(&self, from: usize, to: usize, cut: bool) {
        let link = &self.links[from * self.n + to];
        link.cut.store(cut, Ordering::SeqCst);
        if cut {
            for c in link.conns.lock().expect("proxy conns").drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Stalls (or resumes) every byte server `a` sends to server `b`, on connections either
    /// of them opened; the other direction keeps flowing.
    pub fn set_stalled(&self, a: usize, b: usize, on: bool) {
        self.links[a * self.n + b]
            .stall_forward
            .store(on, Ordering::SeqCst);
        self.links[b * self.n + a]
            .stall_backward
            .store(on, Ordering::SeqCst);
    }

    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.links[from * self.n + to].cut.load(Ordering::SeqCst)
    }

    /// Stops every thread and closes every connection.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        for link in &self.links {
            for c in link.conns.lock().expect("proxy conns").drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
        // Pumps exit within PROXY_POLL; the acceptor spawns no more once it saw `stop`.
        loop {
            let next = self.threads.lock().expect("proxy threads").pop();
            match next {
                Some(t) => {
                    let _ = t.join();
                }
                None => break,
            }
        }
    }
}

fn accept_loop(
    listeners: Vec<(TcpListener, u16, std::sync::Arc<Link>)>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: std::sync::Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>,
) {
    while !stop.load(Ordering::SeqCst) {
        let mut idle = true;
        for (l, target, link) in &listeners {
            let Ok((inbound, _)) = l.accept() else {
                continue;
            };
            idle = false;
            let mut conns = link.conns.lock().expect("proxy conns");
            let live = link.live_pumps.load(Ordering::SeqCst) / 2;
            if link.cut.load(Ordering::SeqCst) || live >= PROXY_MAX_CONNS {
                continue; // dropped: the peer sees the connection closed
            }
            let addr = SocketAddr::from(([127, 0, 0, 1], *target));
            let Ok(outbound) = TcpStream::connect_timeout(&addr, PROXY_POLL * 4) else {
                continue;
            };
            let (Ok(in2), Ok(out2)) = (inbound.try_clone(), outbound.try_clone()) else {
                continue;
            };
            let (Ok(in3), Ok(out3)) = (inbound.try_clone(), outbound.try_clone()) else {
                continue;
            };
            let _ = inbound.set_nonblocking(false);
            if conns.len() >= 4 * PROXY_MAX_CONNS {
                conns.drain(..2 * PROXY_MAX_CONNS);
            }
            conns.push(in3);
            conns.push(out3);
            drop(conns);
            link.live_pumps.fetch_add(2, Ordering::SeqCst);
            let mut ts = threads.lock().expect("proxy threads");
            ts.retain(|t| !t.is_finished());
            for (src, dst, forward) in [(inbound, out2, true), (outbound, in2, false)] {
                let (stop, link) = (stop.clone(), link.clone());
                if let Ok(t) = std::thread::Builder::new()
                    .name("proxy-pump".into())
                    .spawn(move || pump(src, dst, &stop, &link, forward))
                {
                    ts.push(t);
                }
            }
        }
        if idle {
            std::thread::sleep(PROXY_POLL / 5);
        }
    }
}

/// Copies `src` to `dst` until either closes, the link is cut or the proxy stops; while its
/// direction is stalled it reads nothing.
fn pump(
    mut src: TcpStream,
    mut dst: TcpStream,
    stop: &std::sync::atomic::AtomicBool,
    link: &Link,
    forward: bool,
) {
    let halted = || stop.load(Ordering::SeqCst) || link.cut.load(Ordering::SeqCst);
    let stall = if forward {
        &link.stall_forward
    } else {
        &link.stall_backward
    };
    let _ = src.set_read_timeout(Some(PROXY_POLL));
    let _ = dst.set_write_timeout(Some(PROXY_POLL));
    let mut buf = [0u8; 16 * 1024];
    'outer: while !halted() {
        if stall.load(Ordering::SeqCst) {
            std::thread::sleep(PROXY_POLL);
            continue;
        }
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let mut sent = 0;
        while sent < n {
            if halted() {
                break 'outer;
            }
            match dst.write(&buf[sent..n]) {
                Ok(0) => break 'outer,
                Ok(k) => sent += k,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break 'outer,
            }
        }
    }
    let _ = src.shutdown(std::net::Shutdown::Both);
    let _ = dst.shutdown(std::net::Shutdown::Both);
    link.live_pumps.fetch_sub(1, Ordering::SeqCst);
}
