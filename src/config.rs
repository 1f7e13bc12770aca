//! Server configuration: Apache ZooKeeper's zoo.cfg keys and the system properties Java users
//! pass with `-D`, parsed from text. Parsing is pure; [`Config::from_args`] is the one function
//! that reads a file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Which four-letter words may run (`4lw.commands.whitelist`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FourLetterWhitelist {
    /// `*`: every command.
    All,
    /// The named commands only.
    Only(Vec<String>),
}

impl FourLetterWhitelist {
    pub fn allows(&self, word: &str) -> bool {
        match self {
            FourLetterWhitelist::All => true,
            FourLetterWhitelist::Only(words) => words.iter().any(|w| w == word),
        }
    }
}

/// The role a server line gives a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerType {
    Participant,
    Observer,
}

/// One `server.N=host:quorumPort:electionPort[:role][;[clientAddr:]clientPort]` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLine {
    pub id: u64,
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub peer_type: PeerType,
    pub client_addr: Option<String>,
    pub client_port: Option<u16>,
}

/// Everything zabd reads from zoo.cfg. Field names carry units; defaults are ZooKeeper's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub tick_time_ms: u64,
    pub init_limit_ticks: u64,
    pub sync_limit_ticks: u64,
    pub data_dir: PathBuf,
    /// `dataLogDir`; the data directory when unset.
    pub data_log_dir: Option<PathBuf>,
    pub client_port: u16,
    pub client_port_address: Option<String>,
    /// Connections allowed from one IP address; 0 means no limit.
    pub max_client_cnxns: usize,
    /// Connections allowed in all; 0 means no limit.
    pub max_cnxns: usize,
    /// `minSessionTimeout`; 2 ticks when unset.
    pub min_session_timeout_ms: Option<u64>,
    /// `maxSessionTimeout`; 20 ticks when unset.
    pub max_session_timeout_ms: Option<u64>,
    /// Requests in flight across all connections before reads pause.
    pub global_outstanding_limit: usize,
    /// `jute.maxbuffer`: the largest frame accepted, in bytes.
    pub jute_max_buffer_bytes: usize,
    pub four_letter_whitelist: FourLetterWhitelist,
    pub snap_count: u64,
    pub autopurge_snap_retain_count: u32,
    pub autopurge_purge_interval_hours: u32,
    pub extended_types_enabled: bool,
    pub read_only_mode_enabled: bool,
    /// `DigestAuthenticationProvider.superDigest`: `user:base64(sha1(user:password))`.
    pub super_digest: Option<String>,
    pub enforce_quota: bool,
    pub skip_acl: bool,
    pub reconfig_enabled: bool,
    pub standalone_enabled: bool,
    pub peer_type: PeerType,
    pub servers: BTreeMap<u64, ServerLine>,
    /// This server's id, from `dataDir/myid` (only read when there are `server.N` lines).
    pub my_id: Option<u64>,
    pub force_sync: bool,
    pub pre_alloc_size_bytes: u64,
    pub fsync_warning_threshold_ms: u64,
    /// `znode.container.checkIntervalMs`.
    pub container_check_interval_ms: u64,
    /// `znode.container.maxPerMinute`.
    pub container_max_per_minute: u64,
    /// `nio.sessionlessCnxnTimeout`: how long a new connection may take to send its handshake.
    pub sessionless_cnxn_timeout_ms: u64,
    /// Every key=value as read (after prefix stripping), for `conf`/`envi` and later issues.
    /// May hold secrets (superDigest, ssl passwords): never log the values.
    pub raw: BTreeMap<String, String>,
    /// What parsing corrected or ignored (as ZooKeeper would warn), for the caller to log once.
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            tick_time_ms: 2000,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            data_dir: PathBuf::from("zabd-data"),
            data_log_dir: None,
            client_port: 2181,
            // The embedded default listens on loopback only; a zoo.cfg without
            // clientPortAddress listens on every interface, as ZooKeeper does.
            client_port_address: Some("127.0.0.1".to_owned()),
            max_client_cnxns: 60,
            max_cnxns: 0,
            min_session_timeout_ms: None,
            max_session_timeout_ms: None,
            global_outstanding_limit: 1000,
            jute_max_buffer_bytes: 0xfffff,
            four_letter_whitelist: FourLetterWhitelist::Only(vec!["srvr".to_owned()]),
            snap_count: 100_000,
            autopurge_snap_retain_count: 3,
            autopurge_purge_interval_hours: 0,
            extended_types_enabled: false,
            read_only_mode_enabled: false,
            super_digest: None,
            enforce_quota: false,
            skip_acl: false,
            reconfig_enabled: false,
            standalone_enabled: true,
            peer_type: PeerType::Participant,
            my_id: None,
            servers: BTreeMap::new(),
            force_sync: true,
            pre_alloc_size_bytes: 64 * 1024 * 1024,
            fsync_warning_threshold_ms: 1000,
            container_check_interval_ms: 60_000,
            container_max_per_minute: 10_000,
            sessionless_cnxn_timeout_ms: 10_000,
            raw: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }
}

