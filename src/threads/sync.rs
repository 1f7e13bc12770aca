//! The `zabd-sync` thread: ZooKeeper's SyncRequestProcessor. It appends the core's
//! transactions to the write-ahead log, makes them durable with one sync per group (group
//! commit: everything queued when a sync starts shares it), then tells the core, which only
//! then applies them and answers the clients.
//!
//! It never blocks on the core: durable notices go out with `try_send`, and while the core's
//! channel is full they coalesce into the highest zxid (a notice covers everything before it).

use crate::jute::txn::TxnEntry;
use crate::quorum::replica::{DiskCommand, DiskDone};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A group commit stops taking more batches once it holds this many transactions
/// (ZooKeeper's `maxBatchSize` default), so one sync never waits on an endless stream.
pub const GROUP_COMMIT_TXNS_MAX: usize = 1000;

/// How soon an undelivered durable notice is retried while the core's channel is full.
const NOTICE_RETRY: Duration = Duration::from_millis(1);

/// Where transactions go to become durable. `append` may buffer; only after `sync` returns
/// Ok must every appended transaction survive a crash.
pub trait TxnLogWriter: Send {
    fn append(&mut self, entries: &[TxnEntry]) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
    /// Starts a new log file at the next append (asked for at each snapshot, so that old
    /// files can be purged).
    fn roll(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Runs an ensemble's disk command (TRUNC, SNAP, epoch files) after every earlier append
    /// is durable. Only a log on disk can.
    fn run_command(&mut self, cmd: DiskCommand) -> io::Result<DiskDone> {
        Err(io::Error::other(format!(
            "this log cannot run {cmd:?}: an ensemble needs a data directory"
        )))
    }
}

/// What the core sends the sync thread, in the order it must happen.
#[derive(Debug)]
pub enum SyncCommand {
    Append(Vec<TxnEntry>),
    Disk(DiskCommand),
}

/// A log that keeps nothing: **not durable**. Until the write-ahead log exists, a restart
/// loses every transaction.
#[derive(Debug, Default)]
pub struct NullLog;

impl TxnLogWriter for NullLog {
    fn append(&mut self, _entries: &[TxnEntry]) -> io::Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Group-commit counters, readable from any thread (for `mntr` and benchmarks).
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Syncs done.
    pub syncs: AtomicU64,
    /// Transactions made durable.
    pub txns: AtomicU64,
    /// Transactions in the most recent sync.
    pub last_batch_txns: AtomicU64,
    /// Transactions in the largest sync so far.
    pub max_batch_txns: AtomicU64,
    /// The highest zxid made durable.
    pub last_zxid: AtomicU64,
    /// Time spent in fsync, in microseconds: total, smallest and largest.
    pub fsync_us_sum: AtomicU64,
    pub fsync_us_min: AtomicU64,
    pub fsync_us_max: AtomicU64,
    /// Transactions in the smallest sync so far (0 before the first).
    pub min_batch_txns: AtomicU64,
}

impl SyncStats {
    /// A consistent-enough copy for mntr (each counter is read once).
    pub fn counters(&self) -> crate::server::SyncCounters {
        crate::server::SyncCounters {
            syncs: self.syncs.load(Ordering::Relaxed),
            txns: self.txns.load(Ordering::Relaxed),
            fsync_us_sum: self.fsync_us_sum.load(Ordering::Relaxed),
            fsync_us_min: self.fsync_us_min.load(Ordering::Relaxed),
            fsync_us_max: self.fsync_us_max.load(Ordering::Relaxed),
            batch_txns_min: self.min_batch_txns.load(Ordering::Relaxed),
            batch_txns_max: self.max_batch_txns.load(Ordering::Relaxed),
        }
    }

    fn record_fsync(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let first = self.syncs.load(Ordering::Relaxed) == 0;
        self.fsync_us_sum.fetch_add(us, Ordering::Relaxed);
        self.fsync_us_max.fetch_max(us, Ordering::Relaxed);
        if first {
            self.fsync_us_min.store(us, Ordering::Relaxed);
        } else {
            self.fsync_us_min.fetch_min(us, Ordering::Relaxed);
        }
    }

