//! Snapshots, `snapshot.<hex zxid>` (ZooKeeper's `FileSnap`, `SnapStream`,
//! `SerializeUtils.serializeSnapshot` and `DataTree.serialize`).
//!
//! ```text
//! FileHeader      int "ZKSN", int 2, long dbid -1
//! sessions        int count, then count × {long session id, int timeout ms}
//! ACL cache       int count, then count × {long acl id, vector<ACL>}   (never a null vector)
//! nodes           depth-first, parents first: {ustring path, buffer data, long acl id,
//!                 StatPersisted (60 bytes)}; the root's path is "" on disk
//! end of nodes    ustring "/"
//! seal            long Adler-32 of every byte before it, ustring "/"
//! [digest]        long zxid, int digest version, long digest (version < 2: ustring hex), seal
//! [last zxid]     long lastProcessedZxid (3.9+), seal
//! ```
//!
//! Each seal's checksum runs from the first byte of the file (the earlier seals included):
//! ZooKeeper keeps one `CheckedOutputStream` open for the whole file. 3.8 writes the digest
//! section (digest.enabled defaults to true); 3.9 adds the last-zxid section
//! (serializeLastProcessedZxid.enabled defaults to true). Readers of either version ignore
//! what follows the sections they know, so the two sections are optional and in that order.
//!
//! In this module the root is named "/" (the path clients use); the codec writes it as "".

use super::adler32::Adler32;
use super::{
    parse_snapshot_file_name, read_up_to, snapshot_file_name, sync_dir, FileHeader,
    DEFAULT_MAX_BUFFER_BYTES, SNAP_MAGIC,
};
use crate::jute::data::{Acl, Id, StatPersisted};
use crate::jute::{decode_exact, DecodeError, Reader};
use bytes::Bytes;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The path that ends the node list, and the string in every seal.
const SENTINEL: &str = "/";
/// A StatPersisted is 4 longs, 3 ints, 2 longs.
const STAT_PERSISTED_BYTES: usize = 60;
/// The optional sections after the first seal take 54 bytes; anything beyond this is not a
/// snapshot zabd understands.
const MAX_TRAILER_BYTES: usize = 4096;
const IO_BUFFER_BYTES: usize = 64 * 1024;
/// `FileSnap.deserialize` tries at most this many snapshots, newest first.
const MAX_SNAPSHOTS_TRIED: usize = 100;
/// Preallocation for counts read from the file grows with the data actually read beyond this.
const MAX_PREALLOCATED_ITEMS: usize = 4096;

/// The compression `snapshot.compression.method` gives a snapshot, by its file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
}

/// One znode as a snapshot stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapNode {
    /// "/" for the root.
    pub path: String,
    /// `None` for a null buffer (a znode created with null data), distinct from empty.
    pub data: Option<Bytes>,
    /// A key of the ACL cache; -1 is OPEN_ACL_UNSAFE without a cache entry.
    pub acl: i64,
    pub stat: StatPersisted,
}

/// `DataTree.ZxidDigest`: the tree digest after `zxid`. ZooKeeper writes zxid 0 when it has
/// no digest yet, and ignores a digest whose zxid is not > 0 when loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapDigest {
    pub zxid: i64,
    pub version: i32,
    pub digest: i64,
}

/// What follows the first seal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotTrailer {
    pub digest: Option<SnapDigest>,
    pub last_processed_zxid: Option<i64>,
}

/// A whole snapshot in memory (small trees, tests, tools; large trees stream through
/// [`SnapshotWriter`] and [`SnapshotReader`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotContents {
    /// (session id, timeout ms).
    pub sessions: Vec<(i64, i32)>,
    pub acls: Vec<(i64, Vec<Acl>)>,
    /// Depth-first, parents before children, the root first.
    pub nodes: Vec<SnapNode>,
    pub digest: Option<SnapDigest>,
    pub last_processed_zxid: Option<i64>,
}

impl SnapshotContents {
    pub fn trailer(&self) -> SnapshotTrailer {
        SnapshotTrailer {
            digest: self.digest,
            last_processed_zxid: self.last_processed_zxid,
        }
    }
}

