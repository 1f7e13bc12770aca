//! zabd's on-disk formats, byte-compatible with Apache ZooKeeper 3.8/3.9 data directories
//! (ZooKeeper's `server.persistence` package).
//!
//! Layout: `<dataLogDir>/version-2/log.<hex zxid>` holds the write-ahead log ([`txn_log`]),
//! `<dataDir>/version-2/snapshot.<hex zxid>` the fuzzy snapshots ([`snapshot`]). A log file is
//! named after the zxid of its first transaction, a snapshot after the last zxid applied when
//! it started; both use `Long.toHexString` (lowercase, no padding, no `0x`). The ZAB epochs,
//! `acceptedEpoch` and `currentEpoch`, are small text files next to the snapshots ([`epoch`]).
//!
//! Both file kinds start with the same 16-byte [`FileHeader`]. Everything is big-endian jute.

pub mod adler32;
pub mod database;
pub mod epoch;
pub mod snapshot;
pub mod txn_log;

pub use database::{
    restore_snapshot_bytes, FileLog, FileTxnSnapLog, RestoreError, Restored, SnapshotCapture,
    SnapshotData, COMMIT_LOG_COUNT,
};
pub use epoch::{
    clear_updating_epoch, mark_updating_epoch, read_epoch, updating_epoch_marked, write_epoch,
    EpochFile, UPDATING_EPOCH_FILE,
};
pub use snapshot::{
    find_snapshots, load_newest_valid_snapshot, read_snapshot, read_snapshot_file, write_snapshot,
    write_snapshot_file, write_snapshot_iter, Compression, LoadedSnapshot, SnapDigest, SnapNode,
    SnapshotContents, SnapshotError, SnapshotFileWriter, SnapshotReader, SnapshotTrailer,
    SnapshotWriter,
};
pub use txn_log::{
    cut_torn_tail, last_logged_zxid, list_log_files, truncate, CorruptionEvidence, LogReadError,
    LoggedTxn, RecordProblem, TornTail, TxnLogOptions, TxnLogReader, TxnLogWriter,
};

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// `FileTxnSnapLog.version + VERSION`: the subdirectory both kinds of file live in.
pub const VERSION_DIR: &str = "version-2";
/// The only on-disk format version ZooKeeper has written since 3.0.
pub const FORMAT_VERSION: i32 = 2;
/// "ZKLG" as a big-endian int.
pub const TXNLOG_MAGIC: i32 = i32::from_be_bytes(*b"ZKLG");
/// "ZKSN" as a big-endian int.
pub const SNAP_MAGIC: i32 = i32::from_be_bytes(*b"ZKSN");
/// The dbid ZooKeeper writes in log headers (FileTxnLog's `dbId` is never set).
pub const TXNLOG_DBID: i64 = 0;
/// The dbid ZooKeeper writes in snapshot headers.
pub const SNAP_DBID: i64 = -1;
/// `jute.maxbuffer` (0xfffff) plus `zookeeper.jute.maxbuffer.extrasize` (defaults to
/// jute.maxbuffer): the largest buffer ZooKeeper's BinaryInputArchive accepts by default, so the
/// default cap on any length read from disk. A server reads its own files with
/// [`max_buffer_bytes_on_disk`] of its configured jute.maxbuffer instead.
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 2 * 0xfffff;

/// The largest length ZooKeeper's BinaryInputArchive reads under `jute.maxbuffer`:
/// jute.maxbuffer plus `zookeeper.jute.maxbuffer.extrasize`, which defaults to jute.maxbuffer
/// and is never below 1024. Every record a server with that setting writes fits (a client
/// frame is at most jute.maxbuffer), so its log and snapshots read back whole.
pub fn max_buffer_bytes_on_disk(jute_max_buffer_bytes: usize) -> usize {
    jute_max_buffer_bytes.saturating_add(jute_max_buffer_bytes.max(1024))
}

pub const LOG_FILE_PREFIX: &str = "log";
pub const SNAPSHOT_FILE_PREFIX: &str = "snapshot";

/// `FileHeader{int magic; int version; long dbid}`, 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub magic: i32,
    pub version: i32,
    pub dbid: i64,
}

impl FileHeader {
    pub const LEN: usize = 16;

