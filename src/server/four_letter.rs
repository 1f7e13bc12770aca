//! The four-letter words, rendered from a read-only view of the core. Formats follow
//! ZooKeeper's `server/command/*` so that existing scripts and monitors parse them.

use super::pipeline::Cnxn;
use super::stats::ServerStats;
use super::CnxnId;
use crate::config::Config;
use crate::session::SessionTracker;
use crate::tree::DataTree;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The version string clients and monitors see (`Version.getFullVersion`).
pub fn full_version() -> String {
    format!("3.9.5-zabd-{}, built on zabd", env!("CARGO_PKG_VERSION"))
}

/// What a command may look at.
pub(super) struct FourLetterContext<'a> {
    pub now_ms: i64,
    pub config: &'a Config,
    pub tree: &'a DataTree,
    pub sessions: &'a SessionTracker,
    pub cnxns: &'a BTreeMap<CnxnId, Cnxn>,
    pub stats: &'a ServerStats,
    pub outstanding: usize,
    pub last_zxid: i64,
    pub sync: super::SyncCounters,
    pub disk: super::DiskUsage,
    pub quorum: Option<&'a super::QuorumInfo>,
    pub read_only: bool,
}

impl FourLetterContext<'_> {
    fn state(&self) -> &'static str {
        if self.read_only {
            return "read-only";
        }
        self.quorum.map_or("standalone", |q| q.state)
    }
}

/// Runs command `cmd` (already allowed by the whitelist) and returns its text.
pub(super) fn run(cmd: &str, ctx: &FourLetterContext<'_>) -> String {
    match cmd {
        "ruok" => "imok".to_owned(),
        "srvr" => server_stats(ctx, false),
        "stat" => server_stats(ctx, true),
        "conf" => conf(ctx),
        "cons" => connections(ctx),
        "crst" => "Connection stats reset.\n".to_owned(),
        "srst" => "Server stats reset.\n".to_owned(),
        "dump" => dump(ctx),
        "envi" => envi(),
        "mntr" => mntr(ctx),
        "wchs" => watch_summary(ctx),
        "wchc" => watches_by_session(ctx),
        "wchp" => watches_by_path(ctx),
        "isro" => if ctx.read_only { "ro" } else { "rw" }.to_owned(),
        "dirs" => format!(
            "datadir_size: {}\nlogdir_size: {}\n",
            ctx.disk.data_dir_bytes, ctx.disk.log_dir_bytes
        ),
        "gtmk" => "0\n".to_owned(),
        "stmk" => "0\n".to_owned(),
        "hash" => "\n".to_owned(),
        _ => format!("{cmd} is not a known command.\n"),
    }
}

fn server_stats(ctx: &FourLetterContext<'_>, with_clients: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Zookeeper version: {}", full_version());
    if with_clients {
        s.push_str("Clients:\n");
        for c in ctx.cnxns.values() {
            s.push_str(&cnxn_line(c, true));
            s.push('\n');
        }
        s.push('\n');
    }
    let st = ctx.stats;
    let _ = writeln!(
        s,
        "Latency min/avg/max: {}/{:.4}/{}",
        st.latency.min_ms(),
        st.latency.avg_ms(),
        st.latency.max_ms()
    );
    let _ = writeln!(s, "Received: {}", st.packets_received);
    let _ = writeln!(s, "Sent: {}", st.packets_sent);
    let _ = writeln!(s, "Connections: {}", ctx.cnxns.len());
    let _ = writeln!(s, "Outstanding: {}", ctx.outstanding);
    let _ = writeln!(s, "Zxid: 0x{:x}", ctx.last_zxid);
    let _ = writeln!(s, "Mode: {}", ctx.state());
    let _ = writeln!(s, "Node count: {}", ctx.tree.node_count());
    s
}

