//! The `acceptedEpoch` and `currentEpoch` files (ZooKeeper's QuorumPeer): the two durable ZAB
//! epochs besides the log. acceptedEpoch is the newest epoch this server agreed to follow or
//! lead (written before it answers LEADERINFO, or before a leader sends it); currentEpoch the
//! newest epoch whose history it holds (written when NEWLEADER is processed).
//!
//! Both live in the snapshot directory (`dataDir/version-2`) and hold the epoch as decimal text
//! (`Long.toString`, no newline). A reader takes the first line (`BufferedReader.readLine` then
//! `Long.parseLong`): anything else is an error naming the file, never a default. They are
//! replaced atomically, as ZooKeeper's `AtomicFileOutputStream` does: `<name>.tmp` written and
//! fsynced, then renamed over the file; zabd also fsyncs the directory, so the new value
//! survives a crash once [`write_epoch`] returns.
//!
//! The `updatingEpoch` marker (ZooKeeper 3.4's `QuorumPeer.UPDATING_EPOCH_FILENAME`, an empty
//! file in the same directory) brackets a learner's NEWLEADER writes when they move the log
//! past currentEpoch's epoch: created first, removed once currentEpoch is written. A crash in
//! between leaves a log newer than currentEpoch, which a restart would otherwise refuse
//! (ZooKeeper 3.5+ dropped the marker and refuses it too, unless `currentEpoch.tmp` exists).

use super::sync_dir;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A well-formed epoch file is at most 20 digits and a sign, plus a line ending; anything
/// read beyond this cannot make its first line valid.
const EPOCH_FILE_BYTES_MAX: u64 = 64;

/// Which of the two epoch files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochFile {
    /// `acceptedEpoch`.
    Accepted,
    /// `currentEpoch`.
    Current,
}

impl EpochFile {
    /// `QuorumPeer.ACCEPTED_EPOCH_FILENAME` / `CURRENT_EPOCH_FILENAME`.
    pub fn file_name(self) -> &'static str {
        match self {
            EpochFile::Accepted => "acceptedEpoch",
            EpochFile::Current => "currentEpoch",
        }
    }

    /// The file in `snap_dir`.
    pub fn path(self, snap_dir: &Path) -> PathBuf {
        snap_dir.join(self.file_name())
    }

    /// The temporary file an interrupted [`write_epoch`] may leave (`<name>.tmp`).
    pub fn tmp_path(self, snap_dir: &Path) -> PathBuf {
        snap_dir.join(format!("{}.tmp", self.file_name()))
    }
}

/// The marker's name, ZooKeeper 3.4's.
pub const UPDATING_EPOCH_FILE: &str = "updatingEpoch";

/// Creates the `updatingEpoch` marker, durably (the file and its directory entry).
pub fn mark_updating_epoch(snap_dir: &Path) -> io::Result<()> {
    let path = snap_dir.join(UPDATING_EPOCH_FILE);
    let created = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|f| f.sync_all());
    created.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    sync_dir(snap_dir)
}

/// True when the `updatingEpoch` marker exists.
pub fn updating_epoch_marked(snap_dir: &Path) -> io::Result<bool> {
    let path = snap_dir.join(UPDATING_EPOCH_FILE);
    path.try_exists()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Removes the `updatingEpoch` marker, durably; nothing to do when there is none.
pub fn clear_updating_epoch(snap_dir: &Path) -> io::Result<()> {
    let path = snap_dir.join(UPDATING_EPOCH_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(snap_dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// The epoch stored in `snap_dir`'s file, `None` when the file does not exist. A file that
/// does not hold a decimal number on its first line is an error naming it.
pub fn read_epoch(snap_dir: &Path, which: EpochFile) -> io::Result<Option<i64>> {
    read_epoch_file(&which.path(snap_dir))
}

/// [`read_epoch`] of any path (the `.tmp` file too).
pub(crate) fn read_epoch_file(path: &Path) -> io::Result<Option<i64>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let mut bytes = Vec::new();
    file.take(EPOCH_FILE_BYTES_MAX)
        .read_to_end(&mut bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    parse_epoch(&bytes).map(Some).ok_or_else(|| {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(32)]).into_owned();
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: not an epoch (a decimal number on the first line): found {shown:?}",
                path.display()
            ),
        )
    })
}

/// `Long.parseLong` of the first line, ended by "\n", "\r" or the end of the file as
/// `readLine` ends it. An empty file has no line, which Java reports as malformed too.
fn parse_epoch(bytes: &[u8]) -> Option<i64> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(bytes.len());
    let line = std::str::from_utf8(&bytes[..end]).ok()?;
    // Rust's parser takes what parseLong takes: an optional sign and ASCII digits.
    line.parse().ok()
}

