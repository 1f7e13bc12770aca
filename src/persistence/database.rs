//! The data directory as a whole (ZooKeeper's FileTxnSnapLog and ZKDatabase.loadDataBase):
//! restore the tree from the newest valid snapshot plus the log after it, cut a torn tail left
//! by a crash, and refuse to start on anything that would lose a committed transaction. Also
//! what a follower's synchronization does to the directory: truncation (TRUNC) and installing
//! a leader's snapshot (SNAP).

use super::epoch::{
    clear_updating_epoch, mark_updating_epoch, read_epoch, read_epoch_file, updating_epoch_marked,
    write_epoch, EpochFile, UPDATING_EPOCH_FILE,
};
use super::snapshot::{
    load_newest_valid_snapshot, SnapshotError, SnapshotFileWriter, SnapshotReader, SnapshotTrailer,
    SnapshotWriter,
};
use super::txn_log::{
    cut_torn_tail, last_logged_zxid, LogReadError, TxnLogOptions, TxnLogReader, TxnLogWriter,
};
use super::{ensure_data_dir_version2, max_buffer_bytes_on_disk, parse_snapshot_file_name};
use super::{sync_dir, SnapDigest};
use crate::config::Config;
use crate::jute::txn::{TxnBody, TxnEntry};
use crate::tree::{DataNode, DataTree, TreeLoader};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How many of the last transactions replayed at a restart [`Restored::recent_txns`] keeps:
/// ZooKeeper's `zookeeper.commitLogCount` default, the committed-log window a leader syncs a
/// follower from with DIFF.
pub const COMMIT_LOG_COUNT: usize = 500;

/// What a restart recovers.
pub struct Restored {
    pub tree: DataTree,
    /// Live sessions and their timeouts, in id order.
    pub sessions: Vec<(i64, i32)>,
    pub snapshot_zxid: i64,
    pub txns_replayed: usize,
    /// The `acceptedEpoch` file, or (missing) the epoch of the last zxid, then written.
    pub accepted_epoch: i64,
    /// The `currentEpoch` file, or (missing) the epoch of the last zxid, then written.
    pub current_epoch: i64,
    /// The last (up to [`COMMIT_LOG_COUNT`]) transactions replayed from the log, in zxid
    /// order (ZooKeeper's ZKDatabase committedLog as loadDataBase fills it: only what the log
    /// replays after the snapshot).
    pub recent_txns: Vec<TxnEntry>,
}

/// Why the data directory cannot be used. Each names the file (and offset) at fault.
#[derive(Debug)]
pub enum RestoreError {
    Io(PathBuf, io::Error),
    Snapshot(SnapshotError),
    Log(LogReadError),
    Tree(String),
    /// The epoch files disagree with each other or with the log.
    Epoch(String),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::Io(path, e) => write!(f, "{}: {e}", path.display()),
            RestoreError::Snapshot(e) => write!(f, "snapshot: {e}"),
            RestoreError::Log(e) => write!(f, "transaction log: {e}"),
            RestoreError::Tree(e) => write!(f, "snapshot contents: {e}"),
            RestoreError::Epoch(e) => write!(f, "epochs: {e}"),
        }
    }
}

impl std::error::Error for RestoreError {}

/// The two version-2 directories: snapshots under dataDir, logs under dataLogDir.
#[derive(Clone, Debug)]
pub struct FileTxnSnapLog {
    pub snap_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The longest record or buffer read back ([`max_buffer_bytes_on_disk`] of the configured
    /// jute.maxbuffer): longer ones are damage, as in ZooKeeper.
    pub max_buffer_bytes: usize,
}

impl FileTxnSnapLog {
    /// Creates the directories if needed (ZooKeeper's datadir.autocreate default).
    pub fn open(config: &Config) -> Result<FileTxnSnapLog, RestoreError> {
        let snap_dir = ensure(&config.data_dir)?;
        let log_dir = match &config.data_log_dir {
            Some(dir) => ensure(dir)?,
            None => snap_dir.clone(),
        };
        Ok(FileTxnSnapLog {
            snap_dir,
            log_dir,
            max_buffer_bytes: max_buffer_bytes_on_disk(config.jute_max_buffer_bytes),
        })
    }

    /// Loads the newest valid snapshot and replays the log after it; reads the epoch files
    /// (writing those missing, as ZooKeeper's QuorumPeer does). A fresh directory gets a
    /// `snapshot.0`, as ZooKeeper writes one: ZooKeeper refuses logs without a snapshot.
    pub fn restore(&self, extended_types: bool) -> Result<Restored, RestoreError> {
        let mut restored = self.restore_tree(extended_types)?;
        let (accepted, current) = self.load_epochs(restored.tree.last_processed_zxid())?;
        restored.accepted_epoch = accepted;
        restored.current_epoch = current;
        Ok(restored)
    }

