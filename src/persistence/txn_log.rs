//! The write-ahead log, `log.<hex zxid>` (ZooKeeper's `FileTxnLog`).
//!
//! A log file is a 16-byte [`FileHeader`] `{"ZKLG", 2, dbid 0}` followed by records:
//!
//! ```text
//! long   checksum   Adler-32 of the txn bytes, as a non-negative long
//! int    length     of the txn bytes (jute buffer length)
//! byte[] txn        TxnHeader + body record + optional TxnDigest
//! byte   0x42       'B', end of record
//! ```
//!
//! then zeros to the end of the file: files are preallocated in blocks of `preAllocSize` (64 MiB
//! by default) so that an fdatasync after each group commit rarely has to update the file size.
//! A file is never appended to once closed: after a roll or a restart the writer starts a new
//! file, named after the zxid of its first transaction. Files shrink only by [`truncate`] (a
//! follower told to drop uncommitted transactions) and [`cut_torn_tail`].
//!
//! The reader tells apart three ways a file can end: cleanly (EOF or zeros at a record
//! boundary), with a torn tail (the last record of the last file is partial or fails its
//! checksum, and nothing valid follows: a crash during a write; the caller cuts it off with
//! [`cut_torn_tail`]), and corruption (a bad record followed by a valid one, or a bad record in
//! a file that is not the last: data that was once durable is damaged; never skipped).

use super::adler32::adler32;
use super::{
    log_file_name, parse_log_file_name, read_up_to, sync_dir, FileHeader, DEFAULT_MAX_BUFFER_BYTES,
    TXNLOG_MAGIC,
};
use crate::jute::proto::op;
use crate::jute::txn::{TxnEntry, TxnHeader};
use crate::jute::{decode_exact, DecodeError};
use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The byte that ends every record ('B').
pub const END_OF_RECORD: u8 = 0x42;
/// `FilePadding`'s default `preAllocSize`: 65536 KB.
pub const DEFAULT_PREALLOC_SIZE_BYTES: u64 = 64 * 1024 * 1024;
/// The file is extended when the write position comes within this many bytes of its end.
pub const PREALLOC_MARGIN_BYTES: u64 = 4096;

/// Checksum (8) + length (4).
const RECORD_PREFIX_BYTES: usize = 12;
/// A TxnHeader is 32 bytes (long, int, long, long, int), so no real record is shorter.
const TXN_HEADER_BYTES: usize = 32;
/// Records are batched in memory up to this size before a write(2).
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// How many candidate-record bytes the corruption scan may checksum before it gives up and
/// calls the damage corruption rather than a torn tail (never the other way round).
const SCAN_BUDGET_BYTES: u64 = 256 * 1024 * 1024;

/// Transaction types a log may hold (`SerializeUtils.deserializeTxn`); the corruption scan
/// uses them to reject garbage cheaply before checksumming a candidate record.
const TXN_TYPES: [i32; 14] = [
    op::CREATE,
    op::DELETE,
    op::SET_DATA,
    op::SET_ACL,
    op::CHECK,
    op::MULTI,
    op::CREATE2,
    op::RECONFIG,
    op::CREATE_CONTAINER,
    op::DELETE_CONTAINER,
    op::CREATE_TTL,
    op::CREATE_SESSION,
    op::CLOSE_SESSION,
    op::ERROR,
];

// ---------------------------------------------------------------------------------------------
// Pure format helpers

/// Appends one record for `txn_bytes` (a serialized [`TxnEntry`]) to `out`.
pub fn encode_record(txn_bytes: &[u8], out: &mut Vec<u8>) {
    assert!(
        !txn_bytes.is_empty(),
        "an empty record reads back as end of file"
    );
    let len = i32::try_from(txn_bytes.len()).expect("txn length fits in i32");
    out.extend_from_slice(&adler32(txn_bytes).to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(txn_bytes);
    out.push(END_OF_RECORD);
}

/// The size a log file should have before a write at `position` (`FilePadding`'s
/// calculateFileSizeWithPadding): unchanged unless within 4 KiB of `current_size`, else one
/// more block, or rounded up to a block boundary when a large record already went past it.
pub fn padded_file_size(position: u64, current_size: u64, prealloc_bytes: u64) -> u64 {
    if prealloc_bytes == 0 || position + PREALLOC_MARGIN_BYTES < current_size {
        return current_size;
    }
    if position > current_size {
        let size = position + prealloc_bytes;
        size - size % prealloc_bytes
    } else {
        current_size + prealloc_bytes
    }
}

/// Why a record (or the file header) could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordProblem {
    /// The record or header runs past the end of the file.
    Truncated {
        needed_bytes: u64,
        available_bytes: u64,
    },
    /// A file header whose magic is not "ZKLG".
    BadMagic(i32),
    /// A record length that is zero with a non-zero checksum, negative, or above the cap.
    BadLength(i32),
    /// The byte after the record is not 0x42.
    MissingEndOfRecord(u8),
    ChecksumMismatch {
        stored: i64,
        computed: i64,
    },
    /// A zeroed record slot (what padding looks like) with non-zero bytes after it.
    DataAfterZeros,
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordProblem::Truncated {
                needed_bytes,
                available_bytes,
            } => {
                write!(
                    f,
                    "truncated: needs {needed_bytes} bytes, {available_bytes} remain"
                )
            }
            RecordProblem::BadMagic(m) => write!(f, "bad file magic {m:#010x} (want ZKLG)"),
            RecordProblem::BadLength(n) => write!(f, "bad record length {n}"),
            RecordProblem::MissingEndOfRecord(b) => write!(f, "end-of-record byte {b:#04x}"),
            RecordProblem::ChecksumMismatch { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch: stored {stored:#x}, computed {computed:#x}"
                )
            }
            RecordProblem::DataAfterZeros => write!(f, "zeroed record followed by data"),
        }
    }
}

/// A damaged end of the newest log file: everything from `offset` on is the remains of writes
/// that never completed. Truncating the file there ([`cut_torn_tail`]) loses nothing that was
/// ever acknowledged as durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    pub problem: RecordProblem,
}

/// Why corruption was not taken for a torn tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorruptionEvidence {
    /// The damaged file is not the newest, so its records were followed by later writes.
    NotLastFile,
    /// A valid record starts at this offset after the damage.
    ValidRecordFollows(u64),
    /// The search for a valid record after the damage was cut short by its work budget.
    ScanInconclusive,
}

#[derive(Debug)]
pub enum LogReadError {
    Io {
        file: PathBuf,
        error: io::Error,
    },
    /// Damaged data that a crash cannot explain. Nothing was skipped.
    Corrupt {
        file: PathBuf,
        offset: u64,
        problem: RecordProblem,
        evidence: CorruptionEvidence,
    },
    /// A whole record (checksum and end byte verify) longer than the configured limit
    /// (jute.maxbuffer + extrasize): written under a larger jute.maxbuffer. Never cut off.
    TooLarge {
        file: PathBuf,
        offset: u64,
        length: usize,
        max_record_bytes: usize,
    },
    /// A record whose checksum verifies but whose contents zabd cannot decode.
    Undecodable {
        file: PathBuf,
        offset: u64,
        error: DecodeError,
    },
}

