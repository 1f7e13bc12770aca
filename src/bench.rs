//! `zabd bench`: a load generator for ZooKeeper-protocol servers (zabd or Apache ZooKeeper).
//!
//! N sessions, spread round-robin over the given servers, each keep W requests outstanding
//! (closed loop), or requests go out at a fixed total rate (open loop, `--rate`) with latency
//! measured from each request's scheduled send time, so a stalled server cannot hide its
//! stall by slowing the generator down (coordinated omission).
//!
//! The run: a control session creates `<root>`, `<root>/keys/k<i>` (K nodes holding a value
//! of the given size; setData/getData/exists/getChildren pick one uniformly) and
//! `<root>/new` (the parent of nodes created during the run; deletes remove nodes this run
//! created, oldest first). Then the load runs for the warm-up and the measured window, on one
//! thread and one mio `Poll` ([`engine`]). Finally everything the run created is deleted,
//! within `--cleanup-timeout`.

mod engine;
pub mod histogram;

use crate::client::{Client, Frame};
use crate::jute::data::Acl;
use crate::jute::proto::{op, Code, CreateRequest, DeleteRequest, Request};
use bytes::Bytes;
use engine::{Engine, Outcome, Workload};
use histogram::Histogram;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The operations a mix may contain, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Create = 0,
    SetData = 1,
    GetData = 2,
    Exists = 3,
    GetChildren = 4,
    Delete = 5,
}

pub const OP_KINDS: [OpKind; 6] = [
    OpKind::Create,
    OpKind::SetData,
    OpKind::GetData,
    OpKind::Exists,
    OpKind::GetChildren,
    OpKind::Delete,
];

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::SetData => "setData",
            OpKind::GetData => "getData",
            OpKind::Exists => "exists",
            OpKind::GetChildren => "getChildren",
            OpKind::Delete => "delete",
        }
    }

    fn parse(name: &str) -> Option<OpKind> {
        Some(match name.to_ascii_lowercase().as_str() {
            "create" => OpKind::Create,
            "set" | "setdata" => OpKind::SetData,
            "get" | "getdata" => OpKind::GetData,
            "exists" => OpKind::Exists,
            "children" | "ls" | "getchildren" => OpKind::GetChildren,
            "delete" | "del" => OpKind::Delete,
            _ => return None,
        })
    }

    /// Whether the op addresses the pre-created key nodes.
    fn uses_keys(self) -> bool {
        matches!(
            self,
            OpKind::SetData | OpKind::GetData | OpKind::Exists | OpKind::GetChildren
        )
    }
}

/// Everything `zabd bench` can be told.
#[derive(Clone, Debug)]
pub struct Options {
    pub servers: Vec<SocketAddr>,
    pub sessions: usize,
    pub window: usize,
    /// Weight per op, in `OP_KINDS` order.
    pub weights: [u64; 6],
    pub value_size_bytes: usize,
    pub duration_s: f64,
    pub requests: Option<u64>,
    pub keys: usize,
    pub root: String,
    pub warmup_s: f64,
    pub rate_per_s: Option<f64>,
    pub json: bool,
    pub session_timeout_ms: i32,
    pub seed: u64,
    pub progress: Option<bool>,
    pub cleanup: bool,
    pub cleanup_timeout_s: f64,
    pub connect_timeout_s: f64,
}

impl Default for Options {
    /// The documented defaults, with servers 127.0.0.1:2181 and a seed of 1.
    fn default() -> Options {
        let mut o = Options::defaults();
        o.servers = vec![SocketAddr::from(([127, 0, 0, 1], 2181))];
        o.seed = 1;
        o
    }
}

impl Options {
    fn defaults() -> Options {
        Options {
            servers: Vec::new(),
            sessions: 8,
            window: 100,
            weights: [0, 10, 90, 0, 0, 0],
            value_size_bytes: 100,
            duration_s: 10.0,
            requests: None,
            keys: 1000,
            root: format!("/zabd-bench-{}", std::process::id()),
            warmup_s: 0.0,
            rate_per_s: None,
            json: false,
            session_timeout_ms: 30_000,
            seed: 0,
            progress: None,
            cleanup: true,
            cleanup_timeout_s: 30.0,
            connect_timeout_s: 10.0,
        }
    }

