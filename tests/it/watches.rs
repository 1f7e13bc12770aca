//! Watch delivery rules, read at the frame level with zabd's own client: one-shot data, child
//! and exist watches fire exactly once with the right type and path; a delete fires one
//! NodeDeleted per watcher whatever mix of watches it holds; a notification arrives before the
//! reply to any later request of the same session that shows the change; and (ZooKeeper 3.9)
//! the notification header carries the zxid of the transaction that fired it.

use std::time::Duration;

use zabd::client::Frame;
use zabd::jute::proto::{event_type as ev, op, xid, PathWatchRequest, Request};

use crate::support::{drain_events, kinds, mk, next_event, TestServer};

#[test]
fn one_shot_data_watch_fires_once() {
    let server = TestServer::start();
    let mut watcher = server.client();
    let mut writer = server.client();
    mk(&mut writer, "/x", b"0");
    watcher.get_data("/x", true).unwrap().unwrap();
    let first = writer.set_data("/x", b"1", -1).unwrap().unwrap();
    let second = writer.set_data("/x", b"2", -1).unwrap().unwrap();
    assert_eq!(second.version, 2);
    // A read that shows the second change: every event either change fired is in by now.
    let (data, stat) = watcher.get_data("/x", false).unwrap().unwrap();
    assert_eq!((data.as_deref(), stat.version), (Some(&b"2"[..]), 2));
    let events = drain_events(&mut watcher);
    assert_eq!(
        kinds(&events),
        vec![(ev::NODE_DATA_CHANGED, "/x".to_owned())]
    );
    let (header, event) = &events[0];
    assert_eq!(header.xid, xid::NOTIFICATION);
    assert_eq!(header.err, 0);
    assert_eq!(event.state, 3, "SyncConnected");
    assert_eq!(
        header.zxid, first.mzxid,
        "the zxid of the setData that fired it"
    );
}

#[test]
fn one_shot_exist_watch_fires_once() {
    let server = TestServer::start();
    let mut watcher = server.client();
    let mut writer = server.client();
    assert!(watcher.exists("/later", true).unwrap().is_err());
    let (_, created) = writer
        .create2("/later", b"", &crate::support::open(), 0)
        .unwrap()
        .unwrap();
    writer.set_data("/later", b"x", -1).unwrap().unwrap();
    writer.delete("/later", -1).unwrap().unwrap();
    assert!(watcher.exists("/later", false).unwrap().is_err());
    let events = drain_events(&mut watcher);
    assert_eq!(
        kinds(&events),
        vec![(ev::NODE_CREATED, "/later".to_owned())]
    );
    assert_eq!(events[0].0.zxid, created.czxid);

    // An exists watch on an existing node is a data watch: setData fires it.
    mk(&mut writer, "/here", b"");
    watcher.exists("/here", true).unwrap().unwrap();
    let set = writer.set_data("/here", b"y", -1).unwrap().unwrap();
    let (header, event) = next_event(&mut watcher, Duration::from_secs(5)).expect("event");
    assert_eq!(
        (event.type_, event.path.as_str()),
        (ev::NODE_DATA_CHANGED, "/here")
    );
    assert_eq!(header.zxid, set.mzxid);
}

#[test]
fn one_shot_child_watch_fires_on_child_create_and_delete() {
    let server = TestServer::start();
    let mut watcher = server.client();
    let mut writer = server.client();
    mk(&mut writer, "/p", b"");
    assert!(watcher
        .get_children("/p", true)
        .unwrap()
        .unwrap()
        .is_empty());
    let (_, child) = writer
        .create2("/p/a", b"", &crate::support::open(), 0)
        .unwrap()
        .unwrap();
    mk(&mut writer, "/p/b", b"");
    // Data changes of the parent or a child never fire a child watch.
    writer.set_data("/p", b"d", -1).unwrap().unwrap();
    let children = watcher.get_children2("/p", true).unwrap().unwrap();
    assert_eq!(children.1.num_children, 2);
    let events = drain_events(&mut watcher);
    assert_eq!(
        kinds(&events),
        vec![(ev::NODE_CHILDREN_CHANGED, "/p".to_owned())]
    );
    assert_eq!(events[0].0.zxid, child.czxid);

    // Re-armed by getChildren2 above: a child delete fires it.
    writer.set_data("/p/a", b"x", -1).unwrap().unwrap();
    writer.delete("/p/a", -1).unwrap().unwrap();
    let delete_zxid = writer.last_zxid();
    let (header, event) = next_event(&mut watcher, Duration::from_secs(5)).expect("event");
    assert_eq!(
        (event.type_, event.path.as_str()),
        (ev::NODE_CHILDREN_CHANGED, "/p")
    );
    assert_eq!(header.zxid, delete_zxid);
    assert!(watcher.get_children("/p", false).unwrap().is_ok());
    assert!(drain_events(&mut watcher).is_empty(), "fired once only");

    // The root's children: the event names "/".
    watcher.get_children("/", true).unwrap().unwrap();
    mk(&mut writer, "/top", b"");
    let (_, event) = next_event(&mut watcher, Duration::from_secs(5)).expect("event");
    assert_eq!(
        (event.type_, event.path.as_str()),
        (ev::NODE_CHILDREN_CHANGED, "/")
    );
}

