//! The data tree under random create / delete / setData / multi sequences, driven through
//! `ZooKeeperServer`, against a model: a `BTreeMap` of path -> (data, version, children, child
//! creates). The model restates ZooKeeper's rules (PrepRequestProcessor's checks in its order,
//! sequential names from the parent's count of child creates, multis all-or-nothing with OK
//! before the failing op and RUNTIMEINCONSISTENCY after it); replies and the whole tree are
//! compared after every request.

use crate::generators::{pick, small};
use crate::harness::Harness;
use bytes::Bytes;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use std::collections::{BTreeMap, BTreeSet};
use zabd::config::Config;
use zabd::jute::data::Acl;
use zabd::jute::proto::{
    create_mode, op, CheckVersionRequest, Code, CreateRequest, DeleteRequest, MultiResult, Request,
    Response, SetDataRequest,
};

#[derive(Clone, Debug)]
pub enum Op {
    Create {
        path: String,
        data: Option<Vec<u8>>,
        sequential: bool,
    },
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    /// Only inside a multi (a lone check is a read).
    Check {
        path: String,
        version: i32,
    },
    Multi(Vec<Op>),
}

fn path(g: &mut Gen) -> String {
    let depth = small(g, 2) + 1;
    (0..depth)
        .map(|_| format!("/{}", pick(g, &["a", "b", "c"])))
        .collect()
}

fn data(g: &mut Gen) -> Option<Vec<u8>> {
    if u8::arbitrary(g) % 5 == 0 {
        None
    } else {
        Some(Vec::<u8>::arbitrary(g).into_iter().take(8).collect())
    }
}

fn version(g: &mut Gen) -> i32 {
    if bool::arbitrary(g) {
        -1
    } else {
        i32::from(u8::arbitrary(g) % 3)
    }
}

fn simple(g: &mut Gen, in_multi: bool) -> Op {
    match u8::arbitrary(g) % if in_multi { 4 } else { 3 } {
        0 => Op::Create {
            path: path(g),
            data: data(g),
            sequential: u8::arbitrary(g) % 4 == 0,
        },
        1 => Op::Delete {
            path: path(g),
            version: version(g),
        },
        2 => Op::SetData {
            path: path(g),
            data: data(g),
            version: version(g),
        },
        _ => Op::Check {
            path: path(g),
            version: version(g),
        },
    }
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        if u8::arbitrary(g) % 5 == 0 {
            let n = small(g, 4);
            Op::Multi((0..n).map(|_| simple(g, true)).collect())
        } else {
            simple(g, false)
        }
    }
}