    /// QuorumPeer.loadDataBase's epochs. A missing file gets the epoch of the last zxid (a
    /// directory from a standalone server, or from before the files existed). currentEpoch
    /// below that epoch is taken from `currentEpoch.tmp` when a crash left one (the rename
    /// never happened), else set to that epoch when the `updatingEpoch` marker says a crash
    /// fell between a learner's NEWLEADER log writes and its currentEpoch write (ZooKeeper
    /// 3.4), and is an error otherwise; acceptedEpoch below currentEpoch is an error. The
    /// marker is removed once the epochs are settled.
    fn load_epochs(&self, last_zxid: i64) -> Result<(i64, i64), RestoreError> {
        let dir = &self.snap_dir;
        let io_err = |which: EpochFile| {
            let path = which.path(dir);
            move |e| RestoreError::Io(path, e)
        };
        let zxid_epoch = crate::quorum::epoch_of(last_zxid);
        let mut current = match read_epoch(dir, EpochFile::Current)
            .map_err(io_err(EpochFile::Current))?
        {
            Some(epoch) => epoch,
            None => {
                log::info!("currentEpoch not found: creating it with the epoch of the last zxid, {zxid_epoch}");
                write_epoch(dir, EpochFile::Current, zxid_epoch)
                    .map_err(io_err(EpochFile::Current))?;
                zxid_epoch
            }
        };
        let marker = dir.join(UPDATING_EPOCH_FILE);
        let marker_err = |e| RestoreError::Io(marker.clone(), e);
        let marked = updating_epoch_marked(dir).map_err(marker_err)?;
        if zxid_epoch > current {
            let tmp = EpochFile::Current.tmp_path(dir);
            // A torn tmp file is what a crash during the epoch write leaves: with the marker,
            // the marker decides.
            let from_tmp = match read_epoch_file(&tmp) {
                Ok(epoch) => epoch,
                Err(_) if marked => None,
                Err(e) => return Err(RestoreError::Io(tmp, e)),
            };
            let epoch = match from_tmp {
                Some(epoch) => {
                    log::info!(
                        "{} found: setting the current epoch to {epoch}",
                        tmp.display()
                    );
                    epoch
                }
                None if marked => {
                    log::info!(
                        "{UPDATING_EPOCH_FILE} found: the server stopped between logging a \
                         sync and writing currentEpoch; setting the current epoch to {zxid_epoch}"
                    );
                    zxid_epoch
                }
                None => {
                    return Err(RestoreError::Epoch(format!(
                    "the current epoch, {current:#x}, is older than the last zxid, {last_zxid:#x}"
                )))
                }
            };
            write_epoch(dir, EpochFile::Current, epoch).map_err(io_err(EpochFile::Current))?;
            current = epoch;
        }
        if marked {
            clear_updating_epoch(dir).map_err(marker_err)?;
        }
        let accepted = match read_epoch(dir, EpochFile::Accepted)
            .map_err(io_err(EpochFile::Accepted))?
        {
            Some(epoch) => epoch,
            None => {
                log::info!("acceptedEpoch not found: creating it with the epoch of the last zxid, {zxid_epoch}");
                write_epoch(dir, EpochFile::Accepted, zxid_epoch)
                    .map_err(io_err(EpochFile::Accepted))?;
                zxid_epoch
            }
        };
        if accepted < current {
            return Err(RestoreError::Epoch(format!(
                "the accepted epoch, {accepted:#x}, is less than the current epoch, {current:#x}"
            )));
        }
        Ok((accepted, current))
    }

    fn restore_tree(&self, extended_types: bool) -> Result<Restored, RestoreError> {
        let loaded =
            load_newest_valid_snapshot(&self.snap_dir, self.max_buffer_bytes, |_, reader| {
                load_tree(reader, extended_types)
            })
            .map_err(RestoreError::Snapshot)?;
        let (mut tree, sessions, snapshot_zxid) = match loaded {
            Some(l) => {
                log::info!("loaded snapshot {}", l.path.display());
                let (loader, sessions) = l.value;
                let tree = loader.finish(l.zxid).map_err(RestoreError::Tree)?;
                (tree, sessions, l.zxid)
            }
            None => {
                self.refuse_logs_without_snapshot()?;
                let mut tree = DataTree::new();
                tree.set_extended_types(extended_types);
                self.snapshot(&tree, &[])?;
                (tree, Vec::new(), 0)
            }
        };
        let mut sessions: BTreeMap<i64, i32> = sessions.into_iter().collect();
        let mut recent = VecDeque::new();
        let txns_replayed = self.replay(&mut tree, &mut sessions, snapshot_zxid, &mut recent)?;
        Ok(Restored {
            tree,
            sessions: sessions.into_iter().collect(),
            snapshot_zxid,
            txns_replayed,
            accepted_epoch: 0,
            current_epoch: 0,
            recent_txns: recent.into(),
        })
    }

    /// Logs with no snapshot to start them from mean snapshots were lost: starting empty
    /// would silently drop data (ZooKeeper: "No snapshot found, but there are log entries").
    fn refuse_logs_without_snapshot(&self) -> Result<(), RestoreError> {
        let logs = super::list_log_files(&self.log_dir)
            .map_err(|e| RestoreError::Io(self.log_dir.clone(), e))?;
        match logs.first() {
            None => Ok(()),
            Some((_, path)) => Err(RestoreError::Io(
                path.clone(),
                io::Error::other("no valid snapshot found, but there are transaction logs: refusing to start with less data"),
            )),
        }
    }