impl fmt::Display for LogReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogReadError::Io { file, error } => write!(f, "{}: {error}", file.display()),
            LogReadError::Corrupt { file, offset, problem, evidence } => write!(
                f,
                "{}: corrupt record at byte offset {offset}: {problem} ({evidence:?})",
                file.display()
            ),
            LogReadError::TooLarge { file, offset, length, max_record_bytes } => write!(
                f,
                "{}: the record at byte offset {offset} is {length} bytes long, more than the \
                 {max_record_bytes} bytes jute.maxbuffer allows (jute.maxbuffer plus its extra \
                 size); it was written with a larger jute.maxbuffer: start with that setting",
                file.display()
            ),
            LogReadError::Undecodable { file, offset, error } => write!(
                f,
                "{}: record at byte offset {offset} has a valid checksum but cannot be decoded: {error}",
                file.display()
            ),
        }
    }
}

impl std::error::Error for LogReadError {}

fn io_err(file: &Path) -> impl FnOnce(io::Error) -> LogReadError + '_ {
    move |error| LogReadError::Io {
        file: file.to_path_buf(),
        error,
    }
}

// ---------------------------------------------------------------------------------------------
// Sequential record reading over one file

enum Step {
    Txn {
        offset: u64,
        entry: TxnEntry,
    },
    /// A clean end at a record boundary.
    End,
    Bad {
        offset: u64,
        problem: RecordProblem,
    },
    /// A whole record (its checksum and end byte verify) longer than the cap.
    TooLarge {
        offset: u64,
        length: usize,
    },
    /// The checksum verifies but the bytes do not decode; `header` when at least that decodes.
    Undecodable {
        offset: u64,
        end: u64,
        header: Option<TxnHeader>,
        error: DecodeError,
    },
}

/// Reads records one after another from a log file of known length.
struct RecordCursor<R> {
    r: R,
    pos: u64,
    len: u64,
    max_record_bytes: usize,
}