impl Config {
    pub fn min_session_timeout_ms(&self) -> u64 {
        self.min_session_timeout_ms.unwrap_or(2 * self.tick_time_ms)
    }

    pub fn max_session_timeout_ms(&self) -> u64 {
        self.max_session_timeout_ms
            .unwrap_or(20 * self.tick_time_ms)
    }

    /// The address the client port listens on.
    pub fn client_address(&self) -> Result<SocketAddr, String> {
        let host = self.client_port_address.as_deref().unwrap_or("0.0.0.0");
        let text = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", self.client_port)
        } else {
            format!("{host}:{}", self.client_port)
        };
        std::net::ToSocketAddrs::to_socket_addrs(&text)
            .map_err(|e| format!("clientPortAddress {text}: {e}"))?
            .next()
            .ok_or_else(|| format!("clientPortAddress {text} resolves to nothing"))
    }
}

/// Why a configuration was refused. Every variant names what the operator has to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A line of the file that could not be read as `key=value`.
    Syntax { line: usize, reason: String },
    /// A value that does not parse, or is out of range, for its key.
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    /// Values that parse one by one but not together (ZooKeeper's own checks).
    Invalid(String),
    /// Command-line arguments that are neither `-Dkey=value` nor one config path.
    Usage(String),
    /// The config file could not be read.
    Io { path: PathBuf, error: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax { line, reason } => write!(f, "line {line}: {reason}"),
            ConfigError::BadValue { key, value, reason } => {
                write!(f, "invalid value {value:?} for {key}: {reason}")
            }
            ConfigError::Invalid(why) => f.write_str(why),
            ConfigError::Usage(why) => f.write_str(why),
            ConfigError::Io { path, error } => write!(f, "cannot read {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {}

/// ZooKeeper turns unknown zoo.cfg keys into system properties named `zookeeper.<key>`, and
/// operators pass the same settings as `-Dzookeeper.<key>=...`: both spellings mean one key.
const KEY_PREFIX: &str = "zookeeper.";

/// ZooKeeper's `MIN_SNAP_RETAIN_COUNT`: purging never keeps fewer snapshots.
const SNAP_RETAIN_COUNT_MIN: u32 = 3;

/// ZooKeeper resets a smaller snapCount to this (SyncRequestProcessor needs two).
const SNAP_COUNT_MIN: u64 = 2;

const HOUR_MS: i64 = 3_600_000;

/// The keys zabd interprets, after prefix stripping. Anything else stays in `raw`, ignored.
const KNOWN_KEYS: &[&str] = &[
    "tickTime",
    "initLimit",
    "syncLimit",
    "dataDir",
    "dataLogDir",
    "clientPort",
    "clientPortAddress",
    "maxClientCnxns",
    "maxCnxns",
    "minSessionTimeout",
    "maxSessionTimeout",
    "globalOutstandingLimit",
    "jute.maxbuffer",
    "4lw.commands.whitelist",
    "snapCount",
    "autopurge.snapRetainCount",
    "autopurge.purgeInterval",
    "extendedTypesEnabled",
    "readonlymode.enabled",
    "DigestAuthenticationProvider.superDigest",
    "enforceQuota",
    "skipACL",
    "reconfigEnabled",
    "standaloneEnabled",
    "peerType",
    "forceSync",
    "preAllocSize",
    "fsync.warningthresholdms",
    "znode.container.checkIntervalMs",
    "znode.container.maxPerMinute",
    "nio.sessionlessCnxnTimeout",
];

impl Config {
    /// Parses a zoo.cfg's text (Java properties syntax). Pure: the caller reads the file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_sources(Some(text), &[])
    }

    /// Builds the configuration from an optional zoo.cfg text and `-D` overrides, which win
    /// over the file. Without a file the embedded default applies (loopback, ./zabd-data).
    pub fn from_sources(
        file_text: Option<&str>,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut entries = match file_text {
            Some(text) => parse_properties(text)?,
            None => Vec::new(),
        };
        entries.extend(overrides.iter().cloned());
        let mut config = Config::default();
        if file_text.is_some() {
            // ZooKeeper listens on every interface unless clientPortAddress says otherwise.
            config.client_port_address = None;
        }
        for (key, value) in entries {
            let key = key.strip_prefix(KEY_PREFIX).unwrap_or(&key).to_owned();
            // Later entries win, as in java.util.Properties; -D entries come last.
            config.raw.insert(key, value.trim().to_owned());
        }
        let raw = std::mem::take(&mut config.raw);
        for (key, value) in &raw {
            config.apply(key, value)?;
        }
        config.raw = raw;
        config.finish(file_text.is_some())?;
        Ok(config)
    }

    /// Reads `[-Dkey=value ...] [zoo.cfg]` (the arguments after the program name).
    pub fn from_args(args: &[String]) -> Result<Config, ConfigError> {
        let (overrides, path) = split_args(args)?;
        let text = match &path {
            None => None,
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
                path: path.clone(),
                error: e.to_string(),
            })?),
        };
        let mut config = Config::from_sources(text.as_deref(), &overrides)?;
        config.load_my_id()?;
        Ok(config)
    }

    /// Reads `dataDir/myid` when the file lists servers, as QuorumPeerConfig does, and checks
    /// that the id names one of them.
    pub fn load_my_id(&mut self) -> Result<(), ConfigError> {
        if self.servers.is_empty() {
            return Ok(());
        }
        let path = self.data_dir.join("myid");
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Io {
            path: path.clone(),
            error: e.to_string(),
        })?;
        let id: u64 = text.trim().parse().map_err(|_| ConfigError::BadValue {
            key: path.display().to_string(),
            value: text.trim().to_owned(),
            reason: "myid must hold a server id".to_owned(),
        })?;
        if !self.servers.contains_key(&id) {
            return Err(ConfigError::Invalid(format!(
                "myid {id} is not one of the server.N lines"
            )));
        }
        self.my_id = Some(id);
        // The dynamic-config form `server.N=...;[addr:]port` can carry the client port.
        let line = self.servers[&id].clone();
        if let (Some(port), false) = (line.client_port, self.raw.contains_key("clientPort")) {
            self.client_port = port;
            if line.client_addr.is_some() {
                self.client_port_address = line.client_addr;
            }
        }
        Ok(())
    }

    /// True when this server runs in an ensemble (ZooKeeper runs a lone voter standalone
    /// unless standaloneEnabled=false).
    pub fn is_ensemble(&self) -> bool {
        let voters = self
            .servers
            .values()
            .filter(|s| s.peer_type == PeerType::Participant)
            .count();
        self.my_id.is_some() && !(voters == 1 && self.servers.len() == 1 && self.standalone_enabled)
    }

    /// This server's own `server.N` line.
    pub fn my_server(&self) -> Option<&ServerLine> {
        self.servers.get(&self.my_id?)
    }

    /// The keys read but not interpreted by zabd (netty.*, ssl.*, admin.*, ...), to log once.
    pub fn ignored_keys(&self) -> Vec<&str> {
        self.raw
            .keys()
            .map(String::as_str)
            .filter(|k| !KNOWN_KEYS.contains(k) && !k.starts_with("server."))
            .collect()
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "tickTime" => self.tick_time_ms = int_in(key, value, 1, i32::MAX as i64)? as u64,
            "initLimit" => self.init_limit_ticks = int_in(key, value, 0, i32::MAX as i64)? as u64,
            "syncLimit" => self.sync_limit_ticks = int_in(key, value, 0, i32::MAX as i64)? as u64,
            "dataDir" => self.data_dir = path_value(key, value)?,
            "dataLogDir" => self.data_log_dir = Some(path_value(key, value)?),
            "clientPort" => self.client_port = int_in(key, value, 0, 65535)? as u16,
            "clientPortAddress" => self.client_port_address = Some(non_empty(key, value)?),
            "maxClientCnxns" => self.max_client_cnxns = limit_or_unlimited(key, value)?,
            "maxCnxns" => self.max_cnxns = limit_or_unlimited(key, value)?,
            "minSessionTimeout" => self.min_session_timeout_ms = session_timeout(key, value)?,
            "maxSessionTimeout" => self.max_session_timeout_ms = session_timeout(key, value)?,
            "globalOutstandingLimit" => {
                self.global_outstanding_limit = int_in(key, value, 0, i32::MAX as i64)? as usize
            }
            "jute.maxbuffer" => {
                self.jute_max_buffer_bytes = int_in(key, value, 1, i32::MAX as i64)? as usize
            }
            "snapCount" => self.snap_count = self.clamped_snap_count(key, value)?,
            "autopurge.snapRetainCount" => {
                self.autopurge_snap_retain_count = self.clamped_retain_count(key, value)?
            }
            "autopurge.purgeInterval" => {
                self.autopurge_purge_interval_hours = purge_interval_hours(key, value)?
            }
            "extendedTypesEnabled" => self.extended_types_enabled = true_false(key, value)?,
            "readonlymode.enabled" => self.read_only_mode_enabled = true_false(key, value)?,
            "DigestAuthenticationProvider.superDigest" => {
                self.super_digest = Some(non_empty(key, value)?)
            }
            "enforceQuota" => self.enforce_quota = true_false(key, value)?,
            "skipACL" => self.skip_acl = yes_no(key, value)?,
            "reconfigEnabled" => self.reconfig_enabled = true_false(key, value)?,
            "standaloneEnabled" => self.standalone_enabled = true_false(key, value)?,
            "peerType" => self.peer_type = peer_type(key, value)?,
            "forceSync" => self.force_sync = yes_no(key, value)?,
            "preAllocSize" => self.pre_alloc_size_bytes = pre_alloc_bytes(key, value)?,
            "fsync.warningthresholdms" => {
                self.fsync_warning_threshold_ms = int_in(key, value, 0, i64::MAX)? as u64
            }
            "znode.container.checkIntervalMs" => {
                self.container_check_interval_ms = int_in(key, value, 0, i32::MAX as i64)? as u64
            }
            "znode.container.maxPerMinute" => {
                self.container_max_per_minute = int_in(key, value, 0, i32::MAX as i64)? as u64
            }
            "nio.sessionlessCnxnTimeout" => {
                self.sessionless_cnxn_timeout_ms = int_in(key, value, 1, i32::MAX as i64)? as u64
            }
            _ => {
                if let Some(id) = key.strip_prefix("server.") {
                    let line = parse_server_line(key, id, value)?;
                    self.servers.insert(line.id, line);
                }
            }
        }
        Ok(())
    }

    fn clamped_snap_count(&mut self, key: &str, value: &str) -> Result<u64, ConfigError> {
        let n = int_in(key, value, i32::MIN as i64, i32::MAX as i64)?;
        if n < SNAP_COUNT_MIN as i64 {
            self.warnings.push(format!(
                "{key}={n} is below {SNAP_COUNT_MIN}; using {SNAP_COUNT_MIN}"
            ));
            return Ok(SNAP_COUNT_MIN);
        }
        Ok(n as u64)
    }

    fn clamped_retain_count(&mut self, key: &str, value: &str) -> Result<u32, ConfigError> {
        let n = int_in(key, value, i32::MIN as i64, i32::MAX as i64)?;
        if n < SNAP_RETAIN_COUNT_MIN as i64 {
            self.warnings.push(format!(
                "{key}={n} is below {SNAP_RETAIN_COUNT_MIN}; using {SNAP_RETAIN_COUNT_MIN}"
            ));
            return Ok(SNAP_RETAIN_COUNT_MIN);
        }
        Ok(n as u32)
    }

    /// The checks ZooKeeper makes once every key is read.
    fn finish(&mut self, from_file: bool) -> Result<(), ConfigError> {
        if from_file && !self.raw.contains_key("dataDir") {
            return Err(ConfigError::Invalid("dataDir is not set".to_owned()));
        }
        if from_file
            && self.raw.contains_key("clientPortAddress")
            && !self.raw.contains_key("clientPort")
        {
            return Err(ConfigError::Invalid(
                "clientPortAddress is set but clientPort is not set".to_owned(),
            ));
        }
        if self.min_session_timeout_ms() > self.max_session_timeout_ms() {
            return Err(ConfigError::Invalid(format!(
                "minSessionTimeout ({} ms) must not be larger than maxSessionTimeout ({} ms)",
                self.min_session_timeout_ms(),
                self.max_session_timeout_ms()
            )));
        }
        // Read last: the default whitelist depends on readonlymode.enabled.
        let listed = self.raw.get("4lw.commands.whitelist").map(String::as_str);
        self.four_letter_whitelist = whitelist(listed, self.read_only_mode_enabled);
        let ignored: Vec<String> = self
            .ignored_keys()
            .iter()
            .map(|key| format!("ignoring unsupported setting {key}"))
            .collect();
        self.warnings.extend(ignored);
        Ok(())
    }
}