    /// Applies every logged transaction after `from_zxid`, keeping the last
    /// [`COMMIT_LOG_COUNT`] in `recent`; cuts a torn tail.
    fn replay(
        &self,
        tree: &mut DataTree,
        sessions: &mut BTreeMap<i64, i32>,
        from_zxid: i64,
        recent: &mut VecDeque<TxnEntry>,
    ) -> Result<usize, RestoreError> {
        let mut reader =
            TxnLogReader::open_with_limit(&self.log_dir, from_zxid + 1, self.max_buffer_bytes)
                .map_err(|e| RestoreError::Io(self.log_dir.clone(), e))?;
        let mut count = 0;
        let mut last = from_zxid;
        while let Some(txn) = reader.next_txn().map_err(RestoreError::Log)? {
            let entry = &txn.entry;
            if entry.header.zxid <= tree.last_processed_zxid() {
                continue;
            }
            check_contiguous(last, entry.header.zxid, reader.current_file())?;
            last = entry.header.zxid;
            match &entry.body {
                TxnBody::CreateSession(s) => {
                    sessions.insert(entry.header.client_id, s.time_out);
                }
                TxnBody::CloseSession(_) => {
                    sessions.remove(&entry.header.client_id);
                }
                _ => {}
            }
            let mut events = Vec::new();
            tree.process_txn(&entry.header, &entry.body, &|_, _| false, &mut events);
            count += 1;
            if recent.len() == COMMIT_LOG_COUNT {
                recent.pop_front();
            }
            recent.push_back(txn.entry);
        }
        if let Some(torn) = reader.torn_tail() {
            log::warn!(
                "cutting a torn record at the end of {} at offset {} ({:?}): a write interrupted by a crash, never acknowledged",
                torn.file.display(),
                torn.offset,
                torn.problem
            );
            cut_torn_tail(&torn.file, torn.offset)
                .map_err(|e| RestoreError::Io(torn.file.clone(), e))?;
        }
        Ok(count)
    }

    /// Writes a snapshot of `tree` (exact, taken on the core thread) atomically.
    pub fn snapshot(
        &self,
        tree: &DataTree,
        sessions: &[(i64, i32)],
    ) -> Result<PathBuf, RestoreError> {
        let snap = SnapshotData::capture(tree, sessions);
        snap.write(&self.snap_dir)
            .map_err(|e| RestoreError::Io(self.snap_dir.clone(), e))
    }

    /// ZooKeeper's TRUNC (`ZKDatabase.truncateLog`): afterwards the log's last transaction is
    /// the last one ≤ `zxid` (later log files deleted, the file holding `zxid` cut after it)
    /// and every snapshot named above `zxid` is deleted, so that a restore gives the tree at
    /// that transaction. Durable when it returns. Snapshots go first: a crash in between
    /// leaves an older snapshot with the whole log, the state before the truncation.
    /// Refused, changing nothing, when every snapshot is above `zxid` (nothing could be
    /// restored: the leader should send a snapshot instead).
    pub fn truncate_to(&self, zxid: i64) -> Result<(), RestoreError> {
        let snaps = self.snapshot_files()?;
        let above = snaps.iter().filter(|(z, _)| *z > zxid).count();
        let kept = super::find_snapshots(&self.snap_dir)
            .map_err(|e| RestoreError::Io(self.snap_dir.clone(), e))?
            .iter()
            .any(|(z, _)| *z <= zxid);
        if above > 0 && !kept {
            return Err(RestoreError::Io(
                self.snap_dir.clone(),
                io::Error::other(format!(
                    "cannot truncate to {zxid:#x}: every snapshot is newer, nothing to restore from"
                )),
            ));
        }
        self.remove_snapshots_after(zxid, &snaps)?;
        super::txn_log::truncate(&self.log_dir, zxid, self.max_buffer_bytes)
            .map_err(RestoreError::Log)
    }

    /// Every file named as a snapshot (complete or not), newest first.
    fn snapshot_files(&self) -> Result<Vec<(i64, PathBuf)>, RestoreError> {
        let dir_err = |e| RestoreError::Io(self.snap_dir.clone(), e);
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.snap_dir).map_err(dir_err)? {
            let entry = entry.map_err(dir_err)?;
            if let Some((zxid, _)) = entry
                .file_name()
                .to_str()
                .and_then(parse_snapshot_file_name)
            {
                found.push((zxid, entry.path()));
            }
        }
        found.sort_by(|a, b| b.cmp(a));
        Ok(found)
    }