    fn progress_enabled(&self) -> bool {
        self.progress
            .unwrap_or(self.warmup_s + self.duration_s > 3.0)
    }

    fn mix_string(&self) -> String {
        let mut s = String::new();
        for k in OP_KINDS {
            let w = self.weights[k as usize];
            if w > 0 {
                if !s.is_empty() {
                    s.push(',');
                }
                let _ = write!(s, "{}={}", k.name(), w);
            }
        }
        s
    }

    fn needs_keys(&self) -> bool {
        OP_KINDS
            .iter()
            .any(|k| k.uses_keys() && self.weights[*k as usize] > 0)
    }
}

pub const USAGE: &str = "\
usage: zabd bench [options]

Load generator for ZooKeeper-protocol servers (zabd or Apache ZooKeeper).

  -s, --servers HOST:PORT[,...]  servers; sessions are spread round-robin (default 127.0.0.1:2181)
  -c, --sessions N               sessions (connections) (default 8)
  -w, --window N                 outstanding requests per session (default 100); with --rate,
                                 the most a session may have outstanding
  -m, --mix OP=W[,...]           op weights; ops: create, set|setData, get|getData, exists,
                                 children|getChildren, delete (default get=90,set=10)
  -b, --value-size BYTES         data size for create and setData, and of the key nodes (default 100)
  -d, --duration SECONDS         measured window (default 10; 600 max if only --requests is given)
  -n, --requests N               end the measured window after N completed requests
  -k, --keys N                   key nodes for set/get/exists/getChildren (default 1000)
      --root PATH                parent of everything the run creates (default /zabd-bench-<pid>)
      --warmup SECONDS           load before measuring (default 0)
  -r, --rate OPS_PER_S           open loop at this total rate; latency counts from the
                                 scheduled send time
      --session-timeout-ms MS    requested session timeout (default 30000)
      --seed N                   random seed (default: from the clock)
      --json                     print the result as one JSON object instead of a table
      --progress / --quiet       force per-second progress on stderr on / off (default: on
                                 when warm-up + duration > 3 s)
      --no-cleanup               leave the nodes the run created
      --cleanup-timeout SECONDS  bound on deleting them (default 30)
      --connect-timeout SECONDS  bound on connecting all sessions (default 10)
  -h, --help                     this text

Output: a table and a final `result:` line of key=value pairs (or --json). Latencies are in
microseconds. Errors count failed replies by code, plus ConnectionLoss(-4) for requests lost
with a connection. Exit status: 0 ok; 1 the run failed, or sessions failed (the report is
still printed); 2 bad usage.

Examples:
  zabd bench -s 127.0.0.1:2181 -c 8 -w 100 --mix set=100 -d 10 --warmup 2
  zabd bench -s h1:2181,h2:2181,h3:2181 --mix get=90,set=10 --rate 5000 -d 30 --json
";

/// `zabd bench [options]`; `args` are the words after `bench` (a leading "bench" is skipped).
pub fn main(args: &[String]) -> i32 {
    let args = match args.first() {
        Some(first) if first == "bench" => &args[1..],
        _ => args,
    };
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return 0;
    }
    let opts = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("zabd bench: {e}\n(see zabd bench --help)");
            return 2;
        }
    };
    match run(&opts) {
        Ok((report, degraded)) => {
            print!("{report}");
            if degraded {
                eprintln!("zabd bench: sessions failed during the run; see the report");
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("zabd bench: {e}");
            1
        }
    }
}