impl<R: Read> RecordCursor<R> {
    fn new(r: R, len: u64, max_record_bytes: usize) -> RecordCursor<R> {
        RecordCursor {
            r,
            pos: 0,
            len,
            max_record_bytes,
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.r.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    /// Consumes the rest of the file; true when every byte is zero.
    fn rest_is_zero(&mut self) -> io::Result<bool> {
        let mut buf = vec![0u8; READ_BUFFER_BYTES];
        while self.remaining() > 0 {
            let n = buf
                .len()
                .min(usize::try_from(self.remaining()).unwrap_or(usize::MAX));
            self.read_exact(&mut buf[..n])?;
            if buf[..n].iter().any(|&b| b != 0) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// After the prefix of a record longer than the cap: whether a whole record with a matching
    /// checksum and end byte follows (a record written under a larger jute.maxbuffer, not
    /// damage). Streams through it without allocating its length; consumes it either way.
    fn whole_record_follows(
        &mut self,
        len: usize,
        stored: i64,
        remaining: u64,
    ) -> io::Result<bool> {
        if (RECORD_PREFIX_BYTES + len + 1) as u64 > remaining {
            return Ok(false);
        }
        let mut sum = super::adler32::Adler32::new();
        let mut buf = vec![0u8; READ_BUFFER_BYTES];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len());
            self.read_exact(&mut buf[..n])?;
            sum.update(&buf[..n]);
            left -= n;
        }
        let mut eor = [0u8; 1];
        self.read_exact(&mut eor)?;
        Ok(eor[0] == END_OF_RECORD && sum.value() == stored)
    }

    fn read_header(&mut self) -> io::Result<Option<RecordProblem>> {
        assert_eq!(self.pos, 0);
        if self.len < FileHeader::LEN as u64 {
            return Ok(Some(RecordProblem::Truncated {
                needed_bytes: FileHeader::LEN as u64,
                available_bytes: self.len,
            }));
        }
        let mut bytes = [0u8; FileHeader::LEN];
        self.read_exact(&mut bytes)?;
        let header = FileHeader::decode(&bytes);
        // ZooKeeper checks only the magic; neither version nor dbid.
        if header.magic != TXNLOG_MAGIC {
            return Ok(Some(RecordProblem::BadMagic(header.magic)));
        }
        Ok(None)
    }

    fn next_step(&mut self) -> io::Result<Step> {
        if self.pos == 0 {
            if let Some(problem) = self.read_header()? {
                return Ok(Step::Bad { offset: 0, problem });
            }
        }
        let offset = self.pos;
        let remaining = self.remaining();
        if remaining == 0 {
            return Ok(Step::End);
        }
        let mut prefix = [0u8; RECORD_PREFIX_BYTES];
        let n = RECORD_PREFIX_BYTES.min(usize::try_from(remaining).unwrap_or(usize::MAX));
        self.read_exact(&mut prefix[..n])?;
        // A real record never starts with 12 zero bytes: Adler-32 is never 0.
        if prefix[..n].iter().all(|&b| b == 0) {
            if self.rest_is_zero()? {
                return Ok(Step::End);
            }
            return Ok(Step::Bad {
                offset,
                problem: RecordProblem::DataAfterZeros,
            });
        }
        if n < RECORD_PREFIX_BYTES {
            let problem = RecordProblem::Truncated {
                needed_bytes: RECORD_PREFIX_BYTES as u64,
                available_bytes: remaining,
            };
            return Ok(Step::Bad { offset, problem });
        }
        let stored = i64::from_be_bytes(prefix[0..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(prefix[8..12].try_into().expect("4 bytes"));
        let bad_length = Step::Bad {
            offset,
            problem: RecordProblem::BadLength(length),
        };
        let len = match usize::try_from(length) {
            Ok(len) if len > 0 && len <= self.max_record_bytes => len,
            Ok(len) if len > 0 && self.whole_record_follows(len, stored, remaining)? => {
                return Ok(Step::TooLarge {
                    offset,
                    length: len,
                })
            }
            _ => return Ok(bad_length),
        };
        let needed = (RECORD_PREFIX_BYTES + len + 1) as u64;
        if needed > remaining {
            let problem = RecordProblem::Truncated {
                needed_bytes: needed,
                available_bytes: remaining,
            };
            return Ok(Step::Bad { offset, problem });
        }
        // The length is now bounded by both the cap and the bytes left in the file.
        let mut bytes = vec![0u8; len + 1];
        self.read_exact(&mut bytes)?;
        let eor = bytes.pop().expect("len + 1 bytes");
        if eor != END_OF_RECORD {
            return Ok(Step::Bad {
                offset,
                problem: RecordProblem::MissingEndOfRecord(eor),
            });
        }
        let computed = adler32(&bytes);
        if stored != computed {
            let problem = RecordProblem::ChecksumMismatch { stored, computed };
            return Ok(Step::Bad { offset, problem });
        }
        Ok(match TxnEntry::from_bytes(&bytes) {
            Ok(entry) => Step::Txn { offset, entry },
            Err(error) => {
                let header = bytes
                    .get(..TXN_HEADER_BYTES)
                    .and_then(|h| decode_exact(h).ok());
                Step::Undecodable {
                    offset,
                    end: self.pos,
                    header,
                    error,
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Telling a torn tail from corruption

enum ScanResult {
    NotFound,
    Found(u64),
    Inconclusive,
}

/// Cheap tests on the first 44 bytes of a candidate record; the record length when it passes.
fn plausible_record(
    window: &[u8],
    offset: u64,
    file_len: u64,
    max_record_bytes: usize,
) -> Option<usize> {
    let need = RECORD_PREFIX_BYTES + TXN_HEADER_BYTES;
    if window.len() < need || window[0..4] != [0, 0, 0, 0] || window[4..8] == [0, 0, 0, 0] {
        return None;
    }
    let length = i32::from_be_bytes(window[8..12].try_into().expect("4 bytes"));
    let len = usize::try_from(length).ok()?;
    if len < TXN_HEADER_BYTES || len > max_record_bytes {
        return None;
    }
    if offset + (RECORD_PREFIX_BYTES + len + 1) as u64 > file_len {
        return None;
    }
    let type_at = RECORD_PREFIX_BYTES + TXN_HEADER_BYTES - 4;
    let type_ = i32::from_be_bytes(window[type_at..type_at + 4].try_into().expect("4 bytes"));
    TXN_TYPES.contains(&type_).then_some(len)
}

/// Whether a complete, checksum-valid record starts at `offset`.
fn is_valid_record_at<R: Read + Seek>(src: &mut R, offset: u64, len: usize) -> io::Result<bool> {
    src.seek(SeekFrom::Start(offset))?;
    let mut record = vec![0u8; RECORD_PREFIX_BYTES + len + 1];
    src.read_exact(&mut record)?;
    let stored = i64::from_be_bytes(record[0..8].try_into().expect("8 bytes"));
    let body = &record[RECORD_PREFIX_BYTES..RECORD_PREFIX_BYTES + len];
    Ok(record[RECORD_PREFIX_BYTES + len] == END_OF_RECORD
        && stored == adler32(body)
        && decode_exact::<TxnHeader>(&body[..TXN_HEADER_BYTES]).is_ok())
}

/// Looks for any valid record starting at or after `from`, at every byte offset.
fn scan_for_valid_record<R: Read + Seek>(
    src: &mut R,
    from: u64,
    file_len: u64,
    max_record_bytes: usize,
) -> io::Result<ScanResult> {
    let overlap = RECORD_PREFIX_BYTES + TXN_HEADER_BYTES;
    let mut window = vec![0u8; READ_BUFFER_BYTES + overlap];
    let mut budget = SCAN_BUDGET_BYTES;
    let mut base = from;
    while base + (overlap as u64) < file_len {
        src.seek(SeekFrom::Start(base))?;
        let filled = read_up_to(src, &mut window)?;
        let starts = READ_BUFFER_BYTES.min(filled.saturating_sub(overlap - 1));
        let mut i = 0;
        while i < starts {
            // A record's checksum has a non-zero byte among its bytes 4..8, so a run of zeros
            // (preallocated space) can be skipped up to 7 bytes before its end.
            if window[i..i + 8].iter().all(|&b| b == 0) {
                let next_nonzero = window[i + 8..filled].iter().position(|&b| b != 0);
                i = next_nonzero.map_or(filled, |n| i + 8 + n - 7);
                continue;
            }
            let offset = base + i as u64;
            i += 1;
            let Some(len) =
                plausible_record(&window[i - 1..filled], offset, file_len, max_record_bytes)
            else {
                continue;
            };
            budget = budget.saturating_sub(len as u64);
            if budget == 0 {
                return Ok(ScanResult::Inconclusive);
            }
            if is_valid_record_at(src, offset, len)? {
                return Ok(ScanResult::Found(offset));
            }
        }
        base += READ_BUFFER_BYTES as u64;
    }
    Ok(ScanResult::NotFound)
}

/// Decides whether a bad record at `offset` of `file` is a torn tail or corruption.
fn classify(
    file: &Path,
    offset: u64,
    problem: RecordProblem,
    is_last_file: bool,
    max_record_bytes: usize,
) -> Result<TornTail, LogReadError> {
    let corrupt = |evidence| LogReadError::Corrupt {
        file: file.to_path_buf(),
        offset,
        problem: problem.clone(),
        evidence,
    };
    if !is_last_file {
        return Err(corrupt(CorruptionEvidence::NotLastFile));
    }
    let mut src = File::open(file).map_err(io_err(file))?;
    let file_len = src.metadata().map_err(io_err(file))?.len();
    match scan_for_valid_record(&mut src, offset + 1, file_len, max_record_bytes)
        .map_err(io_err(file))?
    {
        ScanResult::NotFound => Ok(TornTail {
            file: file.to_path_buf(),
            offset,
            problem,
        }),
        ScanResult::Found(at) => Err(corrupt(CorruptionEvidence::ValidRecordFollows(at))),
        ScanResult::Inconclusive => Err(corrupt(CorruptionEvidence::ScanInconclusive)),
    }
}

// ---------------------------------------------------------------------------------------------
// Directory-level reading

/// The `log.<hex>` files of `dir`, oldest first.
pub fn list_log_files(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(zxid) = entry.file_name().to_str().and_then(parse_log_file_name) {
            files.push((zxid, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// The files that may hold transactions ≥ `zxid` (`FileTxnIterator.init`): every file named at
/// or above it, plus the newest one named below it.
fn files_from(mut files: Vec<(i64, PathBuf)>, zxid: i64) -> Vec<(i64, PathBuf)> {
    let first = files
        .iter()
        .rposition(|(start, _)| *start < zxid)
        .unwrap_or(0);
    files.split_off(first)
}

/// One transaction read from the log, with where its record starts in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedTxn {
    pub entry: TxnEntry,
    pub offset: u64,
}

struct OpenLog {
    path: PathBuf,
    cursor: RecordCursor<BufReader<File>>,
    is_last: bool,
}

/// Iterates the transactions of a log directory in file order, from a given zxid on
/// (`FileTxnLog.read(zxid)`). After it returns `None`, [`TxnLogReader::torn_tail`] says whether
/// the newest file ended in a torn record.
pub struct TxnLogReader {
    files: VecDeque<(i64, PathBuf)>,
    current: Option<OpenLog>,
    start_zxid: i64,
    max_record_bytes: usize,
    torn_tail: Option<TornTail>,
    finished: bool,
}

impl TxnLogReader {
    /// Reads transactions with zxid ≥ `start_zxid` from the `log.*` files of `dir`.
    pub fn open(dir: &Path, start_zxid: i64) -> io::Result<TxnLogReader> {
        TxnLogReader::open_with_limit(dir, start_zxid, DEFAULT_MAX_BUFFER_BYTES)
    }

    /// As [`TxnLogReader::open`], with records longer than `max_record_bytes` treated as damage
    /// (ZooKeeper's limit is jute.maxbuffer + zookeeper.jute.maxbuffer.extrasize).
    pub fn open_with_limit(
        dir: &Path,
        start_zxid: i64,
        max_record_bytes: usize,
    ) -> io::Result<TxnLogReader> {
        let files = files_from(list_log_files(dir)?, start_zxid);
        Ok(TxnLogReader::over_files(
            files,
            start_zxid,
            max_record_bytes,
        ))
    }

    fn over_files(files: Vec<(i64, PathBuf)>, start_zxid: i64, max_record_bytes: usize) -> Self {
        TxnLogReader {
            files: files.into(),
            current: None,
            start_zxid,
            max_record_bytes,
            torn_tail: None,
            finished: false,
        }
    }

    /// The torn tail found at the end of the newest file, once iteration has ended.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn_tail.as_ref()
    }

    /// The file being read.
    pub fn current_file(&self) -> Option<&Path> {
        self.current.as_ref().map(|log| log.path.as_path())
    }

    fn open_next_file(&mut self) -> Result<bool, LogReadError> {
        let Some((_, path)) = self.files.pop_front() else {
            return Ok(false);
        };
        let file = File::open(&path).map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        let reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        let cursor = RecordCursor::new(reader, len, self.max_record_bytes);
        self.current = Some(OpenLog {
            path,
            cursor,
            is_last: self.files.is_empty(),
        });
        Ok(true)
    }

    /// The next transaction; `Ok(None)` at the end of the log (clean or torn).
    pub fn next_txn(&mut self) -> Result<Option<LoggedTxn>, LogReadError> {
        let result = self.advance();
        if result.is_err() {
            self.finished = true;
        }
        result
    }

    fn advance(&mut self) -> Result<Option<LoggedTxn>, LogReadError> {
        while !self.finished {
            let Some(log) = self.current.as_mut() else {
                if !self.open_next_file()? {
                    self.finished = true;
                }
                continue;
            };
            match log.cursor.next_step().map_err(io_err(&log.path))? {
                Step::Txn { offset, entry } => {
                    if entry.header.zxid >= self.start_zxid {
                        return Ok(Some(LoggedTxn { entry, offset }));
                    }
                }
                Step::End => self.current = None,
                Step::Bad { offset, problem } => {
                    let torn = classify(
                        &log.path,
                        offset,
                        problem,
                        log.is_last,
                        self.max_record_bytes,
                    )?;
                    self.torn_tail = Some(torn);
                    self.finished = true;
                }
                Step::Undecodable { offset, error, .. } => {
                    return Err(LogReadError::Undecodable {
                        file: log.path.clone(),
                        offset,
                        error,
                    });
                }
                Step::TooLarge { offset, length } => {
                    return Err(LogReadError::TooLarge {
                        file: log.path.clone(),
                        offset,
                        length,
                        max_record_bytes: self.max_record_bytes,
                    });
                }
            }
        }
        Ok(None)
    }

    /// Reads everything: the transactions and the torn tail, if any.
    pub fn read_all(mut self) -> Result<(Vec<LoggedTxn>, Option<TornTail>), LogReadError> {
        let mut txns = Vec::new();
        while let Some(txn) = self.next_txn()? {
            txns.push(txn);
        }
        Ok((txns, self.torn_tail))
    }
}

impl Iterator for TxnLogReader {
    type Item = Result<LoggedTxn, LogReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_txn().transpose()
    }
}

/// The zxid of the newest transaction in the log, `None` when it holds none
/// (`FileTxnLog.getLastLoggedZxid`, which reads only the newest files). A torn tail is ignored.
/// Records longer than `max_record_bytes` are damage (see [`TxnLogReader::open_with_limit`]).
pub fn last_logged_zxid(dir: &Path, max_record_bytes: usize) -> Result<Option<i64>, LogReadError> {
    let files = list_log_files(dir).map_err(io_err(dir))?;
    // Newest file first; step back while a file holds no transaction (e.g. header only).
    for first in (0..files.len()).rev() {
        let reader = TxnLogReader::over_files(files[first..].to_vec(), i64::MIN, max_record_bytes);
        let mut last = None;
        for txn in reader {
            last = Some(txn?.entry.header.zxid);
        }
        if last.is_some() {
            return Ok(last);
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// Truncation

/// Cuts a log file at `offset`, as reported in a [`TornTail`]. An offset inside the file header
/// removes the file: it holds nothing.
pub fn cut_torn_tail(path: &Path, offset: u64) -> io::Result<()> {
    if offset < FileHeader::LEN as u64 {
        std::fs::remove_file(path)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        return Ok(());
    }
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(offset)?;
    file.sync_all()
}

/// Removes every transaction after `zxid` (`FileTxnLog.truncate`): deletes the log files that
/// start after it, newest first so that a crash midway leaves a log without holes, then cuts the
/// file holding `zxid` right after it. A torn tail after `zxid` goes too; corruption before it
/// is an error and nothing is cut. Records longer than `max_record_bytes` are damage.
pub fn truncate(dir: &Path, zxid: i64, max_record_bytes: usize) -> Result<(), LogReadError> {
    let files = list_log_files(dir).map_err(io_err(dir))?;
    let keep = files.iter().rposition(|(start, _)| *start <= zxid);
    let first_deleted = keep.map_or(0, |k| k + 1);
    for (_, path) in files[first_deleted..].iter().rev() {
        std::fs::remove_file(path).map_err(io_err(path))?;
    }
    if let Some(k) = keep {
        let path = &files[k].1;
        match end_of_txns_up_to(path, zxid, max_record_bytes)? {
            Some(end) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                file.set_len(end).map_err(io_err(path))?;
                file.sync_all().map_err(io_err(path))?;
            }
            None => std::fs::remove_file(path).map_err(io_err(path))?,
        }
    }
    sync_dir(dir).map_err(io_err(dir))
}

/// The offset just past the last record of `path` whose zxid is ≤ `zxid`; `None` when the file
/// header itself is torn, so the file holds nothing.
fn end_of_txns_up_to(
    path: &Path,
    zxid: i64,
    max_record_bytes: usize,
) -> Result<Option<u64>, LogReadError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    let mut cursor = RecordCursor::new(reader, len, max_record_bytes);
    let mut end = FileHeader::LEN as u64;
    let mut reached_zxid = false;
    loop {
        let (txn_zxid, record_end) = match cursor.next_step().map_err(io_err(path))? {
            Step::Txn { entry, .. } => (entry.header.zxid, cursor.pos),
            Step::Undecodable {
                header: Some(h),
                end,
                ..
            } => (h.zxid, end),
            Step::Undecodable { offset, error, .. } => {
                return Err(LogReadError::Undecodable {
                    file: path.to_path_buf(),
                    offset,
                    error,
                });
            }
            Step::End => return Ok(Some(end)),
            Step::TooLarge { offset, length } => {
                return Err(LogReadError::TooLarge {
                    file: path.to_path_buf(),
                    offset,
                    length,
                    max_record_bytes,
                });
            }
            Step::Bad { offset, problem } => {
                // The file is now the newest. A torn tail goes with the rest; so does damage
                // once `zxid` itself was seen (all that follows is newer). Otherwise the
                // damaged record might be one to keep: refuse.
                match classify(path, offset, problem, true, max_record_bytes) {
                    Ok(_torn) => {}
                    Err(LogReadError::Corrupt { .. }) if reached_zxid => {}
                    Err(e) => return Err(e),
                }
                return Ok((offset >= FileHeader::LEN as u64).then_some(end));
            }
        };
        if txn_zxid > zxid {
            return Ok(Some(end));
        }
        reached_zxid = txn_zxid == zxid;
        end = record_end;
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnLogOptions {
    /// `preAllocSize` in bytes (zoo.cfg gives it in KB); 0 disables preallocation.
    pub prealloc_size_bytes: u64,
    /// `zookeeper.txnLogSizeLimitInKb` in bytes: roll after a sync leaves the file larger.
    pub size_limit_bytes: Option<u64>,
    /// `forceSync`: when false, [`TxnLogWriter::sync`] only writes, it does not fdatasync.
    pub force_sync: bool,
}

impl Default for TxnLogOptions {
    fn default() -> Self {
        TxnLogOptions {
            prealloc_size_bytes: DEFAULT_PREALLOC_SIZE_BYTES,
            size_limit_bytes: None,
            force_sync: true,
        }
    }
}

struct ActiveLog {
    file: File,
    path: PathBuf,
    buffer: Vec<u8>,
    flushed_bytes: u64,
    allocated_bytes: u64,
}

impl ActiveLog {
    fn position(&self) -> u64 {
        self.flushed_bytes + self.buffer.len() as u64
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.write_all(&self.buffer)?;
        self.flushed_bytes += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Extends the file ahead of the write position (a sparse extension, as ZooKeeper's
    /// one-byte write at the new end is), so that fdatasync rarely changes the file size.
    fn preallocate(&mut self, prealloc_bytes: u64) -> io::Result<()> {
        let size = padded_file_size(self.position(), self.allocated_bytes, prealloc_bytes);
        if size > self.allocated_bytes {
            self.file.set_len(size)?;
            self.allocated_bytes = size;
        }
        Ok(())
    }
}

/// Appends transactions to the log files of one directory (`FileTxnLog.append/commit/rollLog`).
///
/// Never appends to a file it did not create: after a restart the first append starts a new
/// file, so a reader's torn tail must be cut ([`cut_torn_tail`]) before writing. After an I/O
/// error the state of the current file is unknown; the caller should stop writing.
pub struct TxnLogWriter {
    dir: PathBuf,
    options: TxnLogOptions,
    active: Option<ActiveLog>,
    /// Rolled files whose last writes are not yet fdatasynced (synced by the next `sync`).
    rolled_unsynced: Vec<File>,
    dir_unsynced: bool,
    last_zxid: Option<i64>,
}

impl TxnLogWriter {
    pub fn open(dir: &Path, options: TxnLogOptions) -> io::Result<TxnLogWriter> {
        if !std::fs::metadata(dir)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "log path is not a directory",
            ));
        }
        Ok(TxnLogWriter {
            dir: dir.to_path_buf(),
            options,
            active: None,
            rolled_unsynced: Vec::new(),
            dir_unsynced: false,
            last_zxid: None,
        })
    }

    /// Buffers `entries` into the current file, starting one if none is open. Nothing is
    /// durable until [`TxnLogWriter::sync`].
    pub fn append(&mut self, entries: &[TxnEntry]) -> io::Result<()> {
        for entry in entries {
            self.append_one(entry)?;
        }
        Ok(())
    }

    pub fn append_one(&mut self, entry: &TxnEntry) -> io::Result<()> {
        let zxid = entry.header.zxid;
        match self.last_zxid {
            Some(last) if zxid <= last => log::warn!("appending zxid {zxid:#x} after {last:#x}"),
            _ => self.last_zxid = Some(zxid),
        }
        let bytes = entry.to_bytes();
        let prealloc = self.options.prealloc_size_bytes;
        let active = match &mut self.active {
            Some(active) => active,
            None => {
                let created = self.create_file(zxid)?;
                self.active.insert(created)
            }
        };
        active.preallocate(prealloc)?;
        encode_record(&bytes, &mut active.buffer);
        if active.buffer.len() >= WRITE_BUFFER_BYTES {
            active.flush()?;
        }
        Ok(())
    }

    fn create_file(&mut self, zxid: i64) -> io::Result<ActiveLog> {
        let path = self.dir.join(log_file_name(zxid));
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            // A file of that name left with no transaction (a crash right after creating it,
            // or a torn first record that was cut) is reused; anything else is kept safe.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && holds_no_txn(&path)? => {
                OpenOptions::new().write(true).truncate(true).open(&path)?
            }
            Err(e) => return Err(e),
        };
        file.write_all(&FileHeader::txn_log().encode())?;
        self.dir_unsynced = true;
        let len = FileHeader::LEN as u64;
        Ok(ActiveLog {
            file,
            path,
            buffer: Vec::new(),
            flushed_bytes: len,
            allocated_bytes: len,
        })
    }

    /// Writes what is buffered to the OS (no fdatasync).
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.active {
            Some(active) => active.flush(),
            None => Ok(()),
        }
    }

    /// Makes everything appended so far durable: write, then fdatasync every file touched since
    /// the last sync (and the directory, when a file was created). Returns the time spent in
    /// fdatasync (ZooKeeper's `fsync` metric and its `fsync.warningthresholdms` warning).
    pub fn sync(&mut self) -> io::Result<Duration> {
        self.flush()?;
        let mut synced = Duration::ZERO;
        if self.options.force_sync {
            let started = Instant::now();
            for file in &self.rolled_unsynced {
                file.sync_data()?;
            }
            if let Some(active) = &self.active {
                active.file.sync_data()?;
            }
            synced = started.elapsed();
            if self.dir_unsynced {
                sync_dir(&self.dir)?;
                self.dir_unsynced = false;
            }
        }
        self.rolled_unsynced.clear();
        let limit = self.options.size_limit_bytes;
        if limit.is_some_and(|limit| self.current_size_bytes() > limit) {
            self.roll()?;
        }
        Ok(synced)
    }

    /// Closes the current file for appends (its data is synced by the next `sync`); the next
    /// append starts a new file. ZooKeeper rolls when it starts a snapshot.
    pub fn roll(&mut self) -> io::Result<()> {
        if let Some(mut active) = self.active.take() {
            active.flush()?;
            self.rolled_unsynced.push(active.file);
        }
        Ok(())
    }

    /// After the log was cut at `zxid` ([`truncate`]) or replaced by a snapshot there: the
    /// next append may have any zxid above it. Call after [`TxnLogWriter::roll`], so that the
    /// next append starts a new file.
    pub fn rewind_to(&mut self, zxid: i64) {
        assert!(
            self.active.is_none(),
            "rewind_to needs the log rolled first"
        );
        self.last_zxid = Some(zxid);
    }

    /// The zxid of the last transaction appended (or set by [`TxnLogWriter::rewind_to`]).
    pub fn last_zxid(&self) -> Option<i64> {
        self.last_zxid
    }

    /// The file being appended to.
    pub fn current_file(&self) -> Option<&Path> {
        self.active.as_ref().map(|a| a.path.as_path())
    }

    /// Bytes written to the current file, header included, padding excluded.
    pub fn current_size_bytes(&self) -> u64 {
        self.active.as_ref().map_or(0, ActiveLog::position)
    }
}

impl Drop for TxnLogWriter {
    fn drop(&mut self) {
        // Best effort, like a BufWriter: durability is what `sync` is for.
        let _ = self.flush();
    }
}

/// True when `path` holds no record: shorter than a header plus a record prefix, or zeros
/// where the first record would start.
fn holds_no_txn(path: &Path) -> io::Result<bool> {
    let mut file = File::open(path)?;
    let mut head = [0u8; FileHeader::LEN + RECORD_PREFIX_BYTES];
    let n = read_up_to(&mut file, &mut head)?;
    Ok(n < head.len() || head[FileHeader::LEN..].iter().all(|&b| b == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::data::Acl;
    use crate::jute::txn::{
        CloseSessionTxn, CreateSessionTxn, CreateTxn, DeleteTxn, ErrorTxn, SetDataTxn, TxnBody,
        TxnDigest,
    };
    use crate::persistence::test_dir::TempDir;
    use bytes::Bytes;

    /// A varied transaction for `zxid`: every few zxids another type, data of varying size.
    fn txn(zxid: i64) -> TxnEntry {
        let path = format!("/node{}", zxid % 17);
        let data = Some(Bytes::from(vec![
            b'a' + (zxid % 26) as u8;
            (zxid as usize * 7) % 300
        ]));
        let (type_, body) = match zxid % 6 {
            0 => (
                op::CREATE_SESSION,
                TxnBody::CreateSession(CreateSessionTxn { time_out: 30_000 }),
            ),
            1 => {
                let create = CreateTxn {
                    path,
                    data,
                    acl: Acl::open_unsafe(),
                    ephemeral: false,
                    parent_cversion: 3,
                };
                (op::CREATE, TxnBody::Create(op::CREATE, create))
            }
            2 => (
                op::SET_DATA,
                TxnBody::SetData(SetDataTxn {
                    path,
                    data,
                    version: 4,
                }),
            ),
            3 => {
                let subs = vec![
                    TxnBody::Delete(DeleteTxn { path: path.clone() }),
                    TxnBody::Error(ErrorTxn { err: -101 }),
                ];
                (op::MULTI, TxnBody::Multi(subs))
            }
            4 => (op::DELETE, TxnBody::Delete(DeleteTxn { path })),
            _ => {
                let close = CloseSessionTxn {
                    paths_to_delete: vec![path],
                };
                (op::CLOSE_SESSION, TxnBody::CloseSession(Some(close)))
            }
        };
        let header = TxnHeader {
            client_id: 0x100_0000_0000 + zxid,
            cxid: zxid as i32,
            zxid,
            time: 1_700_000_000_000 + zxid,
            type_,
        };
        let digest = (zxid % 3 != 0).then_some(TxnDigest {
            version: 2,
            tree_digest: zxid * 31,
        });
        TxnEntry {
            header,
            body,
            digest,
        }
    }

    fn small_prealloc() -> TxnLogOptions {
        TxnLogOptions {
            prealloc_size_bytes: 8192,
            ..TxnLogOptions::default()
        }
    }

    /// Writes zxids `range` into `dir`, rolling every `per_file` transactions.
    fn write_log(
        dir: &Path,
        range: std::ops::RangeInclusive<i64>,
        per_file: i64,
        options: TxnLogOptions,
    ) {
        let mut w = TxnLogWriter::open(dir, options).unwrap();
        for zxid in range {
            w.append(&[txn(zxid)]).unwrap();
            if zxid % per_file == 0 {
                w.sync().unwrap();
                w.roll().unwrap();
            }
        }
        w.sync().unwrap();
    }

    fn read(dir: &Path, from: i64) -> Result<(Vec<LoggedTxn>, Option<TornTail>), LogReadError> {
        TxnLogReader::open(dir, from).unwrap().read_all()
    }

    fn zxids(txns: &[LoggedTxn]) -> Vec<i64> {
        txns.iter().map(|t| t.entry.header.zxid).collect()
    }

    #[test]
    fn padding_follows_file_padding() {
        let mib64 = DEFAULT_PREALLOC_SIZE_BYTES;
        // The first pad right after the 16-byte header adds one block to the header.
        assert_eq!(padded_file_size(16, 16, mib64), mib64 + 16);
        assert_eq!(padded_file_size(1000, mib64 + 16, mib64), mib64 + 16);
        assert_eq!(
            padded_file_size(mib64 + 16 - 4096, mib64 + 16, mib64),
            2 * mib64 + 16
        );
        // A write that already went past the end rounds up to a block boundary.
        assert_eq!(padded_file_size(mib64 + 100, mib64 + 16, mib64), 2 * mib64);
        assert_eq!(padded_file_size(5, 16, 0), 16);
    }

    #[test]
    fn record_layout() {
        let entry = txn(7);
        let bytes = entry.to_bytes();
        let mut record = Vec::new();
        encode_record(&bytes, &mut record);
        assert_eq!(record.len(), 8 + 4 + bytes.len() + 1);
        assert_eq!(&record[0..4], &[0, 0, 0, 0], "Adler-32 stored as a long");
        assert_eq!(
            i64::from_be_bytes(record[0..8].try_into().unwrap()),
            adler32(&bytes)
        );
        assert_eq!(
            i32::from_be_bytes(record[8..12].try_into().unwrap()) as usize,
            bytes.len()
        );
        assert_eq!(*record.last().unwrap(), b'B');
    }

    #[test]
    fn round_trip_across_rolled_files() {
        let dir = TempDir::new("roundtrip");
        write_log(dir.path(), 1..=300, 100, small_prealloc());
        let files = list_log_files(dir.path()).unwrap();
        let starts: Vec<i64> = files.iter().map(|(z, _)| *z).collect();
        assert_eq!(starts, vec![1, 101, 201]);
        assert_eq!(files[0].1.file_name().unwrap(), "log.1");
        assert_eq!(files[1].1.file_name().unwrap(), "log.65");
        for (_, path) in &files {
            let len = std::fs::metadata(path).unwrap().len();
            assert_eq!(
                (len - 16) % 8192,
                0,
                "preallocated in whole blocks after the header: {len}"
            );
        }
        let (txns, torn) = read(dir.path(), 0).unwrap();
        assert_eq!(torn, None);
        assert_eq!(txns.len(), 300);
        for t in &txns {
            assert_eq!(t.entry, txn(t.entry.header.zxid));
        }
        // Starting in the middle of a file skips what comes before.
        let (txns, _) = read(dir.path(), 150).unwrap();
        assert_eq!(zxids(&txns), (150..=300).collect::<Vec<_>>());
        let (txns, _) = read(dir.path(), 301).unwrap();
        assert!(txns.is_empty());
        assert_eq!(
            last_logged_zxid(dir.path(), DEFAULT_MAX_BUFFER_BYTES).unwrap(),
            Some(300)
        );
    }

    #[test]
    fn preallocated_file_ends_cleanly_and_large_records_extend_it() {
        let dir = TempDir::new("prealloc");
        let mut w = TxnLogWriter::open(dir.path(), TxnLogOptions::default()).unwrap();
        w.append(&[txn(1), txn(2)]).unwrap();
        w.sync().unwrap();
        let path = w.current_file().unwrap().to_path_buf();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            DEFAULT_PREALLOC_SIZE_BYTES + 16
        );
        drop(w);
        let (txns, torn) = read(dir.path(), 0).unwrap();
        assert_eq!((zxids(&txns), torn), (vec![1, 2], None));

        let dir = TempDir::new("prealloc-big");
        let options = TxnLogOptions {
            prealloc_size_bytes: 1024,
            ..TxnLogOptions::default()
        };
        let mut w = TxnLogWriter::open(dir.path(), options).unwrap();
        let mut big = txn(2);
        big.body = TxnBody::SetData(SetDataTxn {
            path: "/big".into(),
            data: Some(Bytes::from(vec![7u8; 10_000])),
            version: 1,
        });
        w.append(&[txn(1), big.clone(), txn(3)]).unwrap();
        w.sync().unwrap();
        // The big record went past the preallocated end; the next append rounded the size up
        // to a block boundary before writing, and its own record may pass it again.
        let len = std::fs::metadata(w.current_file().unwrap()).unwrap().len();
        assert_eq!(len, w.current_size_bytes(), "len {len}");
        drop(w);
        let (txns, torn) = read(dir.path(), 0).unwrap();
        assert_eq!(torn, None);
        assert_eq!(txns[1].entry, big);
    }

    /// Record boundaries of a single-file log: (start, end) of each record.
    fn boundaries(dir: &Path) -> Vec<(u64, u64)> {
        let (txns, _) = read(dir, 0).unwrap();
        let len = std::fs::metadata(&list_log_files(dir).unwrap()[0].1)
            .unwrap()
            .len();
        let mut out = Vec::new();
        for (i, t) in txns.iter().enumerate() {
            let end = txns.get(i + 1).map_or(len, |next| next.offset);
            out.push((t.offset, end));
        }
        out
    }

    #[test]
    fn a_log_cut_anywhere_in_its_last_record_is_a_torn_tail() {
        let src = TempDir::new("cut-src");
        write_log(
            src.path(),
            1..=5,
            1000,
            TxnLogOptions {
                prealloc_size_bytes: 0,
                ..TxnLogOptions::default()
            },
        );
        let (_, original) = &list_log_files(src.path()).unwrap()[0];
        let bytes = std::fs::read(original).unwrap();
        let (start, end) = *boundaries(src.path()).last().unwrap();
        assert_eq!(end, bytes.len() as u64);
        for padded in [false, true] {
            for cut in start..=end {
                let dir = TempDir::new("cut");
                let path = dir.path().join("log.1");
                let mut content = bytes[..cut as usize].to_vec();
                if padded {
                    content.resize(content.len() + 4096, 0);
                }
                std::fs::write(&path, &content).unwrap();
                let (txns, torn) = read(dir.path(), 0).unwrap();
                let partial = &bytes[start as usize..cut as usize];
                if cut == end {
                    assert_eq!((zxids(&txns), torn), ((1..=5).collect(), None));
                    continue;
                }
                assert_eq!(
                    zxids(&txns),
                    vec![1, 2, 3, 4],
                    "cut at {cut}, padded {padded}"
                );
                if partial.iter().all(|&b| b == 0) {
                    // Zeros where a record starts are padding: nothing was written there.
                    assert_eq!(torn, None, "cut at {cut}");
                } else {
                    let torn = torn.unwrap_or_else(|| panic!("no torn tail for cut at {cut}"));
                    assert_eq!((torn.offset, &torn.file), (start, &path), "cut at {cut}");
                    cut_torn_tail(&torn.file, torn.offset).unwrap();
                    let (txns, again) = read(dir.path(), 0).unwrap();
                    assert_eq!((txns.len(), again), (4, None));
                }
            }
        }
    }

    #[test]
    fn damage_in_a_middle_record_is_corruption_at_its_offset() {
        let src = TempDir::new("flip-src");
        write_log(src.path(), 1..=8, 1000, small_prealloc());
        let (_, path) = list_log_files(src.path()).unwrap()[0].clone();
        let original = std::fs::read(&path).unwrap();
        let (start, end) = boundaries(src.path())[3];
        for at in start..end {
            let mut bytes = original.clone();
            bytes[at as usize] ^= 0x10;
            std::fs::write(&path, &bytes).unwrap();
            match read(src.path(), 0) {
                Err(LogReadError::Corrupt {
                    offset,
                    file,
                    evidence,
                    ..
                }) => {
                    assert_eq!((offset, &file), (start, &path), "flip at {at}");
                    assert!(matches!(
                        evidence,
                        CorruptionEvidence::ValidRecordFollows(_)
                    ));
                }
                other => panic!("flip at {at}: {other:?}"),
            }
        }
        // A zeroed record looks like padding, but valid records follow it.
        let mut bytes = original.clone();
        bytes[start as usize..end as usize].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        match read(src.path(), 0) {
            Err(LogReadError::Corrupt {
                offset, problem, ..
            }) => {
                assert_eq!((offset, problem), (start, RecordProblem::DataAfterZeros));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_torn_record_in_an_older_file_is_corruption() {
        let dir = TempDir::new("older");
        write_log(dir.path(), 1..=20, 10, small_prealloc());
        let (_, first) = list_log_files(dir.path()).unwrap()[0].clone();
        let mut bytes = std::fs::read(&first).unwrap();
        let (txns, _) = read(dir.path(), 0).unwrap();
        let last_offset = txns[9].offset as usize;
        bytes[last_offset + 20] ^= 1;
        std::fs::write(&first, &bytes).unwrap();
        let mut reader = TxnLogReader::open(dir.path(), 0).unwrap();
        for _ in 0..9 {
            reader.next_txn().unwrap().unwrap();
        }
        match reader.next_txn() {
            Err(LogReadError::Corrupt {
                evidence: CorruptionEvidence::NotLastFile,
                offset,
                ..
            }) => {
                assert_eq!(offset, last_offset as u64);
            }
            other => panic!("{other:?}"),
        }
        assert!(reader.next().is_none(), "an error ends the iteration");
    }

    #[test]
    fn garbage_after_the_last_record_is_a_torn_tail() {
        let dir = TempDir::new("garbage");
        write_log(dir.path(), 1..=3, 1000, small_prealloc());
        let (_, path) = list_log_files(dir.path()).unwrap()[0].clone();
        let (txns, _) = read(dir.path(), 0).unwrap();
        let last = &txns[2];
        let record_end = last.offset as usize + 12 + last.entry.to_bytes().len() + 1;
        let mut bytes = std::fs::read(&path).unwrap();
        let mut junk = 0x9e37_79b9u32;
        for b in &mut bytes[record_end..record_end + 300] {
            junk = junk.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (junk >> 24) as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        let (txns, torn) = read(dir.path(), 0).unwrap();
        assert_eq!(zxids(&txns), vec![1, 2, 3]);
        assert_eq!(torn.unwrap().offset, record_end as u64);
    }

    #[test]
    fn the_scan_finds_records_after_long_zero_runs() {
        // A valid record far behind zeros, at every alignment around a window boundary.
        let entry = txn(9);
        let mut record = Vec::new();
        encode_record(&entry.to_bytes(), &mut record);
        for at in [
            0usize,
            1,
            7,
            8,
            9,
            READ_BUFFER_BYTES - 3,
            READ_BUFFER_BYTES + 5,
            200_001,
        ] {
            let mut file = vec![0u8; at + record.len() + 100];
            file[at..at + record.len()].copy_from_slice(&record);
            let len = file.len() as u64;
            let mut src = io::Cursor::new(file);
            match scan_for_valid_record(&mut src, 0, len, DEFAULT_MAX_BUFFER_BYTES).unwrap() {
                ScanResult::Found(offset) => assert_eq!(offset, at as u64),
                _ => panic!("record at {at} not found"),
            }
        }
        let mut src = io::Cursor::new(vec![0u8; 300_000]);
        assert!(matches!(
            scan_for_valid_record(&mut src, 0, 300_000, DEFAULT_MAX_BUFFER_BYTES).unwrap(),
            ScanResult::NotFound
        ));
    }

    #[test]
    fn empty_and_header_only_last_files() {
        let dir = TempDir::new("empty");
        write_log(dir.path(), 1..=3, 1000, small_prealloc());
        // A crash right after creating the next file: empty, then just a header.
        let next = dir.path().join("log.4");
        std::fs::write(&next, b"").unwrap();
        let (txns, torn) = read(dir.path(), 0).unwrap();
        assert_eq!(txns.len(), 3);
        let torn = torn.unwrap();
        assert_eq!((torn.offset, &torn.file), (0, &next));
        cut_torn_tail(&torn.file, torn.offset).unwrap();
        assert!(!next.exists());

        std::fs::write(&next, FileHeader::txn_log().encode()).unwrap();
        assert_eq!(
            read(dir.path(), 0).unwrap(),
            (read(dir.path(), 0).unwrap().0, None)
        );
        assert_eq!(
            last_logged_zxid(dir.path(), DEFAULT_MAX_BUFFER_BYTES).unwrap(),
            Some(3)
        );
        // The writer reuses a file that holds no transaction.
        let mut w = TxnLogWriter::open(dir.path(), small_prealloc()).unwrap();
        w.append(&[txn(4)]).unwrap();
        w.sync().unwrap();
        drop(w);
        let (txns, torn) = read(dir.path(), 0).unwrap();
        assert_eq!((zxids(&txns), torn), (vec![1, 2, 3, 4], None));
        // But never one that does.
        let mut w = TxnLogWriter::open(dir.path(), small_prealloc()).unwrap();
        let err = w.append(&[txn(4)]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn truncate_removes_everything_after_the_zxid() {
        let dir = TempDir::new("truncate");
        write_log(dir.path(), 1..=30, 10, small_prealloc());
        truncate(dir.path(), 15, DEFAULT_MAX_BUFFER_BYTES).unwrap();
        let starts: Vec<i64> = list_log_files(dir.path())
            .unwrap()
            .iter()
            .map(|(z, _)| *z)
            .collect();
        assert_eq!(starts, vec![1, 11]);
        let (txns, torn) = read(dir.path(), 0).unwrap();
        assert_eq!((zxids(&txns), torn), ((1..=15).collect(), None));
        // Appending continues in a new file.
        let mut w = TxnLogWriter::open(dir.path(), small_prealloc()).unwrap();
        w.append(&[txn(16), txn(17)]).unwrap();
        w.sync().unwrap();
        drop(w);
        let (txns, _) = read(dir.path(), 0).unwrap();
        assert_eq!(zxids(&txns), (1..=17).collect::<Vec<_>>());
        // At a file's first zxid, and at the very end, and before everything.
        truncate(dir.path(), 11, DEFAULT_MAX_BUFFER_BYTES).unwrap();
        assert_eq!(
            zxids(&read(dir.path(), 0).unwrap().0),
            (1..=11).collect::<Vec<_>>()
        );
        truncate(dir.path(), 11, DEFAULT_MAX_BUFFER_BYTES).unwrap();
        assert_eq!(
            last_logged_zxid(dir.path(), DEFAULT_MAX_BUFFER_BYTES).unwrap(),
            Some(11)
        );
        truncate(dir.path(), 0, DEFAULT_MAX_BUFFER_BYTES).unwrap();
        assert!(list_log_files(dir.path()).unwrap().is_empty());
        assert_eq!(
            last_logged_zxid(dir.path(), DEFAULT_MAX_BUFFER_BYTES).unwrap(),
            None
        );
    }

    #[test]
    fn truncate_refuses_to_cut_through_corruption() {
        let dir = TempDir::new("truncate-corrupt");
        write_log(dir.path(), 1..=10, 1000, small_prealloc());
        let (_, path) = list_log_files(dir.path()).unwrap()[0].clone();
        let (txns, _) = read(dir.path(), 0).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[txns[3].offset as usize + 30] ^= 4;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            truncate(dir.path(), 8, DEFAULT_MAX_BUFFER_BYTES),
            Err(LogReadError::Corrupt { .. })
        ));
        assert!(matches!(
            truncate(dir.path(), 4, DEFAULT_MAX_BUFFER_BYTES),
            Err(LogReadError::Corrupt { .. })
        ));
        // Truncating before the damage is fine: only records to drop follow it.
        truncate(dir.path(), 3, DEFAULT_MAX_BUFFER_BYTES).unwrap();
        assert_eq!(zxids(&read(dir.path(), 0).unwrap().0), vec![1, 2, 3]);
    }

    #[test]
    fn unchecked_lengths_are_never_allocated() {
        let dir = TempDir::new("length");
        let mut bytes = FileHeader::txn_log().encode().to_vec();
        bytes.extend_from_slice(&1i64.to_be_bytes());
        bytes.extend_from_slice(&i32::MAX.to_be_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(dir.path().join("log.1"), &bytes).unwrap();
        let (txns, torn) = read(dir.path(), 0).unwrap();
        assert!(txns.is_empty());
        assert_eq!(torn.unwrap().problem, RecordProblem::BadLength(i32::MAX));
    }

    #[test]
    fn size_limit_rolls_after_sync() {
        let dir = TempDir::new("limit");
        let options = TxnLogOptions {
            size_limit_bytes: Some(2000),
            ..small_prealloc()
        };
        let mut w = TxnLogWriter::open(dir.path(), options).unwrap();
        for zxid in 1..=40 {
            w.append(&[txn(zxid)]).unwrap();
            w.sync().unwrap();
        }
        drop(w);
        assert!(list_log_files(dir.path()).unwrap().len() > 2);
        assert_eq!(
            zxids(&read(dir.path(), 0).unwrap().0),
            (1..=40).collect::<Vec<_>>()
        );
    }
}
