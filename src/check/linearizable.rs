//! Linearizability of a history against a sequential model: the Wing & Gong search with Lowe's
//! memoization of (set of linearized ops, model state).
//!
//! The search picks, at each step, an op that may take effect next: one whose invocation is no
//! later than the earliest completion among the ops still pending. Ops with an `Ok` outcome must
//! all be placed; `Unknown` ones may be placed anywhere after their invocation, or never; `Fail`
//! ones never took effect and are left out. A (set, state) pair seen before is not explored
//! again, so the search is exponential only in the concurrency, not in the length. A step budget
//! bounds it: when it runs out the verdict is `Unknown`, never a guess.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

use super::history::{History, Outcome};

/// A sequential specification.
pub trait Model: Clone + Eq + Hash {
    type Call: Debug;
    type Ret: Debug;

    /// The next state if `call` may return `ret` from `self` (`ret` is `None` when the op's
    /// outcome is unknown: the call is applied, whatever it returned).
    fn step(&self, call: &Self::Call, ret: Option<&Self::Ret>) -> Option<Self>;

    /// True when `call` never changes the state (a read): an unknown-outcome read tells nothing
    /// and is left out of the search.
    fn is_read_only(_call: &Self::Call) -> bool {
        false
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable {
        explanation: String,
    },
    /// The step budget ran out before the search finished.
    Unknown {
        reason: String,
    },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    pub fn is_violation(&self) -> bool {
        matches!(self, Verdict::NotLinearizable { .. })
    }
}

struct Entry<'a, C, R> {
    /// Index in the caller's history, for the explanation.
    orig: usize,
    invoke_ns: u64,
    /// `u64::MAX` for an unknown outcome.
    complete_ns: u64,
    call: &'a C,
    ret: Option<&'a R>,
    process: u64,
}

impl<C, R> Entry<'_, C, R> {
    fn must(&self) -> bool {
        self.ret.is_some()
    }
}

struct Frame<M> {
    state: M,
    /// The first op (in invocation order) that must be placed and is not yet.
    first_must: usize,
    candidates: Vec<usize>,
    next: usize,
    chosen: Option<usize>,
}

/// Checks `h` against the model started at `init`, exploring at most `max_steps` model steps.
pub fn check<M: Model>(init: M, h: &History<M::Call, M::Ret>, max_steps: u64) -> Verdict {
    let mut ops: Vec<Entry<M::Call, M::Ret>> = h
        .ops
        .iter()
        .enumerate()
        .filter_map(|(orig, op)| {
            let (ret, complete_ns) = match &op.outcome {
                Outcome::Fail => return None,
                Outcome::Unknown if M::is_read_only(&op.call) => return None,
                Outcome::Unknown => (None, u64::MAX),
                Outcome::Ok(r) => (
                    Some(r),
                    op.complete_ns.unwrap_or(u64::MAX).max(op.invoke_ns),
                ),
            };
            Some(Entry {
                orig,
                invoke_ns: op.invoke_ns,
                complete_ns,
                call: &op.call,
                ret,
                process: op.process,
            })
        })
        .collect();
    ops.sort_by_key(|e| (e.invoke_ns, e.orig));
    let n = ops.len();
    let unknown: Vec<usize> = (0..n).filter(|&i| !ops[i].must()).collect();
    let mut must_left = ops.iter().filter(|e| e.must()).count();
    let mut lin = vec![false; n];
    let mut seen: HashSet<(u32, Vec<u32>, M)> = HashSet::new();
    let mut steps: u64 = 0;
    // The deepest point reached, for the explanation: ops placed and the op that could not be.
    let mut best: (usize, Option<usize>, Option<M>) = (0, None, None);

    let first_must = advance_first_must(&ops, &lin, 0);
    let root_candidates = candidates(&ops, &unknown, &lin, first_must);
    let mut stack = vec![Frame {
        state: init,
        first_must,
        candidates: root_candidates,
        next: 0,
        chosen: None,
    }];
    loop {
        if must_left == 0 {
            return Verdict::Linearizable;
        }
        let Some(frame) = stack.last_mut() else {
            return not_linearizable(h, &ops, best);
        };
        if let Some(j) = frame.chosen.take() {
            lin[j] = false;
            if ops[j].must() {
                must_left += 1;
            }
        }
        if frame.next >= frame.candidates.len() {
            let placed = ops
                .iter()
                .zip(&lin)
                .filter(|(e, l)| **l && e.must())
                .count();
            if placed > best.0 || best.2.is_none() {
                let stuck = (frame.first_must < n).then_some(frame.first_must);
                best = (placed, stuck, Some(frame.state.clone()));
            }
            stack.pop();
            continue;
        }
        let j = frame.candidates[frame.next];
        frame.next += 1;
        steps += 1;
        if steps > max_steps {
            return Verdict::Unknown {
                reason: format!("step budget of {max_steps} exhausted ({n} ops)"),
            };
        }
        let Some(next_state) = frame.state.step(ops[j].call, ops[j].ret) else {
            continue;
        };
        // An unknown op that changes nothing is as good as never applied (it constrains no
        // other op), so placing it would only multiply the states explored.
        if !ops[j].must() && next_state == frame.state {
            continue;
        }
        lin[j] = true;
        let first_must = advance_first_must(&ops, &lin, frame.first_must);
        let key = memo_key(&ops, &unknown, &lin, first_must, &next_state);
        if !seen.insert(key) {
            lin[j] = false;
            continue;
        }
        if ops[j].must() {
            must_left -= 1;
        }
        frame.chosen = Some(j);
        let cands = candidates(&ops, &unknown, &lin, first_must);
        stack.push(Frame {
            state: next_state,
            first_must,
            candidates: cands,
            next: 0,
            chosen: None,
        });
    }
}

