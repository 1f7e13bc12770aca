//! Unique ids from sequential nodes: each op creates `/ids/id-` with the sequential flag and
//! its id is the 10-digit suffix the server assigned.
//!
//! Checks: acknowledged ids are distinct, and ids respect real time (if op A completed before
//! op B was invoked then id(A) < id(B): the counter is the parent's cversion, which only grows
//! in commit order).

use super::history::{real_time_violations, History, Outcome};

/// Anomalies found (empty: the history passes). The call type is free (`()` will do).
pub fn check<C>(h: &History<C, u64>) -> Vec<String> {
    let mut acked: Vec<(u64, u64, u64, u64)> = h
        .ops
        .iter()
        .filter_map(|op| match op.outcome {
            Outcome::Ok(id) => Some((op.invoke_ns, op.complete_or_max(), id, op.process)),
            _ => None,
        })
        .collect();
    let mut anomalies = Vec::new();
    let mut ids: Vec<(u64, u64)> = acked.iter().map(|a| (a.2, a.3)).collect();
    ids.sort_unstable();
    for w in ids.windows(2) {
        if w[0].0 == w[1].0 {
            anomalies.push(format!(
                "id {} acknowledged twice (processes {} and {})",
                w[0].0, w[0].1, w[1].1
            ));
        }
    }
    // Real time: an id handed out after another was acknowledged is larger.
    for (a, max_id, process) in real_time_violations(&mut acked) {
        if !(max_id == a.2 && process == a.3) {
            anomalies.push(format!(
                "id {} (process {}, invoked {} ns) is not above id {} (process {}) acknowledged \
                 before it was invoked",
                a.2, a.3, a.0, max_id, process
            ));
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::Op;

    fn op(p: u64, a: u64, b: u64, id: u64) -> Op<(), u64> {
        Op {
            process: p,
            invoke_ns: a,
            complete_ns: Some(b),
            call: (),
            outcome: Outcome::Ok(id),
        }
    }

    #[test]
    fn distinct_increasing_ids_pass() {
        let h = History {
            ops: vec![op(0, 0, 10, 2), op(1, 1, 9, 1), op(0, 20, 30, 3)],
        };
        assert!(check(&h).is_empty());
    }

    #[test]
    fn duplicated_id_is_flagged() {
        let h = History {
            ops: vec![op(0, 0, 10, 1), op(1, 1, 9, 1)],
        };
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn id_going_back_in_real_time_is_flagged() {
        let h = History {
            ops: vec![op(0, 0, 10, 5), op(1, 20, 30, 4)],
        };
        assert_eq!(check(&h).len(), 1, "{:?}", check(&h));
    }
}