/// `-Dkey=value` settings, in command-line order.
pub type Overrides = Vec<(String, String)>;

/// Splits `[-Dkey=value ...] [zoo.cfg]` into overrides and the path.
pub fn split_args(args: &[String]) -> Result<(Overrides, Option<PathBuf>), ConfigError> {
    let mut overrides = Vec::new();
    let mut path = None;
    for arg in args {
        if let Some(setting) = arg.strip_prefix("-D") {
            let Some((key, value)) = setting.split_once('=') else {
                return Err(ConfigError::Usage(format!(
                    "expected -Dkey=value, got {arg:?}"
                )));
            };
            if path.is_some() {
                return Err(ConfigError::Usage(format!(
                    "{arg:?} must come before the config file"
                )));
            }
            overrides.push((key.trim().to_owned(), value.to_owned()));
        } else if arg.starts_with('-') {
            return Err(ConfigError::Usage(format!("unknown option {arg:?}")));
        } else if path.is_some() {
            return Err(ConfigError::Usage(format!(
                "more than one config file: {arg:?}"
            )));
        } else {
            path = Some(PathBuf::from(arg));
        }
    }
    Ok((overrides, path))
}

/// `4lw.commands.whitelist`: comma separated, `*` for all. `srvr` is always allowed (zkServer.sh
/// needs it) and `isro` too in read-only mode, as ZooKeeper's FourLetterCommands does.
fn whitelist(listed: Option<&str>, read_only_mode: bool) -> FourLetterWhitelist {
    let mut words: Vec<String> = Vec::new();
    for word in listed
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        if word == "*" {
            return FourLetterWhitelist::All;
        }
        words.push(word.to_owned());
    }
    let mut always = vec!["srvr"];
    if read_only_mode {
        always.push("isro");
    }
    for word in always {
        if !words.iter().any(|w| w == word) {
            words.push(word.to_owned());
        }
    }
    FourLetterWhitelist::Only(words)
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// An integer as Java's parseInt/parseLong reads it, within `[min, max]`.
fn int_in(key: &str, value: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    let n: i64 = value
        .parse()
        .map_err(|_| bad(key, value, "not an integer"))?;
    if n < min || n > max {
        return Err(bad(key, value, format!("must be between {min} and {max}")));
    }
    Ok(n)
}

