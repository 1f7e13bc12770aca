//! A FIFO queue on sequential nodes: enqueue creates `/queue/q-` (sequential) with a unique
//! payload; dequeue lists the children, reads the lowest, deletes it, and succeeds only when
//! that delete succeeded (else it retries with the next lowest).
//!
//! Checks: every dequeued payload was enqueued (acknowledged or unknown), none is dequeued
//! twice, every acknowledged enqueue is dequeued or still present at the end, and dequeues that
//! do not overlap in real time take sequence numbers in increasing order (a dequeue deletes the
//! lowest child that exists in some state at or after every earlier dequeue's delete).

use std::collections::{HashMap, HashSet};

use super::history::{real_time_violations, History, Outcome};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QueueCall {
    Enqueue {
        payload: u64,
    },
    Dequeue,
    /// A dequeue whose final delete of `q-<seq>` (holding `payload`) got no reply: recorded
    /// with an `Unknown` outcome, it excuses that payload from the "lost" check.
    TryDequeue {
        seq: u64,
        payload: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QueueRet {
    /// The node `q-<seq>` was created.
    Enqueued { seq: u64 },
    /// The node `q-<seq>` holding `payload` was read and deleted by this op.
    Dequeued { seq: u64, payload: u64 },
    /// No child was left.
    Empty,
}

/// Anomalies found (empty: the history passes). `remaining` holds the payloads still queued
/// when the run ended (after the final drain it is usually empty).
pub fn check(h: &History<QueueCall, QueueRet>, remaining: &[u64]) -> Vec<String> {
    let mut anomalies = Vec::new();
    let mut attempted: HashSet<u64> = HashSet::new();
    let mut acked: Vec<u64> = Vec::new();
    for op in &h.ops {
        if let QueueCall::Enqueue { payload } = op.call {
            match op.outcome {
                Outcome::Ok(_) => {
                    attempted.insert(payload);
                    acked.push(payload);
                }
                Outcome::Unknown => {
                    attempted.insert(payload);
                }
                Outcome::Fail => {}
            }
        }
    }
    let mut dequeued: HashMap<u64, u64> = HashMap::new();
    let mut deqs: Vec<(u64, u64, u64, u64)> = Vec::new();
    for op in &h.ops {
        if let Outcome::Ok(QueueRet::Dequeued { seq, payload }) = op.outcome {
            if !attempted.contains(&payload) {
                anomalies.push(format!(
                    "payload {payload} dequeued (seq {seq}) but never enqueued"
                ));
            }
            if let Some(prev) = dequeued.insert(payload, op.process) {
                anomalies.push(format!(
                    "payload {payload} dequeued twice (processes {prev} and {})",
                    op.process
                ));
            }
            deqs.push((op.invoke_ns, op.complete_or_max(), seq, op.process));
        }
    }
    let mut remaining: HashSet<u64> = remaining.iter().copied().collect();
    for op in &h.ops {
        if let (QueueCall::TryDequeue { payload, .. }, Outcome::Unknown) = (&op.call, &op.outcome) {
            remaining.insert(*payload);
        }
    }
    let mut lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|p| !dequeued.contains_key(p) && !remaining.contains(p))
        .collect();
    lost.sort_unstable();
    if !lost.is_empty() {
        let shown: Vec<String> = lost.iter().take(10).map(u64::to_string).collect();
        anomalies.push(format!(
            "{} acknowledged enqueues lost (neither dequeued nor left), e.g. payloads {}",
            lost.len(),
            shown.join(", ")
        ));
    }
    // Order: dequeues that do not overlap take increasing sequence numbers.
    for (d, seq, _) in real_time_violations(&mut deqs) {
        anomalies.push(format!(
            "dequeue of seq {} (process {}) came after a dequeue of seq {seq} had completed",
            d.2, d.3
        ));
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::Op;

    fn op(p: u64, a: u64, b: u64, call: QueueCall, ret: QueueRet) -> Op<QueueCall, QueueRet> {
        Op {
            process: p,
            invoke_ns: a,
            complete_ns: Some(b),
            call,
            outcome: Outcome::Ok(ret),
        }
    }
    fn enq(p: u64, a: u64, payload: u64, seq: u64) -> Op<QueueCall, QueueRet> {
        op(
            p,
            a,
            a + 5,
            QueueCall::Enqueue { payload },
            QueueRet::Enqueued { seq },
        )
    }
    fn deq(p: u64, a: u64, payload: u64, seq: u64) -> Op<QueueCall, QueueRet> {
        op(
            p,
            a,
            a + 5,
            QueueCall::Dequeue,
            QueueRet::Dequeued { seq, payload },
        )
    }

    #[test]
    fn fifo_run_passes() {
        let h = History {
            ops: vec![
                enq(0, 0, 100, 1),
                enq(0, 10, 101, 2),
                deq(1, 20, 100, 1),
                deq(1, 30, 101, 2),
            ],
        };
        assert!(check(&h, &[]).is_empty());
        let h = History {
            ops: vec![enq(0, 0, 100, 1), enq(0, 10, 101, 2), deq(1, 20, 100, 1)],
        };
        assert!(check(&h, &[101]).is_empty());
    }

    #[test]
    fn dequeued_twice_is_flagged() {
        let h = History {
            ops: vec![enq(0, 0, 100, 1), deq(1, 20, 100, 1), deq(2, 21, 100, 1)],
        };
        assert!(check(&h, &[]).iter().any(|a| a.contains("twice")));
    }

    #[test]
    fn lost_enqueue_is_flagged() {
        let h = History {
            ops: vec![enq(0, 0, 100, 1), enq(0, 10, 101, 2), deq(1, 20, 100, 1)],
        };
        let a = check(&h, &[]);
        assert!(a.iter().any(|a| a.contains("lost")), "{a:?}");
    }

    #[test]
    fn never_enqueued_and_out_of_order_are_flagged() {
        let h = History {
            ops: vec![
                enq(0, 0, 100, 1),
                enq(0, 10, 101, 2),
                deq(1, 20, 101, 2),
                deq(1, 30, 100, 1),
            ],
        };
        let a = check(&h, &[]);
        assert_eq!(a.len(), 1, "{a:?}");
        let h = History {
            ops: vec![deq(1, 20, 7, 1)],
        };
        assert_eq!(check(&h, &[]).len(), 1);
    }
}