/// Parses the options (`--name value` or `--name=value`).
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options::defaults();
    let mut servers = "127.0.0.1:2181".to_string();
    let mut duration_given = false;
    let mut seed = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg, None),
        };
        let flag = |v: &Option<String>| match v {
            None => Ok(()),
            Some(_) => Err(format!("{name} takes no value")),
        };
        match name {
            "--json" => {
                flag(&inline)?;
                o.json = true;
                continue;
            }
            "--progress" => {
                flag(&inline)?;
                o.progress = Some(true);
                continue;
            }
            "-q" | "--quiet" => {
                flag(&inline)?;
                o.progress = Some(false);
                continue;
            }
            "--no-cleanup" => {
                flag(&inline)?;
                o.cleanup = false;
                continue;
            }
            _ => {}
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args.get(i).ok_or_else(|| format!("{name} needs a value"))?;
                i += 1;
                v.clone()
            }
        };
        let v = value.as_str();
        match name {
            "-s" | "--servers" | "--server" => servers = value.clone(),
            "-c" | "--sessions" => o.sessions = number(name, v, 1, 100_000)? as usize,
            "-w" | "--window" => o.window = number(name, v, 1, 100_000)? as usize,
            "-m" | "--mix" => o.weights = parse_mix(v)?,
            "-b" | "--value-size" => o.value_size_bytes = number(name, v, 0, 16 << 20)? as usize,
            "-d" | "--duration" => {
                o.duration_s = seconds(name, v)?;
                duration_given = true;
            }
            "-n" | "--requests" => o.requests = Some(number(name, v, 1, u64::MAX)?),
            "-k" | "--keys" => o.keys = number(name, v, 1, 10_000_000)? as usize,
            "--root" => o.root = parse_root(v)?,
            "--warmup" => o.warmup_s = seconds(name, v)?,
            "-r" | "--rate" => {
                let rate: f64 = v
                    .parse()
                    .map_err(|_| format!("{name}: not a number: {v}"))?;
                if !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0) {
                    return Err(format!("{name}: rate must be in (0, 1e7]"));
                }
                o.rate_per_s = Some(rate);
            }
            "--session-timeout-ms" => {
                o.session_timeout_ms = number(name, v, 1, i32::MAX as u64)? as i32
            }
            "--seed" => seed = Some(number(name, v, 0, u64::MAX)?),
            "--cleanup-timeout" => o.cleanup_timeout_s = seconds(name, v)?,
            "--connect-timeout" => o.connect_timeout_s = seconds(name, v)?,
            _ => return Err(format!("unknown option {name}")),
        }
    }
    if !duration_given && o.requests.is_some() {
        o.duration_s = 600.0;
    }
    o.servers = parse_servers(&servers)?;
    o.seed = seed.unwrap_or_else(clock_seed);
    Ok(o)
}

fn number(name: &str, v: &str, min: u64, max: u64) -> Result<u64, String> {
    let n: u64 = v
        .parse()
        .map_err(|_| format!("{name}: not a whole number: {v}"))?;
    if n < min || n > max {
        return Err(format!("{name}: {n} is outside [{min}, {max}]"));
    }
    Ok(n)
}

/// Seconds, fractional allowed, up to a day.
fn seconds(name: &str, v: &str) -> Result<f64, String> {
    let s: f64 = v
        .parse()
        .map_err(|_| format!("{name}: not a number: {v}"))?;
    if !(s.is_finite() && (0.0..=86_400.0).contains(&s)) {
        return Err(format!("{name}: seconds must be in [0, 86400]"));
    }
    Ok(s)
}

/// `get=90,set=10` into weights in `OP_KINDS` order.
pub fn parse_mix(v: &str) -> Result<[u64; 6], String> {
    let mut weights = [0u64; 6];
    for part in v.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, w) = part
            .split_once('=')
            .ok_or_else(|| format!("--mix: expected OP=WEIGHT, got {part}"))?;
        let kind = OpKind::parse(name.trim()).ok_or_else(|| format!("--mix: unknown op {name}"))?;
        let w: u64 = w
            .trim()
            .parse()
            .map_err(|_| format!("--mix: bad weight in {part}"))?;
        if w > 1_000_000 {
            return Err(format!("--mix: weight {w} above 1000000"));
        }
        weights[kind as usize] += w;
    }
    if weights.iter().sum::<u64>() == 0 {
        return Err("--mix: all weights are zero".into());
    }
    Ok(weights)
}

