//! Checkers for the ZooKeeper recipes the process harness runs. Each returns the anomalies it
//! found, as sentences (empty: none).

use super::history::{History, Op, Outcome};
use std::collections::{BTreeMap, BTreeSet};

/// Anomalies listed at most (the count is always given).
const LISTED_MAX: usize = 5;

fn ok<C, R>(h: &History<C, R>) -> impl Iterator<Item = (&Op<C, R>, &R)> {
    h.ops.iter().filter_map(|op| match &op.outcome {
        Outcome::Ok(r) => Some((op, r)),
        _ => None,
    })
}

/// Real-time order: whenever `a` completed before `b` was invoked, `key(a) < key(b)`.
/// Returns the violations as (earlier, later) keys.
fn real_time_increasing(items: &[(u64, u64, i64)]) -> Vec<(i64, i64)> {
    // items: (invoke_ns, complete_ns, key)
    let mut by_complete: Vec<&(u64, u64, i64)> = items.iter().collect();
    by_complete.sort_by_key(|i| i.1);
    let mut by_invoke: Vec<&(u64, u64, i64)> = items.iter().collect();
    by_invoke.sort_by_key(|i| i.0);
    let mut done = 0;
    let mut max_before: Option<i64> = None;
    let mut bad = Vec::new();
    for b in by_invoke {
        while done < by_complete.len() && by_complete[done].1 < b.0 {
            max_before = max_before.max(Some(by_complete[done].2));
            done += 1;
        }
        if let Some(m) = max_before.filter(|&m| m >= b.2) {
            bad.push((m, b.2));
        }
    }
    bad
}

fn summarize(what: &str, found: Vec<String>) -> Vec<String> {
    let n = found.len();
    let mut out: Vec<String> = found.into_iter().take(LISTED_MAX).collect();
    if n > LISTED_MAX {
        out.push(format!("... {} more {what}", n - LISTED_MAX));
    }
    out
}

/// Unique ids from sequential znodes: the call is nothing, the reply the sequence number.
/// Acknowledged ids are distinct, and an id handed out after another completed is larger.
pub fn check_unique_ids(h: &History<(), i64>) -> Vec<String> {
    let mut seen: BTreeMap<i64, u64> = BTreeMap::new();
    let mut found = Vec::new();
    let mut timed = Vec::new();
    for (op, &id) in ok(h) {
        if let Some(p) = seen.insert(id, op.process) {
            found.push(format!(
                "id {id} handed to process {p} and process {}",
                op.process
            ));
        }
        timed.push((op.invoke_ns, op.complete_ns.unwrap_or(u64::MAX), id));
    }
    for (a, b) in real_time_increasing(&timed) {
        found.push(format!("id {b} was handed out after id {a} had been"));
    }
    summarize("id anomalies", found)
}

/// A FIFO queue of sequential znodes. Enqueue: the call is the payload, the reply its sequence
/// number. Dequeue: the call is the payload whose delete was sent (known even when the reply
/// was lost), the reply the payload and sequence number taken.
#[derive(Clone, Debug, Default)]
pub struct QueueHistory {
    pub enqueues: History<String, i64>,
    pub dequeues: History<String, (String, i64)>,
    /// What was left, drained after the run.
    pub drained: Vec<(String, i64)>,
}

/// Every dequeued payload was enqueued; none is taken twice; every acknowledged enqueue is
/// taken or left; dequeues that do not overlap take increasing sequence numbers.
pub fn check_queue(q: &QueueHistory) -> Vec<String> {
    let enqueued: BTreeSet<&str> = q
        .enqueues
        .ops
        .iter()
        .filter(|op| !op.outcome.is_fail())
        .map(|op| op.call.as_str())
        .collect();
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    let mut timed = Vec::new();
    for (op, (payload, seq)) in ok(&q.dequeues) {
        *taken.entry(payload.as_str()).or_default() += 1;
        timed.push((op.invoke_ns, op.complete_ns.unwrap_or(u64::MAX), *seq));
    }
    for (payload, _) in &q.drained {
        *taken.entry(payload.as_str()).or_default() += 1;
    }
    let maybe_taken: BTreeSet<&str> = q
        .dequeues
        .ops
        .iter()
        .filter(|op| op.outcome.is_unknown())
        .map(|op| op.call.as_str())
        .collect();
    let mut found = Vec::new();
    for (payload, &n) in &taken {
        if !enqueued.contains(payload) {
            found.push(format!("{payload} was dequeued but never enqueued"));
        }
        if n > 1 {
            found.push(format!("{payload} was dequeued {n} times"));
        }
    }
    for (op, _) in ok(&q.enqueues) {
        let p = op.call.as_str();
        if !taken.contains_key(p) && !maybe_taken.contains(p) {
            found.push(format!("acknowledged enqueue of {p} was lost"));
        }
    }
    for (a, b) in real_time_increasing(&timed) {
        found.push(format!(
            "dequeue took sequence {b} after a dequeue of {a} had completed"
        ));
    }
    summarize("queue anomalies", found)
}