fn advance_first_must<C, R>(ops: &[Entry<C, R>], lin: &[bool], from: usize) -> usize {
    let mut i = from;
    while i < ops.len() && (lin[i] || !ops[i].must()) {
        i += 1;
    }
    i
}

/// Ops that may take effect next: pending ops from `first_must` on whose invocation is no later
/// than the earliest completion among pending ops (must-place ones first), then every pending
/// unknown op invoked before `first_must`.
fn candidates<C, R>(
    ops: &[Entry<C, R>],
    unknown: &[usize],
    lin: &[bool],
    first_must: usize,
) -> Vec<usize> {
    let mut out = Vec::new();
    let mut min_complete = u64::MAX;
    let mut later_unknown = Vec::new();
    for (i, e) in ops.iter().enumerate().skip(first_must) {
        if e.invoke_ns > min_complete {
            break;
        }
        if lin[i] {
            continue;
        }
        min_complete = min_complete.min(e.complete_ns);
        if e.must() {
            out.push(i);
        } else {
            later_unknown.push(i);
        }
    }
    out.extend(later_unknown);
    out.extend(
        unknown
            .iter()
            .copied()
            .take_while(|&i| i < first_must)
            .filter(|&i| !lin[i]),
    );
    out
}

/// The placed set, compactly and exactly: every op before `first_must` is placed except
/// unknown ones, so list the placed unknown ones there plus the placed ops from `first_must` on
/// (all invoked before `first_must` completed).
fn memo_key<C, R, M: Clone>(
    ops: &[Entry<C, R>],
    unknown: &[usize],
    lin: &[bool],
    first_must: usize,
    state: &M,
) -> (u32, Vec<u32>, M) {
    let mut placed: Vec<u32> = unknown
        .iter()
        .copied()
        .take_while(|&i| i < first_must)
        .filter(|&i| lin[i])
        .map(|i| i as u32)
        .collect();
    if first_must < ops.len() {
        let limit = ops[first_must].complete_ns;
        for (i, e) in ops.iter().enumerate().skip(first_must + 1) {
            if e.invoke_ns > limit {
                break;
            }
            if lin[i] {
                placed.push(i as u32);
            }
        }
    }
    (first_must as u32, placed, state.clone())
}

