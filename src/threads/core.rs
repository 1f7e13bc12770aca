//! The `zabd-core` thread: owns the sans-IO [`ZooKeeperServer`] and is its only caller. It
//! waits on the client thread's inputs and the sync thread's durable notices (or the next
//! tick), steps the core with each, and routes what comes out: log appends to the sync thread,
//! everything else to the client thread as one batch and one wakeup.

use crate::config::Config;
use crate::persistence::{Restored, SnapshotData};
use crate::server::{DiskUsage, Input, Output, ZooKeeperServer};
use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError};
use mio::Waker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Inputs stepped per wakeup before the tick and the outputs get their turn.
pub const INPUT_BATCH_MAX: usize = 1024;

/// The longest wait without looking at the clock, in case the wall clock jumps.
const WAIT_MAX_MS: i64 = 1000;

/// Wall-clock milliseconds since the UNIX epoch (what ZooKeeper stamps on znodes and session
/// ids), made monotonic: a clock stepped backwards holds time still instead of reversing it.
#[derive(Debug, Default)]
pub struct WallClock {
    last_ms: i64,
}

impl WallClock {
    pub fn now_ms(&mut self) -> i64 {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.last_ms = self.last_ms.max(wall_ms);
        self.last_ms
    }

    /// The instant at which wall-clock time `at_ms` is due, capped at [`WAIT_MAX_MS`].
    pub fn deadline(&mut self, at_ms: i64) -> Instant {
        let wait_ms = at_ms.saturating_sub(self.now_ms()).clamp(0, WAIT_MAX_MS);
        Instant::now() + Duration::from_millis(wait_ms as u64)
    }
}

/// The core thread's channel ends.
pub struct CoreChannels {
    pub inputs: Receiver<Input>,
    pub persisted: Receiver<i64>,
    pub outputs: Sender<Vec<Output>>,
    pub client_waker: Arc<Waker>,
    pub appends: Sender<super::sync::SyncCommand>,
    pub sync_stats: Arc<super::sync::SyncStats>,
    /// The snapshot thread, when there is a data directory.
    pub snapshots: Option<Sender<Box<SnapshotData>>>,
    /// Tells the sync thread to start a new log file (set when a snapshot is handed over).
    pub roll_log: Arc<AtomicBool>,
}

/// Why the loop stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum CoreExit {
    /// The client thread hung up: shutdown.
    ClientGone,
    /// The sync thread stopped (a failed log): nothing more can be made durable.
    SyncGone,
}

pub struct CoreLoop {
    server: ZooKeeperServer,
    data_dir: std::path::PathBuf,
    data_log_dir: Option<std::path::PathBuf>,
    clock: WallClock,
    ch: CoreChannels,
    out: Vec<Output>,
}

impl CoreLoop {
    pub fn new(config: &Config, restored: Option<Restored>, ch: CoreChannels) -> CoreLoop {
        let mut clock = WallClock::default();
        let now_ms = clock.now_ms();
        let server = match restored {
            Some(r) => ZooKeeperServer::restore(config, now_ms, r.tree, &r.sessions),
            None => ZooKeeperServer::new(config, now_ms),
        };
        CoreLoop {
            server,
            data_dir: config.data_dir.clone(),
            data_log_dir: config.data_log_dir.clone(),
            clock,
            ch,
            out: Vec::new(),
        }
    }

    pub fn run(mut self) -> CoreExit {
        loop {
            self.wait();
            if let Err(exit) = self.drain() {
                return exit;
            }
            let now_ms = self.clock.now_ms();
            if now_ms >= self.server.next_tick_ms() {
                self.server.tick(now_ms, &mut self.out);
            }
            if let Err(exit) = self.route() {
                return exit;
            }
        }
    }

    /// Sleeps until an input or a notice is ready (or a channel hung up), or the tick is due.
    fn wait(&mut self) {
        let deadline = self.clock.deadline(self.server.next_tick_ms());
        let mut select = Select::new();
        select.recv(&self.ch.inputs);
        select.recv(&self.ch.persisted);
        // Ready or timed out, the drain that follows finds out which.
        let _ = select.ready_deadline(deadline);
    }

