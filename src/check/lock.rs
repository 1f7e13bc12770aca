//! The fenced lock: a lock is an ephemeral sequential child of `/lock` and its holder is the
//! lowest child. While holding it a client reads `/counter` (value v) and runs
//! `multi[check(own lock node, version 0), setData(/counter, v + 1, any version)]`: the write
//! is unconditional, so only the lock fences it and the chain below tests mutual exclusion
//! (a version-checked write would make the chain hold even without a lock).
//!
//! What a ZooKeeper lock can guarantee is this fenced mutual exclusion, not exclusion in real
//! time: a client paused (GC, SIGSTOP) past its session timeout still believes it holds the
//! lock after its ephemeral node is gone and another client took it. The `check` of its own
//! node is the fence that makes its late write fail. So the checker
//! asks that the successful increments form one chain: each one's read value is the previous
//! one's written value, none lost, none from a value two holders both read.

use std::collections::HashMap;

use super::history::{real_time_violations, History, Outcome};

/// One read-modify-write of the counter: it read `read_value` and wrote `read_value + 1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Increment {
    pub read_value: u64,
}

/// Anomalies found (empty: the history passes). `initial` is the counter's value before the
/// run, `final_value` the value read after it (everything healed).
pub fn check(h: &History<Increment, ()>, initial: u64, final_value: u64) -> Vec<String> {
    let mut anomalies = Vec::new();
    let mut ok_by_read: HashMap<u64, u64> = HashMap::new();
    let mut any_by_read: HashMap<u64, usize> = HashMap::new();
    let mut ok: Vec<(u64, u64, u64, u64)> = Vec::new();
    for op in &h.ops {
        let v = op.call.read_value;
        match op.outcome {
            Outcome::Ok(()) => {
                if let Some(prev) = ok_by_read.insert(v, op.process) {
                    anomalies.push(format!(
                        "two acknowledged increments from value {v} (processes {prev} and {}): \
                         holders interleaved",
                        op.process
                    ));
                }
                if v < initial || v >= final_value {
                    anomalies.push(format!(
                        "acknowledged increment {v} -> {} (process {}) is not in the final chain \
                         {initial}..{final_value}: lost write",
                        v + 1,
                        op.process
                    ));
                }
                *any_by_read.entry(v).or_default() += 1;
                ok.push((op.invoke_ns, op.complete_or_max(), v, op.process));
            }
            Outcome::Unknown => *any_by_read.entry(v).or_default() += 1,
            Outcome::Fail => {}
        }
    }
    if final_value < initial {
        anomalies.push(format!(
            "the counter went back from {initial} to {final_value}"
        ));
    }
    let missing: Vec<u64> = (initial..final_value)
        .filter(|v| !any_by_read.contains_key(v))
        .take(10)
        .collect();
    if !missing.is_empty() {
        anomalies.push(format!(
            "the chain {initial}..{final_value} has links no client attempted, from values {missing:?}"
        ));
    }
    // Real time: an increment acknowledged before another was invoked comes earlier in the chain.
    for (o, read, _) in real_time_violations(&mut ok) {
        anomalies.push(format!(
            "increment from {} (process {}) acknowledged after one from {read} had completed",
            o.2, o.3
        ));
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::Op;

    fn op(p: u64, a: u64, read_value: u64, outcome: Outcome<()>) -> Op<Increment, ()> {
        let complete_ns = (outcome != Outcome::Unknown).then_some(a + 5);
        Op {
            process: p,
            invoke_ns: a,
            complete_ns,
            call: Increment { read_value },
            outcome,
        }
    }

    #[test]
    fn chain_passes_with_unknown_links() {
        let h = History {
            ops: vec![
                op(0, 0, 0, Outcome::Ok(())),
                op(1, 10, 1, Outcome::Unknown),
                op(2, 20, 1, Outcome::Fail),
                op(2, 30, 2, Outcome::Ok(())),
                op(0, 40, 3, Outcome::Unknown),
            ],
        };
        assert!(check(&h, 0, 3).is_empty(), "{:?}", check(&h, 0, 3));
    }

    #[test]
    fn broken_chain_is_flagged() {
        // Two holders read 1 and both wrote 2.
        let h = History {
            ops: vec![
                op(0, 0, 0, Outcome::Ok(())),
                op(1, 10, 1, Outcome::Ok(())),
                op(2, 11, 1, Outcome::Ok(())),
            ],
        };
        assert!(!check(&h, 0, 2).is_empty());
        // An acknowledged increment the final value does not contain: lost.
        let h = History {
            ops: vec![op(0, 0, 0, Outcome::Ok(())), op(1, 10, 1, Outcome::Ok(()))],
        };
        assert!(!check(&h, 0, 1).is_empty());
    }
}