fn not_linearizable<M: Model>(
    h: &History<M::Call, M::Ret>,
    ops: &[Entry<M::Call, M::Ret>],
    best: (usize, Option<usize>, Option<M>),
) -> Verdict {
    let total = ops.iter().filter(|e| e.must()).count();
    let (placed, stuck, _) = best;
    let what = match stuck {
        Some(i) => {
            let e = &ops[i];
            let op = &h.ops[e.orig];
            format!(
                "; stuck at op #{} (process {}, invoked {} ns, completed {:?} ns): {:?} -> {:?}",
                e.orig, e.process, op.invoke_ns, op.complete_ns, e.call, e.ret
            )
        }
        None => String::new(),
    };
    Verdict::NotLinearizable {
        explanation: format!(
            "no linearization: at most {placed} of {total} acknowledged ops could be placed{what}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::Op;

    /// A counter that can be read or incremented: small enough for hand-made histories.
    #[derive(Clone, PartialEq, Eq, Hash, Debug)]
    struct Counter(u32);

    impl Model for Counter {
        type Call = &'static str;
        type Ret = u32;
        fn step(&self, call: &&'static str, ret: Option<&u32>) -> Option<Counter> {
            match *call {
                "inc" => Some(Counter(self.0 + 1)),
                _ => match ret {
                    None => Some(self.clone()),
                    Some(v) => (*v == self.0).then(|| self.clone()),
                },
            }
        }
        fn is_read_only(call: &&'static str) -> bool {
            *call == "read"
        }
    }

    fn op(
        p: u64,
        a: u64,
        b: Option<u64>,
        call: &'static str,
        out: Outcome<u32>,
    ) -> Op<&'static str, u32> {
        Op {
            process: p,
            invoke_ns: a,
            complete_ns: b,
            call,
            outcome: out,
        }
    }

    #[test]
    fn overlapping_read_may_see_either_value() {
        let h = History {
            ops: vec![
                op(0, 0, Some(10), "inc", Outcome::Ok(0)),
                op(1, 5, Some(6), "read", Outcome::Ok(1)),
                op(2, 7, Some(8), "read", Outcome::Ok(1)),
            ],
        };
        assert_eq!(check(Counter(0), &h, 10_000), Verdict::Linearizable);
    }

    #[test]
    fn reading_old_value_after_newer_read_is_flagged() {
        let h = History {
            ops: vec![
                op(0, 0, Some(10), "inc", Outcome::Ok(0)),
                op(1, 1, Some(2), "read", Outcome::Ok(1)),
                op(2, 3, Some(4), "read", Outcome::Ok(0)),
            ],
        };
        assert!(check(Counter(0), &h, 10_000).is_violation());
    }

    #[test]
    fn unknown_write_may_land_late_or_never() {
        let late = History {
            ops: vec![
                op(0, 0, None, "inc", Outcome::Unknown),
                op(1, 5, Some(6), "read", Outcome::Ok(0)),
                op(1, 50, Some(60), "read", Outcome::Ok(1)),
            ],
        };
        assert_eq!(check(Counter(0), &late, 10_000), Verdict::Linearizable);
        let never = History {
            ops: vec![
                op(0, 0, None, "inc", Outcome::Unknown),
                op(1, 50, Some(60), "read", Outcome::Ok(0)),
            ],
        };
        assert_eq!(check(Counter(0), &never, 10_000), Verdict::Linearizable);
        let before_invoke = History {
            ops: vec![
                op(1, 0, Some(1), "read", Outcome::Ok(1)),
                op(0, 5, None, "inc", Outcome::Unknown),
            ],
        };
        assert!(check(Counter(0), &before_invoke, 10_000).is_violation());
    }

    #[test]
    fn many_stale_unknown_ops_stay_cheap() {
        // Reads of a value no longer current, with unknown outcome, as no-op "writes": the
        // search must not try every subset of them.
        #[derive(Clone, PartialEq, Eq, Hash, Debug)]
        struct Cas(u32);
        impl Model for Cas {
            type Call = (u32, u32);
            type Ret = bool;
            fn step(&self, &(from, to): &(u32, u32), ret: Option<&bool>) -> Option<Cas> {
                let hit = self.0 == from;
                match ret {
                    None if hit => Some(Cas(to)),
                    None => Some(self.clone()),
                    Some(&ok) => (ok == hit).then(|| if hit { Cas(to) } else { self.clone() }),
                }
            }
        }
        let mut h = History::new();
        for p in 0..40 {
            h.push(Op {
                process: p,
                invoke_ns: 0,
                complete_ns: None,
                call: (99, 100),
                outcome: Outcome::Unknown,
            });
        }
        for i in 0..200u32 {
            let t = 10 + 10 * u64::from(i);
            h.push(Op {
                process: 1000,
                invoke_ns: t,
                complete_ns: Some(t + 5),
                call: (i, i + 1),
                outcome: Outcome::Ok(true),
            });
        }
        assert_eq!(check(Cas(0), &h, 100_000), Verdict::Linearizable);
    }

    #[test]
    fn budget_gives_unknown() {
        let mut h = History::new();
        for p in 0..12 {
            h.push(op(p, 0, Some(100), "inc", Outcome::Ok(0)));
        }
        h.push(op(99, 200, Some(201), "read", Outcome::Ok(99)));
        assert!(matches!(check(Counter(0), &h, 50), Verdict::Unknown { .. }));
    }
}
