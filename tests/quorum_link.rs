//! The quorum link thread (`zabd::threads::quorum_link`) over loopback sockets, through its
//! public API only: packets cross between two threads unchanged and in order (null, empty
//! and large data, authinfo), hostile byte streams close only their link and allocate
//! nothing from an announced length, and every link the core knows ends with exactly one
//! `Closed`. Every wait is bounded; every thread a test starts is stopped by it.
//!
//! This is its own test binary because it installs a global allocator that records the
//! largest single allocation, to check that a 2 GiB length is refused without being
//! allocated.

use crossbeam_channel::{bounded, Receiver};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use zabd::jute::data::Id;
use zabd::jute::encode_to_vec;
use zabd::jute::quorum::QuorumPacket;
use zabd::threads::quorum_link::{
    LinkCommand, LinkEvent, LinkHandle, LinkId, LinkLimits, OUTBOUND_LINK_BIT,
};

struct LargestAllocation;

static LARGEST_ALLOCATION_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION_BYTES.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

const WAIT: Duration = Duration::from_secs(10);

fn limits() -> LinkLimits {
    LinkLimits {
        max_packet_bytes: 64 << 20,
        max_unsent_bytes_per_link: 128 << 20,
        max_links: 8,
    }
}

/// One side: a link thread and the core's end of its event channel.
struct Node {
    handle: LinkHandle,
    events: Receiver<LinkEvent>,
}

impl Node {
    fn new(listen: bool, limits: LinkLimits, event_capacity: usize) -> Node {
        let listener = listen.then(|| TcpListener::bind("127.0.0.1:0").unwrap());
        let (tx, events) = bounded(event_capacity);
        let handle = LinkHandle::spawn(listener, tx, limits).unwrap();
        Node { handle, events }
    }

    fn leader() -> Node {
        Node::new(true, limits(), 1024)
    }

    fn learner() -> Node {
        Node::new(false, limits(), 1024)
    }

    fn addr(&self) -> SocketAddr {
        self.handle.local_addr().expect("listening")
    }

    fn next(&self) -> LinkEvent {
        self.events
            .recv_timeout(WAIT)
            .expect("an event within the wait")
    }

    fn expect_up(&self) -> LinkId {
        match self.next() {
            LinkEvent::Up { link, peer } => {
                assert!(peer.ip().is_loopback());
                link
            }
            other => panic!("expected Up, got {other:?}"),
        }
    }

    fn expect_packet(&self, link: LinkId) -> QuorumPacket {
        match self.next() {
            LinkEvent::Packet { link: l, packet } if l == link => packet,
            other => panic!("expected a packet on {link:#x}, got {other:?}"),
        }
    }

    fn expect_closed(&self, link: LinkId) {
        match self.next() {
            LinkEvent::Closed { link: l } if l == link => {}
            other => panic!("expected Closed for {link:#x}, got {other:?}"),
        }
    }

    fn expect_quiet(&self, for_ms: u64) {
        if let Ok(event) = self.events.recv_timeout(Duration::from_millis(for_ms)) {
            panic!("unexpected event {event:?}");
        }
    }

    fn send(&self, link: LinkId, packets: Vec<QuorumPacket>) {
        self.handle.send(LinkCommand::Send { link, packets });
    }
}

/// A learner connected to a leader: (leader's id for the link, learner's id for it).
fn connect(leader: &Node, learner: &Node, outbound: LinkId) -> (LinkId, LinkId) {
    let id = OUTBOUND_LINK_BIT | outbound;
    learner.handle.send(LinkCommand::Connect {
        link: id,
        addr: leader.addr(),
    });
    assert_eq!(learner.expect_up(), id);
    let at_leader = leader.expect_up();
    assert_eq!(
        at_leader & OUTBOUND_LINK_BIT,
        0,
        "inbound ids never carry the bit"
    );
    (at_leader, id)
}

fn raw(leader: &Node) -> (TcpStream, LinkId) {
    let stream = TcpStream::connect(leader.addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let link = leader.expect_up();
    (stream, link)
}

/// True when the other end closed (EOF or reset) within the read timeout.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn packet(type_: i32, zxid: i64, data: Option<Vec<u8>>, authinfo: Vec<Id>) -> QuorumPacket {
    QuorumPacket {
        type_,
        zxid,
        data: data.map(Into::into),
        authinfo,
    }
}