    /// Deletes the snapshots of `snaps` named above `zxid`, newest first, durably.
    fn remove_snapshots_after(
        &self,
        zxid: i64,
        snaps: &[(i64, PathBuf)],
    ) -> Result<(), RestoreError> {
        let mut removed = false;
        for (_, path) in snaps.iter().filter(|(z, _)| *z > zxid) {
            log::info!("removing {}: newer than {zxid:#x}", path.display());
            std::fs::remove_file(path).map_err(|e| RestoreError::Io(path.clone(), e))?;
            removed = true;
        }
        if removed {
            sync_dir(&self.snap_dir).map_err(|e| RestoreError::Io(self.snap_dir.clone(), e))?;
        }
        Ok(())
    }

    /// ZooKeeper's PurgeTxnLog: keeps the newest `retain` snapshots and every log file that
    /// may hold a transaction after the oldest of them. Returns (snapshots, logs) removed.
    pub fn purge(&self, retain: usize) -> io::Result<(usize, usize)> {
        let snaps = super::find_snapshots(&self.snap_dir)?;
        if snaps.len() <= retain {
            return Ok((0, 0));
        }
        let oldest_kept = snaps[retain - 1].0;
        let logs = super::list_log_files(&self.log_dir)?;
        // The newest log starting at or before the oldest kept snapshot may hold txns after it.
        let keep_from = logs
            .iter()
            .map(|(z, _)| *z)
            .filter(|z| *z <= oldest_kept)
            .max();
        let mut removed = (0, 0);
        for (zxid, path) in &snaps[retain..] {
            if *zxid < oldest_kept {
                std::fs::remove_file(path)?;
                removed.0 += 1;
            }
        }
        for (zxid, path) in &logs {
            if keep_from.is_some_and(|k| *zxid < k) {
                std::fs::remove_file(path)?;
                removed.1 += 1;
            }
        }
        Ok(removed)
    }

    pub fn log_writer(&self, config: &Config) -> io::Result<TxnLogWriter> {
        let options = TxnLogOptions {
            prealloc_size_bytes: config.pre_alloc_size_bytes,
            size_limit_bytes: None,
            force_sync: config.force_sync,
        };
        TxnLogWriter::open(&self.log_dir, options)
    }
}

/// Within an epoch zxids are consecutive: a gap means a log file (or part of one) is missing.
fn check_contiguous(last: i64, next: i64, file: Option<&Path>) -> Result<(), RestoreError> {
    let same_epoch = last >> 32 == next >> 32;
    if same_epoch && next != last + 1 {
        let file = file.map(Path::to_path_buf).unwrap_or_default();
        let what = format!(
            "transactions 0x{:x} to 0x{:x} are missing from the log",
            last + 1,
            next - 1
        );
        return Err(RestoreError::Io(file, io::Error::other(what)));
    }
    Ok(())
}

fn ensure(dir: &Path) -> Result<PathBuf, RestoreError> {
    ensure_data_dir_version2(dir).map_err(|e| RestoreError::Io(dir.to_owned(), e))
}

type LoadedTree = (TreeLoader, Vec<(i64, i32)>);

fn load_tree<R: Read>(
    reader: &mut SnapshotReader<R>,
    extended_types: bool,
) -> Result<LoadedTree, SnapshotError> {
    let mut loader = TreeLoader::new(extended_types);
    for (r, acl) in reader.take_acls() {
        loader.acl(r, acl);
    }
    let sessions = reader.take_sessions();
    while let Some(n) = reader.next_node()? {
        let node = DataNode::new(n.data, n.acl, n.stat);
        loader
            .node(&n.path, node)
            .map_err(|what| SnapshotError::Malformed { offset: 0, what })?;
    }
    Ok((loader, sessions))
}

/// Loads a snapshot held in memory, in the snapshot file format ([`SnapshotData::to_bytes`],
/// a leader's SNAP): the tree, with its last processed zxid the snapshot's own (its 3.9
/// last-zxid section, else its digest's zxid), and the sessions. Lengths above
/// `max_buffer_bytes` are damage.
pub fn restore_snapshot_bytes(
    bytes: &[u8],
    max_buffer_bytes: usize,
    extended_types: bool,
) -> Result<(DataTree, Vec<(i64, i32)>), SnapshotError> {
    let mut reader = SnapshotReader::with_limit(bytes, max_buffer_bytes)?;
    let (loader, sessions) = load_tree(&mut reader, extended_types)?;
    let trailer = reader.finish()?;
    let zxid = snapshot_zxid(&trailer)?;
    let tree = loader
        .finish(zxid)
        .map_err(|what| SnapshotError::Malformed { offset: 0, what })?;
    Ok((tree, sessions))
}

/// The zxid a snapshot without a file name says it was taken at.
fn snapshot_zxid(trailer: &SnapshotTrailer) -> Result<i64, SnapshotError> {
    match (trailer.last_processed_zxid, trailer.digest) {
        (Some(zxid), _) => Ok(zxid),
        (None, Some(d)) if d.zxid > 0 => Ok(d.zxid),
        _ => Err(SnapshotError::Malformed {
            offset: 0,
            what: "the snapshot does not say its zxid (no last-zxid or digest section)".to_owned(),
        }),
    }
}

