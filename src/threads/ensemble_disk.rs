//! The disk side of an ensemble member, run by the sync thread in order with the appends:
//! ZooKeeper's `acceptedEpoch` / `currentEpoch` files, TRUNC (cut the log, drop newer
//! snapshots, reload the tree when it held truncated transactions) and a learner's SNAP
//! (the leader's snapshot replaces the log).

use super::sync::TxnLogWriter;
use crate::config::Config;
use crate::jute::txn::TxnEntry;
use crate::persistence::{find_snapshots, snapshot_file_name, sync_dir, truncate, FileTxnSnapLog};
use crate::quorum::epoch_of;
use crate::quorum::replica::{DiskCommand, DiskDone, EpochKind};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

fn file_name(which: EpochKind) -> &'static str {
    match which {
        EpochKind::Accepted => "acceptedEpoch",
        EpochKind::Current => "currentEpoch",
    }
}

/// Reads an epoch file (a decimal number, as ZooKeeper writes it); `None` if absent.
pub fn read_epoch(snap_dir: &Path, which: EpochKind) -> io::Result<Option<i64>> {
    let path = snap_dir.join(file_name(which));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    text.trim().parse().map(Some).map_err(|_| {
        io::Error::other(format!(
            "{} holds {:?}, not an epoch",
            path.display(),
            text.trim()
        ))
    })
}

/// Writes an epoch file durably.
pub fn write_epoch(snap_dir: &Path, which: EpochKind, epoch: i64) -> io::Result<()> {
    write_atomically(snap_dir, file_name(which), epoch.to_string().as_bytes())
}

/// A temporary file, fsync, rename, directory fsync: the file is whole or absent.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Both epochs at start-up. Missing files are derived from the last logged zxid and written,
/// as ZooKeeper does when it upgrades a data directory.
pub fn load_epochs(snap_dir: &Path, last_zxid: i64) -> io::Result<(i64, i64)> {
    let read_or_init = |which| -> io::Result<i64> {
        match read_epoch(snap_dir, which)? {
            Some(e) => Ok(e),
            None => {
                let e = epoch_of(last_zxid);
                write_epoch(snap_dir, which, e)?;
                Ok(e)
            }
        }
    };
    let current = read_or_init(EpochKind::Current)?;
    let accepted = read_or_init(EpochKind::Accepted)?;
    if accepted < current {
        return Err(io::Error::other(format!(
            "acceptedEpoch {accepted} is older than currentEpoch {current}"
        )));
    }
    Ok((accepted, current))
}

/// The last `max` logged transactions up to `last_zxid`, from the log after the snapshot
/// (ZooKeeper's committedLog after loading: what a new leader can send as a DIFF).
pub fn recent_txns(
    log_dir: &Path,
    snapshot_zxid: i64,
    last_zxid: i64,
    max: usize,
    max_record_bytes: usize,
) -> Vec<TxnEntry> {
    let mut recent = std::collections::VecDeque::new();
    let opened = crate::persistence::TxnLogReader::open_with_limit(
        log_dir,
        snapshot_zxid + 1,
        max_record_bytes,
    );
    let Ok(mut reader) = opened else {
        return Vec::new();
    };
    // The log was just read whole by the restore: an error here only shortens the window.
    while let Ok(Some(txn)) = reader.next_txn() {
        if txn.entry.header.zxid > last_zxid {
            break;
        }
        if recent.len() == max {
            recent.pop_front();
        }
        recent.push_back(txn.entry);
    }
    recent.into()
}

/// A log that also runs an ensemble's disk commands.
pub struct EnsembleLog {
    inner: Box<dyn TxnLogWriter>,
    config: Config,
    snap_dir: PathBuf,
    log_dir: PathBuf,
}

impl EnsembleLog {
    pub fn new(inner: Box<dyn TxnLogWriter>, config: &Config, db: &FileTxnSnapLog) -> EnsembleLog {
        EnsembleLog {
            inner,
            config: config.clone(),
            snap_dir: db.snap_dir.clone(),
            log_dir: db.log_dir.clone(),
        }
    }

    /// Closes the current log file so the disk can be changed under it; the next append
    /// starts a new file.
    fn settle(&mut self) -> io::Result<()> {
        self.inner.roll()?;
        self.inner.sync()
    }

    /// Drops logged transactions after `zxid`, and snapshots newer than it (a restart would
    /// otherwise load them).
    fn truncate_to(&mut self, zxid: i64) -> io::Result<()> {
        self.settle()?;
        truncate(&self.log_dir, zxid, self.config.jute_max_buffer_bytes)
            .map_err(|e| io::Error::other(e.to_string()))?;
        for (snap_zxid, path) in find_snapshots(&self.snap_dir)? {
            if snap_zxid > zxid {
                std::fs::remove_file(&path)?;
            }
        }
        sync_dir(&self.snap_dir)
    }
}

impl TxnLogWriter for EnsembleLog {
    fn append(&mut self, entries: &[TxnEntry]) -> io::Result<()> {
        self.inner.append(entries)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }

    fn roll(&mut self) -> io::Result<()> {
        self.inner.roll()
    }

    fn run_command(&mut self, cmd: DiskCommand) -> io::Result<DiskDone> {
        match cmd {
            DiskCommand::Truncate { zxid, reload } => {
                self.truncate_to(zxid)?;
                let restored = if reload {
                    let db = FileTxnSnapLog::open(&self.config)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    let r = db
                        .restore(self.config.extended_types_enabled)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    Some(Box::new(r))
                } else {
                    None
                };
                Ok(DiskDone::Truncated { zxid, restored })
            }
            DiskCommand::InstallSnapshot { zxid, bytes } => {
                self.settle()?;
                write_atomically(&self.snap_dir, &snapshot_file_name(zxid), &bytes)?;
                // Nothing logged after the snapshot belongs to the leader's history.
                self.truncate_to(zxid)?;
                Ok(DiskDone::SnapshotInstalled { zxid })
            }
            DiskCommand::WriteEpoch { which, epoch } => {
                write_epoch(&self.snap_dir, which, epoch)?;
                Ok(DiskDone::EpochWritten { which, epoch })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::test_dir::TempDir;

    #[test]
    fn epochs_round_trip_and_default_from_the_log() {
        let dir = TempDir::new("epochs");
        assert_eq!(read_epoch(dir.path(), EpochKind::Current).unwrap(), None);
        assert_eq!(load_epochs(dir.path(), 3 << 32 | 7).unwrap(), (3, 3));
        write_epoch(dir.path(), EpochKind::Accepted, 5).unwrap();
        assert_eq!(load_epochs(dir.path(), 0).unwrap(), (5, 3));
        // ZooKeeper's own format: the number, possibly with a newline.
        std::fs::write(dir.path().join("currentEpoch"), "4\n").unwrap();
        assert_eq!(read_epoch(dir.path(), EpochKind::Current).unwrap(), Some(4));
        std::fs::write(dir.path().join("currentEpoch"), "x").unwrap();
        assert!(read_epoch(dir.path(), EpochKind::Current).is_err());
    }
}
