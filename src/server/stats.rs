//! Request counters and latencies for the four-letter words (ZooKeeper's ServerStats and the
//! per-connection stats of ServerCnxn).

/// Min/avg/max of request latencies in milliseconds.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    count: u64,
    total_ms: i64,
    min_ms: Option<i64>,
    max_ms: i64,
}

impl Latency {
    pub fn add(&mut self, ms: i64) {
        let ms = ms.max(0);
        self.count += 1;
        self.total_ms = self.total_ms.saturating_add(ms);
        self.min_ms = Some(self.min_ms.map_or(ms, |m| m.min(ms)));
        self.max_ms = self.max_ms.max(ms);
    }

    pub fn min_ms(&self) -> i64 {
        self.min_ms.unwrap_or(0)
    }

    pub fn max_ms(&self) -> i64 {
        self.max_ms
    }

    /// The average, formatted as ZooKeeper prints it (a decimal).
    pub fn avg_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms as f64 / self.count as f64
        }
    }
}

/// Server-wide counters.
#[derive(Clone, Debug)]
pub struct ServerStats {
    pub started_ms: i64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub auth_failed_count: u64,
    pub latency: Latency,
}

impl ServerStats {
    pub fn new(now_ms: i64) -> ServerStats {
        ServerStats {
            started_ms: now_ms,
            packets_received: 0,
            packets_sent: 0,
            auth_failed_count: 0,
            latency: Latency::default(),
        }
    }

    pub fn request_done(&mut self, latency_ms: i64) {
        self.latency.add(latency_ms);
    }

    /// `srst`: counters back to zero; the start time stays.
    pub fn reset(&mut self) {
        *self = ServerStats {
            started_ms: self.started_ms,
            ..ServerStats::new(self.started_ms)
        };
    }
}

/// One connection's counters (`cons`).
#[derive(Clone, Debug)]
pub struct CnxnStats {
    pub established_ms: i64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub last_op: &'static str,
    pub last_cxid: i64,
    pub last_zxid: i64,
    pub last_response_ms: i64,
    pub last_latency_ms: i64,
    pub latency: Latency,
}

impl CnxnStats {
    pub fn new(now_ms: i64) -> CnxnStats {
        CnxnStats {
            established_ms: now_ms,
            packets_received: 0,
            packets_sent: 0,
            last_op: "NA",
            last_cxid: -1,
            last_zxid: -1,
            last_response_ms: 0,
            last_latency_ms: 0,
            latency: Latency::default(),
        }
    }

    pub fn received(&mut self, _now_ms: i64, xid: i32, op: i32) {
        self.packets_received += 1;
        self.last_op = op_name(op);
        if xid >= 0 {
            self.last_cxid = i64::from(xid);
        }
    }

    pub fn replied(&mut self, now_ms: i64, arrival_ms: i64, zxid: i64) {
        self.last_zxid = zxid;
        self.last_response_ms = now_ms;
        self.last_latency_ms = now_ms - arrival_ms;
        self.latency.add(now_ms - arrival_ms);
    }

    pub fn reset(&mut self, now_ms: i64) {
        *self = CnxnStats {
            established_ms: self.established_ms,
            ..CnxnStats::new(now_ms)
        };
    }
}

/// The four-letter operation names ZooKeeper shows as `lop` in `cons`.
pub fn op_name(op: i32) -> &'static str {
    use crate::jute::proto::op;
    match op {
        op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => "CREA",
        op::DELETE => "DELE",
        op::EXISTS => "EXIS",
        op::GET_DATA => "GETD",
        op::SET_DATA => "SETD",
        op::GET_ACL => "GETA",
        op::SET_ACL => "SETA",
        op::GET_CHILDREN => "GETC",
        op::GET_CHILDREN2 => "GETC",
        op::SYNC => "SYNC",
        op::PING => "PING",
        op::CHECK => "CHEC",
        op::MULTI => "MULT",
        op::MULTI_READ => "MLTR",
        op::SET_WATCHES | op::SET_WATCHES2 => "SETW",
        op::CHECK_WATCHES => "CHKW",
        op::REMOVE_WATCHES => "REMW",
        op::GET_EPHEMERALS => "GETE",
        op::GET_ALL_CHILDREN_NUMBER => "GETACN",
        op::ADD_WATCH => "ADDW",
        op::WHO_AM_I => "HOMI",
        op::CLOSE_SESSION => "CLOS",
        op::AUTH => "AUTH",
        op::SASL => "SASL",
        _ => "NA",
    }
}