/// A snapshot's contents captured from the tree, ready to be written on another thread.
pub struct SnapshotData {
    pub zxid: i64,
    sessions: Vec<(i64, i32)>,
    acls: Vec<(i64, Vec<crate::jute::data::Acl>)>,
    nodes: Vec<super::SnapNode>,
    digest: i64,
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SnapshotData {{ zxid: {:#x}, nodes: {} }}",
            self.zxid,
            self.nodes.len()
        )
    }
}

impl SnapshotData {
    /// Copies the whole tree at once (tools and tests; the server captures incrementally).
    pub fn capture(tree: &DataTree, sessions: &[(i64, i32)]) -> SnapshotData {
        let mut capture = SnapshotCapture::start(tree, sessions);
        loop {
            if let Some(done) = capture.step(tree, usize::MAX) {
                return done;
            }
        }
    }

    /// The last zxid applied when the copy started, the snapshot's name.
    pub fn zxid(&self) -> i64 {
        self.zxid
    }

    /// Writes `snapshot.<zxid>` atomically (temporary file, fsync, rename, directory fsync).
    pub fn write(&self, snap_dir: &Path) -> io::Result<PathBuf> {
        let acls = self.acls.iter().map(|(r, a)| (*r, &a[..]));
        let mut file =
            SnapshotFileWriter::create(snap_dir, self.zxid, self.sessions.iter().copied(), acls)?;
        for node in &self.nodes {
            file.writer().write_snap_node(node)?;
        }
        file.finish(&self.trailer())
    }

    /// The bytes [`SnapshotData::write`] puts in `snapshot.<zxid>` (a leader's SNAP).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.write_to(Vec::new())
            .expect("writing a snapshot of a tree into memory cannot fail")
    }

    fn write_to<W: Write>(&self, w: W) -> io::Result<W> {
        let acls = self.acls.iter().map(|(r, a)| (*r, &a[..]));
        let mut writer = SnapshotWriter::new(w, self.sessions.iter().copied(), acls)?;
        for node in &self.nodes {
            writer.write_snap_node(node)?;
        }
        writer.finish(&self.trailer())
    }

    fn trailer(&self) -> SnapshotTrailer {
        SnapshotTrailer {
            digest: Some(SnapDigest {
                zxid: self.zxid,
                version: crate::tree::node::DIGEST_VERSION,
                digest: self.digest,
            }),
            last_processed_zxid: Some(self.zxid),
        }
    }

    /// Reads what [`SnapshotData::to_bytes`] writes (a follower receiving SNAP, to install it
    /// with [`FileLog::install_snapshot`]). The checksum is verified; the tree is not built
    /// (see [`restore_snapshot_bytes`]).
    pub fn from_bytes(
        bytes: &[u8],
        max_buffer_bytes: usize,
    ) -> Result<SnapshotData, SnapshotError> {
        let mut reader = SnapshotReader::with_limit(bytes, max_buffer_bytes)?;
        let sessions = reader.take_sessions();
        let acls = reader.take_acls();
        let mut nodes = Vec::new();
        while let Some(node) = reader.next_node()? {
            nodes.push(node);
        }
        let trailer = reader.finish()?;
        let zxid = snapshot_zxid(&trailer)?;
        let digest = match trailer.digest {
            Some(d) if d.version == crate::tree::node::DIGEST_VERSION => d.digest,
            _ => {
                return Err(SnapshotError::Malformed {
                    offset: 0,
                    what: "the snapshot has no digest of the current version".to_owned(),
                })
            }
        };
        Ok(SnapshotData {
            zxid,
            sessions,
            acls,
            nodes,
            digest,
        })
    }
}

/// A fuzzy snapshot being copied from the live tree a bounded number of nodes at a time, so
/// the core never pauses for long (ZooKeeper's fuzzy snapshot: the file is named by the zxid
/// at the start, and replaying the log from there repairs whatever changed during the copy).
/// The walk is depth-first in sorted child order, resumed after the last child taken, so
/// parents always precede their children in the file.
pub struct SnapshotCapture {
    zxid: i64,
    digest: i64,
    sessions: Vec<(i64, i32)>,
    /// Only the ACL entries the copied nodes use, taken when each node is copied.
    acls: BTreeMap<i64, Vec<crate::jute::data::Acl>>,
    nodes: Vec<super::SnapNode>,
    /// Nodes being walked: their path and the children they had when they were copied, in
    /// reverse order (so the next one pops off the end). Children created after their parent
    /// was copied are left to the log replay, as in ZooKeeper, which keeps the parent's stat
    /// and its children consistent in the file.
    stack: Vec<(String, Vec<Box<str>>)>,
    started: bool,
}

impl SnapshotCapture {
    pub fn start(tree: &DataTree, sessions: &[(i64, i32)]) -> SnapshotCapture {
        SnapshotCapture {
            zxid: tree.last_processed_zxid(),
            digest: tree.digest(),
            sessions: sessions.to_vec(),
            acls: BTreeMap::new(),
            nodes: Vec::new(),
            stack: Vec::new(),
            started: false,
        }
    }

