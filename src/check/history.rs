//! A client history: what each operation asked, when, and how it ended as its client saw it.

/// How an operation ended, as its client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<R> {
    /// It took effect and returned this.
    Ok(R),
    /// It definitely took no effect (an error reply that proves it).
    Fail,
    /// The client does not know (timeout, lost connection): it may take effect at any time
    /// after its invocation, or never.
    Unknown,
}

impl<R> Outcome<R> {
    pub fn is_fail(&self) -> bool {
        matches!(self, Outcome::Fail)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Outcome::Unknown)
    }
}

/// One operation of one client process.
#[derive(Clone, Debug)]
pub struct Op<C, R> {
    pub process: u64,
    pub invoke_ns: u64,
    /// When the reply arrived; `None` when the outcome is unknown.
    pub complete_ns: Option<u64>,
    pub call: C,
    pub outcome: Outcome<R>,
}

/// Every operation of a run, in any order.
#[derive(Clone, Debug)]
pub struct History<C, R> {
    pub ops: Vec<Op<C, R>>,
}

impl<C, R> Default for History<C, R> {
    fn default() -> Self {
        History { ops: Vec::new() }
    }
}

impl<C, R> History<C, R> {
    pub fn push(&mut self, op: Op<C, R>) {
        self.ops.push(op);
    }

    /// Counts of (ok, fail, unknown).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.ops
            .iter()
            .fold((0, 0, 0), |(ok, fail, unknown), op| match op.outcome {
                Outcome::Ok(_) => (ok + 1, fail, unknown),
                Outcome::Fail => (ok, fail + 1, unknown),
                Outcome::Unknown => (ok, fail, unknown + 1),
            })
    }

    /// True when `a` completed before `b` was invoked (real-time order).
    pub fn precedes(a: &Op<C, R>, b: &Op<C, R>) -> bool {
        a.complete_ns.is_some_and(|done| done < b.invoke_ns)
    }
}