#[test]
fn delete_fires_node_deleted_once_per_watcher() {
    let server = TestServer::start();
    let mut all_kinds = server.client();
    let mut child_only = server.client();
    let mut parent_watcher = server.client();
    let mut writer = server.client();
    mk(&mut writer, "/d", b"");
    mk(&mut writer, "/d/x", b"");
    // One session with a data, an exists and a child watch on /d/x.
    all_kinds.get_data("/d/x", true).unwrap().unwrap();
    all_kinds.exists("/d/x", true).unwrap().unwrap();
    all_kinds.get_children("/d/x", true).unwrap().unwrap();
    // Another with only a child watch on it.
    child_only.get_children("/d/x", true).unwrap().unwrap();
    // A third watches the parent's children.
    parent_watcher.get_children("/d", true).unwrap().unwrap();

    writer.delete("/d/x", -1).unwrap().unwrap();
    let zxid = writer.last_zxid();
    for c in [&mut all_kinds, &mut child_only] {
        assert!(c.exists("/d/x", false).unwrap().is_err());
        let events = drain_events(c);
        assert_eq!(kinds(&events), vec![(ev::NODE_DELETED, "/d/x".to_owned())]);
        assert_eq!(events[0].0.zxid, zxid);
    }
    assert!(parent_watcher.exists("/d/x", false).unwrap().is_err());
    let events = drain_events(&mut parent_watcher);
    assert_eq!(
        kinds(&events),
        vec![(ev::NODE_CHILDREN_CHANGED, "/d".to_owned())]
    );
    assert_eq!(events[0].0.zxid, zxid);
}

/// The event is the first frame after the change, before the reply to the next request.
#[test]
fn events_arrive_before_a_later_reply_that_shows_the_change() {
    let server = TestServer::start();
    let mut watcher = server.client();
    let mut writer = server.client();
    mk(&mut writer, "/o", b"old");

    // Another session's change.
    watcher.get_data("/o", true).unwrap().unwrap();
    let set = writer.set_data("/o", b"new", -1).unwrap().unwrap();
    let request_xid = watcher.next_xid();
    let get = Request::GetData(PathWatchRequest {
        path: "/o".into(),
        watch: false,
    });
    watcher.send(request_xid, &get).unwrap();
    match watcher.recv().unwrap() {
        Frame::Event(header, event) => {
            assert_eq!(
                (event.type_, event.path.as_str()),
                (ev::NODE_DATA_CHANGED, "/o")
            );
            assert_eq!(header.zxid, set.mzxid);
        }
        other => panic!("expected the event first, got {other:?}"),
    }
    match watcher.recv().unwrap() {
        Frame::Reply { header, op, .. } => {
            assert_eq!((header.xid, op, header.err), (request_xid, op::GET_DATA, 0));
        }
        other => panic!("expected the reply second, got {other:?}"),
    }

    // The session's own change: the event precedes the setData reply itself.
    watcher.get_data("/o", true).unwrap().unwrap();
    let set_xid = watcher.next_xid();
    let set_req = Request::SetData(zabd::jute::proto::SetDataRequest {
        path: "/o".into(),
        data: Some(bytes::Bytes::from_static(b"mine")),
        version: -1,
    });
    watcher.send(set_xid, &set_req).unwrap();
    let event_zxid = match watcher.recv().unwrap() {
        Frame::Event(header, event) => {
            assert_eq!(
                (event.type_, event.path.as_str()),
                (ev::NODE_DATA_CHANGED, "/o")
            );
            header.zxid
        }
        other => panic!("expected the event before the setData reply, got {other:?}"),
    };
    match watcher.recv().unwrap() {
        Frame::Reply { header, reply, .. } => {
            assert_eq!((header.xid, header.err), (set_xid, 0));
            let zabd::client::Reply::Stat(stat) = reply else {
                panic!("setData answers a stat: {reply:?}");
            };
            assert_eq!(stat.mzxid, event_zxid);
            assert_eq!(header.zxid, event_zxid);
        }
        other => panic!("expected the setData reply, got {other:?}"),
    }
}

#[test]
fn watches_of_a_closed_session_are_dropped() {
    let server = TestServer::with_all_words();
    let mut writer = server.client();
    mk(&mut writer, "/gone", b"");
    let mut short = server.client();
    short.get_data("/gone", true).unwrap().unwrap();
    let mut watcher = server.client();
    watcher.get_data("/gone", true).unwrap().unwrap();
    assert!(server
        .four_letter("wchs")
        .starts_with("2 connections watching 1 paths\n"));
    short.close().unwrap().unwrap();
    assert!(short.wait_closed(Duration::from_secs(5)).unwrap());
    let wchs = server.four_letter("wchs");
    assert_eq!(wchs, "1 connections watching 1 paths\nTotal watches:1\n");
    // The remaining watcher still gets exactly its event.
    writer.set_data("/gone", b"x", -1).unwrap().unwrap();
    let (_, event) = next_event(&mut watcher, Duration::from_secs(5)).expect("event");
    assert_eq!(
        (event.type_, event.path.as_str()),
        (ev::NODE_DATA_CHANGED, "/gone")
    );
}
