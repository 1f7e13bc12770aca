//! Four-letter words over TCP: the default whitelist runs srvr only and answers the others
//! with ZooKeeper's refusal line; with `*` every word answers, each checked for the content a
//! monitoring script would read (versions, counts, the test's own session, paths, watches).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use zabd::client::Client;
use zabd::config::FourLetterWhitelist;
use zabd::jute::proto::create_mode;

use crate::support::{assert_works, mk, open, TestServer};

const WORDS: [&str; 15] = [
    "ruok", "srvr", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "wchs", "wchc", "wchp",
    "isro", "dirs", "srst",
];

/// The value of `key` in mntr's tab-separated output.
fn mntr_value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('\t')))
        .unwrap_or_else(|| panic!("mntr has no {key}:\n{text}"))
        .to_owned()
}

/// The value after `prefix` on the line that starts with it.
fn line_value(text: &str, prefix: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}:\n{text}"))
        .trim()
        .to_owned()
}

fn local_addr(c: &mut Client) -> SocketAddr {
    c.stream().local_addr().unwrap()
}

/// The cons/stat line of the connection whose client end is `addr`.
fn cnxn_line(text: &str, addr: SocketAddr) -> String {
    let prefix = format!(" /{addr}[");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for {addr}:\n{text}"))
        .to_owned()
}

#[test]
fn the_default_whitelist_runs_srvr_only() {
    let server = TestServer::start();
    assert_eq!(
        server.config().four_letter_whitelist,
        FourLetterWhitelist::Only(vec!["srvr".into()])
    );
    let srvr = server.four_letter("srvr");
    assert!(srvr.starts_with("Zookeeper version: "), "{srvr}");
    assert!(srvr.contains("\nMode: standalone\n"), "{srvr}");
    for word in WORDS.iter().filter(|w| **w != "srvr") {
        assert_eq!(
            server.four_letter(word),
            format!("{word} is not executed because it is not in the whitelist.\n")
        );
    }
    // The refused connections did not disturb a session.
    let mut c = server.client();
    assert_works(&mut c);
}

#[test]
fn a_named_whitelist_runs_exactly_those_words() {
    let server = TestServer::with(|c| {
        c.four_letter_whitelist = FourLetterWhitelist::Only(vec!["ruok".into(), "isro".into()])
    });
    assert_eq!(server.four_letter("ruok"), "imok");
    assert_eq!(server.four_letter("isro"), "rw");
    assert_eq!(
        server.four_letter("srvr"),
        "srvr is not executed because it is not in the whitelist.\n"
    );
}

#[test]
fn ruok_isro_envi() {
    let server = TestServer::with_all_words();
    assert_eq!(server.four_letter("ruok"), "imok");
    // As `echo ruok | nc` sends it.
    assert_eq!(server.four_letter("ruok\n"), "imok");
    assert_eq!(server.four_letter("isro"), "rw");
    let envi = server.four_letter("envi");
    assert!(envi.starts_with("Environment:\n"), "{envi}");
    assert!(
        line_value(&envi, "zookeeper.version=").starts_with("3.9"),
        "{envi}"
    );
    assert_eq!(line_value(&envi, "os.name="), std::env::consts::OS);
}

#[test]
fn srvr_and_stat_show_counts_and_the_connection() {
    let server = TestServer::with_all_words();
    let mut c = server.client();
    mk(&mut c, "/a", b"");
    mk(&mut c, "/a/b", b"");
    let me = local_addr(&mut c);
    let srvr = server.four_letter("srvr");
    assert!(
        line_value(&srvr, "Zookeeper version: ").starts_with("3.9"),
        "{srvr}"
    );
    assert_eq!(line_value(&srvr, "Mode: "), "standalone");
    // ZooKeeper counts the root twice: 5 nodes in a fresh tree, plus the two made here.
    assert_eq!(line_value(&srvr, "Node count: "), "7");
    assert_eq!(
        line_value(&srvr, "Zxid: "),
        format!("0x{:x}", c.last_zxid())
    );
    assert_eq!(line_value(&srvr, "Outstanding: "), "0");
    // The session's connection and this four-letter connection.
    assert_eq!(line_value(&srvr, "Connections: "), "2");
    let received: u64 = line_value(&srvr, "Received: ").parse().unwrap();
    assert!(received >= 2, "{srvr}");
    assert!(!srvr.contains("Clients:"), "srvr has no client list");

    let stat = server.four_letter("stat");
    assert!(stat.contains("Clients:\n"), "{stat}");
    let line = cnxn_line(&stat, me);
    assert!(
        line.starts_with(&format!(" /{me}[1](queued=0,recved=")),
        "{line}"
    );
    assert!(
        line.ends_with(')') && !line.contains("sid="),
        "stat lists connections briefly: {line}"
    );
    assert_eq!(line_value(&stat, "Node count: "), "7");
}