    /// Steps every durable notice, then a bounded batch of inputs.
    fn drain(&mut self) -> Result<(), CoreExit> {
        // Notices first: they release replies that are waiting for durability.
        loop {
            match self.ch.persisted.try_recv() {
                Ok(zxid) => {
                    let sync = self.ch.sync_stats.counters();
                    self.step(Input::Persisted { zxid, sync })
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    log::error!("the sync thread stopped; stopping the core");
                    return Err(CoreExit::SyncGone);
                }
            }
        }
        for _ in 0..INPUT_BATCH_MAX {
            match self.ch.inputs.try_recv() {
                Ok(input) => self.step(input),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(CoreExit::ClientGone),
            }
        }
        Ok(())
    }

    fn step(&mut self, mut input: Input) {
        if let Input::FourLetter { word, disk, .. } = &mut input {
            if matches!(&*word, b"dirs" | b"conf") {
                *disk = Some(self.disk_usage());
            }
        }
        let now_ms = self.clock.now_ms();
        self.server.step(now_ms, input, &mut self.out);
    }

    /// Gives a snapshot to the snapshot thread; skipped when it is still busy with the last.
    fn hand_over(ch: &CoreChannels, snapshot: Box<SnapshotData>) {
        let Some(tx) = &ch.snapshots else {
            return;
        };
        match tx.try_send(snapshot) {
            Ok(()) => ch.roll_log.store(true, Ordering::Relaxed),
            Err(TrySendError::Full(s)) => {
                log::warn!("Too busy to snap, skipping snapshot at 0x{:x}", s.zxid)
            }
            Err(TrySendError::Disconnected(_)) => log::error!("the snapshot thread stopped"),
        }
    }

    /// Sizes of the version-2 directories (ZooKeeper's getDataDirSize / getLogDirSize).
    fn disk_usage(&self) -> DiskUsage {
        let size = |dir: &std::path::Path| -> u64 {
            let Ok(entries) = std::fs::read_dir(dir.join(crate::persistence::VERSION_DIR)) else {
                return 0;
            };
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        };
        let data = size(&self.data_dir);
        let log = self.data_log_dir.as_deref().map_or(data, size);
        DiskUsage {
            data_dir_bytes: data,
            log_dir_bytes: log,
        }
    }

    /// Appends go to the sync thread (which never blocks on us, so a blocking send is safe),
    /// the rest to the client thread (which never blocks at all) with one wakeup per batch.
    fn route(&mut self) -> Result<(), CoreExit> {
        if self.out.is_empty() {
            return Ok(());
        }
        let mut entries = Vec::new();
        let mut batch = Vec::with_capacity(self.out.len());
        for output in self.out.drain(..) {
            match output {
                Output::Append { entries: more } => entries.extend(more),
                Output::Snapshot(snapshot) => Self::hand_over(&self.ch, snapshot),
                other => batch.push(other),
            }
        }
        if !entries.is_empty()
            && self
                .ch
                .appends
                .send(super::sync::SyncCommand::Append(entries))
                .is_err()
        {
            log::error!("the sync thread stopped; stopping the core");
            return Err(CoreExit::SyncGone);
        }
        if !batch.is_empty() {
            if self.ch.outputs.send(batch).is_err() {
                return Err(CoreExit::ClientGone);
            }
            if let Err(e) = self.ch.client_waker.wake() {
                log::error!("cannot wake the client thread: {e}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_goes_back() {
        let mut clock = WallClock {
            last_ms: i64::MAX - 5,
        };
        assert_eq!(clock.now_ms(), i64::MAX - 5);
        let mut clock = WallClock::default();
        let a = clock.now_ms();
        let b = clock.now_ms();
        assert!(a > 1_600_000_000_000 && b >= a);
    }

    #[test]
    fn deadlines_are_capped_and_never_in_the_past() {
        let mut clock = WallClock::default();
        let now = Instant::now();
        let far = clock.deadline(i64::MAX);
        assert!(far <= now + Duration::from_millis(WAIT_MAX_MS as u64 + 100));
        let past = clock.deadline(0);
        assert!(past >= now && past <= Instant::now());
    }
}