    fn record(&self, txns: usize, last_zxid: i64) {
        let txns = txns as u64;
        if self.syncs.load(Ordering::Relaxed) == 0 {
            self.min_batch_txns.store(txns, Ordering::Relaxed);
        } else {
            self.min_batch_txns.fetch_min(txns, Ordering::Relaxed);
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.txns.fetch_add(txns, Ordering::Relaxed);
        self.last_batch_txns.store(txns, Ordering::Relaxed);
        self.max_batch_txns.fetch_max(txns, Ordering::Relaxed);
        self.last_zxid.store(last_zxid as u64, Ordering::Relaxed);
    }
}

/// The sync thread's state.
pub struct SyncLoop {
    log: Box<dyn TxnLogWriter>,
    appends: Receiver<SyncCommand>,
    /// Answers to disk commands (bounded by the commands in flight, so never full).
    done: Option<Sender<DiskDone>>,
    /// A disk command taken while batching appends: it runs after their sync.
    deferred: Option<DiskCommand>,
    persisted: Sender<i64>,
    stats: Arc<SyncStats>,
    /// The last zxid appended: zxids must strictly increase.
    last_appended: i64,
    /// A durable zxid the core has not been told about yet.
    unsent: Option<i64>,
    /// Set by the core thread when it hands a snapshot to the snapshot thread.
    roll_requested: Arc<AtomicBool>,
}

impl SyncLoop {
    pub fn new(
        log: Box<dyn TxnLogWriter>,
        appends: Receiver<SyncCommand>,
        persisted: Sender<i64>,
        stats: Arc<SyncStats>,
        roll_requested: Arc<AtomicBool>,
    ) -> SyncLoop {
        SyncLoop {
            log,
            appends,
            done: None,
            deferred: None,
            persisted,
            stats,
            last_appended: i64::MIN,
            unsent: None,
            roll_requested,
        }
    }

    /// Where disk-command answers go (an ensemble member's core).
    pub fn with_disk_done(mut self, done: Sender<DiskDone>) -> SyncLoop {
        self.done = Some(done);
        self
    }

    /// Runs until the core hangs up (shutdown) or the log fails. A failed log stops the
    /// thread, and with it the server: acknowledging writes that are not durable is worse.
    pub fn run(mut self) {
        loop {
            let first = match self.next_batch() {
                Ok(first) => first,
                Err(()) => return,
            };
            let command = match first {
                Some(SyncCommand::Append(first)) => {
                    if let Err(e) = self.commit(first) {
                        log::error!("transaction log write failed, stopping the server: {e}");
                        return;
                    }
                    self.deferred.take()
                }
                Some(SyncCommand::Disk(cmd)) => Some(cmd),
                None => None,
            };
            if let Some(cmd) = command {
                // Earlier appends are durable; the core hears of them first.
                while self.unsent.is_some() {
                    if !self.notify() {
                        return;
                    }
                    if self.unsent.is_some() {
                        std::thread::sleep(NOTICE_RETRY);
                    }
                }
                if !self.run_command(cmd) {
                    return;
                }
            }
            if self.roll_requested.swap(false, Ordering::Relaxed) {
                if let Err(e) = self.log.roll() {
                    log::error!("transaction log roll failed, stopping the server: {e}");
                    return;
                }
            }
            if !self.notify() {
                return;
            }
        }
    }