/// Connection limits: ZooKeeper treats zero and negative values as "no limit".
fn limit_or_unlimited(key: &str, value: &str) -> Result<usize, ConfigError> {
    Ok(int_in(key, value, i32::MIN as i64, i32::MAX as i64)?.max(0) as usize)
}

/// Session timeout bounds: -1 (ZooKeeper's "unset") means the tickTime-based default.
fn session_timeout(key: &str, value: &str) -> Result<Option<u64>, ConfigError> {
    match int_in(key, value, -1, i32::MAX as i64)? {
        -1 => Ok(None),
        n => Ok(Some(n as u64)),
    }
}

/// Hours, or a ZooKeeper time interval (`ms`, `s`, `m`, `h`, `d` suffix) of whole hours.
/// Zero or less disables purging.
fn purge_interval_hours(key: &str, value: &str) -> Result<u32, ConfigError> {
    let ms = if value.ends_with(|c: char| c.is_ascii_digit()) {
        int_in(key, value, i32::MIN as i64, i32::MAX as i64)? * HOUR_MS
    } else {
        time_interval_ms(key, value)?
    };
    if ms <= 0 {
        return Ok(0);
    }
    if ms % HOUR_MS != 0 {
        return Err(bad(key, value, "zabd purges in whole hours"));
    }
    u32::try_from(ms / HOUR_MS).map_err(|_| bad(key, value, "too large"))
}

