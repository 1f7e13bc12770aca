//! Heap allocations per request through the core (request in, reply and log entries out),
//! counted by a global allocator: a performance guard that does not depend on machine noise,
//! unlike a timed test. A change that makes the hot path allocate more fails here; raise a
//! bound only with a reason in the commit.
//!
//! Writes are measured as the sync thread batches them: a window of requests, then one
//! `Persisted` for the batch (group commit).

use bytes::Bytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use zabd::config::Config;
use zabd::jute::data::Acl;
use zabd::jute::proto::{ConnectRequest, CreateRequest, PathWatchRequest, Request, SetDataRequest};
use zabd::server::{Input, Output, ZooKeeperServer};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const T0: i64 = 1_700_000_000_000;
const CNXN: u64 = 1;
const BATCH: usize = 100;
const BATCHES: usize = 20;
const KEYS: usize = 100;

struct Core {
    server: ZooKeeperServer,
    out: Vec<Output>,
    last_zxid: i64,
    xid: i32,
}

impl Core {
    fn new() -> Core {
        let config = Config::default();
        let mut core = Core {
            server: ZooKeeperServer::new(&config, T0),
            out: Vec::with_capacity(4 * BATCH),
            last_zxid: 0,
            xid: 0,
        };
        core.step(Input::Accepted {
            cnxn: CNXN,
            peer: "127.0.0.1:5000".parse().unwrap(),
        });
        let req = ConnectRequest {
            time_out: 30_000,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
            ..ConnectRequest::default()
        };
        core.step(Input::Connect { cnxn: CNXN, req });
        core.persist();
        for k in 0..KEYS {
            core.request(create(&format!("/k{k}")));
        }
        core.persist();
        core
    }

    fn step(&mut self, input: Input) {
        self.server.step(T0, input, &mut self.out);
        for o in self.out.drain(..) {
            match o {
                Output::Append { entries } => {
                    self.last_zxid = entries.last().map_or(self.last_zxid, |e| e.header.zxid)
                }
                Output::Reply { header, .. } => assert_eq!(header.err, 0, "request failed"),
                _ => {}
            }
        }
    }

    fn request(&mut self, req: Request) {
        self.xid += 1;
        let xid = self.xid;
        self.step(Input::Request {
            cnxn: CNXN,
            xid,
            req,
        });
    }

    fn persist(&mut self) {
        let zxid = self.last_zxid;
        self.step(Input::Persisted {
            zxid,
            sync: Default::default(),
        });
    }
}

fn create(path: &str) -> Request {
    Request::Create(
        1,
        CreateRequest {
            path: path.to_owned(),
            data: Some(Bytes::from(vec![b'v'; 100])),
            acl: Acl::open_unsafe(),
            flags: 0,
        },
    )
}

/// Allocations per request by the core for `make(i)` requests, in batches of BATCH followed
/// by one `Persisted`. Building the request (the decoder's work) is not counted.
fn per_request(core: &mut Core, make: impl Fn(usize) -> Request) -> f64 {
    let mut counted = 0u64;
    for b in 0..BATCHES {
        let reqs: Vec<Request> = (0..BATCH).map(|i| make(b * BATCH + i)).collect();
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for req in reqs {
            core.request(req);
        }
        core.persist();
        counted += ALLOCATIONS.load(Ordering::Relaxed) - before;
    }
    counted as f64 / (BATCH * BATCHES) as f64
}

/// Bounds: the measured figure (noted beside each) plus headroom for allocator-neutral
/// changes. The test prints what it measured.
#[test]
fn allocations_per_request_stay_within_budget() {
    let mut core = Core::new();
    let value = Bytes::from(vec![b'w'; 100]);
    let get = per_request(&mut core, |i| {
        Request::GetData(PathWatchRequest {
            path: format!("/k{}", i % KEYS),
            watch: false,
        })
    });
    let set = per_request(&mut core, |i| {
        Request::SetData(SetDataRequest {
            path: format!("/k{}", i % KEYS),
            data: Some(value.clone()),
            version: -1,
        })
    });
    let create_new = per_request(&mut core, |i| create(&format!("/n{i}")));
    println!("allocations per request: getData {get:.2}, setData {set:.2}, create {create_new:.2}");
    let budget = [
        ("getData", get, GET_MAX),
        ("setData", set, SET_MAX),
        ("create", create_new, CREATE_MAX),
    ];
    for (name, measured, max) in budget {
        assert!(
            measured <= max,
            "{name}: {measured:.2} allocations per request, budget {max}"
        );
    }
    assert!(
        create_new >= 1.0,
        "nothing counted: the counting allocator is not in use"
    );
}

/// Measured 0.00: the reply shares the node's data and copies the stat.
const GET_MAX: f64 = 0.5;
/// Measured 12.0 (log entry, txn body, reply, change record, batch bookkeeping).
const SET_MAX: f64 = 15.0;
/// Measured 32.2 (also the node, its path, the parent's child name and the tree's map growth).
const CREATE_MAX: f64 = 40.0;