#[derive(Debug)]
pub enum SnapshotError {
    Io(io::Error),
    /// The file ends before the snapshot does (an interrupted write).
    Truncated {
        offset: u64,
    },
    BadMagic(i32),
    Malformed {
        offset: u64,
        what: String,
    },
    ChecksumMismatch {
        offset: u64,
        stored: i64,
        computed: i64,
    },
    /// A compressed snapshot (`.gz`, `.snappy`): zabd reads only uncompressed ones.
    Unsupported(String),
    /// Snapshot files exist, but none of them loads.
    NoValidSnapshot {
        tried: usize,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io(e) => write!(f, "snapshot I/O error: {e}"),
            SnapshotError::Truncated { offset } => write!(f, "snapshot truncated at byte {offset}"),
            SnapshotError::BadMagic(m) => write!(f, "bad snapshot magic {m:#010x} (want ZKSN)"),
            SnapshotError::Malformed { offset, what } => {
                write!(f, "malformed snapshot at byte {offset}: {what}")
            }
            SnapshotError::ChecksumMismatch { offset, stored, computed } => write!(
                f,
                "snapshot checksum mismatch at byte {offset}: stored {stored:#x}, computed {computed:#x}"
            ),
            SnapshotError::Unsupported(what) => write!(f, "unsupported snapshot: {what}"),
            SnapshotError::NoValidSnapshot { tried } => {
                write!(f, "none of the {tried} snapshots found could be loaded")
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> Self {
        SnapshotError::Io(e)
    }
}

fn invalid_input(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A writer that checksums what goes through it, as `CheckedOutputStream` does.
struct CheckedWriter<W: Write> {
    inner: BufWriter<W>,
    sum: Adler32,
}

impl<W: Write> CheckedWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sum.update(bytes);
        self.inner.write_all(bytes)
    }

    fn put_i32(&mut self, v: i32) -> io::Result<()> {
        self.put(&v.to_be_bytes())
    }

    fn put_i64(&mut self, v: i64) -> io::Result<()> {
        self.put(&v.to_be_bytes())
    }

    /// A jute buffer or ustring; `None` is the null length -1.
    fn put_buffer(&mut self, bytes: Option<&[u8]>) -> io::Result<()> {
        let Some(bytes) = bytes else {
            return self.put_i32(-1);
        };
        let len = i32::try_from(bytes.len()).map_err(|_| invalid_input("buffer over 2 GiB"))?;
        self.put_i32(len)?;
        self.put(bytes)
    }

    /// `SnapStream.sealStream`: the checksum so far, then "/".
    fn seal(&mut self) -> io::Result<()> {
        let value = self.sum.value();
        self.put_i64(value)?;
        self.put_buffer(Some(SENTINEL.as_bytes()))
    }
}

/// Streams a snapshot out: header, sessions and ACLs up front, then nodes one at a time, then
/// [`SnapshotWriter::finish`]. Parents must come before their children, the root first.
pub struct SnapshotWriter<W: Write> {
    out: CheckedWriter<W>,
    nodes_written: u64,
}

impl<W: Write> SnapshotWriter<W> {
    pub fn new<'a, S, A>(w: W, sessions: S, acls: A) -> io::Result<SnapshotWriter<W>>
    where
        S: IntoIterator<Item = (i64, i32)>,
        S::IntoIter: ExactSizeIterator,
        A: IntoIterator<Item = (i64, &'a [Acl])>,
        A::IntoIter: ExactSizeIterator,
    {
        let inner = BufWriter::with_capacity(IO_BUFFER_BYTES, w);
        let mut out = CheckedWriter {
            inner,
            sum: Adler32::new(),
        };
        out.put(&FileHeader::snapshot().encode())?;
        let sessions = sessions.into_iter();
        let count = sessions.len();
        out.put_i32(count_i32(count)?)?;
        let mut written = 0usize;
        for (id, timeout_ms) in sessions {
            out.put_i64(id)?;
            out.put_i32(timeout_ms)?;
            written += 1;
        }
        check_count(written, count)?;
        let acls = acls.into_iter();
        let count = acls.len();
        out.put_i32(count_i32(count)?)?;
        written = 0;
        for (id, list) in acls {
            out.put_i64(id)?;
            put_acl_vector(&mut out, list)?;
            written += 1;
        }
        check_count(written, count)?;
        Ok(SnapshotWriter {
            out,
            nodes_written: 0,
        })
    }

    /// Writes one node. The first must be the root ("/", or "" as on disk).
    pub fn write_node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: i64,
        stat: &StatPersisted,
    ) -> io::Result<()> {
        let is_root = path == "/" || path.is_empty();
        if is_root != (self.nodes_written == 0) {
            return Err(invalid_input(
                "the root, and only the root, must be the first node",
            ));
        }
        if !is_root && (!path.starts_with('/') || path.ends_with('/')) {
            return Err(invalid_input(
                "node path must start with '/' and not end with it",
            ));
        }
        let disk_path = if is_root { "" } else { path };
        self.out.put_buffer(Some(disk_path.as_bytes()))?;
        self.out.put_buffer(data)?;
        self.out.put_i64(acl)?;
        let mut stat_bytes = Vec::with_capacity(STAT_PERSISTED_BYTES);
        crate::jute::Jute::put(stat, &mut stat_bytes);
        self.out.put(&stat_bytes)?;
        self.nodes_written += 1;
        Ok(())
    }

    pub fn write_snap_node(&mut self, node: &SnapNode) -> io::Result<()> {
        self.write_node(&node.path, node.data.as_deref(), node.acl, &node.stat)
    }

