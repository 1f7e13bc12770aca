//! The data directory as a whole (ZooKeeper's FileTxnSnapLog and ZKDatabase.loadDataBase):
//! restore the tree from the newest valid snapshot plus the log after it, cut a torn tail left
//! by a crash, and refuse to start on anything that would lose a committed transaction.

use super::snapshot::{
    load_newest_valid_snapshot, SnapshotError, SnapshotFileWriter, SnapshotReader, SnapshotTrailer,
};
use super::txn_log::{cut_torn_tail, LogReadError, TxnLogOptions, TxnLogReader, TxnLogWriter};
use super::{ensure_data_dir_version2, SnapDigest};
use crate::config::Config;
use crate::jute::txn::TxnBody;
use crate::tree::{DataNode, DataTree, TreeLoader};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a restart recovers.
pub struct Restored {
    pub tree: DataTree,
    /// Live sessions and their timeouts, in id order.
    pub sessions: Vec<(i64, i32)>,
    pub snapshot_zxid: i64,
    pub txns_replayed: usize,
}

/// Why the data directory cannot be used. Each names the file (and offset) at fault.
#[derive(Debug)]
pub enum RestoreError {
    Io(PathBuf, io::Error),
    Snapshot(SnapshotError),
    Log(LogReadError),
    Tree(String),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::Io(path, e) => write!(f, "{}: {e}", path.display()),
            RestoreError::Snapshot(e) => write!(f, "snapshot: {e}"),
            RestoreError::Log(e) => write!(f, "transaction log: {e}"),
            RestoreError::Tree(e) => write!(f, "snapshot contents: {e}"),
        }
    }
}

impl std::error::Error for RestoreError {}

/// The two version-2 directories: snapshots under dataDir, logs under dataLogDir.
#[derive(Clone, Debug)]
pub struct FileTxnSnapLog {
    pub snap_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl FileTxnSnapLog {
    /// Creates the directories if needed (ZooKeeper's datadir.autocreate default).
    pub fn open(config: &Config) -> Result<FileTxnSnapLog, RestoreError> {
        let snap_dir = ensure(&config.data_dir)?;
        let log_dir = match &config.data_log_dir {
            Some(dir) => ensure(dir)?,
            None => snap_dir.clone(),
        };
        Ok(FileTxnSnapLog { snap_dir, log_dir })
    }

    /// Loads the newest valid snapshot and replays the log after it. A fresh directory gets a
    /// `snapshot.0`, as ZooKeeper writes one: ZooKeeper refuses logs without a snapshot.
    pub fn restore(&self, extended_types: bool) -> Result<Restored, RestoreError> {
        let loaded = load_newest_valid_snapshot(&self.snap_dir, |_, reader| {
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
                let mut tree = DataTree::new();
                tree.set_extended_types(extended_types);
                self.snapshot(&tree, &[])?;
                (tree, Vec::new(), 0)
            }
        };
        let mut sessions: BTreeMap<i64, i32> = sessions.into_iter().collect();
        let txns_replayed = self.replay(&mut tree, &mut sessions, snapshot_zxid)?;
        Ok(Restored {
            tree,
            sessions: sessions.into_iter().collect(),
            snapshot_zxid,
            txns_replayed,
        })
    }

    /// Applies every logged transaction after `from_zxid`; cuts a torn tail.
    fn replay(
        &self,
        tree: &mut DataTree,
        sessions: &mut BTreeMap<i64, i32>,
        from_zxid: i64,
    ) -> Result<usize, RestoreError> {
        let mut reader = TxnLogReader::open(&self.log_dir, from_zxid + 1)
            .map_err(|e| RestoreError::Io(self.log_dir.clone(), e))?;
        let mut count = 0;
        while let Some(txn) = reader.next_txn().map_err(RestoreError::Log)? {
            let entry = &txn.entry;
            if entry.header.zxid <= tree.last_processed_zxid() {
                continue;
            }
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

fn ensure(dir: &Path) -> Result<PathBuf, RestoreError> {
    ensure_data_dir_version2(dir).map_err(|e| RestoreError::Io(dir.to_owned(), e))
}

type LoadedTree = (TreeLoader, Vec<(i64, i32)>);

fn load_tree(
    reader: &mut SnapshotReader<File>,
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
    /// Copies what a snapshot needs. Node data is reference-counted, so this copies paths
    /// and stats, not values.
    pub fn capture(tree: &DataTree, sessions: &[(i64, i32)]) -> SnapshotData {
        let mut nodes = Vec::with_capacity(tree.node_count());
        tree.for_each_depth_first(|path, node| {
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            };
            nodes.push(super::SnapNode {
                path,
                data: node.data.clone(),
                acl: node.acl,
                stat: node.stat.clone(),
            });
        });
        let acls = tree
            .acl_cache()
            .iter()
            .map(|(r, a)| (r, a.to_vec()))
            .collect();
        SnapshotData {
            zxid: tree.last_processed_zxid(),
            sessions: sessions.to_vec(),
            acls,
            nodes,
            digest: tree.digest(),
        }
    }

    /// Writes `snapshot.<zxid>` atomically (temporary file, fsync, rename, directory fsync).
    pub fn write(&self, snap_dir: &Path) -> io::Result<PathBuf> {
        let acls = self.acls.iter().map(|(r, a)| (*r, &a[..]));
        let mut file =
            SnapshotFileWriter::create(snap_dir, self.zxid, self.sessions.iter().copied(), acls)?;
        for node in &self.nodes {
            file.writer().write_snap_node(node)?;
        }
        let trailer = SnapshotTrailer {
            digest: Some(SnapDigest {
                zxid: self.zxid,
                version: crate::tree::node::DIGEST_VERSION,
                digest: self.digest,
            }),
            last_processed_zxid: Some(self.zxid),
        };
        file.finish(&trailer)
    }
}

/// The sync thread's log: ZooKeeper's format, one fdatasync per batch, a warning when an
/// fsync is slow (`fsync.warningthresholdms`).
pub struct FileLog {
    writer: TxnLogWriter,
    warn_after: Duration,
}

impl FileLog {
    pub fn new(writer: TxnLogWriter, config: &Config) -> FileLog {
        FileLog {
            writer,
            warn_after: Duration::from_millis(config.fsync_warning_threshold_ms),
        }
    }
}

impl crate::threads::TxnLogWriter for FileLog {
    fn append(&mut self, entries: &[crate::jute::txn::TxnEntry]) -> io::Result<()> {
        self.writer.append(entries)
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