fn parse_root(v: &str) -> Result<String, String> {
    let ok = v.starts_with('/')
        && v.len() > 1
        && !v.ends_with('/')
        && !v.contains("//")
        && !v.split('/').any(|c| c == "." || c == "..")
        && v != "/zookeeper"
        && !v.starts_with("/zookeeper/");
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!("--root: {v} is not a usable absolute path"))
    }
}

/// Resolves a comma-separated address list; each entry must resolve.
pub fn parse_servers(v: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let addr = part
            .to_socket_addrs()
            .map_err(|e| format!("--servers: {part}: {e}"))?
            .next()
            .ok_or_else(|| format!("--servers: {part} resolves to nothing"))?;
        out.push(addr);
    }
    if out.is_empty() {
        return Err("--servers: no address given".into());
    }
    Ok(out)
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9E37_79B9_7F4A_7C15);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// The longest the setup may spend creating key nodes.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// What the setup created, so the cleanup deletes exactly that.
#[derive(Default)]
struct Layout {
    root_created: bool,
    keys_parent_created: bool,
    new_parent_created: bool,
    /// Indices of key nodes this run created.
    keys_created: Vec<u32>,
    /// Why the setup stopped early, if it did (what it created is still cleaned up).
    error: Option<String>,
}

/// Runs a whole benchmark and returns the report text, and whether any session failed.
pub fn run(opts: &Options) -> Result<(String, bool), String> {
    let control_addr = opts.servers[0];
    let key_count = if opts.needs_keys() { opts.keys } else { 0 };
    let work = Workload {
        keys: (0..key_count)
            .map(|i| format!("{}/keys/k{i}", opts.root))
            .collect(),
        new_parent: format!("{}/new", opts.root),
        run_tag: (opts.seed >> 32) as u32 ^ opts.seed as u32,
        value: (0..opts.value_size_bytes)
            .map(|i| b'a' + (i % 26) as u8)
            .collect(),
        cumulative: cumulative(&opts.weights),
    };
    let layout = setup(control_addr, opts, &work)?;
    if let Some(e) = &layout.error {
        let note = if opts.cleanup {
            cleanup(control_addr, opts, &work, &layout, &[])
        } else {
            String::new()
        };
        return Err(format!("setup: {e}; cleanup: {note}"));
    }
    let outcome = load(opts, &work);
    let cleanup_note = if opts.cleanup {
        cleanup(
            control_addr,
            opts,
            &work,
            &layout,
            outcome.as_ref().map(|o| &o.created[..]).unwrap_or(&[]),
        )
    } else {
        format!("left in place under {}", opts.root)
    };
    let outcome = outcome?;
    if outcome.stats.completed == 0 {
        return Err(format!(
            "no request completed in the measured window ({} sessions failed{}); cleanup: {cleanup_note}",
            outcome.sessions_failed,
            outcome.failures.first().map(|f| format!(", first: {f}")).unwrap_or_default()
        ));
    }
    let report = if opts.json {
        json_report(opts, &outcome, &cleanup_note)
    } else {
        text_report(opts, &outcome, &cleanup_note)
    };
    Ok((report, outcome.sessions_failed > 0))
}

fn cumulative(weights: &[u64; 6]) -> [u64; 6] {
    let mut c = [0u64; 6];
    let mut sum = 0;
    for (i, w) in weights.iter().enumerate() {
        sum += w;
        c[i] = sum;
    }
    c
}

fn load(opts: &Options, work: &Workload) -> Result<Outcome, String> {
    let mut engine = Engine::new(opts, work).map_err(|e| format!("poll: {e}"))?;
    let connect_timeout = Duration::from_secs_f64(opts.connect_timeout_s);
    let ready = engine
        .connect_all(connect_timeout)
        .map_err(|e| format!("connect: {e}"))?;
    if ready == 0 {
        let first = engine
            .finish()
            .failures
            .into_iter()
            .next()
            .unwrap_or_default();
        return Err(format!("no session could connect ({first})"));
    }
    if ready < opts.sessions {
        eprintln!(
            "zabd bench: warning: only {ready} of {} sessions connected",
            opts.sessions
        );
    }
    engine.run().map_err(|e| format!("load: {e}"))?;
    engine.close_all().map_err(|e| format!("close: {e}"))?;
    Ok(engine.finish())
}