#[test]
fn conf_shows_the_configuration() {
    let server = TestServer::with(|c| {
        c.four_letter_whitelist = FourLetterWhitelist::All;
        c.tick_time_ms = 500;
        c.max_client_cnxns = 17;
    });
    let conf = server.four_letter("conf");
    assert_eq!(line_value(&conf, "tickTime="), "500");
    assert_eq!(line_value(&conf, "maxClientCnxns="), "17");
    assert_eq!(line_value(&conf, "minSessionTimeout="), "1000");
    assert_eq!(line_value(&conf, "maxSessionTimeout="), "10000");
    let data_dir = server.data_dir().join("version-2");
    assert_eq!(
        line_value(&conf, "dataDir="),
        data_dir.display().to_string()
    );
    assert_eq!(
        line_value(&conf, "dataLogDir="),
        data_dir.display().to_string()
    );
    assert!(conf.contains("clientPort="), "{conf}");
}

/// The byte size of every file under `dir`, recursively, as ZooKeeper's getDirSize adds it.
fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// dirs (and conf's dataDirSize/dataLogSize) report the bytes in the snapshot and log
/// directories (ZooKeeperServer.getDataDirSize/getLogDirSize); with dataLogDir unset both are
/// dataDir/version-2.
#[test]
fn dirs_and_conf_report_the_real_directory_sizes() {
    let server = TestServer::with_all_words();
    let mut c = server.client();
    mk(&mut c, "/sized", &[7u8; 1000]);
    let version2 = server.data_dir().join("version-2");
    let on_disk = dir_size(&version2);
    assert!(
        on_disk > 0,
        "zabd writes its log and snapshot under {}",
        version2.display()
    );
    let dirs = server.four_letter("dirs");
    assert_eq!(
        dirs,
        format!("datadir_size: {on_disk}\nlogdir_size: {on_disk}\n"),
        "dirs must report the real sizes of the files in {}",
        version2.display()
    );
    let conf = server.four_letter("conf");
    assert_eq!(line_value(&conf, "dataDirSize="), on_disk.to_string());
    assert_eq!(line_value(&conf, "dataLogSize="), on_disk.to_string());
}

#[test]
fn cons_shows_each_session() {
    let server = TestServer::with_all_words();
    let mut c = server.client();
    let mut other = server.client();
    for i in 0..3 {
        mk(&mut c, &format!("/c{i}"), b"");
    }
    assert_works(&mut other);
    let cons = server.four_letter("cons");
    assert!(cons.ends_with(")\n\n"), "{cons:?}");
    let line = cnxn_line(&cons, local_addr(&mut c));
    assert!(line.contains("[1](queued=0,"), "{line}");
    assert!(
        line.contains(&format!(",sid=0x{:x},", c.session_id())),
        "{line}"
    );
    assert!(
        line.contains(&format!(",to={},", c.negotiated_timeout_ms())),
        "{line}"
    );
    assert!(
        line.contains(&format!(",lzxid=0x{:x},", c.last_zxid())),
        "{line}"
    );
    assert!(line.contains(",lop=CREA,"), "{line}");
    let line = cnxn_line(&cons, local_addr(&mut other));
    assert!(
        line.contains(&format!(",sid=0x{:x},", other.session_id())),
        "{line}"
    );
    assert!(line.contains(",lop=EXIS,"), "{line}");
}

