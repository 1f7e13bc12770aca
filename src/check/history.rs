//! The recorded operations of a run, as the clients saw them.

/// How an operation ended, as its client saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome<R> {
    /// A reply arrived; `R` says which.
    Ok(R),
    /// Definitely not applied (an error reply that proves it).
    Fail,
    /// The client does not know (timeout, lost connection): the operation may take effect at any
    /// later time, or never.
    Unknown,
}

/// One operation: who issued it, when, what, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op<C, R> {
    /// The issuing client (one outstanding operation per process).
    pub process: u64,
    /// When the request was sent, in nanoseconds from any fixed origin shared by the history.
    pub invoke_ns: u64,
    /// When the reply arrived; `None` when the outcome is `Unknown`.
    pub complete_ns: Option<u64>,
    pub call: C,
    pub outcome: Outcome<R>,
}

impl<C, R> Op<C, R> {
    /// The completion time, or "never" for an unknown outcome: such an op overlaps everything
    /// invoked after it.
    pub fn complete_or_max(&self) -> u64 {
        match self.outcome {
            Outcome::Unknown => u64::MAX,
            _ => self.complete_ns.unwrap_or(u64::MAX),
        }
    }

    /// True when this op finished before `other` was invoked (real-time order).
    pub fn precedes<C2, R2>(&self, other: &Op<C2, R2>) -> bool {
        self.complete_or_max() < other.invoke_ns
    }
}

/// A history: the operations of every process, in any order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History<C, R> {
    pub ops: Vec<Op<C, R>>,
}

impl<C, R> Default for History<C, R> {
    fn default() -> Self {
        History { ops: Vec::new() }
    }
}

impl<C, R> History<C, R> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, op: Op<C, R>) {
        self.ops.push(op);
    }

    /// (ok, fail, unknown) counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for op in &self.ops {
            match op.outcome {
                Outcome::Ok(_) => c.0 += 1,
                Outcome::Fail => c.1 += 1,
                Outcome::Unknown => c.2 += 1,
            }
        }
        c
    }
}

/// A completed operation in real time: (invoke_ns, complete_ns, key, process), where the key
/// is what must grow with real-time order (an id, a sequence number, a counter value).
pub type Timed = (u64, u64, u64, u64);

/// Real-time order of keys: every operation's key must exceed the largest key among the
/// operations that completed before it was invoked. Returns each operation that breaks it,
/// with that largest earlier key and its process. Sorts `ops` by completion.
pub fn real_time_violations(ops: &mut [Timed]) -> Vec<(Timed, u64, u64)> {
    ops.sort_unstable_by_key(|o| o.1);
    let mut prefix_max: Vec<(u64, u64)> = Vec::with_capacity(ops.len());
    let mut best: Option<(u64, u64)> = None;
    for o in ops.iter() {
        if best.is_none_or(|b| o.2 > b.0) {
            best = Some((o.2, o.3));
        }
        prefix_max.push(best.unwrap_or((0, 0)));
    }
    let mut out = Vec::new();
    for o in ops.iter() {
        let before = ops.partition_point(|b| b.1 < o.0);
        if before > 0 && prefix_max[before - 1].0 >= o.2 {
            let (key, process) = prefix_max[before - 1];
            out.push((*o, key, process));
        }
    }
    out
}