    pub fn txn_log() -> FileHeader {
        FileHeader {
            magic: TXNLOG_MAGIC,
            version: FORMAT_VERSION,
            dbid: TXNLOG_DBID,
        }
    }

    pub fn snapshot() -> FileHeader {
        FileHeader {
            magic: SNAP_MAGIC,
            version: FORMAT_VERSION,
            dbid: SNAP_DBID,
        }
    }

    pub fn encode(&self) -> [u8; FileHeader::LEN] {
        let mut out = [0u8; FileHeader::LEN];
        out[0..4].copy_from_slice(&self.magic.to_be_bytes());
        out[4..8].copy_from_slice(&self.version.to_be_bytes());
        out[8..16].copy_from_slice(&self.dbid.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8; FileHeader::LEN]) -> FileHeader {
        let mut dbid = [0u8; 8];
        dbid.copy_from_slice(&bytes[8..16]);
        FileHeader {
            magic: i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            version: i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            dbid: i64::from_be_bytes(dbid),
        }
    }
}

/// `<dir>/version-2`: where ZooKeeper keeps logs (under dataLogDir) and snapshots (dataDir).
pub fn data_dir_version2(dir: &Path) -> PathBuf {
    dir.join(VERSION_DIR)
}

/// Creates `<dir>/version-2` if needed (ZooKeeper's default `zookeeper.datadir.autocreate`).
pub fn ensure_data_dir_version2(dir: &Path) -> io::Result<PathBuf> {
    let path = data_dir_version2(dir);
    std::fs::create_dir_all(&path)?;
    Ok(path)
}

/// `log.<hex zxid>`, `Util.makeLogName`.
pub fn log_file_name(zxid: i64) -> String {
    format!("{LOG_FILE_PREFIX}.{zxid:x}")
}

/// `snapshot.<hex zxid>` (uncompressed, the default `snapshot.compression.method`).
pub fn snapshot_file_name(zxid: i64) -> String {
    format!("{SNAPSHOT_FILE_PREFIX}.{zxid:x}")
}

/// The zxid in `log.<hex>`; `None` for any other name.
pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let hex = name.strip_prefix(LOG_FILE_PREFIX)?.strip_prefix('.')?;
    parse_hex_zxid(hex)
}

/// The zxid and compression of `snapshot.<hex>[.gz|.snappy]`; `None` for any other name,
/// including the `.tmp` files an interrupted atomic write leaves behind.
pub fn parse_snapshot_file_name(name: &str) -> Option<(i64, Compression)> {
    let rest = name.strip_prefix(SNAPSHOT_FILE_PREFIX)?.strip_prefix('.')?;
    let (hex, compression) = match rest.split_once('.') {
        None => (rest, Compression::None),
        Some((hex, "gz")) => (hex, Compression::Gzip),
        Some((hex, "snappy")) => (hex, Compression::Snappy),
        Some(_) => return None,
    };
    Some((parse_hex_zxid(hex)?, compression))
}

/// `Long.parseLong(s, 16)` restricted to what `Long.toHexString` writes for zxids ≥ 0.
fn parse_hex_zxid(hex: &str) -> Option<i64> {
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = u64::from_str_radix(hex, 16).ok()?;
    i64::try_from(value).ok()
}

/// Makes a directory's entries (new, renamed or removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads until `buf` is full or EOF; returns how many bytes were read.
pub(crate) fn read_up_to<R: io::Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
pub(crate) mod test_dir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("zabd-persist-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create temp dir");
            TempDir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod sync_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics_spell_their_names() {
        assert_eq!(TXNLOG_MAGIC, 0x5A4B_4C47);
        assert_eq!(SNAP_MAGIC, 0x5A4B_534E);
        let bytes = FileHeader::snapshot().encode();
        assert_eq!(&bytes[0..4], b"ZKSN");
        assert_eq!(&bytes[4..8], &[0, 0, 0, 2]);
        assert_eq!(&bytes[8..16], &[0xff; 8]);
        assert_eq!(FileHeader::decode(&bytes), FileHeader::snapshot());
    }

    #[test]
    fn names_use_unpadded_lowercase_hex() {
        assert_eq!(log_file_name(0x1_0000_0001), "log.100000001");
        assert_eq!(snapshot_file_name(0), "snapshot.0");
        assert_eq!(parse_log_file_name("log.100000001"), Some(0x1_0000_0001));
        assert_eq!(parse_log_file_name("log.1A"), Some(0x1a));
        assert_eq!(parse_log_file_name("log."), None);
        assert_eq!(parse_log_file_name("log.-1"), None);
        assert_eq!(parse_log_file_name("logx.1"), None);
        assert_eq!(parse_log_file_name("log.ffffffffffffffff"), None);
        assert_eq!(
            parse_snapshot_file_name("snapshot.2f"),
            Some((0x2f, Compression::None))
        );
        assert_eq!(
            parse_snapshot_file_name("snapshot.2f.gz"),
            Some((0x2f, Compression::Gzip))
        );
        assert_eq!(
            parse_snapshot_file_name("snapshot.2f.snappy"),
            Some((0x2f, Compression::Snappy))
        );
        assert_eq!(parse_snapshot_file_name("snapshot.2f.tmp"), None);
        assert_eq!(parse_snapshot_file_name("snapshot"), None);
    }
}