/// The control session's idea of success: OK, or one of `tolerated`.
fn settle(code: i32, tolerated: &[Code]) -> bool {
    code == 0 || tolerated.iter().any(|c| c.as_i32() == code)
}

fn setup(addr: SocketAddr, opts: &Options, work: &Workload) -> Result<Layout, String> {
    let mut c = Client::connect(addr, opts.session_timeout_ms)
        .map_err(|e| format!("setup: connect {addr}: {e}"))?;
    let mut layout = Layout::default();
    layout.error = populate(&mut c, opts, work, &mut layout).err();
    // After a failure the connection may be wedged; dropping it is quicker than closing, and
    // the control session owns no ephemerals, so letting it expire loses nothing.
    if layout.error.is_none() {
        let _ = c.close();
    }
    Ok(layout)
}

/// Creates the root, the two parents and the key nodes, recording each thing it created.
fn populate(
    c: &mut Client,
    opts: &Options,
    work: &Workload,
    layout: &mut Layout,
) -> Result<(), String> {
    let open = Acl::open_unsafe();
    let mut create = |path: &str| -> Result<bool, String> {
        match c
            .create(path, b"", &open, 0)
            .map_err(|e| format!("create {path}: {e}"))?
        {
            Ok(_) => Ok(true),
            Err(Code::NodeExists) => Ok(false),
            Err(code) => Err(format!("create {path}: {code:?}")),
        }
    };
    layout.root_created = create(&opts.root)?;
    layout.keys_parent_created = create(&format!("{}/keys", opts.root))?;
    layout.new_parent_created = create(&work.new_parent)?;
    let value = Bytes::copy_from_slice(&work.value);
    let reqs = work.keys.iter().enumerate().map(|(i, path)| {
        let req = Request::Create(
            op::CREATE,
            CreateRequest {
                path: path.clone(),
                data: Some(value.clone()),
                acl: open.clone(),
                flags: 0,
            },
        );
        (i as u32, req)
    });
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let results = pipeline(c, reqs, deadline).map_err(|e| format!("creating keys: {e}"))?;
    let answered = results.len();
    for (i, code) in results {
        if code == 0 {
            layout.keys_created.push(i);
        } else if !settle(code, &[Code::NodeExists]) {
            return Err(format!("creating key {i}: error {}", code_name(code)));
        }
    }
    if answered < work.keys.len() {
        return Err(format!(
            "only {answered} of {} keys created within {SETUP_TIMEOUT:?}",
            work.keys.len()
        ));
    }
    Ok(())
}

/// Sends `reqs` with up to `PIPELINE_WINDOW` outstanding; returns (tag, error code) per
/// request answered. Stops sending at `deadline`.
fn pipeline(
    c: &mut Client,
    reqs: impl Iterator<Item = (u32, Request)>,
    deadline: Instant,
) -> std::io::Result<Vec<(u32, i32)>> {
    const PIPELINE_WINDOW: usize = 200;
    let mut reqs = reqs.peekable();
    let mut tags = std::collections::VecDeque::new();
    let mut results = Vec::new();
    // Replies normally end the loop; this bounds it even if the server only sends events.
    let hard_deadline = deadline + Duration::from_secs(30);
    loop {
        if Instant::now() > hard_deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "replies did not arrive",
            ));
        }
        while tags.len() < PIPELINE_WINDOW && Instant::now() < deadline {
            let Some((tag, req)) = reqs.next() else { break };
            let xid = c.next_xid();
            c.send(xid, &req)?;
            tags.push_back((xid, tag));
        }
        if tags.is_empty() {
            return Ok(results);
        }
        // Each recv is bounded by the client's I/O timeout.
        if let Frame::Reply { header, .. } = c.recv()? {
            if let Some(pos) = tags.iter().position(|&(x, _)| x == header.xid) {
                let (_, tag) = tags.remove(pos).expect("position is in range");
                results.push((tag, header.err));
            }
        }
    }
}