/// Replaces `snap_dir`'s file with `epoch`, durably: when this returns Ok, a crash leaves the
/// new value (tmp file written and fsynced, renamed over the file, directory fsynced). A crash
/// before that leaves the old value, and possibly the `.tmp` file.
pub fn write_epoch(snap_dir: &Path, which: EpochFile, epoch: i64) -> io::Result<()> {
    let tmp = which.tmp_path(snap_dir);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(epoch.to_string().as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io::Error::new(e.kind(), format!("{}: {e}", tmp.display())));
    }
    std::fs::rename(&tmp, which.path(snap_dir))?;
    sync_dir(snap_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::test_dir::TempDir;

    #[test]
    fn missing_files_read_as_none() {
        let dir = TempDir::new("epoch-missing");
        assert_eq!(read_epoch(dir.path(), EpochFile::Accepted).unwrap(), None);
        assert_eq!(read_epoch(dir.path(), EpochFile::Current).unwrap(), None);
    }

    #[test]
    fn written_as_zookeeper_writes_them_and_read_back() {
        let dir = TempDir::new("epoch-write");
        write_epoch(dir.path(), EpochFile::Accepted, 7).unwrap();
        write_epoch(dir.path(), EpochFile::Current, 6).unwrap();
        // Long.toString, no line ending, under ZooKeeper's names.
        assert_eq!(
            std::fs::read(dir.path().join("acceptedEpoch")).unwrap(),
            b"7"
        );
        assert_eq!(
            std::fs::read(dir.path().join("currentEpoch")).unwrap(),
            b"6"
        );
        assert!(!EpochFile::Accepted.tmp_path(dir.path()).exists());
        assert_eq!(
            read_epoch(dir.path(), EpochFile::Accepted).unwrap(),
            Some(7)
        );
        assert_eq!(read_epoch(dir.path(), EpochFile::Current).unwrap(), Some(6));
        // Replaced, not appended to.
        write_epoch(dir.path(), EpochFile::Accepted, 1 << 40).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("acceptedEpoch")).unwrap(),
            b"1099511627776"
        );
        assert_eq!(
            read_epoch(dir.path(), EpochFile::Accepted).unwrap(),
            Some(1 << 40)
        );
        write_epoch(dir.path(), EpochFile::Current, -1).unwrap();
        assert_eq!(
            read_epoch(dir.path(), EpochFile::Current).unwrap(),
            Some(-1)
        );
    }

    /// Files as ZooKeeper 3.8 leaves them (`AtomicFileWritingIdiom` + `Long.toString`), and
    /// what its `readLine` + `parseLong` also accepts.
    #[test]
    fn files_written_by_zookeeper_read() {
        let dir = TempDir::new("epoch-zk");
        for (text, want) in [
            (&b"0"[..], 0),
            (b"12", 12),
            (b"12\n", 12),
            (b"12\r\n", 12),
            (b"12\nignored", 12),
            (b"+3", 3),
            (b"9223372036854775807", i64::MAX),
        ] {
            std::fs::write(dir.path().join("currentEpoch"), text).unwrap();
            assert_eq!(
                read_epoch(dir.path(), EpochFile::Current).unwrap(),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn malformed_files_are_errors_naming_the_file() {
        let dir = TempDir::new("epoch-bad");
        let long = vec![b'1'; 4096];
        for text in [
            &b""[..],
            b"\n5",
            b" 5",
            b"5 ",
            b"five",
            b"0x5",
            b"9223372036854775808",
            &long[..],
        ] {
            std::fs::write(dir.path().join("acceptedEpoch"), text).unwrap();
            let err = read_epoch(dir.path(), EpochFile::Accepted).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains("acceptedEpoch"), "{err}");
        }
    }

    #[test]
    fn the_marker_is_created_and_cleared() {
        let dir = TempDir::new("epoch-marker");
        assert!(!updating_epoch_marked(dir.path()).unwrap());
        clear_updating_epoch(dir.path()).unwrap();
        mark_updating_epoch(dir.path()).unwrap();
        mark_updating_epoch(dir.path()).unwrap();
        assert!(dir.path().join("updatingEpoch").exists());
        assert!(updating_epoch_marked(dir.path()).unwrap());
        clear_updating_epoch(dir.path()).unwrap();
        assert!(!updating_epoch_marked(dir.path()).unwrap());
    }

    #[test]
    fn a_leftover_tmp_file_is_replaced() {
        let dir = TempDir::new("epoch-tmp");
        std::fs::write(EpochFile::Current.tmp_path(dir.path()), b"garbage").unwrap();
        write_epoch(dir.path(), EpochFile::Current, 4).unwrap();
        assert_eq!(read_epoch(dir.path(), EpochFile::Current).unwrap(), Some(4));
        assert!(!EpochFile::Current.tmp_path(dir.path()).exists());
    }
}