    /// Ends the node list, seals, writes the optional sections (each sealed) and flushes.
    pub fn finish(mut self, trailer: &SnapshotTrailer) -> io::Result<W> {
        if self.nodes_written == 0 {
            return Err(invalid_input("a snapshot holds at least the root"));
        }
        self.out.put_buffer(Some(SENTINEL.as_bytes()))?;
        self.out.seal()?;
        if let Some(d) = &trailer.digest {
            self.out.put_i64(d.zxid)?;
            self.out.put_i32(d.version)?;
            if d.version < 2 {
                // Digest version 1 stored the value as a hex string.
                let hex = format!("{:x}", d.digest);
                self.out.put_buffer(Some(hex.as_bytes()))?;
            } else {
                self.out.put_i64(d.digest)?;
            }
            self.out.seal()?;
        }
        if let Some(zxid) = trailer.last_processed_zxid {
            self.out.put_i64(zxid)?;
            self.out.seal()?;
        }
        self.out.inner.into_inner().map_err(|e| e.into_error())
    }
}

fn count_i32(count: usize) -> io::Result<i32> {
    i32::try_from(count).map_err(|_| invalid_input("count over i32::MAX"))
}

/// A count was written before the items; an iterator that lied about its length would leave a
/// snapshot that reads back wrong.
fn check_count(written: usize, announced: usize) -> io::Result<()> {
    if written == announced {
        Ok(())
    } else {
        Err(invalid_input(
            "iterator yielded a different number of items than its len()",
        ))
    }
}

fn put_acl_vector<W: Write>(out: &mut CheckedWriter<W>, acls: &[Acl]) -> io::Result<()> {
    out.put_i32(count_i32(acls.len())?)?;
    for acl in acls {
        out.put_i32(acl.perms)?;
        out.put_buffer(Some(acl.id.scheme.as_bytes()))?;
        out.put_buffer(Some(acl.id.id.as_bytes()))?;
    }
    Ok(())
}

/// Writes a whole snapshot held in memory.
pub fn write_snapshot<W: Write>(w: W, c: &SnapshotContents) -> io::Result<()> {
    write_snapshot_iter(w, &c.sessions, &c.acls, c.nodes.iter(), &c.trailer())
}

/// Writes a snapshot whose nodes come from an iterator (a tree walk), one at a time.
pub fn write_snapshot_iter<'a, W, I>(
    w: W,
    sessions: &[(i64, i32)],
    acls: &[(i64, Vec<Acl>)],
    nodes: I,
    trailer: &SnapshotTrailer,
) -> io::Result<()>
where
    W: Write,
    I: IntoIterator<Item = &'a SnapNode>,
{
    let acl_refs = acls.iter().map(|(id, list)| (*id, list.as_slice()));
    let mut writer = SnapshotWriter::new(w, sessions.iter().copied(), acl_refs)?;
    for node in nodes {
        writer.write_snap_node(node)?;
    }
    writer.finish(trailer)?;
    Ok(())
}

/// Writes `snapshot.<zxid>` atomically: into `snapshot.<zxid>.tmp`, fsynced, then renamed and
/// the directory fsynced (ZooKeeper's `AtomicFileOutputStream`, used when it syncs snapshots).
pub struct SnapshotFileWriter {
    writer: Option<SnapshotWriter<File>>,
    tmp_path: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    finished: bool,
}

impl SnapshotFileWriter {
    pub fn create<'a, S, A>(dir: &Path, zxid: i64, sessions: S, acls: A) -> io::Result<Self>
    where
        S: IntoIterator<Item = (i64, i32)>,
        S::IntoIter: ExactSizeIterator,
        A: IntoIterator<Item = (i64, &'a [Acl])>,
        A::IntoIter: ExactSizeIterator,
    {
        let path = dir.join(snapshot_file_name(zxid));
        let tmp_path = dir.join(format!("{}.tmp", snapshot_file_name(zxid)));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)?;
        let mut this = SnapshotFileWriter {
            writer: None,
            tmp_path,
            path,
            dir: dir.to_path_buf(),
            finished: false,
        };
        this.writer = Some(SnapshotWriter::new(file, sessions, acls)?);
        Ok(this)
    }

    pub fn writer(&mut self) -> &mut SnapshotWriter<File> {
        self.writer.as_mut().expect("writer present until finish")
    }

    /// Seals the snapshot and moves it into place; returns its path.
    pub fn finish(mut self, trailer: &SnapshotTrailer) -> io::Result<PathBuf> {
        let writer = self.writer.take().expect("writer present until finish");
        let file = writer.finish(trailer)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.path)?;
        self.finished = true;
        sync_dir(&self.dir)?;
        Ok(self.path.clone())
    }
}