fn assorted() -> Vec<QuorumPacket> {
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    vec![
        packet(5, 1, None, Vec::new()),
        packet(5, 2, Some(Vec::new()), Vec::new()),
        packet(
            1,
            3,
            Some(b"request".to_vec()),
            vec![Id::new("digest", "alice:x"), Id::new("ip", "127.0.0.1")],
        ),
        packet(15, 0x1_0000_0004, Some(big), Vec::new()),
        packet(12, 5, None, vec![Id::new("", "")]),
    ]
}

#[test]
fn packets_cross_both_ways_unchanged_and_in_order() {
    let leader = Node::leader();
    let learner = Node::learner();
    let (at_leader, at_learner) = connect(&leader, &learner, 1);
    learner.send(at_learner, assorted());
    for expected in assorted() {
        assert_eq!(leader.expect_packet(at_leader), expected);
    }
    leader.send(at_leader, assorted());
    for expected in assorted() {
        assert_eq!(learner.expect_packet(at_learner), expected);
    }
    // Many small sends interleave with nothing and keep their order.
    for zxid in 0..200 {
        leader.send(
            at_leader,
            vec![packet(2, zxid, Some(vec![1; 100]), Vec::new())],
        );
    }
    for zxid in 0..200 {
        assert_eq!(learner.expect_packet(at_learner).zxid, zxid);
    }
    leader.expect_quiet(50);
}