fn time_interval_ms(key: &str, value: &str) -> Result<i64, ConfigError> {
    let (number, unit_ms) = if let Some(n) = value.strip_suffix("ms").or(value.strip_suffix("MS")) {
        (n, 1)
    } else {
        let last = value.chars().last();
        let unit = last.map(|c| c.to_ascii_uppercase());
        // Cut the unit by its UTF-8 length: a non-ASCII last character must not panic.
        let n = &value[..value.len() - last.map_or(0, char::len_utf8)];
        match unit {
            Some('S') => (n, 1000),
            Some('M') => (n, 60_000),
            Some('H') => (n, HOUR_MS),
            Some('D') => (n, 24 * HOUR_MS),
            _ => return Err(bad(key, value, "unknown time unit (use ms, s, m, h or d)")),
        }
    };
    Ok(int_in(key, number, i32::MIN as i64, i32::MAX as i64)? * unit_ms)
}

/// `preAllocSize` is in kilobytes.
fn pre_alloc_bytes(key: &str, value: &str) -> Result<u64, ConfigError> {
    let kb = int_in(key, value, 1, i64::MAX)? as u64;
    kb.checked_mul(1024)
        .ok_or_else(|| bad(key, value, "too large"))
}

/// Booleans ZooKeeper reads as `true`/`false` (case-insensitive). Anything else is refused
/// rather than silently read as false, as Java's Boolean.parseBoolean would.
fn true_false(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(key, value, "expected true or false")),
    }
}

/// skipACL and forceSync are `yes`/`no` in ZooKeeper, where `skipACL=true` means "no": refuse
/// anything else so that a config never means something different here.
fn yes_no(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(bad(key, value, "expected yes or no")),
    }
}

fn peer_type(key: &str, value: &str) -> Result<PeerType, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "participant" => Ok(PeerType::Participant),
        "observer" => Ok(PeerType::Observer),
        _ => Err(bad(key, value, "expected participant or observer")),
    }
}