impl Drop for SnapshotFileWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned or failed before the rename: leave no half-written file behind.
            self.writer = None;
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// Writes a whole in-memory snapshot as `dir/snapshot.<zxid>`, atomically.
pub fn write_snapshot_file(dir: &Path, zxid: i64, c: &SnapshotContents) -> io::Result<PathBuf> {
    let acl_refs = c.acls.iter().map(|(id, list)| (*id, list.as_slice()));
    let mut w = SnapshotFileWriter::create(dir, zxid, c.sessions.iter().copied(), acl_refs)?;
    for node in &c.nodes {
        w.writer().write_snap_node(node)?;
    }
    w.finish(&c.trailer())
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A reader that checksums what it yields, as `CheckedInputStream` does.
struct CheckedReader<R: Read> {
    inner: BufReader<R>,
    sum: Adler32,
    pos: u64,
}

impl<R: Read> CheckedReader<R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.sum.update(buf);
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(SnapshotError::Truncated { offset: self.pos })
            }
            Err(e) => Err(SnapshotError::Io(e)),
        }
    }

    fn i32(&mut self) -> Result<i32, SnapshotError> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(i32::from_be_bytes(b))
    }

    fn i64(&mut self) -> Result<i64, SnapshotError> {
        let mut b = [0u8; 8];
        self.take(&mut b)?;
        Ok(i64::from_be_bytes(b))
    }

    fn malformed(&self, what: impl Into<String>) -> SnapshotError {
        SnapshotError::Malformed {
            offset: self.pos,
            what: what.into(),
        }
    }

    /// A count that must be ≥ 0 (ZooKeeper never writes a negative one).
    fn count(&mut self, what: &str) -> Result<usize, SnapshotError> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| self.malformed(format!("negative {what} count {n}")))
    }

    /// A jute buffer of at most `max_bytes`: the length is checked before anything is allocated.
    fn buffer(&mut self, max_bytes: usize) -> Result<Option<Vec<u8>>, SnapshotError> {
        let n = self.i32()?;
        if n == -1 {
            return Ok(None);
        }
        let len = match usize::try_from(n) {
            Ok(len) if len <= max_bytes => len,
            _ => return Err(self.malformed(format!("unreasonable length {n}"))),
        };
        let mut bytes = vec![0u8; len];
        self.take(&mut bytes)?;
        Ok(Some(bytes))
    }

    /// A jute ustring; invalid UTF-8 is replaced, as Java's decoder does.
    fn ustring(&mut self, max_bytes: usize) -> Result<Option<String>, SnapshotError> {
        Ok(self
            .buffer(max_bytes)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Reads a seal and checks it against the checksum of everything before it.
    fn seal(&mut self) -> Result<(), SnapshotError> {
        let offset = self.pos;
        let computed = self.sum.value();
        let stored = self.i64()?;
        if stored != computed {
            return Err(SnapshotError::ChecksumMismatch {
                offset,
                stored,
                computed,
            });
        }
        match self.buffer(SENTINEL.len())? {
            Some(s) if s == SENTINEL.as_bytes() => Ok(()),
            _ => Err(self.malformed("seal without its \"/\"")),
        }
    }
}

/// Streams a snapshot in: header, sessions and ACLs on [`SnapshotReader::new`], then nodes one
/// at a time, then [`SnapshotReader::finish`], which verifies the checksum. Nothing read is
/// trustworthy until `finish` succeeds.
pub struct SnapshotReader<R: Read> {
    input: CheckedReader<R>,
    sessions: Vec<(i64, i32)>,
    acls: Vec<(i64, Vec<Acl>)>,
    max_buffer_bytes: usize,
    nodes_read: u64,
    nodes_done: bool,
}

impl<R: Read> SnapshotReader<R> {
    pub fn new(r: R) -> Result<SnapshotReader<R>, SnapshotError> {
        SnapshotReader::with_limit(r, DEFAULT_MAX_BUFFER_BYTES)
    }

    /// `max_buffer_bytes` caps every length read (paths, data, ACL strings): ZooKeeper's
    /// jute.maxbuffer + extrasize.
    pub fn with_limit(r: R, max_buffer_bytes: usize) -> Result<SnapshotReader<R>, SnapshotError> {
        let inner = BufReader::with_capacity(IO_BUFFER_BYTES, r);
        let mut input = CheckedReader {
            inner,
            sum: Adler32::new(),
            pos: 0,
        };
        let mut header = [0u8; FileHeader::LEN];
        input.take(&mut header)?;
        let header = FileHeader::decode(&header);
        // FileSnap checks only the magic.
        if header.magic != SNAP_MAGIC {
            return Err(SnapshotError::BadMagic(header.magic));
        }
        let count = input.count("session")?;
        let mut sessions = Vec::with_capacity(count.min(MAX_PREALLOCATED_ITEMS));
        for _ in 0..count {
            let id = input.i64()?;
            sessions.push((id, input.i32()?));
        }
        let count = input.count("ACL cache")?;
        let mut acls = Vec::with_capacity(count.min(MAX_PREALLOCATED_ITEMS));
        for _ in 0..count {
            let id = input.i64()?;
            acls.push((id, read_acl_vector(&mut input, max_buffer_bytes)?));
        }
        Ok(SnapshotReader {
            input,
            sessions,
            acls,
            max_buffer_bytes,
            nodes_read: 0,
            nodes_done: false,
        })
    }

    pub fn sessions(&self) -> &[(i64, i32)] {
        &self.sessions
    }

    pub fn acls(&self) -> &[(i64, Vec<Acl>)] {
        &self.acls
    }

    pub fn take_sessions(&mut self) -> Vec<(i64, i32)> {
        std::mem::take(&mut self.sessions)
    }

    pub fn take_acls(&mut self) -> Vec<(i64, Vec<Acl>)> {
        std::mem::take(&mut self.acls)
    }

    /// The next node, `None` after the last one.
    pub fn next_node(&mut self) -> Result<Option<SnapNode>, SnapshotError> {
        if self.nodes_done {
            return Ok(None);
        }
        let path = self
            .input
            .ustring(self.max_buffer_bytes)?
            .ok_or_else(|| self.input.malformed("null node path"))?;
        if path == SENTINEL {
            if self.nodes_read == 0 {
                return Err(self.input.malformed("snapshot without a root node"));
            }
            self.nodes_done = true;
            return Ok(None);
        }
        let is_root = path.is_empty();
        if is_root != (self.nodes_read == 0) {
            return Err(self
                .input
                .malformed(format!("root not first, or misplaced: {path:?}")));
        }
        if !is_root && (!path.starts_with('/') || path.ends_with('/')) {
            return Err(self.input.malformed(format!("bad node path {path:?}")));
        }
        let data = self.input.buffer(self.max_buffer_bytes)?.map(Bytes::from);
        let acl = self.input.i64()?;
        let mut stat = [0u8; STAT_PERSISTED_BYTES];
        self.input.take(&mut stat)?;
        let stat = decode_exact::<StatPersisted>(&stat).expect("60 bytes are a StatPersisted");
        self.nodes_read += 1;
        let path = if is_root { SENTINEL.to_owned() } else { path };
        Ok(Some(SnapNode {
            path,
            data,
            acl,
            stat,
        }))
    }

    /// Reads (and drops) any nodes not yet read, verifies the seal and reads the optional
    /// sections after it.
    pub fn finish(mut self) -> Result<SnapshotTrailer, SnapshotError> {
        while self.next_node()?.is_some() {}
        self.input.seal()?;
        let sum = self.input.sum;
        let offset = self.input.pos;
        let mut tail = vec![0u8; MAX_TRAILER_BYTES + 1];
        let n = read_up_to(&mut self.input.inner, &mut tail)?;
        if n > MAX_TRAILER_BYTES {
            return Err(self
                .input
                .malformed("unexpected data after the snapshot seal"));
        }
        parse_trailer(&tail[..n], sum, offset)
    }
}

fn read_acl_vector<R: Read>(
    input: &mut CheckedReader<R>,
    max_buffer_bytes: usize,
) -> Result<Vec<Acl>, SnapshotError> {
    let n = input.i32()?;
    // ReferenceCountedACLCache.deserialize rejects a null vector ("missing acls").
    let count =
        usize::try_from(n).map_err(|_| input.malformed(format!("ACL vector length {n}")))?;
    let mut acls = Vec::with_capacity(count.min(MAX_PREALLOCATED_ITEMS));
    for _ in 0..count {
        let perms = input.i32()?;
        let scheme = input.ustring(max_buffer_bytes)?.unwrap_or_default();
        let id = input.ustring(max_buffer_bytes)?.unwrap_or_default();
        acls.push(Acl {
            perms,
            id: Id { scheme, id },
        });
    }
    Ok(acls)
}

/// Parses the optional sections after the first seal. Which of them are present is not marked
/// in the file (it depends on the writer's digest.enabled and serializeLastProcessedZxid
/// settings), so both layouts are tried; the seals' checksums tell them apart.
fn parse_trailer(tail: &[u8], sum: Adler32, offset: u64) -> Result<SnapshotTrailer, SnapshotError> {
    if tail.is_empty() {
        return Ok(SnapshotTrailer::default());
    }
    parse_sections(tail, sum, offset, true).or_else(|digest_first_error| {
        parse_sections(tail, sum, offset, false).map_err(|_| digest_first_error)
    })
}

fn parse_sections(
    tail: &[u8],
    sum: Adler32,
    offset: u64,
    with_digest: bool,
) -> Result<SnapshotTrailer, SnapshotError> {
    let mut r = Reader::new(tail);
    let at = |r: &Reader<'_>| offset + r.position() as u64;
    let malformed = |r: &Reader<'_>, e: DecodeError| SnapshotError::Malformed {
        offset: at(r),
        what: format!("after the seal: {e}"),
    };
    let mut trailer = SnapshotTrailer::default();
    if with_digest {
        let zxid = r.read_i64().map_err(|e| malformed(&r, e))?;
        let version = r.read_i32().map_err(|e| malformed(&r, e))?;
        let digest = if version < 2 {
            let hex = r
                .read_ustring()
                .map_err(|e| malformed(&r, e))?
                .unwrap_or_default();
            // Java's Long.parseLong(hex, 16) takes a sign; Long.toHexString writes none.
            i64::from_str_radix(&hex, 16)
                .or_else(|_| u64::from_str_radix(&hex, 16).map(|v| v as i64))
                .map_err(|_| malformed(&r, DecodeError::BadValue("digest hex string")))?
        } else {
            r.read_i64().map_err(|e| malformed(&r, e))?
        };
        trailer.digest = Some(SnapDigest {
            zxid,
            version,
            digest,
        });
        check_seal(&mut r, tail, sum, offset)?;
    }
    if r.remaining() > 0 {
        trailer.last_processed_zxid = Some(r.read_i64().map_err(|e| malformed(&r, e))?);
        check_seal(&mut r, tail, sum, offset)?;
    }
    r.finish().map_err(|e| malformed(&r, e))?;
    Ok(trailer)
}