#[test]
fn a_packet_arriving_one_byte_at_a_time_decodes() {
    let leader = Node::leader();
    let (mut stream, link) = raw(&leader);
    let p = packet(
        11,
        42,
        Some(b"learner info".to_vec()),
        vec![Id::new("ip", "127.0.0.1")],
    );
    for byte in encode_to_vec(&p) {
        stream.write_all(&[byte]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(leader.expect_packet(link), p);
    // Two packets in one write come out as two.
    let mut two = encode_to_vec(&p);
    two.extend_from_slice(&encode_to_vec(&packet(5, 43, None, Vec::new())));
    stream.write_all(&two).unwrap();
    assert_eq!(leader.expect_packet(link), p);
    assert_eq!(leader.expect_packet(link).zxid, 43);
}

/// Type, zxid and a data length, with nothing after.
fn header_with_data_length(length: i32) -> Vec<u8> {
    let mut bytes = 15i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&7i64.to_be_bytes());
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes
}

#[test]
fn an_oversized_data_length_closes_the_link_without_allocating_it() {
    let leader = Node::new(
        true,
        LinkLimits {
            max_packet_bytes: 1 << 30,
            ..limits()
        },
        16,
    );
    let (mut stream, link) = raw(&leader);
    let started = Instant::now();
    stream
        .write_all(&header_with_data_length(i32::MAX))
        .unwrap();
    // Give a wrong implementation time to reserve the announced 2 GiB before looking.
    // Other tests in this binary move 20 MiB packets; nothing else comes near 2 GiB.
    std::thread::sleep(Duration::from_millis(200));
    let largest = LARGEST_ALLOCATION_BYTES.load(Ordering::Relaxed);
    assert!(largest < 256 << 20, "an allocation of {largest} bytes");
    leader.expect_closed(link);
    assert!(closed_by_peer(&mut stream));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // One byte over a small limit is refused the same way; exactly at it is fine.
    let small = Node::new(
        true,
        LinkLimits {
            max_packet_bytes: 1000,
            ..limits()
        },
        16,
    );
    let (mut stream, link) = raw(&small);
    stream
        .write_all(&encode_to_vec(&packet(
            2,
            1,
            Some(vec![9; 1000]),
            Vec::new(),
        )))
        .unwrap();
    assert_eq!(small.expect_packet(link).data.unwrap().len(), 1000);
    stream.write_all(&header_with_data_length(1001)).unwrap();
    small.expect_closed(link);
    assert!(closed_by_peer(&mut stream));
}

#[test]
fn negative_lengths_close_only_their_link() {
    let leader = Node::leader();
    let learner = Node::learner();
    let (good_at_leader, good_at_learner) = connect(&leader, &learner, 7);
    let mut bad_count = encode_to_vec(&packet(1, 1, Some(b"x".to_vec()), Vec::new()));
    let n = bad_count.len();
    bad_count[n - 4..].copy_from_slice(&(-2i32).to_be_bytes());
    let mut bad_string = bad_count[..n - 4].to_vec();
    bad_string.extend_from_slice(&1i32.to_be_bytes());
    bad_string.extend_from_slice(&(-3i32).to_be_bytes());
    for bytes in [header_with_data_length(-2), bad_count, bad_string] {
        let (mut stream, link) = raw(&leader);
        stream.write_all(&bytes).unwrap();
        leader.expect_closed(link);
        assert!(closed_by_peer(&mut stream));
    }
    learner.send(good_at_learner, vec![packet(5, 9, None, Vec::new())]);
    assert_eq!(leader.expect_packet(good_at_leader).zxid, 9);
}

#[test]
fn close_all_drops_every_link_and_reports_each_once() {
    let leader = Node::leader();
    let a = Node::learner();
    let b = Node::learner();
    let (a_at_leader, a_id) = connect(&leader, &a, 1);
    let (b_at_leader, b_id) = connect(&leader, &b, 1);
    let (mut stream, raw_at_leader) = raw(&leader);
    leader.handle.send(LinkCommand::CloseAll);
    let mut closed = BTreeSet::new();
    for _ in 0..3 {
        match leader.next() {
            LinkEvent::Closed { link } => assert!(closed.insert(link), "{link:#x} twice"),
            other => panic!("expected Closed, got {other:?}"),
        }
    }
    assert_eq!(
        closed,
        BTreeSet::from([a_at_leader, b_at_leader, raw_at_leader])
    );
    a.expect_closed(a_id);
    b.expect_closed(b_id);
    assert!(closed_by_peer(&mut stream));
    leader.expect_quiet(100);
    // The learner side can drop its outbound links the same way, and reconnect after.
    let (_, a_id2) = connect(&leader, &a, 2);
    a.handle.send(LinkCommand::CloseAll);
    a.expect_closed(a_id2);
    a.expect_quiet(50);
}

#[test]
fn close_flushes_queued_packets_first() {
    const PACKETS: i64 = 100;
    let leader = Node::leader();
    let learner = Node::learner();
    let (at_leader, at_learner) = connect(&leader, &learner, 3);
    let packets = (0..PACKETS)
        .map(|zxid| packet(2, zxid, Some(vec![zxid as u8; 256 << 10]), Vec::new()))
        .collect();
    leader.send(at_leader, packets);
    leader.handle.send(LinkCommand::Close { link: at_leader });
    // Sends after Close are ignored, not queued.
    leader.send(at_leader, vec![packet(2, -1, None, Vec::new())]);
    leader.expect_closed(at_leader);
    for zxid in 0..PACKETS {
        let p = learner.expect_packet(at_learner);
        assert_eq!(p.zxid, zxid);
        assert_eq!(p.data.unwrap(), vec![zxid as u8; 256 << 10]);
    }
    learner.expect_closed(at_learner);
    leader.expect_quiet(50);
    learner.expect_quiet(50);
}

#[test]
fn a_failed_connect_is_closed_exactly_once() {
    let unused = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);
    let learner = Node::learner();
    let id = OUTBOUND_LINK_BIT | 5;
    learner.handle.send(LinkCommand::Connect { link: id, addr });
    learner.expect_closed(id);
    // The id is gone: commands for it do nothing.
    learner.send(id, vec![packet(5, 1, None, Vec::new())]);
    learner.handle.send(LinkCommand::Close { link: id });
    learner.expect_quiet(300);
    // Closing a connect in progress reports it once too.
    let leader = Node::leader();
    learner.handle.send(LinkCommand::Connect {
        link: id,
        addr: leader.addr(),
    });
    learner.handle.send(LinkCommand::Close { link: id });
    // The connect may have finished before the Close was taken.
    match learner.next() {
        LinkEvent::Up { link, .. } if link == id => learner.expect_closed(id),
        LinkEvent::Closed { link } if link == id => {}
        other => panic!("unexpected {other:?}"),
    }
    learner.expect_quiet(100);
}