fn non_empty(key: &str, value: &str) -> Result<String, ConfigError> {
    if value.is_empty() {
        return Err(bad(key, value, "must not be empty"));
    }
    Ok(value.to_owned())
}

fn path_value(key: &str, value: &str) -> Result<PathBuf, ConfigError> {
    Ok(PathBuf::from(non_empty(key, value)?))
}

/// `server.N=host:quorumPort:electionPort[:participant|observer][;[clientAddr:]clientPort]`.
fn parse_server_line(key: &str, id: &str, value: &str) -> Result<ServerLine, ConfigError> {
    let id: u64 = id
        .parse()
        .map_err(|_| bad(key, value, "the server id must be a number"))?;
    let mut parts = value.split(';');
    let server = parts.next().unwrap_or("");
    let client = parts.next().unwrap_or("");
    if parts.next().is_some_and(|secure| !secure.is_empty()) {
        return Err(bad(key, value, "secure client ports are not supported"));
    }
    if parts.next().is_some() {
        return Err(bad(key, value, "too many ';' separated parts"));
    }
    if server.contains('|') {
        return Err(bad(
            key,
            value,
            "multiple addresses per server are not supported",
        ));
    }
    let fields = host_and_ports(server).ok_or_else(|| bad(key, value, "bad [host]:port"))?;
    if !(3..=4).contains(&fields.len()) || fields[0].is_empty() {
        return Err(bad(
            key,
            value,
            "expected host:quorumPort:electionPort[:role]",
        ));
    }
    let port = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| bad(key, value, "bad port"))
    };
    let quorum_port = port(&fields[1])?;
    let election_port = port(&fields[2])?;
    if quorum_port == election_port {
        return Err(bad(key, value, "the quorum and election ports must differ"));
    }
    let peer_type = match fields.get(3) {
        Some(role) => peer_type(key, role)?,
        None => PeerType::Participant,
    };
    let (client_addr, client_port) = match client.trim() {
        "" => (None, None),
        client => {
            let c = host_and_ports(client).ok_or_else(|| bad(key, value, "bad client address"))?;
            match c.as_slice() {
                [p] => (None, Some(port(p)?)),
                [host, p] => (Some(host.clone()), Some(port(p)?)),
                _ => return Err(bad(key, value, "expected [clientAddr:]clientPort")),
            }
        }
    };
    let host = fields[0].clone();
    Ok(ServerLine {
        id,
        host,
        quorum_port,
        election_port,
        peer_type,
        client_addr,
        client_port,
    })
}

/// Splits `host:port:...`, where the host may be a bracketed IPv6 literal.
fn host_and_ports(text: &str) -> Option<Vec<String>> {
    let text = text.trim();
    let Some(rest) = text.strip_prefix('[') else {
        return Some(text.split(':').map(str::to_owned).collect());
    };
    let (host, after) = rest.split_once(']')?;
    let mut fields = vec![host.to_owned()];
    if !after.is_empty() {
        fields.extend(after.strip_prefix(':')?.split(':').map(str::to_owned));
    }
    Some(fields)
}

/// Reads `java.util.Properties` text: `key=value`, `key: value` or `key value`; `#` and `!`
/// comments; a trailing backslash continues a line; backslash escapes (`\t`, `\uXXXX`, ...).
fn parse_properties(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut entries = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let mut logical = line.to_owned();
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let syntax = |reason: String| ConfigError::Syntax {
            line: index + 1,
            reason,
        };
        let (key, value) = split_key_value(&logical);
        let key = unescape(key).map_err(syntax)?;
        let value = unescape(value).map_err(syntax)?;
        entries.push((key, value));
    }
    Ok(entries)
}

/// An odd number of trailing backslashes continues the line (an even number is escaped ones).
fn ends_with_continuation(line: &str) -> bool {
    line.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

/// The key ends at the first unescaped `=`, `:` or whitespace; one separator and the
/// whitespace around it are skipped.
fn split_key_value(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' | b' ' | b'\t' | b'\x0c' => break,
            _ => i += 1,
        }
    }
    let key_end = i.min(bytes.len());
    let rest = line[key_end..].trim_start_matches([' ', '\t', '\x0c']);
    let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
    (
        &line[..key_end],
        rest.trim_start_matches([' ', '\t', '\x0c']),
    )
}

fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("malformed \\u{hex} escape"))?;
                out.push(code);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const REALISTIC: &str = r#"