/// A seal inside the tail: its checksum covers the file up to the tail plus the tail so far.
fn check_seal(
    r: &mut Reader<'_>,
    tail: &[u8],
    mut sum: Adler32,
    offset: u64,
) -> Result<(), SnapshotError> {
    let seal_at = r.position();
    sum.update(&tail[..seal_at]);
    let at = offset + seal_at as u64;
    let bad = |what: &str| SnapshotError::Malformed {
        offset: at,
        what: what.to_owned(),
    };
    let stored = r.read_i64().map_err(|_| bad("truncated seal"))?;
    let slash = r.read_buffer().map_err(|_| bad("truncated seal"))?;
    if stored != sum.value() {
        return Err(SnapshotError::ChecksumMismatch {
            offset: at,
            stored,
            computed: sum.value(),
        });
    }
    if slash != Some(SENTINEL.as_bytes()) {
        return Err(bad("seal without its \"/\""));
    }
    Ok(())
}

/// Reads a whole snapshot into memory, verifying its checksum.
pub fn read_snapshot<R: Read>(r: R) -> Result<SnapshotContents, SnapshotError> {
    let mut reader = SnapshotReader::new(r)?;
    let sessions = reader.take_sessions();
    let acls = reader.take_acls();
    let mut nodes = Vec::new();
    while let Some(node) = reader.next_node()? {
        nodes.push(node);
    }
    let trailer = reader.finish()?;
    Ok(SnapshotContents {
        sessions,
        acls,
        nodes,
        digest: trailer.digest,
        last_processed_zxid: trailer.last_processed_zxid,
    })
}