    pub fn zxid(&self) -> i64 {
        self.zxid
    }

    /// Copies up to `budget` nodes; returns the snapshot once the walk is complete.
    pub fn step(&mut self, tree: &DataTree, budget: usize) -> Option<SnapshotData> {
        let mut left = budget;
        if !self.started {
            self.started = true;
            self.copy(tree, "");
            left = left.saturating_sub(1);
        }
        while left > 0 {
            let Some((path, children)) = self.stack.last_mut() else {
                return Some(self.finish());
            };
            let Some(child) = children.pop() else {
                self.stack.pop();
                continue;
            };
            let child_path = format!("{path}/{child}");
            self.copy(tree, &child_path);
            left -= 1;
        }
        None
    }

    fn copy(&mut self, tree: &DataTree, path: &str) {
        let Some(node) = tree.node(lookup(path)) else {
            return;
        };
        if node.acl != crate::tree::acl::OPEN_UNSAFE_REF {
            self.acls
                .entry(node.acl)
                .or_insert_with(|| tree.acl_cache().get(node.acl).to_vec());
        }
        self.nodes.push(super::SnapNode {
            path: lookup(path).to_owned(),
            data: node.data.clone(),
            acl: node.acl,
            stat: node.stat.clone(),
        });
        self.stack.push((
            path.to_owned(),
            node.children.iter().rev().cloned().collect(),
        ));
    }

    fn finish(&mut self) -> SnapshotData {
        SnapshotData {
            zxid: self.zxid,
            sessions: std::mem::take(&mut self.sessions),
            acls: std::mem::take(&mut self.acls).into_iter().collect(),
            nodes: std::mem::take(&mut self.nodes),
            digest: self.digest,
        }
    }
}

