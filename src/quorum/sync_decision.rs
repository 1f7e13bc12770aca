//! How a leader brings a learner up to date (ZooKeeper's `LearnerHandler.syncFollower`), as a
//! pure function of the learner's last logged zxid, the leader's last processed zxid and the
//! zxids of its in-memory committed log. `spec/Zab.tla`'s `SyncDecision` is the same rule.

use super::epoch_of;

/// The first packet of a learner's sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOp {
    /// Send the committed log after the learner's position.
    Diff(i64),
    /// The learner drops every logged transaction after this zxid.
    Trunc(i64),
    /// Send the whole tree.
    Snap,
}

/// A sync plan: the op, the index in the committed log of the first entry to send as
/// PROPOSAL+COMMIT (`window.len()` for none), and the zxid the learner will be at after them
/// (outstanding proposals above it follow as PROPOSALs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncPlan {
    pub op: SyncOp,
    pub from: usize,
    pub cur: i64,
}

/// `peer`: the learner's last logged zxid; `last_processed`: the leader's; `window`: the zxids
/// of the committed log, oldest first.
pub fn decide(peer: i64, last_processed: i64, window: &[i64]) -> SyncPlan {
    let none = window.len();
    let snap = SyncPlan {
        op: SyncOp::Snap,
        from: none,
        cur: last_processed,
    };
    if peer == last_processed {
        return SyncPlan {
            op: SyncOp::Diff(peer),
            from: none,
            cur: peer,
        };
    }
    let (Some(&min_z), Some(&max_z)) = (window.first(), window.last()) else {
        // Nothing to diff from and the learner is elsewhere.
        return if peer > last_processed && peer & 0xffff_ffff != 0 {
            SyncPlan {
                op: SyncOp::Trunc(last_processed),
                from: none,
                cur: last_processed,
            }
        } else {
            snap
        };
    };
    let new_epoch_zxid = peer & 0xffff_ffff == 0;
    if max_z < peer && !new_epoch_zxid {
        // The learner has transactions the leader never committed (an old leader's tail).
        return SyncPlan {
            op: SyncOp::Trunc(max_z),
            from: none,
            cur: max_z,
        };
    }
    if min_z <= peer && peer <= max_z {
        if let Ok(k) = window.binary_search(&peer) {
            let cur = if k + 1 < window.len() { max_z } else { peer };
            return SyncPlan {
                op: SyncOp::Diff(max_z),
                from: k + 1,
                cur,
            };
        }
        // The first committed entry above the learner.
        let ka = window.partition_point(|&z| z <= peer);
        if new_epoch_zxid {
            return SyncPlan {
                op: SyncOp::Diff(max_z),
                from: ka,
                cur: max_z,
            };
        }
        if epoch_of(window[ka]) != epoch_of(peer) || ka == 0 {
            // "Cannot send TRUNC to peer from a different epoch": a snapshot instead.
            return snap;
        }
        return SyncPlan {
            op: SyncOp::Trunc(window[ka - 1]),
            from: ka,
            cur: max_z,
        };
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(e: i64, c: i64) -> i64 {
        (e << 32) | c
    }

    #[test]
    fn in_sync_learners_get_an_empty_diff() {
        let w = [z(1, 1), z(1, 2)];
        assert_eq!(
            decide(z(1, 2), z(1, 2), &w),
            SyncPlan {
                op: SyncOp::Diff(z(1, 2)),
                from: 2,
                cur: z(1, 2)
            }
        );
    }

    #[test]
    fn a_learner_inside_the_window_gets_the_rest() {
        let w = [z(1, 1), z(1, 2), z(1, 3)];
        let p = decide(z(1, 1), z(1, 3), &w);
        assert_eq!(p.op, SyncOp::Diff(z(1, 3)));
        assert_eq!((p.from, p.cur), (1, z(1, 3)));
    }

    #[test]
    fn a_learner_ahead_of_the_window_is_truncated() {
        let w = [z(1, 1), z(1, 2)];
        let p = decide(z(1, 5), z(2, 0), &w);
        assert_eq!(p.op, SyncOp::Trunc(z(1, 2)));
    }

    #[test]
    fn a_missing_zxid_inside_the_window_truncates_within_its_epoch() {
        let w = [z(1, 1), z(1, 2), z(2, 1)];
        // (1,3) was never committed; the next committed entry (2,1) is of another epoch.
        assert_eq!(decide(z(1, 3), z(2, 1), &w).op, SyncOp::Snap);
        let w = [z(2, 1), z(2, 3)];
        let p = decide(z(2, 2), z(2, 3), &w);
        assert_eq!(p.op, SyncOp::Trunc(z(2, 1)));
        assert_eq!(p.from, 1);
    }

    #[test]
    fn a_learner_behind_the_window_gets_a_snapshot() {
        let w = [z(1, 10), z(1, 11)];
        assert_eq!(decide(z(1, 2), z(1, 11), &w).op, SyncOp::Snap);
        assert_eq!(decide(0, z(1, 11), &[]).op, SyncOp::Snap);
    }
}