/// Fails for compressed snapshots, which zabd does not read.
fn check_uncompressed(path: &Path) -> Result<(), SnapshotError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    match parse_snapshot_file_name(name) {
        Some((_, Compression::Gzip)) | Some((_, Compression::Snappy)) => Err(
            SnapshotError::Unsupported(format!(
                "{} is compressed; set snapshot.compression.method to \"\" in ZooKeeper and take a new snapshot",
                path.display()
            )),
        ),
        _ => Ok(()),
    }
}

/// Reads the snapshot file at `path` into memory.
pub fn read_snapshot_file(path: &Path) -> Result<SnapshotContents, SnapshotError> {
    check_uncompressed(path)?;
    read_snapshot(File::open(path)?)
}

/// The snapshots of `dir`, newest first, that pass ZooKeeper's cheap validity test
/// (`SnapStream.isValidSnapshot`): an uncompressed file of at least 10 bytes ending in the
/// seal's "/" (int 1, byte '/'), or a compressed one starting with its format's magic. The
/// checksum is verified only when a snapshot is read; see [`load_newest_valid_snapshot`].
pub fn find_snapshots(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some((zxid, compression)) = entry
            .file_name()
            .to_str()
            .and_then(parse_snapshot_file_name)
        else {
            continue;
        };
        let path = entry.path();
        if looks_complete(&path, compression)? {
            found.push((zxid, path));
        }
    }
    found.sort_by(|a, b| b.cmp(a));
    Ok(found)
}

fn looks_complete(path: &Path, compression: Compression) -> io::Result<bool> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    match compression {
        Compression::None => {
            if len < 10 {
                return Ok(false);
            }
            io::Seek::seek(&mut file, io::SeekFrom::Start(len - 5))?;
            let mut end = [0u8; 5];
            Ok(read_up_to(&mut file, &mut end)? == 5 && end == [0, 0, 0, 1, b'/'])
        }
        Compression::Gzip => {
            let mut magic = [0u8; 2];
            Ok(read_up_to(&mut file, &mut magic)? == 2 && magic == [0x1f, 0x8b])
        }
        Compression::Snappy => {
            let mut magic = [0u8; 8];
            Ok(read_up_to(&mut file, &mut magic)? == 8 && magic == *b"\x82SNAPPY\x00")
        }
    }
}

/// A snapshot loaded by [`load_newest_valid_snapshot`].
#[derive(Debug)]
pub struct LoadedSnapshot<T> {
    /// The zxid in the file name: the transaction log is replayed from `zxid + 1`.
    pub zxid: i64,
    pub path: PathBuf,
    pub value: T,
    pub trailer: SnapshotTrailer,
}

