//! The disk side of an ensemble member, run by the sync thread in order with the appends:
//! the quorum core's [`DiskCommand`]s (epoch files, TRUNC, a learner's SNAP) on a [`FileLog`].

use super::sync::TxnLogWriter;
use crate::config::Config;
use crate::jute::txn::TxnEntry;
use crate::persistence::{EpochFile, FileLog, FileTxnSnapLog, SnapshotData};
use crate::quorum::replica::{DiskCommand, DiskDone, EpochKind};
use std::io;

/// A log that also runs an ensemble's disk commands.
pub struct EnsembleLog {
    log: FileLog,
    config: Config,
}

impl EnsembleLog {
    pub fn new(log: FileLog, config: &Config) -> EnsembleLog {
        EnsembleLog {
            log,
            config: config.clone(),
        }
    }

    /// The tree as the data directory now has it (after a truncation below the applied tree).
    fn reload(&self) -> io::Result<crate::persistence::Restored> {
        let to_io = |e: crate::persistence::RestoreError| io::Error::other(e.to_string());
        FileTxnSnapLog::open(&self.config)
            .map_err(to_io)?
            .restore(self.config.extended_types_enabled)
            .map_err(to_io)
    }
}

fn epoch_file(which: EpochKind) -> EpochFile {
    match which {
        EpochKind::Accepted => EpochFile::Accepted,
        EpochKind::Current => EpochFile::Current,
    }
}

impl TxnLogWriter for EnsembleLog {
    fn append(&mut self, entries: &[TxnEntry]) -> io::Result<()> {
        self.log.append(entries)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.log.sync()
    }

    fn roll(&mut self) -> io::Result<()> {
        self.log.roll()
    }

    fn run_command(&mut self, cmd: DiskCommand) -> io::Result<DiskDone> {
        match cmd {
            DiskCommand::Truncate { zxid, reload } => {
                self.log.truncate_to(zxid)?;
                let restored = if reload {
                    Some(Box::new(self.reload()?))
                } else {
                    None
                };
                Ok(DiskDone::Truncated { zxid, restored })
            }
            DiskCommand::InstallSnapshot { zxid, bytes } => {
                let snap = SnapshotData::from_bytes(&bytes, self.config.jute_max_buffer_bytes)
                    .map_err(|e| io::Error::other(format!("the leader's snapshot: {e}")))?;
                if snap.zxid() != zxid {
                    return Err(io::Error::other(format!(
                        "the leader's snapshot is at 0x{:x}, not 0x{zxid:x}",
                        snap.zxid()
                    )));
                }
                self.log.install_snapshot(&snap)?;
                Ok(DiskDone::SnapshotInstalled { zxid })
            }
            DiskCommand::WriteEpoch { which, epoch } => {
                self.log.write_epoch(epoch_file(which), epoch)?;
                Ok(DiskDone::EpochWritten { which, epoch })
            }
            DiskCommand::MarkUpdatingEpoch => {
                self.log.mark_updating_epoch()?;
                Ok(DiskDone::UpdatingEpochMarked)
            }
        }
    }
}
