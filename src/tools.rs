//! Data-directory tools, as subcommands of the zabd binary (ZooKeeper's `TxnLogToolkit` /
//! `LogFormatter`, `SnapshotFormatter` and the checks `FileTxnSnapLog.restore` makes):
//!
//! ```text
//! zabd logdump <log file | dir> [--from ZXID] [--offsets]
//! zabd snapdump <snapshot file> [--json]
//! zabd datadir check <dataDir> [<dataLogDir>]
//! zabd datadir cut-tail <dataDir> [<dataLogDir>]
//! ```
//!
//! Everything here reads through the persistence layer ([`crate::persistence`]): the same
//! record reader, the same torn-tail/corruption classification and the same snapshot loader
//! zabd uses at start-up, so what `datadir check` reports is what a restart would meet. Only
//! `datadir cut-tail` writes, and only through [`cut_torn_tail`].
//!
//! Exit statuses: 0 clean; 1 something a restart repairs or works around (a torn tail, a
//! damaged newest snapshot with a valid older one, a log without any snapshot); 2 usage; 3 a
//! data directory zabd refuses to start on (corruption, no valid snapshot, missing
//! transactions, I/O errors).

use crate::jute::data::{perms, Acl, StatPersisted};
use crate::jute::proto::op;
use crate::jute::txn::{TxnBody, TxnEntry};
use crate::persistence::{
    cut_torn_tail, find_snapshots, list_log_files, max_buffer_bytes_on_disk,
    parse_snapshot_file_name, Compression, LogReadError, SnapshotError, SnapshotReader, TornTail,
    TxnLogReader, DEFAULT_MAX_BUFFER_BYTES, VERSION_DIR,
};
use crate::tree::{DataNode, DataTree, TreeLoader};
use base64::Engine as _;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const EXIT_CLEAN: i32 = 0;
/// A problem a restart repairs or works around.
pub const EXIT_WARN: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
/// A data directory zabd refuses to start on, or a file that cannot be read.
pub const EXIT_DAMAGED: i32 = 3;

pub const USAGE: &str = "\
usage: zabd logdump <log file | log dir> [--from ZXID] [--offsets]
       zabd snapdump <snapshot file> [--json]
       zabd datadir check <dataDir> [<dataLogDir>]
       zabd datadir cut-tail <dataDir> [<dataLogDir>]

logdump   one line per transaction (zxid, time, session, cxid, type, body), then how the log
          ends (cleanly, torn tail, corruption). ZXID is hex with 0x, else decimal. A
          directory is read as zabd reads it at start-up, file after file.
snapdump  sessions, the ACL cache and every znode with its stat, data and ACL, then the
          digest and last-zxid sections; the checksum is verified (exit 3 if it fails).
          --json prints one JSON document instead.
datadir check     what a restart would do: which snapshot loads (and why newer ones do not),
          the log replayed after it, a torn tail or corruption with file and byte offset,
          missing transactions, and the tree digest against the last logged digest.
datadir cut-tail  cuts a torn tail off the newest log file (what zabd does at start-up),
          printing what it removed; refuses when the damage is corruption. Never run it on a
          directory a server is using.
Both datadir commands take dataDir (or its version-2 subdirectory); dataLogDir defaults to it.
Every tool takes -Djute.maxbuffer=N, as ZooKeeper's tools do: records up to N plus its extra
size (N again) are read, as a server with that setting reads its own files (default 0xfffff).

Exit status: 0 clean, 1 repairable (torn tail, snapshot fallback), 2 usage, 3 damaged.
";

/// Entry point for `zabd <tool> args...`; `tool` is `logdump`, `snapdump` or `datadir`.
pub fn main(tool: &str, args: &[String]) -> i32 {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let code = split_max_buffer(args).and_then(|(limit, args)| match tool {
        "logdump" => logdump_cmd(&args, limit, &mut out),
        "snapdump" => snapdump_cmd(&args, limit, &mut out),
        "datadir" => datadir_cmd(&args, limit, &mut out),
        _ => Err(usage(format!("unknown tool {tool:?}"))),
    });
    let _ = out.flush();
    match code {
        Ok(code) => code,
        Err(ToolError::Usage(msg)) => {
            eprintln!("zabd {tool}: {msg}");
            eprint!("{USAGE}");
            EXIT_USAGE
        }
        Err(ToolError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_CLEAN,
        Err(ToolError::Io(e)) => {
            eprintln!("zabd {tool}: {e}");
            EXIT_DAMAGED
        }
    }
}

#[derive(Debug)]
pub enum ToolError {
    Usage(String),
    Io(io::Error),
}

impl From<io::Error> for ToolError {
    fn from(e: io::Error) -> Self {
        ToolError::Io(e)
    }
}

fn usage(msg: impl Into<String>) -> ToolError {
    ToolError::Usage(msg.into())
}

/// Takes `-Djute.maxbuffer=N` (or `-Dzookeeper.jute.maxbuffer=N`) out of the arguments, as
/// ZooKeeper's tools read that system property: a server started with a larger jute.maxbuffer
/// writes records the default limit would call damage. Returns the longest record to accept.
fn split_max_buffer(args: &[String]) -> Result<(usize, Vec<String>), ToolError> {
    let mut limit_bytes = DEFAULT_MAX_BUFFER_BYTES;
    let mut rest = Vec::with_capacity(args.len());
    for a in args {
        let value = a
            .strip_prefix("-Djute.maxbuffer=")
            .or_else(|| a.strip_prefix("-Dzookeeper.jute.maxbuffer="));
        match value {
            Some(v) => {
                let n = parse_zxid(v)
                    .filter(|n| (1..=i64::from(i32::MAX)).contains(n))
                    .ok_or_else(|| usage(format!("bad jute.maxbuffer {v:?}")))?;
                limit_bytes = max_buffer_bytes_on_disk(n as usize);
            }
            None => rest.push(a.clone()),
        }
    }
    Ok((limit_bytes, rest))
}

fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "--help" || a == "-h")
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers

/// `ZXID` as given on a command line: `0x` hex, else decimal.
pub fn parse_zxid(s: &str) -> Option<i64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok().map(|v| v as i64),
        None => s.parse().ok(),
    }
}

/// Milliseconds since the epoch as `2024-06-16 10:40:00.123Z` (UTC, proleptic Gregorian).
pub fn format_time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// ZooKeeper's permission letters, in zkCli's order: `cdrwa`.
pub fn perms_string(p: i32) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (perms::CREATE, 'c'),
        (perms::DELETE, 'd'),
        (perms::READ, 'r'),
        (perms::WRITE, 'w'),
        (perms::ADMIN, 'a'),
    ] {
        if p & bit != 0 {
            s.push(c);
        }
    }
    let unknown = p & !perms::ALL;
    if unknown != 0 {
        let _ = write!(s, "+{unknown:#x}");
    }
    s
}

/// `[world:anyone=cdrwa, digest:u:hash=r]`.
pub fn format_acls(acls: &[Acl]) -> String {
    let items: Vec<String> = acls
        .iter()
        .map(|a| format!("{}:{}={}", a.id.scheme, a.id.id, perms_string(a.perms)))
        .collect();
    format!("[{}]", items.join(", "))
}

/// Longest data shown in full; longer data is cut with its length given.
const DATA_PREVIEW_BYTES: usize = 48;

