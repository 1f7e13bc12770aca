//! A znode as a versioned register: the model of getData, setData and setData with an
//! expected version (compare-and-set), which ZooKeeper makes linearizable.

use super::linearizable::Model;

/// The znode's data and version (`value` is `None` while it does not exist).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Register {
    pub value: Option<Vec<u8>>,
    pub version: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegCall {
    Read,
    /// setData with version -1.
    Write(Vec<u8>),
    /// setData with an expected version.
    Cas {
        expected_version: i32,
        value: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegRet {
    Read {
        value: Option<Vec<u8>>,
        version: i32,
    },
    Written {
        version: i32,
    },
    BadVersion,
}

impl Register {
    fn written(&self, value: &[u8]) -> Register {
        Register {
            value: Some(value.to_vec()),
            version: self.version.wrapping_add(1),
        }
    }
}

impl Model for Register {
    type Call = RegCall;
    type Ret = RegRet;

    fn step(&self, call: &RegCall, ret: Option<&RegRet>) -> Option<Register> {
        match call {
            RegCall::Read => match ret {
                None => Some(self.clone()),
                Some(RegRet::Read { value, version }) => {
                    (*value == self.value && *version == self.version).then(|| self.clone())
                }
                Some(_) => None,
            },
            RegCall::Write(value) => {
                let next = self.written(value);
                match ret {
                    None => Some(next),
                    Some(RegRet::Written { version }) => (*version == next.version).then_some(next),
                    Some(_) => None,
                }
            }
            RegCall::Cas {
                expected_version,
                value,
            } => {
                let matches = *expected_version == self.version && self.value.is_some();
                match (ret, matches) {
                    (None, true) => Some(self.written(value)),
                    (None, false) | (Some(RegRet::BadVersion), false) => Some(self.clone()),
                    (Some(RegRet::Written { version }), true) => {
                        let next = self.written(value);
                        (*version == next.version).then_some(next)
                    }
                    _ => None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::{History, Op, Outcome};
    use crate::check::linearizable::{check, Verdict};
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    fn init() -> Register {
        Register {
            value: Some(b"0".to_vec()),
            version: 0,
        }
    }

    fn op(
        p: u64,
        t: (u64, Option<u64>),
        call: RegCall,
        outcome: Outcome<RegRet>,
    ) -> Op<RegCall, RegRet> {
        Op {
            process: p,
            invoke_ns: t.0,
            complete_ns: t.1,
            call,
            outcome,
        }
    }

    fn read(value: &str, version: i32) -> Outcome<RegRet> {
        Outcome::Ok(RegRet::Read {
            value: Some(value.as_bytes().to_vec()),
            version,
        })
    }

    fn write(v: &str) -> RegCall {
        RegCall::Write(v.as_bytes().to_vec())
    }

    fn cas(expected_version: i32, v: &str) -> RegCall {
        RegCall::Cas {
            expected_version,
            value: v.as_bytes().to_vec(),
        }
    }

    fn verdict(ops: Vec<Op<RegCall, RegRet>>) -> Verdict {
        check(init(), &History { ops }, 1_000_000)
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_a_write() {
        let v = verdict(vec![
            op(
                1,
                (0, Some(10)),
                write("a"),
                Outcome::Ok(RegRet::Written { version: 1 }),
            ),
            op(2, (1, Some(2)), RegCall::Read, read("0", 0)),
            op(3, (3, Some(4)), RegCall::Read, read("a", 1)),
        ]);
        assert_eq!(v, Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_flagged() {
        let v = verdict(vec![
            op(
                1,
                (0, Some(10)),
                write("a"),
                Outcome::Ok(RegRet::Written { version: 1 }),
            ),
            op(2, (11, Some(12)), RegCall::Read, read("0", 0)),
        ]);
        assert!(matches!(v, Verdict::NotLinearizable { .. }), "{v:?}");
    }

    #[test]
    fn two_acknowledged_cas_from_one_version_are_flagged() {
        let v = verdict(vec![
            op(
                1,
                (0, Some(10)),
                cas(0, "a"),
                Outcome::Ok(RegRet::Written { version: 1 }),
            ),
            op(
                2,
                (1, Some(11)),
                cas(0, "b"),
                Outcome::Ok(RegRet::Written { version: 1 }),
            ),
        ]);
        assert!(matches!(v, Verdict::NotLinearizable { .. }), "{v:?}");
        let v = verdict(vec![
            op(
                1,
                (0, Some(10)),
                cas(0, "a"),
                Outcome::Ok(RegRet::Written { version: 1 }),
            ),
            op(
                2,
                (1, Some(11)),
                cas(0, "b"),
                Outcome::Ok(RegRet::BadVersion),
            ),
        ]);
        assert_eq!(v, Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_apply_late_or_never() {
        let lost = op(1, (0, None), write("a"), Outcome::Unknown);
        let late = vec![
            lost.clone(),
            op(2, (5, Some(6)), RegCall::Read, read("0", 0)),
            op(2, (7, Some(8)), RegCall::Read, read("a", 1)),
        ];
        assert_eq!(verdict(late), Verdict::Linearizable);
        let never = vec![
            lost.clone(),
            op(2, (5, Some(6)), RegCall::Read, read("0", 0)),
        ];
        assert_eq!(verdict(never), Verdict::Linearizable);
        // Once seen, it cannot be undone.
        let flip = vec![
            lost,
            op(2, (5, Some(6)), RegCall::Read, read("a", 1)),
            op(2, (7, Some(8)), RegCall::Read, read("0", 0)),
        ];
        assert!(matches!(verdict(flip), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn failed_operations_take_no_effect() {
        let v = verdict(vec![
            op(1, (0, Some(1)), write("a"), Outcome::Fail),
            op(2, (2, Some(3)), RegCall::Read, read("a", 1)),
        ]);
        assert!(matches!(v, Verdict::NotLinearizable { .. }), "{v:?}");
    }

    #[test]
    fn the_budget_gives_unknown() {
        let ops = (0..20)
            .map(|i| op(i, (0, None), write(&i.to_string()), Outcome::Unknown))
            .chain([op(99, (1, Some(2)), RegCall::Read, read("nope", 7))])
            .collect();
        let v = check(init(), &History { ops }, 50);
        assert!(matches!(v, Verdict::Unknown { .. }), "{v:?}");
    }

    /// A random sequential run of the model, cut into non-overlapping operations of a few
    /// processes, always linearizes.
    #[derive(Clone, Debug)]
    struct SequentialRun(Vec<(u8, u8, u8)>);

    impl Arbitrary for SequentialRun {
        fn arbitrary(g: &mut Gen) -> Self {
            let n = usize::arbitrary(g) % 40;
            SequentialRun((0..n).map(|_| <(u8, u8, u8)>::arbitrary(g)).collect())
        }
    }

    #[test]
    fn sequential_histories_linearize() {
        fn prop(run: SequentialRun) -> bool {
            let mut state = init();
            let mut ops = Vec::new();
            for (i, (kind, x, p)) in run.0.into_iter().enumerate() {
                let call = match kind % 3 {
                    0 => RegCall::Read,
                    1 => write(&format!("w{i}")),
                    _ => cas(i32::from(x % 4), &format!("c{i}")),
                };
                let ret = match &call {
                    RegCall::Read => RegRet::Read {
                        value: state.value.clone(),
                        version: state.version,
                    },
                    RegCall::Write(_) => RegRet::Written {
                        version: state.version + 1,
                    },
                    RegCall::Cas {
                        expected_version, ..
                    } if *expected_version == state.version => RegRet::Written {
                        version: state.version + 1,
                    },
                    RegCall::Cas { .. } => RegRet::BadVersion,
                };
                state = state
                    .step(&call, Some(&ret))
                    .expect("the model accepts its own run");
                let t = 10 * i as u64;
                ops.push(op(
                    u64::from(p % 4),
                    (t, Some(t + 5)),
                    call,
                    Outcome::Ok(ret),
                ));
            }
            check(init(), &History { ops }, 1_000_000) == Verdict::Linearizable
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(SequentialRun) -> bool);
    }

    /// Overlapping operations, each taking effect at a point inside its interval (unknown
    /// ones sometimes never), linearize: the search finds no false violation.
    #[test]
    fn concurrent_histories_with_real_effect_points_linearize() {
        fn prop(run: SequentialRun) -> bool {
            // (effect point, invoke, complete, call, unknown)
            let mut planned: Vec<(u64, u64, u64, RegCall, bool)> = run
                .0
                .iter()
                .enumerate()
                .map(|(i, &(kind, x, p))| {
                    let invoke = u64::from(p) * 3 + i as u64;
                    let len = 1 + u64::from(x % 50);
                    let point = invoke + u64::from(kind) % len;
                    let call = match kind % 3 {
                        0 => RegCall::Read,
                        1 => write(&format!("w{i}")),
                        _ => cas(i32::from(x % 3), &format!("c{i}")),
                    };
                    (point, invoke, invoke + len, call, x % 7 == 0)
                })
                .collect();
            planned.sort_by_key(|p| p.0);
            let mut state = init();
            let mut ops = Vec::new();
            for (i, (_, invoke, complete, call, unknown)) in planned.into_iter().enumerate() {
                let never = unknown && i % 2 == 0;
                let ret = match &call {
                    RegCall::Read => RegRet::Read {
                        value: state.value.clone(),
                        version: state.version,
                    },
                    RegCall::Cas {
                        expected_version, ..
                    } if *expected_version != state.version => RegRet::BadVersion,
                    _ => RegRet::Written {
                        version: state.version + 1,
                    },
                };
                if !never {
                    state = state.step(&call, Some(&ret)).unwrap();
                }
                let outcome = if unknown {
                    Outcome::Unknown
                } else {
                    Outcome::Ok(ret)
                };
                let done = (!unknown).then_some(complete);
                ops.push(op(i as u64 % 5, (invoke, done), call, outcome));
            }
            check(init(), &History { ops }, 5_000_000) == Verdict::Linearizable
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(SequentialRun) -> bool);
    }
}