    /// Waits for work; only briefly while a notice is waiting for room. Err = core gone.
    fn next_batch(&mut self) -> Result<Option<SyncCommand>, ()> {
        if self.unsent.is_none() {
            return self.appends.recv().map(Some).map_err(|_| ());
        }
        match self.appends.recv_timeout(NOTICE_RETRY) {
            Ok(batch) => Ok(Some(batch)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(()),
        }
    }

    /// Appends `first` and whatever else is queued, then syncs once.
    fn commit(&mut self, first: Vec<TxnEntry>) -> io::Result<()> {
        let mut txns = 0;
        let mut batch = Some(first);
        while let Some(entries) = batch.take() {
            for entry in &entries {
                assert!(
                    entry.header.zxid > self.last_appended,
                    "zxid {:#x} appended after {:#x}",
                    entry.header.zxid,
                    self.last_appended
                );
                self.last_appended = entry.header.zxid;
            }
            self.log.append(&entries)?;
            txns += entries.len();
            if txns < GROUP_COMMIT_TXNS_MAX {
                match self.appends.try_recv() {
                    Ok(SyncCommand::Append(more)) => batch = Some(more),
                    Ok(SyncCommand::Disk(cmd)) => self.deferred = Some(cmd),
                    Err(_) => {}
                }
            }
        }
        if txns == 0 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.log.sync()?;
        self.stats.record_fsync(started.elapsed());
        self.stats.record(txns, self.last_appended);
        self.unsent = Some(self.last_appended);
        Ok(())
    }

    /// Runs a disk command and answers it; false when the server must stop.
    fn run_command(&mut self, cmd: DiskCommand) -> bool {
        let reset = match &cmd {
            DiskCommand::Truncate { zxid, .. } => Some(*zxid),
            DiskCommand::InstallSnapshot { zxid, .. } => Some(*zxid),
            DiskCommand::WriteEpoch { .. } | DiskCommand::MarkUpdatingEpoch => None,
        };
        match self.log.run_command(cmd) {
            Ok(done) => {
                if let Some(zxid) = reset {
                    // The log now ends at (or is replaced up to) this zxid.
                    self.last_appended = zxid;
                }
                match &self.done {
                    Some(tx) => tx.send(done).is_ok(),
                    None => true,
                }
            }
            Err(e) => {
                log::error!("disk command failed, stopping the server: {e}");
                false
            }
        }
    }

    /// Tells the core the durable zxid if there is room; false when the core is gone.
    fn notify(&mut self) -> bool {
        let Some(zxid) = self.unsent else {
            return true;
        };
        match self.persisted.try_send(zxid) {
            Ok(()) => {
                self.unsent = None;
                true
            }
            // Kept: the next notice carries a higher zxid, which covers this one.
            Err(TrySendError::Full(_)) => true,
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::txn::{ErrorTxn, TxnBody, TxnHeader};
    use crossbeam_channel::bounded;
    use std::sync::Mutex;

    fn entry(zxid: i64) -> TxnEntry {
        TxnEntry {
            header: TxnHeader {
                zxid,
                ..TxnHeader::default()
            },
            body: TxnBody::Error(ErrorTxn { err: 0 }),
            digest: None,
        }
    }

    /// Records what the thread did, in order.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl TxnLogWriter for Recorder {
        fn append(&mut self, entries: &[TxnEntry]) -> io::Result<()> {
            let zxids: Vec<i64> = entries.iter().map(|e| e.header.zxid).collect();
            self.0.lock().unwrap().push(format!("append {zxids:?}"));
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            self.0.lock().unwrap().push("sync".into());
            Ok(())
        }
    }

    #[test]
    fn queued_batches_share_one_sync_and_notices_coalesce() {
        let (append_tx, append_rx) = bounded(16);
        let (persisted_tx, persisted_rx) = bounded(1);
        let rec = Recorder::default();
        let stats = Arc::new(SyncStats::default());
        // Everything is queued before the thread starts: one group commit.
        append_tx
            .send(SyncCommand::Append(vec![entry(1), entry(2)]))
            .unwrap();
        append_tx.send(SyncCommand::Append(vec![entry(3)])).unwrap();
        let sync = SyncLoop::new(
            Box::new(rec.clone()),
            append_rx,
            persisted_tx,
            stats.clone(),
            Default::default(),
        );
        let thread = std::thread::spawn(move || sync.run());
        assert_eq!(persisted_rx.recv().unwrap(), 3);
        assert_eq!(
            *rec.0.lock().unwrap(),
            ["append [1, 2]", "append [3]", "sync"]
        );
        assert_eq!(stats.last_batch_txns.load(Ordering::Relaxed), 3);
        // The notice channel (capacity 1) fills; later notices coalesce to the highest zxid.
        for z in 4..50 {
            append_tx.send(SyncCommand::Append(vec![entry(z)])).unwrap();
        }
        let mut last = 0;
        while last < 49 {
            last = persisted_rx.recv().unwrap();
        }
        assert_eq!(stats.txns.load(Ordering::Relaxed), 49);
        drop(append_tx);
        thread.join().unwrap();
    }

    struct Failing;
    impl TxnLogWriter for Failing {
        fn append(&mut self, _: &[TxnEntry]) -> io::Result<()> {
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Err(io::Error::other("disk on fire"))
        }
    }

    #[test]
    fn a_failed_sync_stops_the_thread_without_a_notice() {
        let (append_tx, append_rx) = bounded(4);
        let (persisted_tx, persisted_rx) = bounded(4);
        let stats = Arc::new(SyncStats::default());
        let sync = SyncLoop::new(
            Box::new(Failing),
            append_rx,
            persisted_tx,
            stats,
            Default::default(),
        );
        let thread = std::thread::spawn(move || sync.run());
        append_tx.send(SyncCommand::Append(vec![entry(1)])).unwrap();
        thread.join().unwrap();
        // The thread is gone without reporting anything durable.
        assert!(persisted_rx.recv().is_err());
    }
}