# The number of milliseconds of each tick
tickTime=2000
initLimit = 10
syncLimit : 5
dataDir=/var/lib/zookeeper
dataLogDir  /var/lib/zookeeper-log
clientPort=2181
maxClientCnxns=0
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
4lw.commands.whitelist=ruok, mntr ,conf
admin.enableServer=false
metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
zookeeper.snapCount=50000
server.1=zoo1:2888:3888;2181
server.2=zoo2:2888:3888:observer;10.0.0.2:2182
server.3=[::1]:2888:3888:participant
! another comment style
"#;

    #[test]
    fn realistic_zoo_cfg() {
        let c = Config::parse(REALISTIC).unwrap();
        assert_eq!(c.tick_time_ms, 2000);
        assert_eq!((c.init_limit_ticks, c.sync_limit_ticks), (10, 5));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/zookeeper"));
        assert_eq!(
            c.data_log_dir,
            Some(PathBuf::from("/var/lib/zookeeper-log"))
        );
        assert_eq!(c.client_port, 2181);
        assert_eq!(
            c.client_port_address, None,
            "a zoo.cfg listens on all interfaces"
        );
        assert_eq!(c.client_address().unwrap().to_string(), "0.0.0.0:2181");
        assert_eq!(c.max_client_cnxns, 0);
        assert_eq!(c.autopurge_purge_interval_hours, 1);
        assert_eq!(c.snap_count, 50_000);
        assert_eq!(
            c.four_letter_whitelist,
            FourLetterWhitelist::Only(vec![
                "ruok".into(),
                "mntr".into(),
                "conf".into(),
                "srvr".into()
            ])
        );
        assert_eq!(c.servers.len(), 3);
        assert_eq!(
            c.ignored_keys(),
            vec!["admin.enableServer", "metricsProvider.className"]
        );
        assert!(c.warnings.iter().any(|w| w.contains("admin.enableServer")));
        assert_eq!(c.raw.get("snapCount").map(String::as_str), Some("50000"));
        assert_eq!(c.min_session_timeout_ms(), 4000);
        assert_eq!(c.max_session_timeout_ms(), 40000);
    }

    #[test]
    fn server_lines() {
        let c = Config::parse(REALISTIC).unwrap();
        let s1 = &c.servers[&1];
        assert_eq!(
            (s1.host.as_str(), s1.quorum_port, s1.election_port),
            ("zoo1", 2888, 3888)
        );
        assert_eq!(
            (s1.peer_type, s1.client_addr.clone(), s1.client_port),
            (PeerType::Participant, None, Some(2181))
        );
        let s2 = &c.servers[&2];
        assert_eq!(s2.peer_type, PeerType::Observer);
        assert_eq!(
            (s2.client_addr.as_deref(), s2.client_port),
            (Some("10.0.0.2"), Some(2182))
        );
        let s3 = &c.servers[&3];
        assert_eq!((s3.host.as_str(), s3.client_port), ("::1", None));
        for bad_line in [
            "server.1=zoo1:2888",
            "server.1=zoo1:2888:2888",
            "server.1=zoo1:2888:3888:leader",
            "server.x=zoo1:2888:3888",
            "server.1=zoo1:2888:3888;a:b:c",
            "server.1=zoo1:2888:3888|zoo1b:2888:3888",
            "server.1=zoo1:99999:3888",
        ] {
            let text = format!("dataDir=/d\n{bad_line}\n");
            let err = Config::parse(&text).unwrap_err();
            assert!(
                matches!(err, ConfigError::BadValue { .. }),
                "{bad_line}: {err}"
            );
        }
    }

    #[test]
    fn prefix_is_stripped_in_file_and_overrides() {
        let c = Config::parse("dataDir=/d\nzookeeper.maxCnxns=7\nzookeeper.skipACL=yes\n").unwrap();
        assert_eq!(c.max_cnxns, 7);
        assert!(c.skip_acl);
        assert!(c.raw.contains_key("maxCnxns"));
        let o = overrides(&[("zookeeper.jute.maxbuffer", "4096")]);
        let c = Config::from_sources(Some("dataDir=/d\n"), &o).unwrap();
        assert_eq!(c.jute_max_buffer_bytes, 4096);
    }

    #[test]
    fn overrides_win_over_the_file() {
        let text = "dataDir=/d\nclientPort=2181\nglobalOutstandingLimit=10\n";
        let o = overrides(&[
            ("clientPort", "0"),
            ("zookeeper.globalOutstandingLimit", "20"),
        ]);
        let c = Config::from_sources(Some(text), &o).unwrap();
        assert_eq!((c.client_port, c.global_outstanding_limit), (0, 20));
    }

    #[test]
    fn args_are_split_and_no_args_is_the_embedded_default() {
        let args: Vec<String> = vec!["-DtickTime=100".into(), "-Dzookeeper.forceSync=no".into()];
        let c = Config::from_args(&args).unwrap();
        assert_eq!(c.tick_time_ms, 100);
        assert!(!c.force_sync);
        assert_eq!(c.client_port_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(Config::from_args(&[]).unwrap(), Config::default());
        let usage = |a: &[&str]| {
            let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            matches!(Config::from_args(&a), Err(ConfigError::Usage(_)))
        };
        assert!(usage(&["-Dnovalue"]));
        assert!(usage(&["--port"]));
        assert!(usage(&["a.cfg", "b.cfg"]));
        assert!(usage(&["a.cfg", "-Dx=1"]));
        let missing = Config::from_args(&["/nonexistent/zoo.cfg".to_string()]).unwrap_err();
        assert!(matches!(missing, ConfigError::Io { .. }));
    }

    #[test]
    fn bad_values_name_the_key_and_value() {
        for (line, key) in [
            ("tickTime=0", "tickTime"),
            ("tickTime=fast", "tickTime"),
            ("clientPort=70000", "clientPort"),
            ("skipACL=true", "skipACL"),
            ("forceSync=maybe", "forceSync"),
            ("enforceQuota=yes", "enforceQuota"),
            ("peerType=leader", "peerType"),
            ("jute.maxbuffer=-1", "jute.maxbuffer"),
            ("autopurge.purgeInterval=30m", "autopurge.purgeInterval"),
            ("preAllocSize=0", "preAllocSize"),
            ("minSessionTimeout=-5", "minSessionTimeout"),
        ] {
            let err = Config::parse(&format!("dataDir=/d\n{line}\n")).unwrap_err();
            match &err {
                ConfigError::BadValue { key: k, .. } => assert_eq!(k, key, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn zookeeper_validation() {
        let err = Config::parse("tickTime=2000\n").unwrap_err();
        assert_eq!(err, ConfigError::Invalid("dataDir is not set".into()));
        let err = Config::parse("dataDir=/d\nminSessionTimeout=5000\nmaxSessionTimeout=4000\n");
        assert!(matches!(err, Err(ConfigError::Invalid(_))));
        let err = Config::parse("dataDir=/d\nclientPortAddress=127.0.0.1\n");
        assert!(matches!(err, Err(ConfigError::Invalid(_))));
        // The max defaults to 20 ticks, so a min above it is refused too.
        let err = Config::parse("dataDir=/d\ntickTime=100\nminSessionTimeout=3000\n");
        assert!(matches!(err, Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn zookeeper_corrections_and_limits() {
        let text = "dataDir=/d\nsnapCount=1\nautopurge.snapRetainCount=1\nmaxClientCnxns=-1\n\
                    preAllocSize=1024\nautopurge.purgeInterval=2d\nminSessionTimeout=-1\n";
        let c = Config::parse(text).unwrap();
        assert_eq!(c.snap_count, 2);
        assert_eq!(c.autopurge_snap_retain_count, 3);
        assert_eq!(c.max_client_cnxns, 0);
        assert_eq!(c.pre_alloc_size_bytes, 1024 * 1024);
        assert_eq!(c.autopurge_purge_interval_hours, 48);
        assert_eq!(c.min_session_timeout_ms, None);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    }

    #[test]
    fn whitelist_default_star_and_read_only() {
        let c = Config::parse("dataDir=/d\n").unwrap();
        assert_eq!(
            c.four_letter_whitelist,
            FourLetterWhitelist::Only(vec!["srvr".into()])
        );
        assert!(!c.four_letter_whitelist.allows("ruok"));
        let c = Config::parse("dataDir=/d\nreadonlymode.enabled=true\n").unwrap();
        assert!(c.four_letter_whitelist.allows("isro") && c.four_letter_whitelist.allows("srvr"));
        let c = Config::parse("dataDir=/d\n4lw.commands.whitelist=stat, *\n").unwrap();
        assert_eq!(c.four_letter_whitelist, FourLetterWhitelist::All);
    }

    #[test]
    fn properties_syntax() {
        let text = "  # indented comment\n\ndataDir = /a/\\\n    b\nDigestAuthenticationProvider.superDigest=super:abc\\=\n\
                    key\\ with\\ space=v\\u0041\n";
        let c = Config::parse(text).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/a/b"));
        assert_eq!(c.super_digest.as_deref(), Some("super:abc="));
        assert_eq!(c.raw.get("key with space").map(String::as_str), Some("vA"));
        let err = Config::parse("dataDir=/d\nx=\\u12\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::Syntax { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn arbitrary_text_never_panics() {
        fn prop(text: String, key: String, value: String) -> bool {
            let _ = Config::parse(&text);
            let _ = Config::from_sources(Some("dataDir=/d"), &[(key, value)]);
            true
        }
        quickcheck::quickcheck(prop as fn(String, String, String) -> bool);
    }
}
