//! A znode as a versioned register: the model for getData, setData (version -1) and setData
//! with an expected version (compare-and-set).

use super::linearizable::Model;

/// The znode's data and `stat.version`; `value` `None` means the node does not exist.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Register {
    pub value: Option<Vec<u8>>,
    pub version: i32,
}

impl Register {
    /// A node just created with `value` (version 0).
    pub fn created(value: Vec<u8>) -> Register {
        Register {
            value: Some(value),
            version: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegCall {
    /// getData.
    Read,
    /// setData with version -1.
    Write(Vec<u8>),
    /// setData with an expected version.
    Cas {
        expected_version: i32,
        value: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegRet {
    /// getData's answer (`value` `None`: NoNode).
    Read {
        value: Option<Vec<u8>>,
        version: i32,
    },
    /// setData succeeded; `version` is the new `stat.version`.
    Written { version: i32 },
    /// setData with a version that differed.
    BadVersion,
}

impl Model for Register {
    type Call = RegCall;
    type Ret = RegRet;

    fn step(&self, call: &RegCall, ret: Option<&RegRet>) -> Option<Register> {
        let written = |value: &Vec<u8>| Register {
            value: Some(value.clone()),
            version: self.version.wrapping_add(1),
        };
        match (call, ret) {
            (RegCall::Read, None) => Some(self.clone()),
            (RegCall::Read, Some(RegRet::Read { value, version })) => {
                let same = *value == self.value && (value.is_none() || *version == self.version);
                same.then(|| self.clone())
            }
            (RegCall::Read, Some(_)) => None,
            // setData on a missing node fails with NoNode (a Fail outcome, not modelled).
            (_, _) if self.value.is_none() => None,
            (RegCall::Write(v), None) => Some(written(v)),
            (RegCall::Write(v), Some(RegRet::Written { version })) => {
                (*version == self.version.wrapping_add(1)).then(|| written(v))
            }
            (RegCall::Write(_), Some(_)) => None,
            (
                RegCall::Cas {
                    expected_version,
                    value,
                },
                ret,
            ) => {
                let matches = *expected_version == self.version;
                match ret {
                    None if matches => Some(written(value)),
                    None => Some(self.clone()),
                    Some(RegRet::Written { version }) => (matches
                        && *version == self.version.wrapping_add(1))
                    .then(|| written(value)),
                    Some(RegRet::BadVersion) => (!matches).then(|| self.clone()),
                    Some(RegRet::Read { .. }) => None,
                }
            }
        }
    }

    fn is_read_only(call: &RegCall) -> bool {
        matches!(call, RegCall::Read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::{History, Op, Outcome};
    use crate::check::linearizable::{check, Verdict};
    use quickcheck::{Arbitrary, Gen};

    fn op(p: u64, a: u64, b: u64, call: RegCall, ret: RegRet) -> Op<RegCall, RegRet> {
        Op {
            process: p,
            invoke_ns: a,
            complete_ns: Some(b),
            call,
            outcome: Outcome::Ok(ret),
        }
    }

    fn read(v: &[u8], version: i32) -> RegRet {
        RegRet::Read {
            value: Some(v.to_vec()),
            version,
        }
    }

    fn init() -> Register {
        Register::created(b"0".to_vec())
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_flagged() {
        let h = History {
            ops: vec![
                op(
                    0,
                    0,
                    10,
                    RegCall::Write(b"1".to_vec()),
                    RegRet::Written { version: 1 },
                ),
                op(1, 20, 30, RegCall::Read, read(b"0", 0)),
            ],
        };
        let v = check(init(), &h, 100_000);
        assert!(v.is_violation(), "{v:?}");
    }

    #[test]
    fn two_cas_from_one_version_both_acked_is_flagged() {
        let cas = |v: &[u8]| RegCall::Cas {
            expected_version: 0,
            value: v.to_vec(),
        };
        let h = History {
            ops: vec![
                op(0, 0, 10, cas(b"a"), RegRet::Written { version: 1 }),
                op(1, 1, 11, cas(b"b"), RegRet::Written { version: 1 }),
            ],
        };
        assert!(check(init(), &h, 100_000).is_violation());
        // One of them failing with BadVersion is fine, whichever read follows.
        let ok = History {
            ops: vec![
                op(0, 0, 10, cas(b"a"), RegRet::Written { version: 1 }),
                op(1, 1, 11, cas(b"b"), RegRet::BadVersion),
                op(2, 12, 13, RegCall::Read, read(b"a", 1)),
            ],
        };
        assert_eq!(check(init(), &ok, 100_000), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_read_may_see_old_or_new_and_unknown_cas_may_apply() {
        let h = History {
            ops: vec![
                op(
                    0,
                    0,
                    10,
                    RegCall::Write(b"1".to_vec()),
                    RegRet::Written { version: 1 },
                ),
                op(1, 2, 4, RegCall::Read, read(b"0", 0)),
                Op {
                    process: 2,
                    invoke_ns: 11,
                    complete_ns: None,
                    call: RegCall::Cas {
                        expected_version: 1,
                        value: b"2".to_vec(),
                    },
                    outcome: Outcome::Unknown,
                },
                op(1, 20, 21, RegCall::Read, read(b"1", 1)),
                op(1, 22, 23, RegCall::Read, read(b"2", 2)),
            ],
        };
        assert_eq!(check(init(), &h, 100_000), Verdict::Linearizable);
    }

    #[derive(Clone, Debug)]
    struct Calls(Vec<(u8, RegCall, bool)>);

    impl Arbitrary for Calls {
        fn arbitrary(g: &mut Gen) -> Calls {
            let len = usize::arbitrary(g) % 40;
            Calls(
                (0..len)
                    .map(|_| {
                        let v = vec![u8::arbitrary(g) % 4];
                        let call = match u8::arbitrary(g) % 3 {
                            0 => RegCall::Read,
                            1 => RegCall::Write(v),
                            _ => RegCall::Cas {
                                expected_version: i32::from(u8::arbitrary(g) % 6),
                                value: v,
                            },
                        };
                        (u8::arbitrary(g) % 4, call, u8::arbitrary(g) % 8 == 0)
                    })
                    .collect(),
            )
        }
    }

    /// Any history produced by running the model one op at a time is linearizable, including
    /// when some ops' replies are lost (the op was applied, the client saw Unknown).
    #[test]
    fn sequential_runs_of_the_model_are_linearizable() {
        fn prop(calls: Calls) -> bool {
            let mut state = init();
            let mut h = History::new();
            for (i, (process, call, lost)) in calls.0.into_iter().enumerate() {
                let t = 10 * i as u64;
                let ret = match &call {
                    RegCall::Read => read_ret(&state),
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
                    .expect("the model accepts its own reply");
                let (complete_ns, outcome) = if lost {
                    (None, Outcome::Unknown)
                } else {
                    (Some(t + 5), Outcome::Ok(ret))
                };
                h.push(Op {
                    process: u64::from(process),
                    invoke_ns: t,
                    complete_ns,
                    call,
                    outcome,
                });
            }
            check(init(), &h, 1_000_000) == Verdict::Linearizable
        }
        quickcheck::QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Calls) -> bool);
    }

    fn read_ret(s: &Register) -> RegRet {
        RegRet::Read {
            value: s.value.clone(),
            version: s.version,
        }
    }
}
