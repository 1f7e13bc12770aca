//! zabd driven by the zookeeper-client crate (a ZooKeeper client written elsewhere, with its
//! own codec): every operation that crate has an API for answers as Apache ZooKeeper 3.9 does,
//! success and error paths alike, and the crate's lock recipe gives mutual exclusion.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zookeeper_client as zk;

use crate::support::{bounded, TestServer};

fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn mode(m: zk::CreateMode) -> zk::CreateOptions<'static> {
    m.with_acls(zk::Acls::anyone_all())
}

/// Waits for a one-shot or persistent watch event, bounded.
async fn event(fut: impl std::future::Future<Output = zk::WatchedEvent>) -> zk::WatchedEvent {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("no watch event within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_persistent_ephemeral_and_errors() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        let (stat, seq) = c.create("/p", b"hello", &open()).await.unwrap();
        assert_eq!(seq.into_i64(), -1, "not sequential");
        // create2 answers with the new node's stat.
        assert_eq!((stat.version, stat.cversion, stat.aversion), (0, 0, 0));
        assert_eq!((stat.data_length, stat.num_children), (5, 0));
        assert_eq!(stat.czxid, stat.mzxid);
        assert_eq!(stat.czxid, stat.pzxid);
        assert_eq!(stat.ephemeral_owner, 0);
        let (data, got) = c.get_data("/p").await.unwrap();
        assert_eq!(data, b"hello");
        assert_eq!(got, stat);

        assert_eq!(
            c.create("/p", b"", &open()).await,
            Err(zk::Error::NodeExists)
        );
        assert_eq!(
            c.create("/nope/child", b"", &open()).await,
            Err(zk::Error::NoNode)
        );

        let (eph, _) = c
            .create("/e", b"", &mode(zk::CreateMode::Ephemeral))
            .await
            .unwrap();
        assert_eq!(eph.ephemeral_owner, c.session_id().0);
        assert_eq!(
            c.create("/e/child", b"", &open()).await,
            Err(zk::Error::NoChildrenForEphemerals)
        );
        // An invalid ACL (digest id without a hash part).
        let bad = [zk::Acl::new(
            zk::Permission::ALL,
            zk::AuthId::new("digest", "nocolon"),
        )];
        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&bad));
        assert_eq!(
            c.create("/badacl", b"", &opts).await,
            Err(zk::Error::InvalidAcl)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_suffix_is_the_parents_cversion() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        c.create("/seq", b"", &open()).await.unwrap();
        for i in 0..3 {
            let (_, parent) = c.get_children("/seq").await.unwrap();
            assert_eq!(parent.cversion, i);
            let (_, seq) = c
                .create("/seq/n-", b"", &mode(zk::CreateMode::PersistentSequential))
                .await
                .unwrap();
            assert_eq!(seq.into_i64(), i64::from(parent.cversion));
        }
        let (_, seq) = c
            .create("/seq/e-", b"", &mode(zk::CreateMode::EphemeralSequential))
            .await
            .unwrap();
        assert_eq!(seq.into_i64(), 3);
        let mut children = c.list_children("/seq").await.unwrap();
        children.sort();
        assert_eq!(
            children,
            vec![
                "e-0000000003",
                "n-0000000000",
                "n-0000000001",
                "n-0000000002"
            ]
        );
        let (_, stat) = c.get_data("/seq/e-0000000003").await.unwrap();
        assert_eq!(stat.ephemeral_owner, c.session_id().0);

        // The suffix counts creates (the parent's stored cversion); deletes move the client's
        // cversion (2 * creates - children) but not the next suffix.
        c.delete("/seq/n-0000000000", None).await.unwrap();
        let (_, parent) = c.get_children("/seq").await.unwrap();
        assert_eq!(parent.cversion, 5, "4 creates and 1 delete");
        let (_, seq) = c
            .create("/seq/n-", b"", &mode(zk::CreateMode::PersistentSequential))
            .await
            .unwrap();
        assert_eq!(seq.into_i64(), 4);
        assert!(c.check_stat("/seq/n-0000000004").await.unwrap().is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_nodes() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        let (stat, _) = c
            .create("/box", b"c", &mode(zk::CreateMode::Container))
            .await
            .unwrap();
        // Clients see ephemeralOwner 0 for containers (the stored owner is Long.MIN_VALUE).
        assert_eq!(stat.ephemeral_owner, 0);
        c.create("/box/item", b"", &open()).await.unwrap();
        assert_eq!(c.list_children("/box").await.unwrap(), vec!["item"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_nodes_are_unimplemented_without_extended_types() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        let ttl = open().with_ttl(Duration::from_secs(3600));
        assert_eq!(
            c.create("/ttl", b"", &ttl).await,
            Err(zk::Error::Unimplemented)
        );
        assert_eq!(c.check_stat("/ttl").await.unwrap(), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_nodes_with_extended_types() {
    let server = TestServer::with(|c| c.extended_types_enabled = true);
    bounded(async {
        let c = server.zk().await;
        let ttl = open().with_ttl(Duration::from_secs(3600));
        let (stat, _) = c.create("/ttl", b"t", &ttl).await.unwrap();
        assert_eq!(stat.ephemeral_owner, 0, "clients see 0 for TTL nodes");
        assert_eq!(stat.data_length, 1);
        let seq_ttl = zk::CreateMode::PersistentSequential
            .with_acls(zk::Acls::anyone_all())
            .with_ttl(Duration::from_secs(3600));
        let (_, seq) = c.create("/ttl/s-", b"", &seq_ttl).await.unwrap();
        assert_eq!(seq.into_i64(), 0);
        assert_eq!(c.list_children("/ttl").await.unwrap(), vec!["s-0000000000"]);
    })
    .await;
}

/// Values close to the default jute.maxbuffer (1 MiB - 1) travel whole in both directions, and
/// so does a long child list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_round_trip() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let (stat, _) = c.create("/big", &big, &open()).await.unwrap();
        assert_eq!(stat.data_length, 1_000_000);
        let (data, _) = c.get_data("/big").await.unwrap();
        assert!(data == big, "the value came back altered");
        c.create("/many", b"", &open()).await.unwrap();
        for i in 0..200 {
            c.create(&format!("/many/child-{i:04}"), b"", &open())
                .await
                .unwrap();
        }
        let mut children = c.list_children("/many").await.unwrap();
        children.sort();
        assert_eq!(children.len(), 200);
        assert_eq!(children[199], "child-0199");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_versions_and_errors() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        c.create("/d", b"", &open()).await.unwrap();
        c.create("/d/c", b"", &open()).await.unwrap();
        assert_eq!(c.delete("/d", None).await, Err(zk::Error::NotEmpty));
        c.set_data("/d/c", b"v1", None).await.unwrap();
        assert_eq!(c.delete("/d/c", Some(0)).await, Err(zk::Error::BadVersion));
        c.delete("/d/c", Some(1)).await.unwrap();
        assert_eq!(c.delete("/d/c", None).await, Err(zk::Error::NoNode));
        c.delete("/d", Some(0)).await.unwrap();
        assert_eq!(c.check_stat("/d").await.unwrap(), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_set_data_with_versions() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        c.create("/v", b"0", &open()).await.unwrap();
        let s1 = c.set_data("/v", b"one", Some(0)).await.unwrap();
        assert_eq!((s1.version, s1.data_length), (1, 3));
        assert_eq!(
            c.set_data("/v", b"x", Some(0)).await,
            Err(zk::Error::BadVersion)
        );
        let s2 = c.set_data("/v", b"", None).await.unwrap();
        assert_eq!((s2.version, s2.data_length), (2, 0));
        assert!(s2.mzxid > s1.mzxid);
        let (data, stat) = c.get_data("/v").await.unwrap();
        assert!(data.is_empty());
        assert_eq!(stat, s2);
        assert_eq!(
            c.set_data("/missing", b"", None).await,
            Err(zk::Error::NoNode)
        );
        assert_eq!(c.get_data("/missing").await, Err(zk::Error::NoNode));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exists_watch_on_a_missing_node_fires_node_created() {
    let server = TestServer::start();
    bounded(async {
        let watcher = server.zk().await;
        let writer = server.zk().await;
        let (stat, watch) = watcher.check_and_watch_stat("/later").await.unwrap();
        assert_eq!(stat, None);
        let (created, _) = writer.create("/later", b"", &open()).await.unwrap();
        let ev = event(watch.changed()).await;
        assert_eq!(ev.event_type, zk::EventType::NodeCreated);
        assert_eq!(ev.path, "/later");
        // ZooKeeper 3.9: the event carries the zxid of the transaction that fired it.
        assert_eq!(ev.zxid, created.czxid);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_child_watches_through_the_crate() {
    let server = TestServer::start();
    bounded(async {
        let watcher = server.zk().await;
        let writer = server.zk().await;
        writer.create("/w", b"", &open()).await.unwrap();

        let (_, _, data_watch) = watcher.get_and_watch_data("/w").await.unwrap();
        let stat = writer.set_data("/w", b"new", None).await.unwrap();
        let ev = event(data_watch.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeDataChanged, "/w")
        );
        assert_eq!(ev.zxid, stat.mzxid);

        let (_, _, child_watch) = watcher.get_and_watch_children("/w").await.unwrap();
        let (child, _) = writer.create("/w/c", b"", &open()).await.unwrap();
        let ev = event(child_watch.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeChildrenChanged, "/w")
        );
        assert_eq!(ev.zxid, child.czxid);

        let (_, child_watch) = watcher.list_and_watch_children("/w").await.unwrap();
        writer.delete("/w/c", None).await.unwrap();
        let ev = event(child_watch.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeChildrenChanged, "/w")
        );

        let (_, _, data_watch) = watcher.get_and_watch_data("/w").await.unwrap();
        writer.delete("/w", None).await.unwrap();
        let ev = event(data_watch.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeDeleted, "/w")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_get_and_set_with_aversion() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        c.create("/a", b"", &open()).await.unwrap();
        let (acl, stat) = c.get_acl("/a").await.unwrap();
        assert_eq!(acl, zk::Acls::anyone_all().to_vec());
        assert_eq!(stat.aversion, 0);
        let read_only = [zk::Acl::new(
            zk::Permission::READ | zk::Permission::ADMIN,
            zk::AuthId::anyone(),
        )];
        let stat = c.set_acl("/a", &read_only, Some(0)).await.unwrap();
        assert_eq!((stat.aversion, stat.version), (1, 0));
        assert_eq!(
            c.set_acl("/a", &read_only, Some(0)).await,
            Err(zk::Error::BadVersion)
        );
        let (acl, stat) = c.get_acl("/a").await.unwrap();
        assert_eq!(acl, read_only.to_vec());
        assert_eq!(stat.aversion, 1);
        // WRITE is gone now.
        assert_eq!(c.set_data("/a", b"x", None).await, Err(zk::Error::NoAuth));
        assert_eq!(c.get_acl("/missing").await, Err(zk::Error::NoNode));
        assert_eq!(
            c.set_acl("/missing", &read_only, None).await,
            Err(zk::Error::NoNode)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_children2_counts_and_sync() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        c.create("/k", b"", &open()).await.unwrap();
        for name in ["b", "a", "c"] {
            c.create(&format!("/k/{name}"), b"", &open()).await.unwrap();
        }
        c.create("/k/a/deep", b"", &open()).await.unwrap();
        let mut children = c.list_children("/k").await.unwrap();
        children.sort();
        assert_eq!(children, vec!["a", "b", "c"]);
        let (mut children2, stat) = c.get_children("/k").await.unwrap();
        children2.sort();
        assert_eq!(children2, children);
        assert_eq!((stat.num_children, stat.cversion), (3, 3));
        assert_eq!(c.count_descendants_number("/k").await.unwrap(), 4);
        assert_eq!(c.count_descendants_number("/k/a").await.unwrap(), 1);
        assert_eq!(
            c.count_descendants_number("/nope").await,
            Err(zk::Error::NoNode)
        );
        assert_eq!(c.list_children("/nope").await, Err(zk::Error::NoNode));
        assert_eq!(c.get_children("/nope").await, Err(zk::Error::NoNode));
        c.sync("/k").await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemerals_are_listed_by_prefix() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        let other = server.zk().await;
        c.create("/app", b"", &open()).await.unwrap();
        let eph = mode(zk::CreateMode::Ephemeral);
        c.create("/app/e1", b"", &eph).await.unwrap();
        c.create("/app/e2", b"", &eph).await.unwrap();
        c.create("/top", b"", &eph).await.unwrap();
        other.create("/app/theirs", b"", &eph).await.unwrap();
        let mut all = c.list_ephemerals("/").await.unwrap();
        all.sort();
        assert_eq!(all, vec!["/app/e1", "/app/e2", "/top"]);
        let mut app = c.list_ephemerals("/app").await.unwrap();
        app.sort();
        assert_eq!(app, vec!["/app/e1", "/app/e2"]);
        assert_eq!(c.list_ephemerals("/app/e2").await.unwrap(), vec!["/app/e2"]);
        assert!(c.list_ephemerals("/none").await.unwrap().is_empty());
        assert_eq!(
            other.list_ephemerals("/").await.unwrap(),
            vec!["/app/theirs"]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_write_commits_all_or_nothing() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        c.create("/m", b"", &open()).await.unwrap();
        c.create("/m/gone", b"", &open()).await.unwrap();

        let mut w = c.new_multi_writer();
        w.add_create("/m/a", b"a", &open()).unwrap();
        w.add_set_data("/m/a", b"a2", Some(0)).unwrap();
        w.add_check_version("/m/a", 1).unwrap();
        w.add_delete("/m/gone", Some(0)).unwrap();
        let results = w.commit().await.unwrap();
        assert_eq!(results.len(), 4);
        let zk::MultiWriteResult::Create { path, stat } = &results[0] else {
            panic!("expected a create result: {results:?}");
        };
        assert_eq!(path, "/m/a");
        let zk::MultiWriteResult::SetData { stat: set } = &results[1] else {
            panic!("expected a setData result: {results:?}");
        };
        // All ops of one multi share one zxid.
        assert_eq!(set.mzxid, stat.czxid);
        assert_eq!(set.version, 1);
        assert_eq!(results[2], zk::MultiWriteResult::Check);
        assert_eq!(results[3], zk::MultiWriteResult::Delete);
        assert_eq!(c.get_data("/m/a").await.unwrap().0, b"a2");
        assert_eq!(c.check_stat("/m/gone").await.unwrap(), None);

        // A failing check in the middle: nothing is applied.
        let mut w = c.new_multi_writer();
        w.add_create("/m/b", b"", &open()).unwrap();
        w.add_check_version("/m/a", 7).unwrap();
        w.add_set_data("/m/a", b"never", None).unwrap();
        let err = w.commit().await.unwrap_err();
        assert_eq!(
            err,
            zk::MultiWriteError::OperationFailed {
                index: 1,
                source: zk::Error::BadVersion
            }
        );
        assert_eq!(c.check_stat("/m/b").await.unwrap(), None);
        assert_eq!(c.get_data("/m/a").await.unwrap().0, b"a2");

        // The crate's CheckWriter: a multi whose first op is a check.
        let mut cw = c.new_check_writer("/m/a", Some(1)).unwrap();
        cw.add_create("/m/c", b"", &open()).unwrap();
        cw.commit().await.unwrap();
        assert!(c.check_stat("/m/c").await.unwrap().is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_read_reports_each_result_in_place() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        c.create("/r", b"root", &open()).await.unwrap();
        c.create("/r/x", b"x", &open()).await.unwrap();
        let mut r = c.new_multi_reader();
        r.add_get_data("/r").unwrap();
        r.add_get_data("/r/missing").unwrap();
        r.add_get_children("/r").unwrap();
        r.add_get_children("/missing").unwrap();
        let results = r.commit().await.unwrap();
        assert_eq!(results.len(), 4);
        match &results[0] {
            zk::MultiReadResult::Data { data, stat } => {
                assert_eq!(data, b"root");
                assert_eq!(stat.num_children, 1);
            }
            other => panic!("expected data, got {other:?}"),
        }
        assert!(matches!(
            &results[1],
            zk::MultiReadResult::Error {
                err: zk::Error::NoNode
            }
        ));
        match &results[2] {
            zk::MultiReadResult::Children { children } => {
                assert_eq!(children, &vec!["x".to_owned()])
            }
            other => panic!("expected children, got {other:?}"),
        }
        assert!(matches!(
            &results[3],
            zk::MultiReadResult::Error {
                err: zk::Error::NoNode
            }
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_watch_keeps_firing() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        let writer = server.zk().await;
        let mut w = c.watch("/pw", zk::AddWatchMode::Persistent).await.unwrap();
        writer.create("/pw", b"", &open()).await.unwrap();
        let ev = event(w.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeCreated, "/pw")
        );
        for i in 0..3 {
            let stat = writer
                .set_data("/pw", format!("{i}").as_bytes(), None)
                .await
                .unwrap();
            let ev = event(w.changed()).await;
            assert_eq!(
                (ev.event_type, ev.path.as_str(), ev.zxid),
                (zk::EventType::NodeDataChanged, "/pw", stat.mzxid)
            );
        }
        writer.create("/pw/child", b"", &open()).await.unwrap();
        let ev = event(w.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeChildrenChanged, "/pw")
        );
        // A persistent (non-recursive) watch says nothing about a grandchild's data.
        writer.set_data("/pw/child", b"x", None).await.unwrap();
        writer.delete("/pw/child", None).await.unwrap();
        let ev = event(w.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeChildrenChanged, "/pw")
        );
        writer.delete("/pw", None).await.unwrap();
        let ev = event(w.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeDeleted, "/pw")
        );
        // Still armed after the delete.
        writer.create("/pw", b"", &open()).await.unwrap();
        let ev = event(w.changed()).await;
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (zk::EventType::NodeCreated, "/pw")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_recursive_watch_never_sends_children_changed() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        let writer = server.zk().await;
        writer.create("/rw", b"", &open()).await.unwrap();
        let mut w = c
            .watch("/rw", zk::AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
        writer.create("/rw/a", b"", &open()).await.unwrap();
        writer.create("/rw/a/b", b"", &open()).await.unwrap();
        writer.set_data("/rw/a/b", b"x", None).await.unwrap();
        writer.delete("/rw/a/b", None).await.unwrap();
        writer.set_data("/rw", b"y", None).await.unwrap();
        let expected = [
            (zk::EventType::NodeCreated, "/rw/a"),
            (zk::EventType::NodeCreated, "/rw/a/b"),
            (zk::EventType::NodeDataChanged, "/rw/a/b"),
            (zk::EventType::NodeDeleted, "/rw/a/b"),
            (zk::EventType::NodeDataChanged, "/rw"),
        ];
        for (ty, path) in expected {
            let ev = event(w.changed()).await;
            assert_eq!(
                (ev.event_type, ev.path.as_str()),
                (ty, path),
                "recursive watches report node events only, in order"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_digest_and_who_am_i() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        let users = c.list_auth_users().await.unwrap();
        assert_eq!(users, vec![zk::AuthUser::new("ip", "127.0.0.1")]);
        c.auth("digest", b"alice:secret").await.unwrap();
        let users = c.list_auth_users().await.unwrap();
        assert_eq!(
            users,
            vec![
                zk::AuthUser::new("ip", "127.0.0.1"),
                zk::AuthUser::new("digest", "alice")
            ]
        );
        // CREATOR_ALL: the auth scheme expands to the creator's digest identity.
        c.create(
            "/mine",
            b"",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all()),
        )
        .await
        .unwrap();
        let (acl, _) = c.get_acl("/mine").await.unwrap();
        assert_eq!(acl.len(), 1);
        assert_eq!(acl[0].scheme(), "digest");
        assert_eq!(acl[0].id(), crate::support::digest_id("alice", "secret"));
        let stranger = server.zk().await;
        assert_eq!(stranger.get_data("/mine").await, Err(zk::Error::NoAuth));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_an_unknown_scheme_fails_the_session() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        assert_eq!(
            c.auth("nosuchscheme", b"x").await,
            Err(zk::Error::AuthFailed)
        );
        // The server closed the connection; the crate treats AuthFailed as terminal.
        assert!(c.get_data("/").await.is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfig_is_disabled_on_a_standalone_server() {
    let server = TestServer::start();
    bounded(async {
        let c = server.zk().await;
        let servers = ["server.1=127.0.0.1:2888:3888;2181"];
        let update = zk::EnsembleUpdate::New {
            ensemble: servers.iter().copied(),
        };
        assert_eq!(
            c.update_ensemble(update, None).await,
            Err(zk::Error::ReconfigDisabled)
        );
        // The session is still fine.
        c.sync("/").await.unwrap();
    })
    .await;
}

/// The crate's own lock recipe (ephemeral-sequential nodes and watches on the predecessor)
/// gives mutual exclusion between two sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_recipe_gives_mutual_exclusion() {
    let server = TestServer::start();
    bounded(async {
        let inside = Arc::new(AtomicUsize::new(0));
        let overlap = Arc::new(AtomicBool::new(false));
        let entries = Arc::new(AtomicUsize::new(0));

        // First: while one session holds the lock, the other waits.
        let a = server.zk().await;
        let b = server.zk().await;
        let options = || {
            zk::LockOptions::new(zk::Acls::anyone_all())
                .with_ancestor_options(open())
                .unwrap()
        };
        let held = a
            .lock(
                zk::LockPrefix::new_curator("/locks/l", "lock-").unwrap(),
                b"",
                options(),
            )
            .await
            .unwrap();
        let b_task = {
            let b = b.clone();
            tokio::spawn(async move {
                let guard = b
                    .lock(
                        zk::LockPrefix::new_curator("/locks/l", "lock-").unwrap(),
                        b"",
                        options(),
                    )
                    .await
                    .unwrap();
                let path = guard.lock_path().to_owned();
                drop(guard);
                path
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!b_task.is_finished(), "b got the lock while a held it");
        let a_path = held.lock_path().to_owned();
        drop(held);
        let b_path = tokio::time::timeout(Duration::from_secs(10), b_task)
            .await
            .expect("b never got the lock after a released it")
            .unwrap();
        assert_ne!(a_path, b_path);

        // Then: two contenders in loops never overlap.
        let mut tasks = Vec::new();
        for client in [a.clone(), b.clone()] {
            let (inside, overlap, entries) = (inside.clone(), overlap.clone(), entries.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    let guard = client
                        .lock(
                            zk::LockPrefix::new_curator("/locks/m", "lock-").unwrap(),
                            b"",
                            options(),
                        )
                        .await
                        .unwrap();
                    if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                        overlap.store(true, Ordering::SeqCst);
                    }
                    entries.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    // Delete the lock node before the next round (dropping deletes in the
                    // background, which could race with this client's next contention).
                    let path = guard.lock_path().to_owned();
                    std::mem::forget(guard);
                    client.delete(&path, None).await.unwrap();
                }
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("lock contention took too long")
                .unwrap();
        }
        assert!(!overlap.load(Ordering::SeqCst), "two holders at once");
        assert_eq!(entries.load(Ordering::SeqCst), 10);
        assert!(a.list_children("/locks/m").await.unwrap().is_empty());
    })
    .await;
}