/// ZooKeeper counts the handshake as a received packet (NIOServerCnxn.readPayload calls
/// packetReceived before readConnectRequest) and the ConnectResponse as a sent one (it goes
/// through sendBuffer, whose sentinel calls packetSent).
#[test]
fn cons_counts_the_handshake_as_a_packet_each_way() {
    let server = TestServer::with_all_words();
    let mut c = server.client();
    for i in 0..3 {
        mk(&mut c, &format!("/c{i}"), b"");
    }
    let line = cnxn_line(&server.four_letter("cons"), local_addr(&mut c));
    assert!(
        line.contains("queued=0,recved=4,sent=4,"),
        "a handshake and 3 creates are 4 packets each way: {line}"
    );
}

#[test]
fn crst_resets_the_connection_counters() {
    let server = TestServer::with_all_words();
    let mut c = server.client();
    for i in 0..3 {
        mk(&mut c, &format!("/c{i}"), b"");
    }
    let me = local_addr(&mut c);
    assert_eq!(server.four_letter("crst"), "Connection stats reset.\n");
    let line = cnxn_line(&server.four_letter("cons"), me);
    assert!(
        line.contains("queued=0,recved=0,sent=0,"),
        "crst resets the counters: {line}"
    );
    assert_works(&mut c);
    mk(&mut c, "/after", b"");
    let line = cnxn_line(&server.four_letter("cons"), me);
    assert!(line.contains("queued=0,recved=2,sent=2,"), "{line}");
    assert!(line.contains(",lop=CREA,"), "{line}");
}

#[test]
fn srst_resets_the_server_counters() {
    let server = TestServer::with_all_words();
    let mut c = server.client();
    mk(&mut c, "/x", b"");
    let before: u64 = line_value(&server.four_letter("srvr"), "Received: ")
        .parse()
        .unwrap();
    assert!(before >= 1);
    assert_eq!(server.four_letter("srst"), "Server stats reset.\n");
    let srvr = server.four_letter("srvr");
    assert_eq!(line_value(&srvr, "Received: "), "0", "{srvr}");
    assert_eq!(line_value(&srvr, "Sent: "), "0", "{srvr}");
    assert_works(&mut c);
    let srvr = server.four_letter("srvr");
    assert_eq!(line_value(&srvr, "Received: "), "1", "{srvr}");
}

#[test]
fn dump_lists_sessions_and_their_ephemerals() {
    let server = TestServer::with_all_words();
    let mut c = server.client();
    let mut idle = server.client();
    mk(&mut c, "/d", b"");
    c.create("/d/e1", b"", &open(), create_mode::EPHEMERAL)
        .unwrap()
        .unwrap();
    c.create("/d/e2", b"", &open(), create_mode::EPHEMERAL)
        .unwrap()
        .unwrap();
    assert_works(&mut idle);
    let dump = server.four_letter("dump");
    assert!(dump.starts_with("SessionTracker dump:\n"), "{dump}");
    assert!(
        dump.contains(&format!("0x{:x}", idle.session_id())),
        "{dump}"
    );
    let ephemerals = dump
        .split("ephemeral nodes dump:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no ephemeral section:\n{dump}"));
    assert!(
        ephemerals.starts_with("Sessions with Ephemerals (1):\n"),
        "{dump}"
    );
    assert!(
        ephemerals.contains(&format!("0x{:x}:\n\t/d/e1\n\t/d/e2\n", c.session_id())),
        "{dump}"
    );
    assert!(
        !ephemerals.contains(&format!("0x{:x}:", idle.session_id())),
        "{dump}"
    );
}

