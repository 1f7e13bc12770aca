//! The `zabd-snap` thread: writes snapshots the core captured, off the request path, and
//! purges old snapshots and logs (`autopurge.*`) so the data directory stays bounded.

use crate::persistence::{FileTxnSnapLog, SnapshotData};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Snapshots waiting to be written; the core skips one when this is full ("too busy to snap").
pub const SNAPSHOT_QUEUE_MAX: usize = 1;

pub struct SnapLoop {
    db: FileTxnSnapLog,
    jobs: Receiver<Box<SnapshotData>>,
    /// `autopurge.snapRetainCount` (at least 3).
    retain_count: usize,
    /// `autopurge.purgeInterval`; `None` = purge off, as ZooKeeper's default.
    purge_every: Option<Duration>,
}

impl SnapLoop {
    pub fn new(
        db: FileTxnSnapLog,
        jobs: Receiver<Box<SnapshotData>>,
        retain_count: u32,
        purge_interval_hours: u32,
    ) -> SnapLoop {
        let purge_every = (purge_interval_hours > 0)
            .then(|| Duration::from_secs(u64::from(purge_interval_hours) * 3600));
        SnapLoop {
            db,
            jobs,
            retain_count: retain_count.max(3) as usize,
            purge_every,
        }
    }

    /// Runs until the core hangs up.
    pub fn run(self) {
        let mut next_purge = self.purge_every.map(|d| Instant::now() + d);
        loop {
            let wait = next_purge.map_or(Duration::from_secs(3600), |t| {
                t.saturating_duration_since(Instant::now())
            });
            match self.jobs.recv_timeout(wait) {
                Ok(job) => self.write(&job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if let (Some(at), Some(every)) = (next_purge, self.purge_every) {
                if Instant::now() >= at {
                    self.purge();
                    next_purge = Some(Instant::now() + every);
                }
            }
        }
    }

    fn write(&self, job: &SnapshotData) {
        let started = Instant::now();
        match job.write(&self.db.snap_dir) {
            Ok(path) => log::info!(
                "Snapshot taken: {} in {} ms",
                path.display(),
                started.elapsed().as_millis()
            ),
            // The log still holds everything: a failed snapshot costs restart time, not data.
            Err(e) => log::error!("snapshot at zxid 0x{:x} failed: {e}", job.zxid),
        }
    }

    fn purge(&self) {
        match self.db.purge(self.retain_count) {
            Ok((snaps, logs)) => log::info!("autopurge removed {snaps} snapshots and {logs} logs"),
            Err(e) => log::warn!("autopurge failed: {e}"),
        }
    }
}