impl Op {
    pub fn request(&self) -> Request {
        let bytes = |d: &Option<Vec<u8>>| d.as_ref().map(|d| Bytes::from(d.clone()));
        match self {
            Op::Create {
                path,
                data,
                sequential,
            } => Request::Create(
                op::CREATE,
                CreateRequest {
                    path: path.clone(),
                    data: bytes(data),
                    acl: Acl::open_unsafe(),
                    flags: if *sequential {
                        create_mode::PERSISTENT_SEQUENTIAL
                    } else {
                        create_mode::PERSISTENT
                    },
                },
            ),
            Op::Delete { path, version } => Request::Delete(DeleteRequest {
                path: path.clone(),
                version: *version,
            }),
            Op::SetData {
                path,
                data,
                version,
            } => Request::SetData(SetDataRequest {
                path: path.clone(),
                data: bytes(data),
                version: *version,
            }),
            Op::Check { path, version } => Request::Check(CheckVersionRequest {
                path: path.clone(),
                version: *version,
            }),
            Op::Multi(ops) => Request::Multi(ops.iter().map(Op::request).collect()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MNode {
    pub data: Option<Vec<u8>>,
    pub version: i32,
    pub children: BTreeSet<String>,
    /// Children ever created (the stored cversion; sequential names count with it).
    pub creates: i32,
}

/// What one op did, in the terms the replies use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created(String),
    Deleted,
    Set { version: i32 },
    Checked,
    Multi(Vec<Outcome>),
    Failed(Code),
}

#[derive(Clone, Debug)]
pub struct Model {
    pub nodes: BTreeMap<String, MNode>,
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn name(path: &str) -> &str {
    &path[path.rfind('/').unwrap() + 1..]
}

fn next_version(v: i32) -> Result<i32, Code> {
    let n = v.wrapping_add(1);
    Ok(if n == -1 { 0 } else { n })
}

fn check_version(current: i32, expected: i32) -> Result<i32, Code> {
    if expected != -1 && expected != current {
        return Err(Code::BadVersion);
    }
    next_version(current)
}

impl Model {
    /// A fresh ZooKeeper tree: "/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config".
    pub fn new() -> Model {
        let node = |children: &[&str]| MNode {
            data: Some(Vec::new()),
            version: 0,
            children: children.iter().map(|c| c.to_string()).collect(),
            creates: 0,
        };
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_owned(), node(&["zookeeper"]));
        nodes.insert("/zookeeper".to_owned(), node(&["config", "quota"]));
        nodes.insert("/zookeeper/quota".to_owned(), node(&[]));
        nodes.insert("/zookeeper/config".to_owned(), node(&[]));
        Model { nodes }
    }

    fn apply_one(&mut self, o: &Op) -> Result<Outcome, Code> {
        match o {
            Op::Create {
                path,
                data,
                sequential,
            } => {
                let parent_path = parent(path).to_owned();
                let p = self.nodes.get(&parent_path).ok_or(Code::NoNode)?;
                let path = if *sequential {
                    format!("{path}{:010}", p.creates)
                } else {
                    path.clone()
                };
                if self.nodes.contains_key(&path) {
                    return Err(Code::NodeExists);
                }
                let p = self.nodes.get_mut(&parent_path).unwrap();
                p.creates += 1;
                p.children.insert(name(&path).to_owned());
                self.nodes.insert(
                    path.clone(),
                    MNode {
                        data: data.clone(),
                        version: 0,
                        children: BTreeSet::new(),
                        creates: 0,
                    },
                );
                Ok(Outcome::Created(path))
            }
            Op::Delete { path, version } => {
                self.nodes.get(parent(path)).ok_or(Code::NoNode)?;
                let n = self.nodes.get(path).ok_or(Code::NoNode)?;
                check_version(n.version, *version)?;
                if !n.children.is_empty() {
                    return Err(Code::NotEmpty);
                }
                self.nodes.remove(path);
                self.nodes
                    .get_mut(parent(path))
                    .unwrap()
                    .children
                    .remove(name(path));
                Ok(Outcome::Deleted)
            }
            Op::SetData {
                path,
                data,
                version,
            } => {
                let n = self.nodes.get_mut(path).ok_or(Code::NoNode)?;
                let v = check_version(n.version, *version)?;
                n.version = v;
                n.data = data.clone();
                Ok(Outcome::Set { version: v })
            }
            Op::Check { path, version } => {
                let n = self.nodes.get(path).ok_or(Code::NoNode)?;
                check_version(n.version, *version)?;
                Ok(Outcome::Checked)
            }
            Op::Multi(_) => unreachable!("no multi inside a multi"),
        }
    }

    pub fn apply(&mut self, o: &Op) -> Outcome {
        let Op::Multi(ops) = o else {
            return self.apply_one(o).unwrap_or_else(Outcome::Failed);
        };
        let mut scratch = self.clone();
        let mut results = Vec::new();
        for (i, sub) in ops.iter().enumerate() {
            match scratch.apply_one(sub) {
                Ok(r) => results.push(r),
                Err(code) => {
                    let mut failed = vec![Outcome::Failed(Code::Ok); i];
                    failed.push(Outcome::Failed(code));
                    failed.resize(ops.len(), Outcome::Failed(Code::RuntimeInconsistency));
                    return Outcome::Multi(failed);
                }
            }
        }
        *self = scratch;
        Outcome::Multi(results)
    }
}

/// The reply, in the model's terms.
fn outcome_of(o: &Op, err: i32, body: &Response) -> Outcome {
    if err != 0 {
        return Outcome::Failed(code(err));
    }
    match (o, body) {
        (Op::Create { .. }, Response::Create(p)) => Outcome::Created(p.clone()),
        (Op::Delete { .. }, Response::Empty) => Outcome::Deleted,
        (Op::SetData { .. }, Response::Stat(s)) => Outcome::Set { version: s.version },
        (Op::Multi(_), Response::Multi(results)) => Outcome::Multi(
            results
                .iter()
                .map(|r| match r {
                    MultiResult::Create(p) => Outcome::Created(p.clone()),
                    MultiResult::Delete => Outcome::Deleted,
                    MultiResult::SetData(s) => Outcome::Set { version: s.version },
                    MultiResult::Check => Outcome::Checked,
                    MultiResult::Error(c) => Outcome::Failed(*c),
                    other => panic!("unexpected multi result {other:?}"),
                })
                .collect(),
        ),
        (o, body) => panic!("unexpected reply {body:?} to {o:?}"),
    }
}

fn code(err: i32) -> Code {
    crate::generators::ALL_CODES
        .iter()
        .copied()
        .find(|c| c.as_i32() == err)
        .unwrap_or_else(|| panic!("unknown error code {err}"))
}

/// The tree, in the model's terms.
fn tree_as_model(h: &Harness) -> BTreeMap<String, MNode> {
    let mut nodes = BTreeMap::new();
    let tree = h.server.tree();
    tree.for_each_depth_first(|p, n| {
        let path = if p.is_empty() { "/" } else { p };
        nodes.insert(
            path.to_owned(),
            MNode {
                data: n.data.as_ref().map(|d| d.to_vec()),
                version: n.stat.version,
                children: n.children.iter().map(|c| c.to_string()).collect(),
                creates: n.stat.cversion,
            },
        );
        let stat = tree.stat(path).unwrap();
        assert_eq!(
            stat.num_children as usize,
            n.children.len(),
            "{path} numChildren"
        );
        assert_eq!(stat.data_length as usize, n.data_len(), "{path} dataLength");
    });
    nodes
}

/// Runs `ops` through the core and the model, comparing after each.
pub fn agrees(ops: &[Op]) -> Result<(), String> {
    let mut h = Harness::new(&Config::default());
    h.connect(1);
    let mut model = Model::new();
    for (i, o) in ops.iter().enumerate() {
        let (header, body) = h.call(1, o.request());
        let got = outcome_of(o, header.err, &body);
        let want = model.apply(o);
        if got != want {
            return Err(format!(
                "op {i} {o:?}: the server answered {got:?}, the model {want:?}"
            ));
        }
        let tree = tree_as_model(&h);
        if tree != model.nodes {
            let diff: Vec<_> = tree
                .iter()
                .filter(|(p, n)| model.nodes.get(*p) != Some(n))
                .map(|(p, n)| format!("{p}: tree {n:?} model {:?}", model.nodes.get(p)))
                .chain(
                    model
                        .nodes
                        .keys()
                        .filter(|p| !tree.contains_key(*p))
                        .map(|p| format!("{p}: only in the model")),
                )
                .collect();
            return Err(format!(
                "after op {i} {o:?} the trees differ:\n{}",
                diff.join("\n")
            ));
        }
    }
    Ok(())
}

#[test]
fn the_tree_agrees_with_a_map_model() {
    fn prop(ops: Vec<Op>) -> TestResult {
        match agrees(&ops) {
            Ok(()) => TestResult::passed(),
            Err(e) => TestResult::error(e),
        }
    }
    QuickCheck::new()
        .tests(400)
        .rng(Gen::new(60))
        .quickcheck(prop as fn(Vec<Op>) -> TestResult);
}
