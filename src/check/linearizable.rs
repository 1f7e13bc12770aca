//! Linearizability of a history against a sequential model: Wing & Gong's search with Lowe's
//! memoization of (linearized set, model state), in the shape Porcupine made known.
//!
//! Operations are call and return events on one time line. The search walks the events,
//! linearizing a call when the model accepts it, and backtracks when it meets the return of an
//! operation not yet linearized. An operation with an unknown outcome returns "at infinity":
//! it may take effect anywhere after its call, or never (the model accepts any unknown
//! operation, so "never" is the same as "after everything else").

use super::history::{History, Outcome};
use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification.
pub trait Model: Clone + Eq + Hash {
    type Call;
    type Ret;
    /// The state after `call` when it may return `ret` from `self`; `ret` is `None` when the
    /// outcome is unknown (then any effect the call can have is allowed).
    fn step(&self, call: &Self::Call, ret: Option<&Self::Ret>) -> Option<Self>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable {
        explanation: String,
    },
    /// The step budget ran out first.
    Unknown {
        reason: String,
    },
}

const NIL: usize = usize::MAX;

struct Event {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return event.
    ret: usize,
}

/// A doubly linked list of events; index 0 is the head sentinel.
struct Events {
    ev: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Events {
    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.ev[call].ret);
    }

    /// Puts them back, in the reverse order of [`Events::lift`].
    fn unlift(&mut self, call: usize) {
        self.relink(self.ev[call].ret);
        self.relink(call);
    }
}

/// Checks `h` against the model starting at `init`, giving up after `max_steps` steps.
/// Operations that failed (took no effect) are left out.
pub fn check<M: Model>(init: M, h: &History<M::Call, M::Ret>, max_steps: u64) -> Verdict {
    let ops: Vec<usize> = (0..h.ops.len())
        .filter(|&i| !h.ops[i].outcome.is_fail())
        .collect();
    // (time, calls before returns at equal times, op) sorted; then the linked list.
    let mut points: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * ops.len());
    for (k, &i) in ops.iter().enumerate() {
        let op = &h.ops[i];
        let done = match op.outcome {
            Outcome::Ok(_) => op.complete_ns.unwrap_or(u64::MAX),
            _ => u64::MAX,
        };
        points.push((op.invoke_ns, 0, k));
        points.push((done.max(op.invoke_ns), 1, k));
    }
    points.sort_unstable();
    let n = points.len() + 1;
    let mut list = Events {
        ev: Vec::with_capacity(n),
        next: (1..=n).map(|i| if i == n { NIL } else { i }).collect(),
        prev: (0..n).map(|i| i.wrapping_sub(1)).collect(),
    };
    list.prev[0] = NIL;
    list.ev.push(Event {
        op: NIL,
        is_call: false,
        ret: NIL,
    });
    let mut ret_of = vec![NIL; ops.len()];
    for (idx, &(_, kind, k)) in points.iter().enumerate() {
        if kind == 1 {
            ret_of[k] = idx + 1;
        }
        list.ev.push(Event {
            op: k,
            is_call: kind == 0,
            ret: NIL,
        });
    }
    for e in list.ev.iter_mut().skip(1) {
        if e.is_call {
            e.ret = ret_of[e.op];
        }
    }

    let words = ops.len().div_ceil(64);
    let mut bits = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, M)> = HashSet::new();
    let mut stack: Vec<(usize, M)> = Vec::new();
    let mut state = init;
    let mut deepest = (0usize, NIL);
    let mut entry = list.next[0];
    let mut steps = 0u64;
    while entry != NIL {
        steps += 1;
        if steps > max_steps {
            return Verdict::Unknown {
                reason: format!("step budget {max_steps} spent ({} ops)", ops.len()),
            };
        }
        let k = list.ev[entry].op;
        let op = &h.ops[ops[k]];
        if list.ev[entry].is_call {
            let ret = match &op.outcome {
                Outcome::Ok(r) => Some(r),
                _ => None,
            };
            if let Some(next_state) = state.step(&op.call, ret) {
                let mut next_bits = bits.clone();
                next_bits[k / 64] |= 1 << (k % 64);
                if cache.insert((next_bits.clone(), next_state.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    bits = next_bits;
                    list.lift(entry);
                    entry = list.next[0];
                    continue;
                }
            }
            entry = list.next[entry];
        } else if op.outcome.is_unknown() {
            // Only unknown operations are left unlinearized: each may never have happened.
            return Verdict::Linearizable;
        } else {
            if stack.len() >= deepest.0 {
                deepest = (stack.len(), ops[k]);
            }
            let Some((call, prev_state)) = stack.pop() else {
                return not_linearizable(h, deepest);
            };
            state = prev_state;
            let pk = list.ev[call].op;
            bits[pk / 64] &= !(1 << (pk % 64));
            list.unlift(call);
            entry = list.next[call];
        }
    }
    Verdict::Linearizable
}

fn not_linearizable<C, R>(h: &History<C, R>, deepest: (usize, usize)) -> Verdict {
    let (depth, i) = deepest;
    let op = &h.ops[i];
    Verdict::NotLinearizable {
        explanation: format!(
            "at most {depth} operations linearize before operation #{i} (process {}, invoked at \
             {} ns, completed at {:?} ns) must take effect, and no order admits it",
            op.process, op.invoke_ns, op.complete_ns
        ),
    }
}