/// Deletes what the run created: nodes made during the load, key nodes, leftovers under the
/// parents the run created, then the parents. Returns a one-line summary.
fn cleanup(
    addr: SocketAddr,
    opts: &Options,
    work: &Workload,
    layout: &Layout,
    created: &[(usize, Vec<u32>)],
) -> String {
    let deadline = Instant::now() + Duration::from_secs_f64(opts.cleanup_timeout_s);
    let mut c = match Client::connect(addr, opts.session_timeout_ms) {
        Ok(c) => c,
        Err(e) => {
            return format!(
                "failed (connect {addr}: {e}); nodes remain under {}",
                opts.root
            )
        }
    };
    let mut path = String::new();
    let mut paths: Vec<String> = Vec::new();
    for (s, nodes) in created {
        for &n in nodes {
            work.node_path(&mut path, *s, n);
            paths.push(path.clone());
        }
    }
    paths.extend(
        layout
            .keys_created
            .iter()
            .map(|&i| work.keys[i as usize].clone()),
    );
    let mut deleted = delete_all(&mut c, &paths, deadline);
    // Creates whose outcome a dead connection hid may have left nodes behind.
    for (made, parent) in [
        (layout.new_parent_created, &work.new_parent),
        (layout.keys_parent_created, &format!("{}/keys", opts.root)),
    ] {
        if !made || Instant::now() >= deadline {
            continue;
        }
        let got = c.get_children(parent, false);
        if let Ok(Ok(children)) = got {
            let leftovers: Vec<String> = children.iter().map(|k| format!("{parent}/{k}")).collect();
            deleted += delete_all(&mut c, &leftovers, deadline);
            let _ = c.delete(parent, -1);
        }
    }
    let mut root_note = String::new();
    if layout.root_created {
        match c.delete(&opts.root, -1) {
            Ok(Ok(())) => {}
            Ok(Err(code)) => root_note = format!("; {} not deleted: {code:?}", opts.root),
            Err(e) => root_note = format!("; {} not deleted: {e}", opts.root),
        }
    }
    let _ = c.close();
    let late = if Instant::now() >= deadline {
        " (cleanup timeout reached)"
    } else {
        ""
    };
    format!("deleted {deleted} nodes{root_note}{late}")
}

fn delete_all(c: &mut Client, paths: &[String], deadline: Instant) -> u64 {
    let reqs = paths.iter().enumerate().map(|(i, p)| {
        (
            i as u32,
            Request::Delete(DeleteRequest {
                path: p.clone(),
                version: -1,
            }),
        )
    });
    match pipeline(c, reqs, deadline) {
        Ok(results) => results.iter().filter(|(_, code)| *code == 0).count() as u64,
        Err(_) => 0,
    }
}