/// Loads the newest snapshot that reads back whole, falling back to older ones
/// (`FileSnap.deserialize`, which tries up to 100). `load` builds the caller's state from the
/// reader (the tree, the sessions); it runs again, from scratch, for each snapshot tried, and
/// its result counts only if the checksum then verifies. `Ok(None)` when there is no snapshot.
/// A compressed snapshot is an error rather than a reason to fall back: falling back would
/// silently load older data. Lengths above `max_buffer_bytes` are damage (see
/// [`SnapshotReader::with_limit`]).
pub fn load_newest_valid_snapshot<T, F>(
    dir: &Path,
    max_buffer_bytes: usize,
    mut load: F,
) -> Result<Option<LoadedSnapshot<T>>, SnapshotError>
where
    F: FnMut(i64, &mut SnapshotReader<File>) -> Result<T, SnapshotError>,
{
    let candidates = find_snapshots(dir)?;
    let tried = candidates.len().min(MAX_SNAPSHOTS_TRIED);
    for (zxid, path) in candidates.into_iter().take(MAX_SNAPSHOTS_TRIED) {
        check_uncompressed(&path)?;
        let file = File::open(&path)?;
        let attempt = SnapshotReader::with_limit(file, max_buffer_bytes).and_then(|mut reader| {
            let value = load(zxid, &mut reader)?;
            Ok((value, reader.finish()?))
        });
        match attempt {
            Ok((value, trailer)) => {
                return Ok(Some(LoadedSnapshot {
                    zxid,
                    path,
                    value,
                    trailer,
                }))
            }
            Err(e) => log::warn!("skipping snapshot {}: {e}", path.display()),
        }
    }
    if tried == 0 {
        Ok(None)
    } else {
        Err(SnapshotError::NoValidSnapshot { tried })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::data::perms;
    use crate::persistence::test_dir::TempDir;

    fn stat(zxid: i64, owner: i64) -> StatPersisted {
        StatPersisted {
            czxid: zxid,
            mzxid: zxid + 1,
            ctime: 1_700_000_000_000 + zxid,
            mtime: 1_700_000_000_500 + zxid,
            version: 2,
            cversion: 3,
            aversion: 1,
            ephemeral_owner: owner,
            pzxid: zxid + 2,
        }
    }

    fn node(path: &str, data: Option<&[u8]>, acl: i64, zxid: i64) -> SnapNode {
        SnapNode {
            path: path.into(),
            data: data.map(Bytes::copy_from_slice),
            acl,
            stat: stat(zxid, 0),
        }
    }

    fn sample() -> SnapshotContents {
        let mut eph = node("/a/eph", Some(b"e"), 1, 9);
        eph.stat.ephemeral_owner = 0x1000_0176_57e0_0000;
        SnapshotContents {
            sessions: vec![(0x1000_0176_57e0_0000, 30_000), (7, 4_000)],
            acls: vec![
                (1, Acl::open_unsafe()),
                (
                    2,
                    vec![Acl::new(
                        perms::ALL,
                        "digest",
                        "user:smGaoVKd/cQkjm7b88GyorAUz20=",
                    )],
                ),
            ],
            nodes: vec![
                node("/", Some(b""), -1, 0),
                node("/a", Some(b"data"), 1, 4),
                node("/a/b", None, 2, 5),
                eph,
                node("/zookeeper", Some(b""), -1, 0),
            ],
            digest: Some(SnapDigest {
                zxid: 0x17,
                version: 2,
                digest: 25_147_501_318,
            }),
            last_processed_zxid: Some(0x17),
        }
    }

    fn encode(c: &SnapshotContents) -> Vec<u8> {
        let mut out = Vec::new();
        write_snapshot(&mut out, c).unwrap();
        out
    }

    #[test]
    fn round_trip_with_every_trailer_layout() {
        let layouts = [
            (None, None),
            (
                Some(SnapDigest {
                    zxid: 5,
                    version: 2,
                    digest: -3,
                }),
                None,
            ),
            (None, Some(0x1_0000_0005)),
            (
                Some(SnapDigest {
                    zxid: 0,
                    version: 2,
                    digest: 0,
                }),
                Some(9),
            ),
            (
                Some(SnapDigest {
                    zxid: 5,
                    version: 1,
                    digest: 0x1234,
                }),
                Some(9),
            ),
        ];
        for (digest, last_processed_zxid) in layouts {
            let c = SnapshotContents {
                digest,
                last_processed_zxid,
                ..sample()
            };
            let bytes = encode(&c);
            assert_eq!(read_snapshot(&bytes[..]).unwrap(), c);
        }
    }

    #[test]
    fn layout_matches_zookeeper() {
        let c = SnapshotContents {
            sessions: vec![],
            acls: vec![],
            nodes: vec![node("/", None, -1, 0)],
            digest: None,
            last_processed_zxid: None,
        };
        let bytes = encode(&c);
        let mut expected = FileHeader::snapshot().encode().to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // no sessions, no ACLs
        expected.extend_from_slice(&[0, 0, 0, 0]); // root path ""
        expected.extend_from_slice(&(-1i32).to_be_bytes()); // null data
        expected.extend_from_slice(&(-1i64).to_be_bytes());
        expected.extend_from_slice(&crate::jute::encode_to_vec(&stat(0, 0)));
        expected.extend_from_slice(&[0, 0, 0, 1, b'/']);
        let sum = crate::persistence::adler32::adler32(&expected);
        expected.extend_from_slice(&sum.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 1, b'/']);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = encode(&sample());
        for at in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut damaged = bytes.clone();
                damaged[at] ^= bit;
                assert!(
                    read_snapshot(&damaged[..]).is_err(),
                    "flip {bit:#x} at {at} went unnoticed"
                );
            }
        }
        let mut damaged = bytes.clone();
        damaged[60] ^= 1; // inside the ACL cache: lengths stay plausible, the checksum fails
        assert!(matches!(
            read_snapshot(&damaged[..]),
            Err(SnapshotError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = encode(&SnapshotContents {
            digest: None,
            last_processed_zxid: None,
            ..sample()
        });
        for len in 0..bytes.len() {
            assert!(read_snapshot(&bytes[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn lengths_are_bounded_before_allocating() {
        let mut bytes = FileHeader::snapshot().encode().to_vec();
        bytes.extend_from_slice(&0i32.to_be_bytes());
        bytes.extend_from_slice(&0i32.to_be_bytes());
        bytes.extend_from_slice(&i32::MAX.to_be_bytes()); // root path claims 2 GiB
        assert!(matches!(
            read_snapshot(&bytes[..]),
            Err(SnapshotError::Malformed { .. })
        ));
        // A huge session count with no data behind it ends in Truncated, not an allocation.
        let mut bytes = FileHeader::snapshot().encode().to_vec();
        bytes.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            read_snapshot(&bytes[..]),
            Err(SnapshotError::Truncated { .. })
        ));
        let mut bytes = FileHeader::snapshot().encode().to_vec();
        bytes.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            read_snapshot(&bytes[..]),
            Err(SnapshotError::Malformed { .. })
        ));
        bytes[0] = b'X';
        assert!(matches!(
            read_snapshot(&bytes[..]),
            Err(SnapshotError::BadMagic(_))
        ));
    }

    #[test]
    fn writer_enforces_root_first() {
        let empty: [(i64, &[Acl]); 0] = [];
        let mut w = SnapshotWriter::new(Vec::new(), [], empty).unwrap();
        assert!(w.write_node("/a", None, -1, &stat(1, 0)).is_err());
        w.write_node("/", None, -1, &stat(0, 0)).unwrap();
        assert!(w.write_node("/", None, -1, &stat(0, 0)).is_err());
        assert!(w.write_node("a", None, -1, &stat(0, 0)).is_err());
        w.write_node("/a", None, -1, &stat(1, 0)).unwrap();
        let bytes = w.finish(&SnapshotTrailer::default()).unwrap();
        assert_eq!(read_snapshot(&bytes[..]).unwrap().nodes.len(), 2);
    }

    #[test]
    fn streaming_reader_verifies_on_finish() {
        let c = sample();
        let bytes = encode(&c);
        let mut reader = SnapshotReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.sessions(), &c.sessions[..]);
        assert_eq!(reader.next_node().unwrap().unwrap().path, "/");
        // finish reads the nodes not yet read before checking the seal.
        assert_eq!(reader.finish().unwrap(), c.trailer());
    }

    #[test]
    fn files_fall_back_to_older_valid_snapshots() {
        let dir = TempDir::new("snapfiles");
        assert!(
            load_newest_valid_snapshot(dir.path(), DEFAULT_MAX_BUFFER_BYTES, |_, _| Ok(()))
                .unwrap()
                .is_none()
        );
        let old = SnapshotContents {
            last_processed_zxid: Some(0x10),
            ..sample()
        };
        write_snapshot_file(dir.path(), 0x10, &old).unwrap();
        let new_path = write_snapshot_file(dir.path(), 0x20, &sample()).unwrap();
        assert_eq!(new_path.file_name().unwrap(), "snapshot.20");
        // An interrupted write (no seal at the end) is not even a candidate.
        std::fs::write(dir.path().join("snapshot.30"), &encode(&sample())[..100]).unwrap();
        std::fs::write(dir.path().join("snapshot.40.tmp"), b"junk").unwrap();
        let found: Vec<i64> = find_snapshots(dir.path())
            .unwrap()
            .iter()
            .map(|(z, _)| *z)
            .collect();
        assert_eq!(found, vec![0x20, 0x10]);
        let load = |_: i64, r: &mut SnapshotReader<File>| {
            let mut n = 0;
            while r.next_node()?.is_some() {
                n += 1;
            }
            Ok(n)
        };
        let loaded = load_newest_valid_snapshot(dir.path(), DEFAULT_MAX_BUFFER_BYTES, load)
            .unwrap()
            .unwrap();
        assert_eq!((loaded.zxid, loaded.value), (0x20, 5));
        // A sealed snapshot whose checksum fails is skipped for the older one.
        let mut bytes = std::fs::read(&new_path).unwrap();
        bytes[40] ^= 0x20;
        std::fs::write(&new_path, &bytes).unwrap();
        let loaded = load_newest_valid_snapshot(dir.path(), DEFAULT_MAX_BUFFER_BYTES, load)
            .unwrap()
            .unwrap();
        assert_eq!(
            (loaded.zxid, loaded.trailer.last_processed_zxid),
            (0x10, Some(0x10))
        );
        // Compressed snapshots are refused, not skipped.
        std::fs::write(dir.path().join("snapshot.50.gz"), [0x1f, 0x8b, 8, 0]).unwrap();
        let err =
            load_newest_valid_snapshot(dir.path(), DEFAULT_MAX_BUFFER_BYTES, load).unwrap_err();
        assert!(matches!(err, SnapshotError::Unsupported(_)), "{err}");
        assert!(read_snapshot_file(&dir.path().join("snapshot.50.gz")).is_err());
    }

    #[test]
    fn abandoned_file_writer_leaves_nothing() {
        let dir = TempDir::new("abandon");
        let acls = [(1i64, &Acl::open_unsafe()[..])];
        let mut w = SnapshotFileWriter::create(dir.path(), 5, [(1i64, 10i32)], acls).unwrap();
        w.writer().write_node("/", None, -1, &stat(0, 0)).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