/// One line of `cons` / `stat` (`ServerCnxn.dumpConnectionInfo`).
fn cnxn_line(c: &Cnxn, brief: bool) -> String {
    let st = &c.stats;
    let mut s = format!(
        " /{}[1](queued={},recved={},sent={}",
        c.peer,
        c.queued(),
        st.packets_received,
        st.packets_sent
    );
    if !brief {
        if let Some(sid) = c.session {
            let _ = write!(
                s,
                ",sid=0x{sid:x},lop={},est={},to={}",
                st.last_op, st.established_ms, c.timeout_ms
            );
            if st.last_cxid >= 0 {
                let _ = write!(s, ",lcxid=0x{:x}", st.last_cxid);
            }
            let _ = write!(
                s,
                ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={:.4},maxlat={}",
                st.last_zxid,
                st.last_response_ms,
                st.last_latency_ms,
                st.latency.min_ms(),
                st.latency.avg_ms(),
                st.latency.max_ms()
            );
        }
    }
    s.push(')');
    s
}

fn connections(ctx: &FourLetterContext<'_>) -> String {
    let mut s = String::new();
    for c in ctx.cnxns.values() {
        s.push_str(&cnxn_line(c, false));
        s.push('\n');
    }
    s.push('\n');
    s
}

fn conf(ctx: &FourLetterContext<'_>) -> String {
    let c = ctx.config;
    let data_dir = c.data_dir.join("version-2");
    let log_dir = c
        .data_log_dir
        .as_ref()
        .unwrap_or(&c.data_dir)
        .join("version-2");
    let mut s = String::new();
    let _ = writeln!(s, "clientPort={}", c.client_port);
    s.push_str("secureClientPort=-1\n");
    let _ = writeln!(s, "dataDir={}", data_dir.display());
    let _ = writeln!(s, "dataDirSize={}", ctx.disk.data_dir_bytes);
    let _ = writeln!(s, "dataLogDir={}", log_dir.display());
    let _ = writeln!(s, "dataLogSize={}", ctx.disk.log_dir_bytes);
    let _ = writeln!(s, "tickTime={}", c.tick_time_ms);
    let _ = writeln!(s, "maxClientCnxns={}", c.max_client_cnxns);
    let _ = writeln!(s, "minSessionTimeout={}", c.min_session_timeout_ms());
    let _ = writeln!(s, "maxSessionTimeout={}", c.max_session_timeout_ms());
    s.push_str("clientPortListenBacklog=-1\n");
    s.push_str("serverId=0\n");
    s
}

fn dump(ctx: &FourLetterContext<'_>) -> String {
    let mut s = String::from("SessionTracker dump:\n");
    let _ = writeln!(
        s,
        "Session Sets ({})/({}):",
        ctx.sessions.len(),
        ctx.sessions.len()
    );
    for session in ctx.sessions.iter() {
        let _ = writeln!(s, "0x{:x}\t{}ms", session.id, session.timeout_ms);
    }
    s.push_str("ephemeral nodes dump:\n");
    let by_session: Vec<(i64, Vec<String>)> = ctx
        .sessions
        .iter()
        .map(|session| (session.id, ctx.tree.ephemerals(session.id)))
        .filter(|(_, paths)| !paths.is_empty())
        .collect();
    let _ = writeln!(s, "Sessions with Ephemerals ({}):", by_session.len());
    for (id, paths) in by_session {
        let _ = writeln!(s, "0x{id:x}:");
        for p in paths {
            let _ = writeln!(s, "\t{p}");
        }
    }
    s.push_str("Connections dump:\n");
    s
}

fn envi() -> String {
    let mut s = String::from("Environment:\n");
    let _ = writeln!(s, "zookeeper.version={}", full_version());
    let _ = writeln!(s, "os.name={}", std::env::consts::OS);
    let _ = writeln!(s, "os.arch={}", std::env::consts::ARCH);
    let _ = writeln!(s, "zabd.version={}", env!("CARGO_PKG_VERSION"));
    s
}