/// `null`, `"text"` (escaped) for printable UTF-8, else `0x0102..`; with the length when cut.
pub fn format_data(data: Option<&[u8]>) -> String {
    let Some(data) = data else {
        return "null".to_owned();
    };
    let shown = &data[..data.len().min(DATA_PREVIEW_BYTES)];
    let cut = shown.len() < data.len();
    let text = std::str::from_utf8(shown)
        .ok()
        .filter(|s| !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
    let mut s = match text {
        Some(t) => format!("{t:?}"),
        None => {
            let mut hex = String::from("0x");
            for b in shown {
                let _ = write!(hex, "{b:02x}");
            }
            hex
        }
    };
    if cut {
        let _ = write!(s, "...({} bytes)", data.len());
    }
    s
}

/// ZooKeeper's `Request.op2String` for the types a log holds.
pub fn txn_type_name(type_: i32) -> String {
    match type_ {
        op::CREATE => "create".into(),
        op::CREATE2 => "create2".into(),
        op::CREATE_CONTAINER => "createContainer".into(),
        op::CREATE_TTL => "createTTL".into(),
        op::DELETE => "delete".into(),
        op::DELETE_CONTAINER => "deleteContainer".into(),
        op::SET_DATA => "setData".into(),
        op::SET_ACL => "setACL".into(),
        op::CHECK => "check".into(),
        op::MULTI => "multi".into(),
        op::RECONFIG => "reconfig".into(),
        op::CREATE_SESSION => "createSession".into(),
        op::CLOSE_SESSION => "closeSession".into(),
        op::ERROR => "error".into(),
        other => format!("unknown({other})"),
    }
}

/// The body of a transaction in one line, without its type name.
pub fn summarize_body(body: &TxnBody) -> String {
    match body {
        TxnBody::Create(_, c) => format!(
            "{} data={} acl={}{} parentCversion={}",
            c.path,
            format_data(c.data.as_deref()),
            format_acls(&c.acl),
            if c.ephemeral { " ephemeral" } else { "" },
            c.parent_cversion
        ),
        TxnBody::CreateContainer(c) => format!(
            "{} data={} acl={} parentCversion={}",
            c.path,
            format_data(c.data.as_deref()),
            format_acls(&c.acl),
            c.parent_cversion
        ),
        TxnBody::CreateTtl(c) => format!(
            "{} data={} acl={} ttl={} parentCversion={}",
            c.path,
            format_data(c.data.as_deref()),
            format_acls(&c.acl),
            c.ttl,
            c.parent_cversion
        ),
        TxnBody::Delete(d) | TxnBody::DeleteContainer(d) => d.path.clone(),
        TxnBody::SetData(s) => format!(
            "{} data={} version={}",
            s.path,
            format_data(s.data.as_deref()),
            s.version
        ),
        TxnBody::SetAcl(s) => format!(
            "{} acl={} version={}",
            s.path,
            format_acls(&s.acl),
            s.version
        ),
        TxnBody::Check(c) => format!("{} version={}", c.path, c.version),
        TxnBody::Multi(subs) => {
            let parts: Vec<String> = subs
                .iter()
                .map(|s| format!("{} {}", txn_type_name(s.type_code()), summarize_body(s)))
                .collect();
            format!("{} ops: {}", subs.len(), parts.join("; "))
        }
        TxnBody::CreateSession(s) => format!("timeout={}", s.time_out),
        TxnBody::CloseSession(None) => "(no body)".into(),
        TxnBody::CloseSession(Some(c)) => format!("ephemerals=[{}]", c.paths_to_delete.join(", ")),
        TxnBody::Error(e) => format!("err={} ({:?})", e.err, crate::tree::code_from_i32(e.err)),
    }
}

/// One logdump line: `zxid 0x5 2024-06-16 10:40:00.123Z session 0x1.. cxid 0x2 create /a ...`.
pub fn format_txn(entry: &TxnEntry) -> String {
    let h = &entry.header;
    format!(
        "zxid {:#x} {} session {:#x} cxid {:#x} {} {}",
        h.zxid,
        format_time_ms(h.time),
        h.client_id,
        h.cxid,
        txn_type_name(h.type_),
        summarize_body(&entry.body)
    )
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// logdump

/// Reads one log file or a directory of them through [`TxnLogReader`]. A single file is read
/// as the only file of a directory (through a symbolic link in a temporary one), so a bad
/// record at its end shows as a torn tail rather than as a file followed by newer ones.
struct LogSource {
    dir: PathBuf,
    /// (link in the temporary directory, the real file).
    link: Option<(PathBuf, PathBuf)>,
}

impl LogSource {
    fn open(path: &Path) -> io::Result<LogSource> {
        let meta = std::fs::metadata(path)?;
        if meta.is_dir() {
            let v2 = path.join(VERSION_DIR);
            let dir = if v2.is_dir() && list_log_files(path)?.is_empty() {
                v2
            } else {
                path.to_path_buf()
            };
            return Ok(LogSource { dir, link: None });
        }
        let real = std::fs::canonicalize(path)?;
        let dir = std::env::temp_dir().join(format!(
            "zabd-logdump-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir)?;
        let link = dir.join("log.0");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&real, &link)?;
        #[cfg(not(unix))]
        std::fs::copy(&real, &link)?;
        Ok(LogSource {
            dir,
            link: Some((link, real)),
        })
    }

    /// The path a user knows for `p` (the real file instead of the temporary link).
    fn real<'a>(&'a self, p: &'a Path) -> &'a Path {
        match &self.link {
            Some((link, real)) if p == link => real,
            _ => p,
        }
    }

    fn describe_error(&self, e: &LogReadError) -> String {
        let text = e.to_string();
        match &self.link {
            Some((link, real)) => {
                text.replace(&link.display().to_string(), &real.display().to_string())
            }
            None => text,
        }
    }
}

impl Drop for LogSource {
    fn drop(&mut self) {
        if let Some((link, _)) = &self.link {
            let _ = std::fs::remove_file(link);
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

pub struct LogDumpOptions {
    pub from: i64,
    pub offsets: bool,
    /// Longer records are damage ([`max_buffer_bytes_on_disk`] of jute.maxbuffer).
    pub max_buffer_bytes: usize,
}

fn logdump_cmd(
    args: &[String],
    max_buffer_bytes: usize,
    out: &mut dyn Write,
) -> Result<i32, ToolError> {
    if wants_help(args) {
        write!(out, "{USAGE}")?;
        return Ok(EXIT_CLEAN);
    }
    let mut path = None;
    let mut opts = LogDumpOptions {
        from: 0,
        offsets: false,
        max_buffer_bytes,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--from" => {
                let v = it.next().ok_or_else(|| usage("--from needs a zxid"))?;
                opts.from = parse_zxid(v).ok_or_else(|| usage(format!("bad zxid {v:?}")))?;
            }
            "--offsets" => opts.offsets = true,
            s if s.starts_with('-') => return Err(usage(format!("unknown option {s}"))),
            _ if path.is_some() => return Err(usage("one log file or directory")),
            _ => path = Some(PathBuf::from(a)),
        }
    }
    let path = path.ok_or_else(|| usage("which log file or directory?"))?;
    logdump(&path, &opts, out)
}

/// Prints the transactions of a log file or directory; returns the exit status.
pub fn logdump(path: &Path, opts: &LogDumpOptions, out: &mut dyn Write) -> Result<i32, ToolError> {
    let source = LogSource::open(path)?;
    let mut reader = TxnLogReader::open_with_limit(&source.dir, opts.from, opts.max_buffer_bytes)?;
    let mut count = 0usize;
    let mut file: Option<PathBuf> = None;
    let result = loop {
        match reader.next_txn() {
            Ok(Some(txn)) => {
                let current = reader.current_file().map(Path::to_path_buf);
                if current != file {
                    if let Some(f) = &current {
                        writeln!(out, "# {}", source.real(f).display())?;
                    }
                    file = current;
                }
                count += 1;
                if opts.offsets {
                    write!(out, "@{} ", txn.offset)?;
                }
                writeln!(out, "{}", format_txn(&txn.entry))?;
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    match result {
        Ok(()) => match reader.torn_tail() {
            None => {
                writeln!(out, "{count} transactions; the log ends cleanly")?;
                Ok(EXIT_CLEAN)
            }
            Some(t) => {
                writeln!(
                    out,
                    "{count} transactions; TORN TAIL in {} at byte offset {}: {} (a write cut short by a crash; zabd cuts it at start-up)",
                    source.real(&t.file).display(),
                    t.offset,
                    t.problem
                )?;
                Ok(EXIT_WARN)
            }
        },
        Err(e) => {
            writeln!(
                out,
                "{count} transactions; then ERROR: {}",
                source.describe_error(&e)
            )?;
            Ok(EXIT_DAMAGED)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// snapdump

fn snapdump_cmd(
    args: &[String],
    max_buffer_bytes: usize,
    out: &mut dyn Write,
) -> Result<i32, ToolError> {
    if wants_help(args) {
        write!(out, "{USAGE}")?;
        return Ok(EXIT_CLEAN);
    }
    let mut path = None;
    let mut json = false;
    for a in args {
        match a.as_str() {
            "--json" => json = true,
            "-d" => {} // SnapshotFormatter's "details" flag: details are always shown
            s if s.starts_with('-') => return Err(usage(format!("unknown option {s}"))),
            _ if path.is_some() => return Err(usage("one snapshot file")),
            _ => path = Some(PathBuf::from(a)),
        }
    }
    let path = path.ok_or_else(|| usage("which snapshot file?"))?;
    snapdump(&path, json, max_buffer_bytes, out)
}

/// A snapshot read whole, with what was wrong with it if it did not verify.
pub struct SnapDump {
    pub zxid_from_name: Option<i64>,
    pub sessions: Vec<(i64, i32)>,
    pub acls: Vec<(i64, Vec<Acl>)>,
    pub nodes: Vec<crate::persistence::SnapNode>,
    pub trailer: Option<crate::persistence::SnapshotTrailer>,
    pub error: Option<SnapshotError>,
}

/// Reads everything that can be read from a snapshot file; `error` says where it stopped.
pub fn read_snapshot_for_dump(path: &Path, max_buffer_bytes: usize) -> io::Result<SnapDump> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let parsed = parse_snapshot_file_name(name);
    let mut dump = SnapDump {
        zxid_from_name: parsed.map(|(z, _)| z),
        sessions: Vec::new(),
        acls: Vec::new(),
        nodes: Vec::new(),
        trailer: None,
        error: None,
    };
    if matches!(parsed, Some((_, Compression::Gzip | Compression::Snappy))) {
        dump.error = Some(SnapshotError::Unsupported(format!(
            "{} is compressed; zabd reads only uncompressed snapshots",
            path.display()
        )));
        return Ok(dump);
    }
    let mut reader = match SnapshotReader::with_limit(File::open(path)?, max_buffer_bytes) {
        Ok(r) => r,
        Err(e) => {
            dump.error = Some(e);
            return Ok(dump);
        }
    };
    dump.sessions = reader.take_sessions();
    dump.acls = reader.take_acls();
    loop {
        match reader.next_node() {
            Ok(Some(n)) => dump.nodes.push(n),
            Ok(None) => break,
            Err(e) => {
                dump.error = Some(e);
                return Ok(dump);
            }
        }
    }
    match reader.finish() {
        Ok(t) => dump.trailer = Some(t),
        Err(e) => dump.error = Some(e),
    }
    Ok(dump)
}

/// Child counts by parent path, from the node list.
fn child_counts(nodes: &[crate::persistence::SnapNode]) -> BTreeMap<&str, i32> {
    let mut counts: BTreeMap<&str, i32> = BTreeMap::new();
    for n in nodes {
        if n.path != "/" {
            *counts
                .entry(crate::tree::path::parent(&n.path))
                .or_default() += 1;
        }
    }
    counts
}

fn ephemeral_counts(nodes: &[crate::persistence::SnapNode]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for n in nodes {
        if n.stat.ephemeral_owner != 0 {
            *counts.entry(n.stat.ephemeral_owner).or_default() += 1;
        }
    }
    counts
}

fn stat_json(s: &StatPersisted, data_length: usize, num_children: i32) -> String {
    format!(
        "{{\"czxid\":{},\"mzxid\":{},\"ctime\":{},\"mtime\":{},\"version\":{},\"cversion\":{},\"aversion\":{},\"ephemeralOwner\":{},\"dataLength\":{},\"numChildren\":{},\"pzxid\":{}}}",
        s.czxid, s.mzxid, s.ctime, s.mtime, s.version, s.cversion, s.aversion, s.ephemeral_owner,
        data_length, num_children, s.pzxid
    )
}

fn acl_list_json(acls: &[Acl]) -> String {
    let items: Vec<String> = acls
        .iter()
        .map(|a| {
            format!(
                "{{\"perms\":{},\"scheme\":{},\"id\":{}}}",
                a.perms,
                json_str(&a.id.scheme),
                json_str(&a.id.id)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// The ACL list a node's reference stands for (-1: OPEN_ACL_UNSAFE, not in the cache).
fn resolve_acl(acls: &BTreeMap<i64, &Vec<Acl>>, r: i64) -> Option<Vec<Acl>> {
    if r == crate::tree::acl::OPEN_UNSAFE_REF {
        return Some(Acl::open_unsafe());
    }
    acls.get(&r).map(|a| a.to_vec())
}

/// Dumps a snapshot; returns the exit status (3 when it does not verify).
pub fn snapdump(
    path: &Path,
    json: bool,
    max_buffer_bytes: usize,
    out: &mut dyn Write,
) -> Result<i32, ToolError> {
    let d = read_snapshot_for_dump(path, max_buffer_bytes)?;
    let acl_map: BTreeMap<i64, &Vec<Acl>> = d.acls.iter().map(|(r, a)| (*r, a)).collect();
    let children = child_counts(&d.nodes);
    let ephemerals = ephemeral_counts(&d.nodes);
    let data_len = |n: &crate::persistence::SnapNode| n.data.as_ref().map_or(0, |b| b.len());
    if json {
        let mut s = String::new();
        s.push_str("{\n");
        let _ = writeln!(s, "\"file\":{},", json_str(&path.display().to_string()));
        match d.zxid_from_name {
            Some(z) => {
                let _ = writeln!(s, "\"zxid\":{z},\"zxidHex\":\"{z:#x}\",");
            }
            None => s.push_str("\"zxid\":null,\"zxidHex\":null,\n"),
        }
        let _ = writeln!(
            s,
            "\"valid\":{},\"error\":{},",
            d.error.is_none(),
            d.error
                .as_ref()
                .map_or("null".to_owned(), |e| json_str(&e.to_string()))
        );
        let sessions: Vec<String> = d
            .sessions
            .iter()
            .map(|(id, t)| {
                format!(
                    "{{\"id\":\"{id:#x}\",\"timeout\":{t},\"ephemerals\":{}}}",
                    ephemerals.get(id).copied().unwrap_or(0)
                )
            })
            .collect();
        let _ = writeln!(s, "\"sessions\":[{}],", sessions.join(","));
        let acls: Vec<String> = d
            .acls
            .iter()
            .map(|(r, a)| format!("{{\"ref\":{r},\"acl\":{}}}", acl_list_json(a)))
            .collect();
        let _ = writeln!(s, "\"acls\":[{}],", acls.join(","));
        s.push_str("\"nodes\":[\n");
        for (i, n) in d.nodes.iter().enumerate() {
            let data = match &n.data {
                None => "null".to_owned(),
                Some(b) => json_str(&b64(b)),
            };
            let text = match n.data.as_deref().map(std::str::from_utf8) {
                Some(Ok(t)) => json_str(t),
                _ => "null".to_owned(),
            };
            let acl = resolve_acl(&acl_map, n.acl).map_or("null".to_owned(), |a| acl_list_json(&a));
            let _ = write!(
                s,
                "{{\"path\":{},\"data\":{data},\"text\":{text},\"aclRef\":{},\"acl\":{acl},\"stat\":{}}}",
                json_str(&n.path),
                n.acl,
                stat_json(
                    &n.stat,
                    data_len(n),
                    children.get(n.path.as_str()).copied().unwrap_or(0)
                )
            );
            s.push_str(if i + 1 < d.nodes.len() { ",\n" } else { "\n" });
        }
        s.push_str("],\n");
        let trailer = d.trailer.unwrap_or_default();
        match trailer.digest {
            Some(g) => {
                let _ = writeln!(
                    s,
                    "\"digest\":{{\"zxid\":{},\"version\":{},\"digest\":{}}},",
                    g.zxid, g.version, g.digest
                );
            }
            None => s.push_str("\"digest\":null,\n"),
        }
        match trailer.last_processed_zxid {
            Some(z) => {
                let _ = writeln!(s, "\"lastProcessedZxid\":{z}");
            }
            None => s.push_str("\"lastProcessedZxid\":null\n"),
        }
        s.push_str("}\n");
        out.write_all(s.as_bytes())?;
    } else {
        let zxid = d
            .zxid_from_name
            .map_or("unknown (not a snapshot.<zxid> name)".to_owned(), |z| {
                format!("{z:#x}")
            });
        writeln!(out, "Snapshot {}  zxid {zxid}", path.display())?;
        writeln!(out, "ZNode Details (count={}):", d.nodes.len())?;
        for n in &d.nodes {
            let s = &n.stat;
            writeln!(out, "----")?;
            writeln!(out, "{}", n.path)?;
            writeln!(out, "  cZxid = {:#x}", s.czxid)?;
            writeln!(out, "  ctime = {}", format_time_ms(s.ctime))?;
            writeln!(out, "  mZxid = {:#x}", s.mzxid)?;
            writeln!(out, "  mtime = {}", format_time_ms(s.mtime))?;
            writeln!(out, "  pZxid = {:#x}", s.pzxid)?;
            writeln!(out, "  cversion = {}", s.cversion)?;
            writeln!(out, "  dataVersion = {}", s.version)?;
            writeln!(out, "  aclVersion = {}", s.aversion)?;
            writeln!(out, "  ephemeralOwner = {:#x}", s.ephemeral_owner)?;
            writeln!(out, "  dataLength = {}", data_len(n))?;
            writeln!(
                out,
                "  numChildren = {}",
                children.get(n.path.as_str()).copied().unwrap_or(0)
            )?;
            let acl = resolve_acl(&acl_map, n.acl)
                .map_or("MISSING FROM THE ACL CACHE".to_owned(), |a| format_acls(&a));
            writeln!(out, "  acl = {} {acl}", n.acl)?;
            writeln!(out, "  data = {}", format_data(n.data.as_deref()))?;
        }
        writeln!(out, "----")?;
        writeln!(out, "ACL cache (count={}):", d.acls.len())?;
        for (r, a) in &d.acls {
            writeln!(out, "  {r} {}", format_acls(a))?;
        }
        writeln!(out, "----")?;
        writeln!(out, "Session Details (sid, timeout, ephemeralCount):")?;
        for (id, t) in &d.sessions {
            writeln!(
                out,
                "{id:#x}, {t}, {}",
                ephemerals.get(id).copied().unwrap_or(0)
            )?;
        }
        writeln!(out, "----")?;
        if let Some(t) = &d.trailer {
            match t.digest {
                Some(g) => writeln!(
                    out,
                    "Digest: zxid {:#x} version {} digest {}",
                    g.zxid, g.version, g.digest
                )?,
                None => writeln!(out, "Digest: none")?,
            }
            match t.last_processed_zxid {
                Some(z) => writeln!(out, "Last processed zxid: {z:#x}")?,
                None => writeln!(out, "Last processed zxid: not recorded (ZooKeeper < 3.9)")?,
            }
        }
    }
    match &d.error {
        None => {
            if !json {
                writeln!(out, "checksum verified")?;
            }
            Ok(EXIT_CLEAN)
        }
        Some(e) => {
            if !json {
                writeln!(out, "ERROR: {e} (what precedes was read before the error)")?;
            } else {
                eprintln!("zabd snapdump: {}: {e}", path.display());
            }
            Ok(EXIT_DAMAGED)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// datadir check / cut-tail

/// What a restart would meet in a data directory.
#[derive(Debug)]
pub struct DataDirReport {
    pub snap_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Every `snapshot.*` name, newest first, with what was found.
    pub snapshots: Vec<(i64, PathBuf, SnapStatus)>,
    /// The snapshot a restart loads: zxid, path, nodes, sessions.
    pub loaded: Option<(i64, PathBuf, usize, usize)>,
    /// Every log file: start zxid, path, txns replayed from it (None: not read).
    pub logs: Vec<(i64, PathBuf, Option<LogFileSummary>)>,
    pub replayed: usize,
    pub last_zxid: i64,
    pub torn: Option<TornTail>,
    /// Problems that stop a restart (or would lose data).
    pub errors: Vec<String>,
    /// Problems a restart repairs or works around.
    pub warnings: Vec<String>,
    pub nodes: usize,
    pub sessions: usize,
    pub digest: Option<(i64, i64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapStatus {
    /// Loaded by a restart.
    Loaded,
    /// Verified, but older than the one loaded.
    Valid,
    /// Fails to load: why.
    Invalid(String),
    /// Not even considered: no seal at the end (a write cut short), or compressed.
    Incomplete(String),
    /// Older than the loaded snapshot and the few after it that were verified.
    NotRead,
}

/// How many snapshots older than the one a restart loads are verified too (the fallbacks
/// should the newest go bad); a directory without autopurge may hold hundreds.
pub const OLDER_SNAPSHOTS_VERIFIED: usize = 2;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFileSummary {
    pub txns: usize,
    pub first: Option<i64>,
    pub last: Option<i64>,
}

impl DataDirReport {
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() {
            EXIT_DAMAGED
        } else if !self.warnings.is_empty() || self.torn.is_some() {
            EXIT_WARN
        } else {
            EXIT_CLEAN
        }
    }
}

/// `dir` itself when it is (or holds only) the version-2 directory, else `dir/version-2`.
fn version2(dir: &Path) -> PathBuf {
    if dir.file_name().is_some_and(|n| n == VERSION_DIR) {
        return dir.to_path_buf();
    }
    dir.join(VERSION_DIR)
}

fn epoch(zxid: i64) -> i64 {
    zxid >> 32
}

fn counter(zxid: i64) -> i64 {
    zxid & 0xffff_ffff
}

/// Loads a snapshot into a tree as start-up does; the tree, its sessions, or why not.
fn load_snapshot(
    path: &Path,
    zxid: i64,
    max_buffer_bytes: usize,
) -> Result<(DataTree, Vec<(i64, i32)>), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut reader =
        SnapshotReader::with_limit(file, max_buffer_bytes).map_err(|e| e.to_string())?;
    let mut loader = TreeLoader::new(true);
    for (r, acl) in reader.take_acls() {
        loader.acl(r, acl);
    }
    let sessions = reader.take_sessions();
    loop {
        match reader.next_node() {
            Ok(Some(n)) => loader
                .node(&n.path, DataNode::new(n.data, n.acl, n.stat))
                .map_err(|e| format!("malformed tree: {e}"))?,
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    let trailer = reader.finish().map_err(|e| e.to_string())?;
    let tree = loader.finish(zxid)?;
    if let Some(d) = trailer.digest {
        // A digest taken when the snapshot started, so it describes the tree only when
        // nothing changed during the (fuzzy) copy; a mismatch is noted, not an error.
        if d.zxid == zxid
            && d.version == crate::tree::node::DIGEST_VERSION
            && d.digest != tree.digest()
        {
            log::debug!(
                "snapshot {} digest differs (fuzzy snapshot?)",
                path.display()
            );
        }
    }
    Ok((tree, sessions))
}

/// Examines a data directory read-only, as a restart would (newest valid snapshot, then the
/// log after it), and more: older snapshots, gaps in the zxid sequence, the final digest.
pub fn check_data_dir(data_dir: &Path, data_log_dir: Option<&Path>) -> io::Result<DataDirReport> {
    check_data_dir_with_limit(data_dir, data_log_dir, DEFAULT_MAX_BUFFER_BYTES)
}

/// [`check_data_dir`] for a server whose jute.maxbuffer allows records up to
/// `max_buffer_bytes` on disk.
pub fn check_data_dir_with_limit(
    data_dir: &Path,
    data_log_dir: Option<&Path>,
    max_buffer_bytes: usize,
) -> io::Result<DataDirReport> {
    let snap_dir = version2(data_dir);
    let log_dir = version2(data_log_dir.unwrap_or(data_dir));
    for d in [&snap_dir, &log_dir] {
        if !d.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a directory", d.display()),
            ));
        }
    }
    let mut report = DataDirReport {
        snap_dir: snap_dir.clone(),
        log_dir: log_dir.clone(),
        snapshots: Vec::new(),
        loaded: None,
        logs: Vec::new(),
        replayed: 0,
        last_zxid: 0,
        torn: None,
        errors: Vec::new(),
        warnings: Vec::new(),
        nodes: 0,
        sessions: 0,
        digest: None,
    };

    // Snapshots: every name, newest first; those start-up considers are tried in order.
    let considered: BTreeSet<PathBuf> = find_snapshots(&snap_dir)?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&snap_dir)? {
        let entry = entry?;
        if let Some((zxid, compression)) = entry
            .file_name()
            .to_str()
            .and_then(parse_snapshot_file_name)
        {
            names.push((zxid, entry.path(), compression));
        }
    }
    names.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
    let mut state: Option<(DataTree, BTreeMap<i64, i32>, i64)> = None;
    let mut older_read = 0;
    for (zxid, path, compression) in names {
        let status = if state.is_some() && older_read >= OLDER_SNAPSHOTS_VERIFIED {
            SnapStatus::NotRead
        } else if compression != Compression::None {
            if state.is_none() {
                report.errors.push(format!(
                    "{} is compressed: zabd refuses to start rather than fall back to an older snapshot",
                    path.display()
                ));
            }
            SnapStatus::Incomplete("compressed".into())
        } else if !considered.contains(&path) {
            SnapStatus::Incomplete("does not end with a seal (a write cut short?)".into())
        } else {
            match load_snapshot(&path, zxid, max_buffer_bytes) {
                Ok((tree, sessions)) => {
                    if state.is_none() {
                        report.loaded =
                            Some((zxid, path.clone(), tree.node_count(), sessions.len()));
                        state = Some((tree, sessions.into_iter().collect(), zxid));
                        SnapStatus::Loaded
                    } else {
                        SnapStatus::Valid
                    }
                }
                Err(why) => SnapStatus::Invalid(why),
            }
        };
        if state.is_some() && !matches!(status, SnapStatus::Loaded | SnapStatus::NotRead) {
            older_read += 1;
        }
        if state.is_none() || matches!(status, SnapStatus::Loaded) {
            if let SnapStatus::Invalid(why) | SnapStatus::Incomplete(why) = &status {
                report.warnings.push(format!(
                    "{} is skipped: {why}; a restart falls back to an older snapshot",
                    path.display()
                ));
            }
        } else if let SnapStatus::Invalid(why) = &status {
            report.warnings.push(format!(
                "older snapshot {} does not verify: {why}",
                path.display()
            ));
        }
        report.snapshots.push((zxid, path, status));
    }
    let logs = list_log_files(&log_dir)?;
    let (mut tree, mut sessions, snap_zxid) = match state {
        Some(s) => s,
        None if report
            .snapshots
            .iter()
            .any(|(_, _, s)| !matches!(s, SnapStatus::Incomplete(_))) =>
        {
            report
                .errors
                .push("no snapshot loads: zabd refuses to start".to_owned());
            report.logs = logs.into_iter().map(|(z, p)| (z, p, None)).collect();
            return Ok(report);
        }
        None => {
            if !logs.is_empty() {
                report.warnings.push(
                    "no snapshot: zabd writes snapshot.0 and replays the whole log (ZooKeeper refuses such a directory unless zookeeper.snapshot.trust.empty=true)".to_owned(),
                );
            }
            (DataTree::new(), BTreeMap::new(), 0)
        }
    };

    // The log after the snapshot, as start-up replays it.
    let mut summaries: BTreeMap<PathBuf, LogFileSummary> = BTreeMap::new();
    let mut reader = TxnLogReader::open_with_limit(&log_dir, snap_zxid + 1, max_buffer_bytes)?;
    let mut prev = snap_zxid;
    let mut last_digest = None;
    loop {
        let txn = match reader.next_txn() {
            Ok(Some(t)) => t,
            Ok(None) => break,
            Err(e) => {
                report.errors.push(match &e {
                    LogReadError::Corrupt { file, offset, problem, evidence } => format!(
                        "CORRUPTION in {} at byte offset {offset}: {problem} ({}); zabd refuses to start",
                        file.display(),
                        match evidence {
                            crate::persistence::CorruptionEvidence::NotLastFile => "newer log files follow".to_owned(),
                            crate::persistence::CorruptionEvidence::ValidRecordFollows(at) => format!("a valid record follows at offset {at}"),
                            crate::persistence::CorruptionEvidence::ScanInconclusive => "the search for valid records after it gave up".to_owned(),
                        }
                    ),
                    other => format!("{other}; zabd refuses to start"),
                });
                break;
            }
        };
        let entry = &txn.entry;
        let zxid = entry.header.zxid;
        if let Some(f) = reader.current_file() {
            let s = summaries.entry(f.to_path_buf()).or_default();
            s.txns += 1;
            s.first.get_or_insert(zxid);
            s.last = Some(zxid);
        }
        if zxid <= tree.last_processed_zxid() {
            // Start-up skips these too (a fuzzy snapshot already holds them).
            continue;
        }
        let consecutive = zxid == prev + 1 || (epoch(zxid) > epoch(prev) && counter(zxid) <= 1);
        if !consecutive {
            report.errors.push(format!(
                "missing transactions: zxid {zxid:#x} follows {prev:#x} (in {} at offset {})",
                reader
                    .current_file()
                    .map_or(String::new(), |p| p.display().to_string()),
                txn.offset
            ));
        }
        prev = zxid;
        match &entry.body {
            TxnBody::CreateSession(s) => {
                sessions.insert(entry.header.client_id, s.time_out);
            }
            TxnBody::CloseSession(_) => {
                sessions.remove(&entry.header.client_id);
            }
            _ => {}
        }
        tree.process_txn(&entry.header, &entry.body, &|_, _| false, &mut Vec::new());
        last_digest = entry
            .digest
            .as_ref()
            .map(|d| (zxid, d.version, d.tree_digest));
        report.replayed += 1;
    }
    report.torn = reader.torn_tail().cloned();
    if let Some(t) = &report.torn {
        report.warnings.push(format!(
            "TORN TAIL in {} at byte offset {}: {}; a restart (or `zabd datadir cut-tail`) cuts it off",
            t.file.display(),
            t.offset,
            t.problem
        ));
    }
    if let Some((zxid, version, digest)) = last_digest {
        if version == crate::tree::node::DIGEST_VERSION
            && zxid == tree.last_processed_zxid()
            && digest != tree.digest()
        {
            report.warnings.push(format!(
                "tree digest after replay is {} but the log's digest at {zxid:#x} is {digest}",
                tree.digest()
            ));
        }
    }
    report.digest = Some((tree.last_processed_zxid(), tree.digest()));
    report.last_zxid = tree.last_processed_zxid();
    report.nodes = tree.node_count();
    report.sessions = sessions.len();
    report.logs = logs
        .into_iter()
        .map(|(z, p)| {
            let s = summaries.remove(&p);
            (z, p, s)
        })
        .collect();
    Ok(report)
}

fn print_report(r: &DataDirReport, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "snapshots in {}:", r.snap_dir.display())?;
    if r.snapshots.is_empty() {
        writeln!(out, "  none")?;
    }
    for (zxid, path, status) in &r.snapshots {
        let name = path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let what = match status {
            SnapStatus::Loaded => {
                let (_, _, nodes, sessions) = r.loaded.as_ref().expect("loaded");
                format!("LOADED ({nodes} znodes, {sessions} sessions)")
            }
            SnapStatus::Valid => "valid (older)".to_owned(),
            SnapStatus::Invalid(why) => format!("INVALID: {why}"),
            SnapStatus::Incomplete(why) => format!("ignored: {why}"),
            SnapStatus::NotRead => "older, not read".to_owned(),
        };
        writeln!(out, "  {name:<28} zxid {zxid:#x}  {what}")?;
    }
    writeln!(out, "logs in {}:", r.log_dir.display())?;
    if r.logs.is_empty() {
        writeln!(out, "  none")?;
    }
    for (zxid, path, summary) in &r.logs {
        let name = path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let what = match summary {
            None if r.loaded.as_ref().is_some_and(|(z, ..)| zxid <= z) => {
                "before the snapshot".to_owned()
            }
            None => "no transaction after the snapshot".to_owned(),
            Some(s) => match (s.first, s.last) {
                (Some(a), Some(b)) => format!("{} transactions {a:#x}..{b:#x}", s.txns),
                _ => "no transaction".to_owned(),
            },
        };
        writeln!(out, "  {name:<28} {size:>10} bytes  {what}")?;
    }
    if r.errors.is_empty() {
        let from = r
            .loaded
            .as_ref()
            .map_or("an empty tree".to_owned(), |(z, p, ..)| {
                format!(
                    "{} (zxid {z:#x})",
                    p.file_name()
                        .map_or(String::new(), |n| n.to_string_lossy().into_owned())
                )
            });
        writeln!(
            out,
            "restore: {from} + {} logged transactions -> last zxid {:#x}, {} znodes, {} sessions",
            r.replayed, r.last_zxid, r.nodes, r.sessions
        )?;
        if let Some((zxid, digest)) = r.digest {
            writeln!(out, "tree digest at {zxid:#x}: {digest}")?;
        }
    }
    for w in &r.warnings {
        writeln!(out, "WARNING: {w}")?;
    }
    for e in &r.errors {
        writeln!(out, "ERROR: {e}")?;
    }
    writeln!(
        out,
        "{}",
        match r.exit_code() {
            EXIT_CLEAN => "clean",
            EXIT_WARN => "repairable: a restart starts, fixing what is listed above",
            _ => "DAMAGED: zabd will not start on this directory",
        }
    )
}

fn datadir_cmd(
    args: &[String],
    max_buffer_bytes: usize,
    out: &mut dyn Write,
) -> Result<i32, ToolError> {
    if wants_help(args) {
        write!(out, "{USAGE}")?;
        return Ok(EXIT_CLEAN);
    }
    let (sub, rest) = args
        .split_first()
        .ok_or_else(|| usage("check or cut-tail?"))?;
    if rest.iter().any(|a| a.starts_with('-')) {
        return Err(usage("no options expected"));
    }
    let (data_dir, log_dir) = match rest {
        [d] => (PathBuf::from(d), None),
        [d, l] => (PathBuf::from(d), Some(PathBuf::from(l))),
        _ => return Err(usage("expected <dataDir> [<dataLogDir>]")),
    };
    match sub.as_str() {
        "check" => datadir_check(&data_dir, log_dir.as_deref(), max_buffer_bytes, out),
        "cut-tail" => datadir_cut_tail(&data_dir, log_dir.as_deref(), max_buffer_bytes, out),
        other => Err(usage(format!("unknown datadir command {other:?}"))),
    }
}

/// `zabd datadir check`: prints the report; returns the exit status.
pub fn datadir_check(
    data_dir: &Path,
    log_dir: Option<&Path>,
    max_buffer_bytes: usize,
    out: &mut dyn Write,
) -> Result<i32, ToolError> {
    let report = check_data_dir_with_limit(data_dir, log_dir, max_buffer_bytes)?;
    print_report(&report, out)?;
    Ok(report.exit_code())
}

/// `zabd datadir cut-tail`: cuts a torn tail, refusing on corruption; returns the exit status.
pub fn datadir_cut_tail(
    data_dir: &Path,
    log_dir: Option<&Path>,
    max_buffer_bytes: usize,
    out: &mut dyn Write,
) -> Result<i32, ToolError> {
    let report = check_data_dir_with_limit(data_dir, log_dir, max_buffer_bytes)?;
    if !report.errors.is_empty() {
        for e in &report.errors {
            writeln!(out, "ERROR: {e}")?;
        }
        writeln!(
            out,
            "refusing to cut: the damage is not a torn tail, and cutting would drop transactions that were durable"
        )?;
        return Ok(EXIT_DAMAGED);
    }
    let Some(torn) = &report.torn else {
        writeln!(out, "no torn tail: nothing to cut")?;
        return Ok(EXIT_CLEAN);
    };
    let bytes = std::fs::read(&torn.file)?;
    let from = usize::try_from(torn.offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let removed = &bytes[from..];
    let nonzero = removed.iter().filter(|&&b| b != 0).count();
    let last_nonzero = removed.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if torn.offset < crate::persistence::FileHeader::LEN as u64 {
        writeln!(
            out,
            "removing {} ({} bytes, its file header is torn: {}): it holds no transaction",
            torn.file.display(),
            bytes.len(),
            torn.problem
        )?;
    } else {
        writeln!(
            out,
            "cutting {} at byte offset {}: removing {} bytes ({} of them non-zero, the last at offset {}; {})",
            torn.file.display(),
            torn.offset,
            removed.len(),
            nonzero,
            torn.offset + last_nonzero as u64,
            torn.problem
        )?;
        let preview = &removed[..last_nonzero.min(64)];
        let mut hex = String::new();
        for b in preview {
            let _ = write!(hex, "{b:02x}");
        }
        writeln!(
            out,
            "removed bytes begin: {hex}{}",
            if last_nonzero > 64 { "..." } else { "" }
        )?;
    }
    cut_torn_tail(&torn.file, torn.offset)?;
    let after = check_data_dir_with_limit(data_dir, log_dir, max_buffer_bytes)?;
    if after.torn.is_some() || !after.errors.is_empty() {
        print_report(&after, out)?;
        return Ok(EXIT_DAMAGED);
    }
    writeln!(
        out,
        "done: the log now ends cleanly at zxid {:#x} ({} transactions after the snapshot)",
        after.last_zxid, after.replayed
    )?;
    Ok(if after.exit_code() == EXIT_CLEAN {
        EXIT_CLEAN
    } else {
        EXIT_WARN
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::test_dir::TempDir;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/zk38")
            .join(rel)
    }

    fn run(f: impl FnOnce(&mut dyn Write) -> Result<i32, ToolError>) -> (i32, String) {
        let mut out = Vec::new();
        let code = f(&mut out).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    fn opts() -> LogDumpOptions {
        LogDumpOptions {
            from: 0,
            offsets: false,
            max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
        }
    }

    #[test]
    fn time_formatting() {
        assert_eq!(format_time_ms(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(format_time_ms(951_782_400_123), "2000-02-29 00:00:00.123Z");
        assert_eq!(
            format_time_ms(1_795_318_857_264),
            "2026-11-22 03:40:57.264Z"
        );
        assert_eq!(format_time_ms(-1), "1969-12-31 23:59:59.999Z");
        assert_eq!(parse_zxid("0x1f"), Some(31));
        assert_eq!(parse_zxid("31"), Some(31));
        assert_eq!(parse_zxid("zz"), None);
        assert_eq!(perms_string(31), "cdrwa");
        assert_eq!(perms_string(1), "r");
        assert_eq!(format_data(None), "null");
        assert_eq!(format_data(Some(b"a\"b")), "\"a\\\"b\"");
        assert_eq!(format_data(Some(&[0, 1, 255])), "0x0001ff");
        assert!(format_data(Some(&[b'x'; 100])).ends_with("...(100 bytes)"));
    }

    #[test]
    fn logdump_of_a_zookeeper_log() {
        let (code, text) = run(|o| logdump(&fixture("version-2/log.1"), &opts(), o));
        assert_eq!(code, EXIT_CLEAN, "{text}");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("zxid ")).collect();
        assert_eq!(lines.len(), 23, "{text}");
        assert!(text.lines().next().unwrap().ends_with("log.1"), "{text}");
        assert!(
            lines[0].starts_with("zxid 0x1 2026-11-22 03:16:2")
                && lines[0]
                    .ends_with("session 0x1000017657e0000 cxid 0x0 createSession timeout=30000"),
            "{}",
            lines[0]
        );
        assert!(lines[1].ends_with(
            "create /eph data=\"ephemeral-data\" acl=[world:anyone=cdrwa] ephemeral parentCversion=1"
        ), "{}", lines[1]);
        assert!(lines[8].ends_with("delete /gone"), "{}", lines[8]);
        assert!(
            lines[9].ends_with("setData /a/b data=\"world\" version=1"),
            "{}",
            lines[9]
        );
        assert!(
            lines[10].contains("acl=[digest:user:smGaoVKd/cQkjm7b88GyorAUz20==cdrwa]"),
            "{}",
            lines[10]
        );
        assert!(
            lines[12].contains("createContainer /cont data=null"),
            "{}",
            lines[12]
        );
        assert!(
            lines[16].ends_with("closeSession ephemerals=[]"),
            "{}",
            lines[16]
        );
        assert!(
            lines[18].contains("multi 5 ops: create /m1"),
            "{}",
            lines[18]
        );
        assert!(
            lines[19].contains("; error err=-101 (NoNode)"),
            "{}",
            lines[19]
        );
        assert!(
            text.ends_with("23 transactions; the log ends cleanly\n"),
            "{text}"
        );

        // From a zxid, over a directory, with offsets.
        let o = LogDumpOptions {
            from: 0x15,
            offsets: true,
            max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
        };
        let (code, text) = run(|out| logdump(&fixture("version-2"), &o, out));
        assert_eq!(code, EXIT_CLEAN);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('@')).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains(" zxid 0x15 ") && lines[0].contains("create2 /c2"),
            "{}",
            lines[0]
        );

        // The rolled directory, file after file.
        let (code, text) = run(|o| logdump(&fixture("rolled/version-2"), &opts(), o));
        assert_eq!(code, EXIT_CLEAN);
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# ")).count(),
            2,
            "{text}"
        );
        assert!(text.contains("7 transactions"), "{text}");
    }

    #[test]
    fn logdump_reports_torn_tails_and_corruption() {
        let dir = TempDir::new("tools-logdump");
        let original = std::fs::read(fixture("version-2/log.1")).unwrap();
        let (_, text) = run(|o| {
            logdump(
                &fixture("version-2/log.1"),
                &LogDumpOptions {
                    from: 0,
                    offsets: true,
                    max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
                },
                o,
            )
        });
        let offsets: Vec<usize> = text
            .lines()
            .filter_map(|l| l.strip_prefix('@'))
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(offsets.len(), 23);
        // Cut in the middle of the last record.
        let path = dir.path().join("cut-log");
        let end = original.iter().rposition(|&b| b != 0).unwrap() + 1;
        std::fs::write(&path, &original[..(offsets[22] + end) / 2]).unwrap();
        let (code, text) = run(|o| logdump(&path, &opts(), o));
        assert_eq!(code, EXIT_WARN, "{text}");
        let real = std::fs::canonicalize(&path).unwrap();
        assert!(
            text.contains(&format!(
                "22 transactions; TORN TAIL in {} at byte offset {}",
                real.display(),
                offsets[22]
            )),
            "{text}"
        );
        // A flipped byte in record 10.
        let mut bytes = original.clone();
        bytes[offsets[10] + 20] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (code, text) = run(|o| logdump(&path, &opts(), o));
        assert_eq!(code, EXIT_DAMAGED, "{text}");
        assert!(
            text.contains(&format!(
                "10 transactions; then ERROR: {}: corrupt record at byte offset {}",
                std::fs::canonicalize(&path).unwrap().display(),
                offsets[10]
            )),
            "{text}"
        );
        // The temporary link directory is gone.
        assert!(!std::fs::read_dir(std::env::temp_dir()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("zabd-logdump-{}-", std::process::id()))));
    }

    #[test]
    fn snapdump_text_and_json() {
        let (code, text) = run(|o| {
            snapdump(
                &fixture("version-2/snapshot.17"),
                false,
                DEFAULT_MAX_BUFFER_BYTES,
                o,
            )
        });
        assert_eq!(code, EXIT_CLEAN, "{text}");
        assert!(text.contains("ZNode Details (count=16):"), "{text}");
        assert!(text.contains("/eph\n  cZxid = 0x2\n"), "{text}");
        assert!(
            text.contains("  ephemeralOwner = 0x1000017657e0000\n"),
            "{text}"
        );
        assert!(text.contains("/secret\n"), "{text}");
        assert!(
            text.contains("digest:user:smGaoVKd/cQkjm7b88GyorAUz20==cdrwa"),
            "{text}"
        );
        assert!(text.contains("0x1000017657e0000, 30000, 1\n"), "{text}");
        assert!(
            text.contains("Digest: zxid 0x17 version 2 digest 25147501318"),
            "{text}"
        );
        assert!(text.ends_with("checksum verified\n"), "{text}");

        let (code, json) = run(|o| {
            snapdump(
                &fixture("version-2/snapshot.17"),
                true,
                DEFAULT_MAX_BUFFER_BYTES,
                o,
            )
        });
        assert_eq!(code, EXIT_CLEAN);
        assert_eq!(json.matches("{\"path\":").count(), 16, "{json}");
        assert!(
            json.contains(
                "\"sessions\":[{\"id\":\"0x1000017657e0000\",\"timeout\":30000,\"ephemerals\":1}]"
            ),
            "{json}"
        );
        assert!(
            json.contains("{\"path\":\"/nulldata\",\"data\":null,\"text\":null,"),
            "{json}"
        );
        assert!(
            json.contains("{\"path\":\"/a\",\"data\":\"bXVsdGktc2V0\",\"text\":\"multi-set\","),
            "{json}"
        );
        assert!(json.contains("\"valid\":true,\"error\":null"), "{json}");

        // A flipped bit: the dump says where it failed and exits 3.
        let dir = TempDir::new("tools-snapdump");
        let mut bytes = std::fs::read(fixture("version-2/snapshot.17")).unwrap();
        bytes[200] ^= 1;
        let path = dir.path().join("snapshot.17");
        std::fs::write(&path, &bytes).unwrap();
        let (code, text) = run(|o| snapdump(&path, false, DEFAULT_MAX_BUFFER_BYTES, o));
        assert_eq!(code, EXIT_DAMAGED, "{text}");
        assert!(text.contains("ERROR: snapshot checksum mismatch"), "{text}");
    }

    #[test]
    fn check_is_clean_on_zookeeper_directories() {
        for dir in ["", "rolled"] {
            let (code, text) =
                run(|o| datadir_check(&fixture(dir), None, DEFAULT_MAX_BUFFER_BYTES, o));
            assert_eq!(code, EXIT_CLEAN, "{dir}: {text}");
            assert!(text.ends_with("clean\n"), "{text}");
        }
        let r = check_data_dir(&fixture(""), None).unwrap();
        assert_eq!(r.loaded.as_ref().map(|l| l.0), Some(0x17));
        assert_eq!(
            (r.replayed, r.last_zxid, r.nodes, r.sessions),
            (0, 0x17, 17, 1)
        );
        assert_eq!(r.snapshots[1].2, SnapStatus::Valid);
        // The rolled directory's fuzzy snapshot plus log, checked against ZooKeeper's digest.
        let r = check_data_dir(&fixture("rolled/version-2"), None).unwrap();
        assert_eq!(r.loaded.as_ref().map(|l| l.0), Some(0x1b));
        assert_eq!(r.last_zxid, 0x1d);
        assert!(r.warnings.is_empty() && r.errors.is_empty(), "{r:?}");
    }

    /// A server with a large jute.maxbuffer writes records the default limit calls damage;
    /// `-Djute.maxbuffer=N` reads them, as ZooKeeper's tools honour that property.
    #[test]
    fn tools_read_records_up_to_the_given_jute_maxbuffer() {
        use crate::config::Config;
        use crate::jute::txn::{CreateTxn, TxnHeader};
        use crate::persistence::FileTxnSnapLog;
        let tmp = TempDir::new("tools-maxbuffer");
        let config = Config {
            data_dir: tmp.path().to_path_buf(),
            jute_max_buffer_bytes: 4 << 20,
            pre_alloc_size_bytes: 4096,
            ..Config::default()
        };
        let db = FileTxnSnapLog::open(&config).unwrap();
        db.restore(false).unwrap();
        let body = TxnBody::Create(
            op::CREATE,
            CreateTxn {
                path: "/big".into(),
                data: Some(bytes::Bytes::from(vec![b'x'; 3 << 20])),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            },
        );
        let header = TxnHeader {
            client_id: 1,
            cxid: 0,
            zxid: 1,
            time: 0,
            type_: body.type_code(),
        };
        let mut writer = db.log_writer(&config).unwrap();
        let digest = None;
        writer
            .append(&[TxnEntry {
                header,
                body,
                digest,
            }])
            .unwrap();
        writer.sync().unwrap();
        drop(writer);

        let dir = tmp.path().to_str().unwrap().to_owned();
        let with = |extra: &[&str], tool: &str, args: &[&str]| -> (i32, String) {
            let all: Vec<String> = extra.iter().chain(args).map(|a| a.to_string()).collect();
            let (limit, rest) = split_max_buffer(&all).unwrap();
            run(|o| match tool {
                "logdump" => logdump_cmd(&rest, limit, o),
                _ => datadir_cmd(&rest, limit, o),
            })
        };
        let log_dir = format!("{dir}/version-2");
        let (code, text) = with(&[], "logdump", &[&log_dir]);
        assert_eq!(code, EXIT_DAMAGED, "{text}");
        let (code, text) = with(&[], "datadir", &["check", &dir]);
        assert_eq!(code, EXIT_DAMAGED, "{text}");
        let big = ["-Djute.maxbuffer=4194304"];
        let (code, text) = with(&big, "logdump", &[&log_dir]);
        assert_eq!(code, EXIT_CLEAN, "{text}");
        assert!(text.contains("/big"), "{text}");
        let (code, text) = with(&big, "datadir", &["check", &dir]);
        assert_eq!(code, EXIT_CLEAN, "{text}");
        assert!(matches!(
            split_max_buffer(&["-Djute.maxbuffer=-1".to_owned()]),
            Err(ToolError::Usage(_))
        ));
    }

    #[test]
    fn check_and_cut_tail_on_a_torn_log() {
        let tmp = TempDir::new("tools-torn");
        let v2 = tmp.path().join("version-2");
        copy_dir(&fixture("version-2"), &v2);
        // Only the log matters: drop snapshot.17 so the whole log is replayed.
        std::fs::remove_file(v2.join("snapshot.17")).unwrap();
        let log = v2.join("log.1");
        let bytes = std::fs::read(&log).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
        std::fs::write(&log, &bytes[..end - 5]).unwrap();
        let (code, text) = run(|o| datadir_check(tmp.path(), None, DEFAULT_MAX_BUFFER_BYTES, o));
        assert_eq!(code, EXIT_WARN, "{text}");
        assert!(text.contains("TORN TAIL in "), "{text}");
        let r = check_data_dir(tmp.path(), None).unwrap();
        assert_eq!((r.replayed, r.last_zxid), (22, 0x16));
        let torn_at = r.torn.as_ref().unwrap().offset;
        let (code, text) = run(|o| datadir_cut_tail(tmp.path(), None, DEFAULT_MAX_BUFFER_BYTES, o));
        assert_eq!(code, EXIT_CLEAN, "{text}");
        assert!(
            text.contains(&format!(
                "cutting {} at byte offset {torn_at}: removing {} bytes",
                log.display(),
                end - 5 - torn_at as usize
            )),
            "{text}"
        );
        assert_eq!(std::fs::metadata(&log).unwrap().len(), torn_at);
        let (code, text) = run(|o| datadir_check(tmp.path(), None, DEFAULT_MAX_BUFFER_BYTES, o));
        assert_eq!(code, EXIT_CLEAN, "{text}");
        let (code, text) = run(|o| datadir_cut_tail(tmp.path(), None, DEFAULT_MAX_BUFFER_BYTES, o));
        assert_eq!(
            (code, text.as_str()),
            (EXIT_CLEAN, "no torn tail: nothing to cut\n")
        );
    }

    #[test]
    fn cut_tail_refuses_corruption_and_check_names_file_and_offset() {
        let tmp = TempDir::new("tools-corrupt");
        let v2 = tmp.path().join("version-2");
        copy_dir(&fixture("version-2"), &v2);
        std::fs::remove_file(v2.join("snapshot.17")).unwrap();
        let log = v2.join("log.1");
        let offsets: Vec<u64> = TxnLogReader::open(&v2, 0)
            .unwrap()
            .map(|t| t.unwrap().offset)
            .collect();
        let mut bytes = std::fs::read(&log).unwrap();
        bytes[offsets[5] as usize + 30] ^= 0x08;
        std::fs::write(&log, &bytes).unwrap();
        let (code, text) = run(|o| datadir_check(&v2, None, DEFAULT_MAX_BUFFER_BYTES, o));
        assert_eq!(code, EXIT_DAMAGED, "{text}");
        assert!(
            text.contains(&format!(
                "ERROR: CORRUPTION in {} at byte offset {}",
                log.display(),
                offsets[5]
            )),
            "{text}"
        );
        let (code, text) = run(|o| datadir_cut_tail(tmp.path(), None, DEFAULT_MAX_BUFFER_BYTES, o));
        assert_eq!(code, EXIT_DAMAGED, "{text}");
        assert!(text.contains("refusing to cut"), "{text}");
        assert_eq!(std::fs::read(&log).unwrap(), bytes, "nothing was cut");
    }

    #[test]
    fn check_reports_snapshot_fallback_and_missing_transactions() {
        let tmp = TempDir::new("tools-snap");
        let v2 = tmp.path().join("version-2");
        copy_dir(&fixture("version-2"), &v2);
        let snap = v2.join("snapshot.17");
        let mut bytes = std::fs::read(&snap).unwrap();
        bytes[100] ^= 0x01;
        std::fs::write(&snap, &bytes).unwrap();
        let r = check_data_dir(tmp.path(), None).unwrap();
        assert_eq!(r.exit_code(), EXIT_WARN, "{r:?}");
        assert!(matches!(r.snapshots[0].2, SnapStatus::Invalid(_)));
        assert_eq!(r.loaded.as_ref().map(|l| l.0), Some(0));
        assert_eq!((r.replayed, r.last_zxid, r.nodes), (0x17, 0x17, 17));

        // Without snapshot.0 the log no longer covers what follows the snapshot: a gap.
        let tmp = TempDir::new("tools-gap");
        let v2 = tmp.path().join("version-2");
        copy_dir(&fixture("rolled/version-2"), &v2);
        std::fs::remove_file(v2.join("log.17")).unwrap();
        let r = check_data_dir(tmp.path(), None).unwrap();
        assert_eq!(r.exit_code(), EXIT_DAMAGED, "{r:?}");
        assert!(
            r.errors[0].starts_with("missing transactions: zxid 0x1d follows 0x1b"),
            "{r:?}"
        );
    }
}