#[test]
fn commands_for_unknown_links_are_ignored() {
    let leader = Node::leader();
    let learner = Node::learner();
    leader.send(12345, vec![packet(5, 1, None, Vec::new())]);
    leader.handle.send(LinkCommand::Close { link: 12345 });
    leader.handle.send(LinkCommand::CloseAll);
    leader.expect_quiet(100);
    let (at_leader, at_learner) = connect(&leader, &learner, 1);
    leader.send(at_leader, vec![packet(5, 2, None, Vec::new())]);
    assert_eq!(learner.expect_packet(at_learner).zxid, 2);
}

#[test]
fn a_peer_that_does_not_read_is_closed() {
    let leader = Node::new(
        true,
        LinkLimits {
            max_unsent_bytes_per_link: 1 << 20,
            ..limits()
        },
        16,
    );
    let (mut stream, link) = raw(&leader);
    // Loopback socket buffers take a few MiB; 200 MiB is far beyond them.
    for sent in 0..400 {
        leader.send(
            link,
            vec![packet(2, sent, Some(vec![0; 512 << 10]), Vec::new())],
        );
        if let Ok(event) = leader.events.recv_timeout(Duration::from_millis(5)) {
            assert!(
                matches!(event, LinkEvent::Closed { link: l } if l == link),
                "{event:?}"
            );
            assert!(closed_by_peer(&mut stream));
            return;
        }
    }
    panic!("a peer that never reads was not closed");
}

#[test]
fn a_slow_core_delays_events_but_loses_none() {
    const PACKETS: i64 = 500;
    // Room for one event: almost every event waits for the core.
    let leader = Node::new(true, limits(), 1);
    let learner = Node::learner();
    let id = OUTBOUND_LINK_BIT | 1;
    learner.handle.send(LinkCommand::Connect {
        link: id,
        addr: leader.addr(),
    });
    assert_eq!(learner.expect_up(), id);
    for chunk in 0..5 {
        let packets = (0..PACKETS / 5)
            .map(|i| {
                packet(
                    2,
                    chunk * (PACKETS / 5) + i,
                    Some(vec![7; 1000]),
                    Vec::new(),
                )
            })
            .collect();
        learner.send(id, packets);
    }
    // A second connection arrives while the channel is full; its Up waits its turn.
    let mut second = TcpStream::connect(leader.addr()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let first = leader.expect_up();
    let mut second_link = None;
    let mut next_zxid = 0;
    while next_zxid < PACKETS || second_link.is_none() {
        match leader.next() {
            LinkEvent::Packet { link, packet } if link == first => {
                assert_eq!(packet.zxid, next_zxid);
                next_zxid += 1;
            }
            LinkEvent::Up { link, .. } if second_link.is_none() && link != first => {
                second_link = Some(link);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let second_link = second_link.unwrap();
    second
        .write_all(&encode_to_vec(&packet(5, 1, None, Vec::new())))
        .unwrap();
    assert_eq!(leader.expect_packet(second_link).zxid, 1);
}

#[test]
fn inbound_links_beyond_max_links_are_refused() {
    let leader = Node::new(
        true,
        LinkLimits {
            max_links: 1,
            ..limits()
        },
        16,
    );
    let (first, first_link) = raw(&leader);
    let mut refused = TcpStream::connect(leader.addr()).unwrap();
    refused.set_read_timeout(Some(WAIT)).unwrap();
    assert!(closed_by_peer(&mut refused));
    leader.expect_quiet(100);
    drop(first);
    leader.expect_closed(first_link);
    let (_third, third_link) = raw(&leader);
    assert_ne!(third_link, first_link);
}

#[test]
fn shutdown_joins_and_closes_every_socket() {
    let leader = Node::leader();
    let learner = Node::learner();
    let (at_leader, _) = connect(&leader, &learner, 1);
    let (mut stream, raw_link) = raw(&leader);
    let started = Instant::now();
    learner.handle.shutdown();
    leader.expect_closed(at_leader);
    let addr = leader.addr();
    leader.handle.shutdown();
    assert!(closed_by_peer(&mut stream));
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // No Closed for links dropped by shutdown: the core is going away too.
    let _ = raw_link;
}