fn mntr(ctx: &FourLetterContext<'_>) -> String {
    let st = ctx.stats;
    let rows: Vec<(&str, String)> = vec![
        ("zk_version", full_version()),
        ("zk_server_state", ctx.state().to_owned()),
        ("zk_avg_latency", format!("{:.4}", st.latency.avg_ms())),
        ("zk_max_latency", st.latency.max_ms().to_string()),
        ("zk_min_latency", st.latency.min_ms().to_string()),
        ("zk_packets_received", st.packets_received.to_string()),
        ("zk_packets_sent", st.packets_sent.to_string()),
        ("zk_num_alive_connections", ctx.cnxns.len().to_string()),
        ("zk_outstanding_requests", ctx.outstanding.to_string()),
        ("zk_znode_count", ctx.tree.node_count().to_string()),
        ("zk_watch_count", ctx.tree.watch_count().to_string()),
        (
            "zk_ephemerals_count",
            ctx.tree.ephemeral_count().to_string(),
        ),
        (
            "zk_approximate_data_size",
            ctx.tree.approximate_data_size().to_string(),
        ),
        ("zk_uptime", (ctx.now_ms - st.started_ms).max(0).to_string()),
        ("zk_global_sessions", ctx.sessions.len().to_string()),
        ("zk_local_sessions", "0".to_owned()),
        ("zk_auth_failed_count", st.auth_failed_count.to_string()),
        ("zk_last_proposal_zxid", format!("0x{:x}", ctx.last_zxid)),
    ];
    let mut rows = rows;
    rows.extend(sync_rows(&ctx.sync));
    if let Some(q) = ctx.quorum {
        rows.extend(q.mntr.iter().cloned());
    }
    let mut s = String::new();
    for (k, v) in rows {
        let _ = writeln!(s, "{k}\t{v}");
    }
    s
}

/// ZooKeeper's fsynctime and sync_processor_batch_size summaries (avg/min/max/cnt/sum).
fn sync_rows(c: &super::SyncCounters) -> Vec<(&'static str, String)> {
    let avg = |sum: f64| {
        if c.syncs == 0 {
            0.0
        } else {
            sum / c.syncs as f64
        }
    };
    let ms = |us: u64| us as f64 / 1000.0;
    vec![
        (
            "zk_avg_fsynctime",
            format!("{:.4}", avg(ms(c.fsync_us_sum))),
        ),
        ("zk_min_fsynctime", format!("{:.4}", ms(c.fsync_us_min))),
        ("zk_max_fsynctime", format!("{:.4}", ms(c.fsync_us_max))),
        ("zk_cnt_fsynctime", c.syncs.to_string()),
        ("zk_sum_fsynctime", format!("{:.4}", ms(c.fsync_us_sum))),
        (
            "zk_avg_sync_processor_batch_size",
            format!("{:.4}", avg(c.txns as f64)),
        ),
        (
            "zk_min_sync_processor_batch_size",
            c.batch_txns_min.to_string(),
        ),
        (
            "zk_max_sync_processor_batch_size",
            c.batch_txns_max.to_string(),
        ),
        ("zk_cnt_sync_processor_batch_size", c.syncs.to_string()),
        ("zk_sum_sync_processor_batch_size", c.txns.to_string()),
    ]
}

fn session_of(ctx: &FourLetterContext<'_>, cnxn: CnxnId) -> i64 {
    ctx.cnxns.get(&cnxn).and_then(|c| c.session).unwrap_or(0)
}

/// ZooKeeper's wchs, wchc and wchp report the data watches only.
fn watch_summary(ctx: &FourLetterContext<'_>) -> String {
    let w = ctx.tree.data_watches();
    format!(
        "{} connections watching {} paths\nTotal watches:{}\n",
        w.connection_count(),
        w.path_count(),
        w.len()
    )
}

fn watches_by_session(ctx: &FourLetterContext<'_>) -> String {
    let mut s = String::new();
    for (cnxn, paths) in ctx.tree.data_watches().by_connection() {
        let _ = writeln!(s, "0x{:x}", session_of(ctx, cnxn));
        for p in paths {
            let _ = writeln!(s, "\t{p}");
        }
    }
    s.push('\n');
    s
}

fn watches_by_path(ctx: &FourLetterContext<'_>) -> String {
    let mut s = String::new();
    for (path, cnxns) in ctx.tree.data_watches().by_path() {
        let _ = writeln!(s, "{path}");
        for cnxn in cnxns {
            let _ = writeln!(s, "\t0x{:x}", session_of(ctx, cnxn));
        }
    }
    s.push('\n');
    s
}