/// Files written by Apache ZooKeeper 3.8.0 (Debian's zookeeper 3.8.0-11) under
/// `tests/fixtures/zk38/`; see the README there for how they were made.
#[cfg(test)]
mod zk38_fixtures {
    use super::test_dir::TempDir;
    use super::*;
    use crate::jute::proto::op;
    use crate::jute::txn::TxnBody;

    const SESSION_A: i64 = 0x0100_0017_657e_0000;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/zk38")
            .join(rel)
    }

    fn read_log(dir: &Path, from: i64) -> Vec<LoggedTxn> {
        let (txns, torn) = TxnLogReader::open(dir, from).unwrap().read_all().unwrap();
        assert_eq!(torn, None);
        txns
    }

    #[test]
    fn log_parses_with_every_checksum_verified() {
        let txns = read_log(&fixture("version-2"), 0);
        for t in &txns {
            // In the spirit of ZooKeeper's LogFormatter (visible with --nocapture).
            let h = &t.entry.header;
            println!(
                "zxid {:#x} session {:#x} cxid {:#x} type {} {:?}",
                h.zxid, h.client_id, h.cxid, h.type_, t.entry.body
            );
        }
        let zxids: Vec<i64> = txns.iter().map(|t| t.entry.header.zxid).collect();
        assert_eq!(zxids, (1..=0x17).collect::<Vec<_>>());
        assert!(txns
            .iter()
            .all(|t| t.entry.digest.as_ref().is_some_and(|d| d.version == 2)));
        assert_eq!(txns[0].offset, 16);
        let body = |zxid: usize| &txns[zxid - 1].entry.body;
        assert!(matches!(body(1), TxnBody::CreateSession(s) if s.time_out == 30_000));
        assert!(
            matches!(body(2), TxnBody::Create(op::CREATE, c) if c.ephemeral && c.path == "/eph")
        );
        assert!(matches!(body(6), TxnBody::Create(_, c) if c.path == "/a/seq-0000000001"));
        assert!(matches!(body(9), TxnBody::Delete(d) if d.path == "/gone"));
        assert!(matches!(body(0xa), TxnBody::SetData(d) if d.version == 1));
        assert!(matches!(body(0xb), TxnBody::Create(_, c) if c.acl[0].id.scheme == "digest"));
        assert!(matches!(body(0xc), TxnBody::SetAcl(_)));
        assert!(matches!(body(0xd), TxnBody::CreateContainer(c) if c.data.is_none()));
        assert!(
            matches!(body(0x11), TxnBody::CloseSession(Some(c)) if c.paths_to_delete.is_empty())
        );
        assert!(matches!(body(0x13), TxnBody::Multi(subs) if subs.len() == 5));
        assert!(
            matches!(body(0x14), TxnBody::Multi(subs) if matches!(&subs[1], TxnBody::Error(e) if e.err == -101))
        );
        assert!(matches!(body(0x15), TxnBody::Create(op::CREATE2, _)));
        assert_eq!(
            last_logged_zxid(&fixture("version-2"), DEFAULT_MAX_BUFFER_BYTES).unwrap(),
            Some(0x17)
        );
    }

    #[test]
    fn log_rewritten_by_zabd_is_byte_identical() {
        let original = std::fs::read(fixture("version-2/log.1")).unwrap();
        let dir = TempDir::new("zk38-log");
        // ZooKeeper ran with preAllocSize=64 (KB); the fixture keeps the first 4 KiB of it.
        let options = TxnLogOptions {
            prealloc_size_bytes: 64 * 1024,
            ..TxnLogOptions::default()
        };
        let mut writer = TxnLogWriter::open(dir.path(), options).unwrap();
        for t in read_log(&fixture("version-2"), 0) {
            writer.append(&[t.entry]).unwrap();
        }
        writer.sync().unwrap();
        drop(writer);
        let ours = std::fs::read(dir.path().join("log.1")).unwrap();
        assert_eq!(
            ours.len(),
            64 * 1024 + 16,
            "ZooKeeper's file was 65552 bytes"
        );
        assert_eq!(&ours[..original.len()], &original[..]);
        assert!(ours[original.len()..].iter().all(|&b| b == 0));
    }

    #[test]
    fn snapshots_parse_and_rewrite_byte_identically() {
        for name in [
            "snapshot.0",
            "snapshot.17",
            "../rolled/version-2/snapshot.1b",
        ] {
            let path = fixture(&format!("version-2/{name}"));
            let original = std::fs::read(&path).unwrap();
            let contents = read_snapshot_file(&path).unwrap();
            let mut ours = Vec::new();
            write_snapshot(&mut ours, &contents).unwrap();
            assert_eq!(ours, original, "{name}");
            // 3.8 writes the digest section but not 3.9's last-zxid section.
            assert_eq!(contents.digest.map(|d| d.version), Some(2));
            assert_eq!(contents.last_processed_zxid, None);
        }
        let c = read_snapshot_file(&fixture("version-2/snapshot.17")).unwrap();
        for n in &c.nodes {
            println!("{} {:?} acl {} {:?}", n.path, n.data, n.acl, n.stat);
        }
        assert_eq!(c.sessions, vec![(SESSION_A, 30_000)]);
        assert_eq!(c.acls.len(), 3);
        assert_eq!(c.nodes.len(), 16);
        assert_eq!(c.nodes[0].path, "/");
        assert_eq!(
            c.digest,
            Some(SnapDigest {
                zxid: 0x17,
                version: 2,
                digest: 25_147_501_318
            })
        );
        let node = |path: &str| c.nodes.iter().find(|n| n.path == path).unwrap();
        assert_eq!(node("/eph").stat.ephemeral_owner, SESSION_A);
        assert_eq!(
            node("/cont").stat.ephemeral_owner,
            i64::MIN,
            "containers are marked so"
        );
        assert_eq!(node("/nulldata").data, None);
        assert_eq!(node("/a").data.as_deref(), Some(&b"multi-set"[..]));
        assert_eq!(node("/zookeeper/config").stat.aversion, -1);
        assert_eq!(
            node("/").acl,
            -1,
            "OPEN_ACL_UNSAFE is -1, with no cache entry"
        );
    }

    #[test]
    fn newest_snapshot_then_the_log_after_it() {
        let dir = fixture("version-2");
        let found: Vec<i64> = find_snapshots(&dir)
            .unwrap()
            .iter()
            .map(|(z, _)| *z)
            .collect();
        assert_eq!(found, vec![0x17, 0]);
        let loaded = load_newest_valid_snapshot(&dir, DEFAULT_MAX_BUFFER_BYTES, |_, r| {
            let mut n = 0;
            while r.next_node()?.is_some() {
                n += 1;
            }
            Ok(n)
        });
        let loaded = loaded.unwrap().unwrap();
        assert_eq!((loaded.zxid, loaded.value), (0x17, 16));
        assert!(read_log(&dir, loaded.zxid + 1).is_empty());

        // A fuzzy snapshot (0x1b) taken while the log had rolled to log.17: replay starts in
        // the file named below the snapshot's zxid and continues in the next one.
        let dir = fixture("rolled/version-2");
        let txns = read_log(&dir, 0x1c);
        let zxids: Vec<i64> = txns.iter().map(|t| t.entry.header.zxid).collect();
        assert_eq!(zxids, vec![0x1c, 0x1d]);
        assert!(matches!(txns[1].entry.body, TxnBody::CloseSession(_)));
    }
}