/// The tree names the root "/" while walks build child paths from "".
fn lookup(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// The sync thread's log: ZooKeeper's format, one fdatasync per batch, a warning when an
/// fsync is slow (`fsync.warningthresholdms`). Between appends it also runs what a follower's
/// synchronization does to the data directory: truncation, installing a leader's snapshot,
/// and the epoch files.
pub struct FileLog {
    writer: TxnLogWriter,
    warn_after: Duration,
    db: FileTxnSnapLog,
    last_zxid: i64,
}

impl FileLog {
    /// A log over `db`'s directories. `last_zxid` is where the restored history ends
    /// (`Restored::tree.last_processed_zxid()`): the next append must be above it.
    pub fn new(db: &FileTxnSnapLog, config: &Config, last_zxid: i64) -> io::Result<FileLog> {
        Ok(FileLog {
            writer: db.log_writer(config)?,
            warn_after: Duration::from_millis(config.fsync_warning_threshold_ms),
            db: db.clone(),
            last_zxid,
        })
    }

    /// The zxid the history on disk ends at: the last one appended, or restored, or the
    /// point of the last truncation or installed snapshot. Appends go above it.
    pub fn last_appended_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// ZooKeeper's TRUNC, between appends: closes the current file (what was appended is
    /// written to it first, so nothing lands after the cut), then
    /// [`FileTxnSnapLog::truncate_to`]. The next append starts a new log file and may have
    /// any zxid above the history's new end ([`FileLog::last_appended_zxid`]). Durable when
    /// it returns.
    pub fn truncate_to(&mut self, zxid: i64) -> io::Result<()> {
        self.writer.roll()?;
        self.db.truncate_to(zxid).map_err(restore_to_io)?;
        let logged = last_logged_zxid(&self.db.log_dir, self.db.max_buffer_bytes)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let snapshot = super::find_snapshots(&self.db.snap_dir)?
            .first()
            .map(|(z, _)| *z);
        // Where a restore now ends: the last logged transaction, or the snapshot when the log
        // holds nothing after it.
        let end = logged.max(snapshot).unwrap_or(0).min(zxid);
        self.writer.rewind_to(end);
        self.last_zxid = end;
        Ok(())
    }

    /// A follower's SNAP, between appends: afterwards the data directory restores to exactly
    /// `snap`'s tree. Closes the current file, removes every logged transaction above the
    /// snapshot's zxid, writes `snapshot.<zxid>` (atomically) and removes the snapshots above
    /// it; older log files stay, ending before it, as after ZooKeeper's SNAP. The next append
    /// starts a new log file and may have any zxid above the snapshot's. Durable when it
    /// returns. In this order a crash at any point leaves a directory that restores to a
    /// consistent state: the one before, or the snapshot.
    pub fn install_snapshot(&mut self, snap: &SnapshotData) -> io::Result<()> {
        let zxid = snap.zxid();
        self.writer.roll()?;
        super::txn_log::truncate(&self.db.log_dir, zxid, self.db.max_buffer_bytes)
            .map_err(|e| io::Error::other(e.to_string()))?;
        snap.write(&self.db.snap_dir)?;
        let snaps = self.db.snapshot_files().map_err(restore_to_io)?;
        self.db
            .remove_snapshots_after(zxid, &snaps)
            .map_err(restore_to_io)?;
        self.writer.rewind_to(zxid);
        self.last_zxid = zxid;
        Ok(())
    }

    /// Writes `acceptedEpoch` or `currentEpoch` in the snapshot directory, durably; a written
    /// currentEpoch ends a NEWLEADER's writes, so the `updatingEpoch` marker goes too.
    pub fn write_epoch(&mut self, which: EpochFile, epoch: i64) -> io::Result<()> {
        write_epoch(&self.db.snap_dir, which, epoch)?;
        if which == EpochFile::Current {
            clear_updating_epoch(&self.db.snap_dir)?;
        }
        Ok(())
    }

    /// Creates the `updatingEpoch` marker, durably.
    pub fn mark_updating_epoch(&mut self) -> io::Result<()> {
        mark_updating_epoch(&self.db.snap_dir)
    }
}

fn restore_to_io(e: RestoreError) -> io::Error {
    match e {
        RestoreError::Io(path, e) => io::Error::new(e.kind(), format!("{}: {e}", path.display())),
        other => io::Error::other(other.to_string()),
    }
}

impl crate::threads::TxnLogWriter for FileLog {
    fn append(&mut self, entries: &[TxnEntry]) -> io::Result<()> {
        self.writer.append(entries)?;
        if let Some(last) = entries.iter().map(|e| e.header.zxid).max() {
            self.last_zxid = self.last_zxid.max(last);
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let took = self.writer.sync()?;
        if took > self.warn_after {
            log::warn!(
                "fsync-ing the write ahead log in zabd-sync took {}ms which will adversely effect operation latency.",
                took.as_millis()
            );
        }
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        self.writer.roll()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::data::Acl;
    use crate::jute::proto::op;
    use crate::jute::txn::{CreateTxn, DeleteTxn, SetDataTxn, TxnEntry, TxnHeader};
    use bytes::Bytes;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zabd-db-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Every node's path, data and stat, for comparing trees exactly.
    fn dump(tree: &DataTree) -> Vec<(String, Option<Bytes>, crate::jute::data::Stat)> {
        let mut out = Vec::new();
        tree.for_each_depth_first(|p, n| out.push((p.to_owned(), n.data.clone(), tree.stat_of(n))));
        out
    }

    fn create(path: &str) -> TxnBody {
        TxnBody::Create(
            op::CREATE,
            CreateTxn {
                path: path.into(),
                data: Some(Bytes::from_static(b"v")),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            },
        )
    }

    /// A snapshot copied slice by slice while transactions keep landing, plus the log replayed
    /// from the snapshot's zxid, restores exactly the live tree (ZooKeeper's fuzzy snapshot).
    #[test]
    fn fuzzy_snapshot_plus_log_replay_restores_the_live_tree() {
        let dir = temp_dir("fuzzy");
        let config = Config {
            data_dir: dir.clone(),
            pre_alloc_size_bytes: 4096,
            ..Config::default()
        };
        let db = FileTxnSnapLog::open(&config).unwrap();
        let mut tree = db.restore(false).unwrap().tree;
        let mut zxid = tree.last_processed_zxid();
        let mut apply = |tree: &mut DataTree, mut body: TxnBody, log: &mut Vec<TxnEntry>| {
            zxid += 1;
            // Log the explicit new parent cversion, as prep does: replay over a fuzzy
            // snapshot relies on it being idempotent.
            if let TxnBody::Create(_, c) = &mut body {
                let parent = crate::tree::path::parent(&c.path);
                c.parent_cversion = tree.node(parent).map_or(0, |p| p.stat.cversion) + 1;
            }
            let header = TxnHeader {
                client_id: 1,
                cxid: 0,
                zxid,
                time: zxid,
                type_: body.type_code(),
            };
            tree.process_txn(&header, &body, &|_, _| false, &mut Vec::new());
            log.push(TxnEntry {
                header,
                body,
                digest: None,
            });
        };
        let mut before = Vec::new();
        for a in 0..20 {
            apply(&mut tree, create(&format!("/a{a:02}")), &mut before);
            for b in 0..20 {
                apply(&mut tree, create(&format!("/a{a:02}/b{b:02}")), &mut before);
            }
        }
        let mut capture = SnapshotCapture::start(&tree, &[]);
        let mut after = Vec::new();
        let mut round = 0;
        let snapshot = loop {
            if let Some(done) = capture.step(&tree, 7) {
                break done;
            }
            round += 1;
            // Touch nodes on both sides of the walk's cursor: sets, deletes, new subtrees.
            let a = round % 20;
            let victim = format!("/a{a:02}/b{:02}", round % 20);
            apply(
                &mut tree,
                TxnBody::SetData(SetDataTxn {
                    path: victim.clone(),
                    data: None,
                    version: round,
                }),
                &mut after,
            );
            apply(
                &mut tree,
                TxnBody::Delete(DeleteTxn {
                    path: victim.clone(),
                }),
                &mut after,
            );
            apply(
                &mut tree,
                create(&format!("/a{a:02}/new{round:03}")),
                &mut after,
            );
            apply(&mut tree, create(&format!("/z{round:03}")), &mut after);
            apply(&mut tree, create(&victim), &mut after);
        };
        assert!(
            round > 50,
            "the copy was interleaved with writes ({round} rounds)"
        );
        let mut writer = db.log_writer(&config).unwrap();
        writer.append(&before).unwrap();
        writer.append(&after).unwrap();
        writer.sync().unwrap();
        drop(writer);
        snapshot.write(&db.snap_dir).unwrap();
        let restored = db.restore(false).unwrap();
        assert_eq!(restored.snapshot_zxid, snapshot.zxid);
        assert_eq!(restored.txns_replayed, after.len());
        let (got, want) = (dump(&restored.tree), dump(&tree));
        let diffs: Vec<_> = want
            .iter()
            .zip(&got)
            .filter(|(w, g)| w != g)
            .take(3)
            .collect();
        assert!(
            diffs.is_empty() && got.len() == want.len(),
            "{} vs {} nodes; first differences (live, restored): {diffs:#?}",
            want.len(),
            got.len()
        );
        assert_eq!(restored.tree.digest(), tree.digest());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// F3: a data directory is read with the configured jute.maxbuffer (plus its extra size),
    /// so a server with a large jute.maxbuffer loads its own large records; with a smaller
    /// one such a record stops the restore, naming the setting, and is never cut off as a
    /// torn tail, even when it is the last record.
    #[test]
    fn records_are_read_with_the_configured_jute_maxbuffer() {
        let dir = temp_dir("maxbuffer");
        let big = Config {
            data_dir: dir.clone(),
            jute_max_buffer_bytes: 4 << 20,
            pre_alloc_size_bytes: 4096,
            ..Config::default()
        };
        let db = FileTxnSnapLog::open(&big).unwrap();
        assert_eq!(db.max_buffer_bytes, 8 << 20);
        db.restore(false).unwrap();
        let mut body = create("/big");
        if let TxnBody::Create(_, c) = &mut body {
            c.data = Some(Bytes::from(vec![b'x'; 3 << 20]));
        }
        let header = TxnHeader {
            client_id: 1,
            cxid: 0,
            zxid: 1,
            time: 0,
            type_: body.type_code(),
        };
        let mut writer = db.log_writer(&big).unwrap();
        writer
            .append(&[TxnEntry {
                header,
                body,
                digest: None,
            }])
            .unwrap();
        writer.sync().unwrap();
        drop(writer);
        let log = db.log_dir.join(super::super::log_file_name(1));
        let len_before = std::fs::metadata(&log).unwrap().len();

        let small = Config {
            jute_max_buffer_bytes: 0xfffff,
            ..big.clone()
        };
        let err = FileTxnSnapLog::open(&small)
            .unwrap()
            .restore(false)
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(
                &err,
                RestoreError::Log(LogReadError::TooLarge { offset: 16, .. })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("jute.maxbuffer"), "{err}");
        assert_eq!(
            std::fs::metadata(&log).unwrap().len(),
            len_before,
            "nothing was cut"
        );

        let restored = db.restore(false).unwrap();
        let node = restored.tree.node("/big").expect("the big node is back");
        assert_eq!(node.data.as_ref().map(|d| d.len()), Some(3 << 20));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn purge_keeps_the_newest_snapshots_and_the_logs_they_need() {
        let dir = temp_dir("purge");
        let config = Config {
            data_dir: dir.clone(),
            ..Config::default()
        };
        let db = FileTxnSnapLog::open(&config).unwrap();
        for z in [0x10i64, 0x20, 0x30, 0x40, 0x50] {
            std::fs::write(db.snap_dir.join(super::super::snapshot_file_name(z)), b"").unwrap();
        }
        for z in [0x1i64, 0x18, 0x28, 0x38, 0x48] {
            std::fs::write(db.log_dir.join(super::super::log_file_name(z)), b"").unwrap();
        }
        // find_snapshots needs a seal to count a file as a snapshot: write real ones.
        let tree = DataTree::new();
        for z in [0x10i64, 0x20, 0x30, 0x40, 0x50] {
            let mut snap = SnapshotData::capture(&tree, &[]);
            snap.zxid = z;
            snap.write(&db.snap_dir).unwrap();
        }
        let (snaps, logs) = db.purge(3).unwrap();
        assert_eq!(
            (snaps, logs),
            (2, 2),
            "snapshots 0x10, 0x20 and logs 0x1, 0x18 go"
        );
        let left: Vec<i64> = super::super::find_snapshots(&db.snap_dir)
            .unwrap()
            .into_iter()
            .map(|(z, _)| z)
            .collect();
        assert_eq!(left, vec![0x50, 0x40, 0x30]);
        let logs: Vec<i64> = super::super::list_log_files(&db.log_dir)
            .unwrap()
            .into_iter()
            .map(|(z, _)| z)
            .collect();
        assert_eq!(
            logs,
            vec![0x28, 0x38, 0x48],
            "0x28 may hold txns after snapshot 0x30"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
