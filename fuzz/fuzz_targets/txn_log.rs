//! Transaction log files read by `persistence::TxnLogReader`, and `TxnEntry::from_bytes`.
//!
//! Input: one flag byte, then the file's bytes.
//! - flag bit 0: recompute each record's Adler-32 before writing the file, so the fuzzer gets
//!   past the checksum into the record decoder (records are walked as the reader walks them).
//! - flag bit 1: split the bytes into two files (`log.1` and `log.100000000`) at the offset
//!   given by the next two bytes, so that damage in a file that is not the newest is seen.
//!
//! The file(s) are written to a directory on tmpfs and read with `TxnLogReader`.
//!
//! Checked: nothing panics; every transaction returned is a complete record of the file it was
//! read from (12-byte prefix, body, 0x42 inside the file) whose stored checksum is the body's
//! Adler-32 and whose body decodes to the same entry; a torn tail is only ever reported for
//! the newest file, inside it; no single allocation exceeds the input size by more than the
//! reader's fixed 64 KiB buffers (see common/alloc.rs for the factor). Separately, the whole
//! input goes through `TxnEntry::from_bytes`, and what decodes re-encodes to bytes that decode
//! to the same entry.
#![no_main]

#[path = "common/alloc.rs"]
mod alloc;

use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use zabd::jute::txn::TxnEntry;
use zabd::persistence::adler32::adler32;
use zabd::persistence::{LogReadError, TxnLogReader};

/// The reader's buffers: BufReader (64 KiB), the zero-scan buffer (64 KiB), the corruption
/// scan window (64 KiB + 44), plus small change.
const READER_SLACK_BYTES: usize = 64 * 1024 + 4096;
const HEADER_BYTES: usize = 16;
const PREFIX_BYTES: usize = 12;
const SECOND_FILE: &str = "log.100000000";

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("zabd-fuzz-txn-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzz directory");
        dir
    })
}

/// Rewrites each record's checksum, walking records as the reader does.
fn fix_checksums(file: &mut [u8]) {
    let mut pos = HEADER_BYTES;
    while pos + PREFIX_BYTES <= file.len() {
        let len = i32::from_be_bytes(file[pos + 8..pos + 12].try_into().unwrap());
        let Ok(len) = usize::try_from(len) else {
            return;
        };
        let end = pos + PREFIX_BYTES + len;
        if len == 0 || end > file.len() {
            return;
        }
        let sum = adler32(&file[pos + PREFIX_BYTES..end]);
        file[pos..pos + 8].copy_from_slice(&sum.to_be_bytes());
        pos = end + 1;
    }
}

fn check_record(file: &[u8], offset: u64, entry: &TxnEntry) {
    let at = usize::try_from(offset).expect("offset fits");
    assert!(
        at >= HEADER_BYTES && at + PREFIX_BYTES <= file.len(),
        "offset {at} out of the file"
    );
    let stored = i64::from_be_bytes(file[at..at + 8].try_into().unwrap());
    let len = i32::from_be_bytes(file[at + 8..at + 12].try_into().unwrap());
    let len = usize::try_from(len).expect("returned record with a negative length");
    let end = at + PREFIX_BYTES + len;
    assert!(end < file.len(), "record at {at} is not complete");
    assert_eq!(file[end], 0x42, "record at {at} has no end-of-record byte");
    let body = &file[at + PREFIX_BYTES..end];
    assert_eq!(
        stored,
        adler32(body),
        "record at {at} returned with a bad checksum"
    );
    let decoded = TxnEntry::from_bytes(body).expect("a returned record decodes");
    assert_eq!(&decoded, entry);
}

fuzz_target!(|data: &[u8]| {
    check_entry_decoder(data);
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (split, rest) = if flags & 2 != 0 && rest.len() >= 2 {
        let at = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        (Some(at.min(rest.len() - 2)), &rest[2..])
    } else {
        (None, rest)
    };
    let mut bytes = rest.to_vec();
    let (mut first, mut second) = match split {
        Some(at) => {
            let second = bytes.split_off(at);
            (bytes, Some(second))
        }
        None => (bytes, None),
    };
    if flags & 1 != 0 {
        fix_checksums(&mut first);
        if let Some(second) = second.as_mut() {
            fix_checksums(second);
        }
    }
    let dir = dir();
    let first_path = dir.join("log.1");
    let second_path = dir.join(SECOND_FILE);
    std::fs::write(&first_path, &first).unwrap();
    match &second {
        Some(second) => std::fs::write(&second_path, second).unwrap(),
        None => {
            let _ = std::fs::remove_file(&second_path);
        }
    }
    let input_len = rest.len();
    alloc::bounded_with_slack(input_len, READER_SLACK_BYTES, || {
        read_and_check(dir, &first_path, &first, second.as_deref())
    });
});

fn read_and_check(dir: &Path, first_path: &Path, first: &[u8], second: Option<&[u8]>) {
    let mut reader = TxnLogReader::open(dir, i64::MIN).expect("open the log directory");
    loop {
        match reader.next_txn() {
            Ok(Some(txn)) => {
                let file = reader
                    .current_file()
                    .expect("a transaction comes from a file");
                let bytes = if file == first_path {
                    first
                } else {
                    second.expect("only two files")
                };
                check_record(bytes, txn.offset, &txn.entry);
            }
            Ok(None) => break,
            Err(LogReadError::Io { error, .. }) => panic!("I/O error reading tmpfs: {error}"),
            Err(_) => return,
        }
    }
    if let Some(torn) = reader.torn_tail() {
        let newest = if second.is_some() {
            dir.join(SECOND_FILE)
        } else {
            first_path.to_path_buf()
        };
        assert_eq!(
            torn.file, newest,
            "a torn tail in a file that is not the newest"
        );
        let len = second.map_or(first.len(), <[u8]>::len);
        assert!(
            torn.offset <= len as u64,
            "torn tail offset past the end of the file"
        );
    }
}

fn check_entry_decoder(data: &[u8]) {
    let Ok(entry) = alloc::bounded(data.len(), || TxnEntry::from_bytes(data)) else {
        return;
    };
    let bytes = entry.to_bytes();
    let again = TxnEntry::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("re-encoded {entry:?} does not decode: {e}"));
    assert_eq!(again, entry);
}