/// A lock guarding a read-modify-write counter. Each holder reads the counter and writes
/// read + 1 with plain setData (no version), fenced by `check` of its own lock znode in the
/// same multi. The reply is the value read. Mutual exclusion means no update is lost: no two
/// acknowledged increments read the same value, and the final value counts every
/// acknowledged increment plus some of the unknown ones. (A holder whose session expired may
/// still believe it holds the lock, as with any ZooKeeper lock; the fence makes its write
/// fail, which is what the lock can promise.)
pub fn check_lock(increments: &History<(), u64>, final_value: u64) -> Vec<String> {
    let mut found = Vec::new();
    let mut reads: BTreeMap<u64, u64> = BTreeMap::new();
    for (op, &read) in ok(increments) {
        if let Some(p) = reads.insert(read, op.process) {
            found.push(format!(
                "processes {p} and {} both incremented from {read}: two holders at once",
                op.process
            ));
        }
    }
    let (acked, _, unknown) = increments.counts();
    let (acked, unknown) = (acked as u64, unknown as u64);
    if final_value < acked || final_value > acked + unknown {
        found.push(format!(
            "final counter {final_value}, but {acked} increments were acknowledged and {unknown} unknown"
        ));
    }
    summarize("lock anomalies", found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op<C, R>(p: u64, t: (u64, u64), call: C, outcome: Outcome<R>) -> Op<C, R> {
        Op {
            process: p,
            invoke_ns: t.0,
            complete_ns: (!matches!(outcome, Outcome::Unknown)).then_some(t.1),
            call,
            outcome,
        }
    }

    #[test]
    fn unique_ids() {
        let good = History {
            ops: vec![
                op(1, (0, 5), (), Outcome::Ok(1)),
                op(2, (1, 6), (), Outcome::Ok(0)),
                op(1, (7, 8), (), Outcome::Ok(2)),
                op(3, (7, 9), (), Outcome::Unknown),
            ],
        };
        assert!(check_unique_ids(&good).is_empty());
        let dup = History {
            ops: vec![
                op(1, (0, 5), (), Outcome::Ok(1)),
                op(2, (1, 6), (), Outcome::Ok(1)),
            ],
        };
        assert_eq!(check_unique_ids(&dup).len(), 1);
        let backwards = History {
            ops: vec![
                op(1, (0, 5), (), Outcome::Ok(3)),
                op(2, (6, 7), (), Outcome::Ok(2)),
            ],
        };
        assert_eq!(check_unique_ids(&backwards).len(), 1);
    }

    fn queue() -> QueueHistory {
        let s = |x: &str| x.to_owned();
        QueueHistory {
            enqueues: History {
                ops: vec![
                    op(1, (0, 1), s("a"), Outcome::Ok(0)),
                    op(1, (2, 3), s("b"), Outcome::Ok(1)),
                    op(2, (2, 3), s("c"), Outcome::Unknown),
                    op(2, (4, 5), s("d"), Outcome::Ok(3)),
                ],
            },
            dequeues: History {
                ops: vec![
                    op(3, (6, 7), s("a"), Outcome::Ok((s("a"), 0))),
                    op(3, (8, 9), s("b"), Outcome::Unknown),
                ],
            },
            drained: vec![(s("d"), 3)],
        }
    }

    #[test]
    fn a_good_queue_passes() {
        assert_eq!(check_queue(&queue()), Vec::<String>::new());
    }

    #[test]
    fn queue_anomalies_are_flagged() {
        let mut twice = queue();
        twice.drained.push(("a".into(), 0));
        assert_eq!(check_queue(&twice).len(), 1, "{:?}", check_queue(&twice));
        let mut lost = queue();
        lost.drained.clear();
        assert_eq!(check_queue(&lost).len(), 1);
        let mut unordered = queue();
        unordered.dequeues.ops = vec![
            op(3, (6, 7), "d".into(), Outcome::Ok(("d".into(), 3))),
            op(3, (8, 9), "a".into(), Outcome::Ok(("a".into(), 0))),
            op(3, (10, 11), "b".into(), Outcome::Ok(("b".into(), 1))),
        ];
        unordered.drained.clear();
        assert_eq!(
            check_queue(&unordered).len(),
            2,
            "{:?}",
            check_queue(&unordered)
        );
        let mut invented = queue();
        invented.drained.push(("zz".into(), 9));
        assert_eq!(check_queue(&invented).len(), 1);
    }

    #[test]
    fn lock_chain() {
        let good = History {
            ops: vec![
                op(1, (0, 1), (), Outcome::Ok(0)),
                op(2, (2, 3), (), Outcome::Unknown),
                op(3, (4, 5), (), Outcome::Ok(2)),
                op(1, (6, 7), (), Outcome::Fail),
            ],
        };
        assert!(check_lock(&good, 3).is_empty());
        assert!(check_lock(&good, 2).is_empty());
        assert_eq!(
            check_lock(&good, 1).len(),
            1,
            "an acknowledged increment was lost"
        );
        let overlap = History {
            ops: vec![
                op(1, (0, 3), (), Outcome::Ok(0)),
                op(2, (1, 4), (), Outcome::Ok(0)),
            ],
        };
        assert_eq!(check_lock(&overlap, 1).len(), 2);
    }
}