#[test]
fn mntr_reports_plausible_metrics() {
    let server = TestServer::with_all_words();
    let fresh = server.four_letter("mntr");
    assert!(
        mntr_value(&fresh, "zk_version").starts_with("3.9"),
        "{fresh}"
    );
    assert_eq!(mntr_value(&fresh, "zk_server_state"), "standalone");
    assert_eq!(mntr_value(&fresh, "zk_znode_count"), "5");
    assert_eq!(mntr_value(&fresh, "zk_ephemerals_count"), "0");
    assert_eq!(mntr_value(&fresh, "zk_watch_count"), "0");
    assert_eq!(mntr_value(&fresh, "zk_num_alive_connections"), "1");

    let mut c = server.client();
    let mut w = server.client();
    mk(&mut c, "/m", b"12345");
    c.create("/m/e", b"", &open(), create_mode::EPHEMERAL)
        .unwrap()
        .unwrap();
    mk(&mut c, "/m/p", b"");
    w.get_data("/m", true).unwrap().unwrap();
    w.get_children("/m", true).unwrap().unwrap();
    let mntr = server.four_letter("mntr");
    assert_eq!(mntr_value(&mntr, "zk_znode_count"), "8");
    assert_eq!(mntr_value(&mntr, "zk_ephemerals_count"), "1");
    assert_eq!(mntr_value(&mntr, "zk_watch_count"), "2");
    assert_eq!(mntr_value(&mntr, "zk_num_alive_connections"), "3");
    assert_eq!(mntr_value(&mntr, "zk_global_sessions"), "2");
    assert_eq!(mntr_value(&mntr, "zk_outstanding_requests"), "0");
    let fresh_size: u64 = mntr_value(&fresh, "zk_approximate_data_size")
        .parse()
        .unwrap();
    let size: u64 = mntr_value(&mntr, "zk_approximate_data_size")
        .parse()
        .unwrap();
    // Path lengths plus data: "/m" + 5 bytes, "/m/e", "/m/p".
    assert_eq!(size - fresh_size, 2 + 5 + 4 + 4);
    let received: u64 = mntr_value(&mntr, "zk_packets_received").parse().unwrap();
    assert!(received >= 5, "{mntr}");
    assert_eq!(
        mntr_value(&mntr, "zk_last_proposal_zxid"),
        format!("0x{:x}", c.last_zxid())
    );
    let uptime: u64 = mntr_value(&mntr, "zk_uptime").parse().unwrap();
    assert!(uptime < 60_000, "{uptime}");
}

#[test]
fn wchs_wchc_wchp_report_data_watches() {
    let server = TestServer::with_all_words();
    let mut a = server.client();
    let mut b = server.client();
    mk(&mut a, "/w1", b"");
    mk(&mut a, "/w2", b"");
    assert_eq!(
        server.four_letter("wchs"),
        "0 connections watching 0 paths\nTotal watches:0\n"
    );
    a.get_data("/w1", true).unwrap().unwrap();
    a.exists("/w2", true).unwrap().unwrap();
    b.get_data("/w1", true).unwrap().unwrap();
    // A child watch is not a data watch: not reported by these three.
    b.get_children("/w2", true).unwrap().unwrap();

    assert_eq!(
        server.four_letter("wchs"),
        "2 connections watching 2 paths\nTotal watches:3\n"
    );
    let (sa, sb) = (
        format!("0x{:x}", a.session_id()),
        format!("0x{:x}", b.session_id()),
    );
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let wchc = server.four_letter("wchc");
    assert!(wchc.ends_with("\n\n"), "{wchc:?}");
    let mut want = BTreeMap::new();
    want.insert(sa.clone(), set(&["/w1", "/w2"]));
    want.insert(sb.clone(), set(&["/w1"]));
    assert_eq!(blocks(&wchc), want, "{wchc}");
    let wchp = server.four_letter("wchp");
    let mut want = BTreeMap::new();
    want.insert("/w1".to_owned(), set(&[&sa, &sb]));
    want.insert("/w2".to_owned(), set(&[&sa]));
    assert_eq!(blocks(&wchp), want, "{wchp}");
}

/// wchc/wchp text as heading -> set of tab-indented lines under it.
fn blocks(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines().filter(|l| !l.is_empty()) {
        match line.strip_prefix('\t') {
            Some(item) => {
                let head: &String = current.as_ref().expect("an item before any heading");
                out.get_mut(head).unwrap().insert(item.to_owned());
            }
            None => {
                out.insert(line.to_owned(), BTreeSet::new());
                current = Some(line.to_owned());
            }
        }
    }
    out
}