/// Latency summary of one histogram, in microseconds.
struct Summary {
    count: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

fn summarize(h: &Histogram) -> Summary {
    let us = |ns: u64| ns as f64 / 1000.0;
    Summary {
        count: h.count(),
        p50: us(h.quantile(0.5)),
        p90: us(h.quantile(0.9)),
        p99: us(h.quantile(0.99)),
        p999: us(h.quantile(0.999)),
        max: us(h.max()),
        mean: h.mean() / 1000.0,
    }
}

fn code_name(code: i32) -> String {
    match crate::client::code_from_i32(code) {
        Some(c) => format!("{c:?}({code})"),
        None => format!("({code})"),
    }
}

fn rates(outcome: &Outcome) -> (f64, f64) {
    let secs = outcome.stats.measured_ns as f64 / 1e9;
    let ops_per_s = if secs > 0.0 {
        outcome.stats.completed as f64 / secs
    } else {
        0.0
    };
    (secs, ops_per_s)
}

fn cpu_pct(outcome: &Outcome) -> Option<f64> {
    let cpu = outcome.stats.cpu_ns?;
    (outcome.stats.measured_ns > 0).then(|| cpu as f64 * 100.0 / outcome.stats.measured_ns as f64)
}

fn text_report(opts: &Options, outcome: &Outcome, cleanup_note: &str) -> String {
    let stats = &outcome.stats;
    let (secs, ops_per_s) = rates(outcome);
    let all = summarize(&stats.all());
    let mut out = String::new();
    let mode = match opts.rate_per_s {
        Some(r) => format!(
            "open loop at {r} ops/s (max {} outstanding per session)",
            opts.window
        ),
        None => format!("closed loop, {} outstanding per session", opts.window),
    };
    let servers: Vec<String> = opts.servers.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(out, "zabd bench: {} sessions, {mode}", opts.sessions);
    let _ = writeln!(out, "servers: {}", servers.join(","));
    let _ = writeln!(
        out,
        "mix: {}  value: {} B  keys: {}  root: {}",
        opts.mix_string(),
        opts.value_size_bytes,
        if opts.needs_keys() { opts.keys } else { 0 },
        opts.root
    );
    let _ = writeln!(
        out,
        "measured {secs:.2} s after {:.1} s warm-up: {} ops, {ops_per_s:.1} ops/s, {} errors",
        opts.warmup_s,
        stats.completed,
        stats.errors_total()
    );
    let _ = writeln!(
        out,
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "latency(us)", "count", "p50", "p90", "p99", "p99.9", "max", "mean"
    );
    let mut row = |name: &str, s: &Summary| {
        let _ = writeln!(
            out,
            "{:<12} {:>10} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            name, s.count, s.p50, s.p90, s.p99, s.p999, s.max, s.mean
        );
    };
    row("all", &all);
    for k in OP_KINDS {
        let h = &stats.latency[k as usize];
        if h.count() > 0 {
            row(k.name(), &summarize(h));
        }
    }
    let errors: Vec<String> = stats
        .errors
        .iter()
        .map(|(c, n)| format!("{}={n}", code_name(*c)))
        .collect();
    let _ = writeln!(
        out,
        "errors: {}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(" ")
        }
    );
    let _ = writeln!(
        out,
        "sessions: {} connected, {} failed{}",
        outcome.sessions_connected,
        outcome.sessions_failed,
        outcome
            .failures
            .first()
            .map(|f| format!(" (first: {f})"))
            .unwrap_or_default()
    );
    if opts.rate_per_s.is_some() {
        let lag = summarize(&outcome.send_lag);
        let _ = writeln!(
            out,
            "send lag behind schedule (us): p50 {:.1} p99 {:.1} max {:.1} (~1000 is poll granularity)",
            lag.p50, lag.p99, lag.max
        );
    }
    if let Some(pct) = cpu_pct(outcome) {
        let _ = writeln!(out, "generator cpu: {pct:.1}% of one core");
    }
    let _ = writeln!(out, "cleanup: {cleanup_note}");
    let _ = writeln!(
        out,
        "result: ops={} ops_per_s={ops_per_s:.1} errors={} p50_us={:.1} p90_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} mean_us={:.1} seconds={secs:.3} sessions={} window={} sessions_failed={}{}",
        stats.completed,
        stats.errors_total(),
        all.p50,
        all.p90,
        all.p99,
        all.p999,
        all.max,
        all.mean,
        opts.sessions,
        opts.window,
        outcome.sessions_failed,
        cpu_pct(outcome).map(|p| format!(" generator_cpu_pct={p:.1}")).unwrap_or_default(),
    );
    out
}

fn json_summary(s: &Summary) -> String {
    format!(
        "{{\"count\":{},\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1},\"mean\":{:.1}}}",
        s.count, s.p50, s.p90, s.p99, s.p999, s.max, s.mean
    )
}

/// Escapes a string for JSON (paths and messages are mostly ASCII, but be exact).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_report(opts: &Options, outcome: &Outcome, cleanup_note: &str) -> String {
    let stats = &outcome.stats;
    let (secs, ops_per_s) = rates(outcome);
    let servers: Vec<String> = opts
        .servers
        .iter()
        .map(|a| json_str(&a.to_string()))
        .collect();
    let mix: Vec<String> = OP_KINDS
        .iter()
        .filter(|k| opts.weights[**k as usize] > 0)
        .map(|k| format!("{}:{}", json_str(k.name()), opts.weights[*k as usize]))
        .collect();
    let mut latency = vec![format!(
        "\"all\":{}",
        json_summary(&summarize(&stats.all()))
    )];
    for k in OP_KINDS {
        let h = &stats.latency[k as usize];
        if h.count() > 0 {
            latency.push(format!(
                "{}:{}",
                json_str(k.name()),
                json_summary(&summarize(h))
            ));
        }
    }
    let errors: Vec<String> = stats
        .errors
        .iter()
        .map(|(c, n)| format!("\"{c}\":{n}"))
        .collect();
    let failures: Vec<String> = outcome.failures.iter().map(|f| json_str(f)).collect();
    let rate = opts
        .rate_per_s
        .map_or("null".to_string(), |r| r.to_string());
    let cpu = cpu_pct(outcome).map_or("null".to_string(), |p| format!("{p:.1}"));
    format!(
        "{{\"servers\":[{}],\"sessions\":{},\"window\":{},\"mode\":\"{}\",\"rate\":{rate},\"mix\":{{{}}},\"value_size\":{},\"keys\":{},\"root\":{},\"warmup_s\":{},\"seconds\":{secs:.3},\"ops\":{},\"ops_per_s\":{ops_per_s:.1},\"errors\":{},\"errors_by_code\":{{{}}},\"latency_us\":{{{}}},\"sessions_connected\":{},\"sessions_failed\":{},\"failures\":[{}],\"send_lag_us\":{},\"generator_cpu_pct\":{cpu},\"cleanup\":{}}}\n",
        servers.join(","),
        opts.sessions,
        opts.window,
        if opts.rate_per_s.is_some() { "open" } else { "closed" },
        mix.join(","),
        opts.value_size_bytes,
        if opts.needs_keys() { opts.keys } else { 0 },
        json_str(&opts.root),
        opts.warmup_s,
        stats.completed,
        stats.errors_total(),
        errors.join(","),
        latency.join(","),
        outcome.sessions_connected,
        outcome.sessions_failed,
        failures.join(","),
        if opts.rate_per_s.is_some() { json_summary(&summarize(&outcome.send_lag)) } else { "null".into() },
        json_str(cleanup_note),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_parse_in_both_spellings() {
        let o = parse_args(&args("-s 127.0.0.1:1,127.0.0.1:2 -c 3 --window=7 --mix get=9,SET=1,ls=2 -b 10 -d 1.5 --warmup 0.5 --json --seed 5")).unwrap();
        assert_eq!(o.servers.len(), 2);
        assert_eq!((o.sessions, o.window, o.value_size_bytes), (3, 7, 10));
        assert_eq!(o.weights, [0, 1, 9, 0, 2, 0]);
        assert_eq!(
            (o.duration_s, o.warmup_s, o.json, o.seed),
            (1.5, 0.5, true, 5)
        );
        assert_eq!(o.mix_string(), "setData=1,getData=9,getChildren=2");
    }

    #[test]
    fn a_request_count_alone_gets_a_duration_cap() {
        let o = parse_args(&args("-n 1000")).unwrap();
        assert_eq!((o.requests, o.duration_s), (Some(1000), 600.0));
    }

    #[test]
    fn bad_options_are_refused() {
        for bad in [
            "--mix get=0",
            "--mix fly=1",
            "--mix get",
            "-c 0",
            "--window",
            "--rate -5",
            "--root /zookeeper",
            "--root rel",
            "--root /a/",
            "--bogus 1",
            "--json=1",
            "-d 1e9",
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_key_ops_need_keys() {
        let mut o = Options::defaults();
        o.weights = parse_mix("create=1,delete=1").unwrap();
        assert!(!o.needs_keys());
        o.weights = parse_mix("create=1,exists=1").unwrap();
        assert!(o.needs_keys());
        assert_eq!(cumulative(&o.weights), [1, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn help_exits_zero() {
        assert_eq!(main(&args("bench --help")), 0);
        assert_eq!(main(&args("--mix nope=1")), 2);
    }
}
