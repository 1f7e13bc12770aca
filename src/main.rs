//! The zabd binary.
//!
//! `zabd [-Dkey=value ...] [zoo.cfg]` runs a server until it is killed (SIGTERM/SIGINT end the
//! process; every acknowledged write has already been synced by then). `zabd bench ...` runs
//! the load generator; `zabd logdump`, `snapdump` and `datadir` the
//! data-directory tools ([`zabd::tools`]).

use std::process::ExitCode;
use zabd::config::{Config, ConfigError};

const USAGE: &str = "\
usage: zabd [-Dkey=value ...] [zoo.cfg]
       zabd bench [options]      (zabd bench --help for its options)
       zabd logdump <log file | dir> [--from ZXID] [--offsets]
       zabd snapdump <snapshot file> [--json]
       zabd datadir check|cut-tail <dataDir> [<dataLogDir>]
                                 (zabd datadir --help: the data-directory tools)
       zabd --help | --version

Runs a ZooKeeper-compatible server. zoo.cfg uses Apache ZooKeeper's keys (tickTime, dataDir,
clientPort, clientPortAddress, maxClientCnxns, 4lw.commands.whitelist, ...); -D settings take
ZooKeeper's system property names, with or without the `zookeeper.` prefix, and override the
file. Without a zoo.cfg, zabd listens on 127.0.0.1:2181 with its data in ./zabd-data.

Logs go to stderr; RUST_LOG sets the level (default: info).
";

/// Exit status for a configuration or usage error, as for bad command lines generally.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("bench") => return bench_exit_code(zabd::bench::main(&args[2..])),
        Some(tool @ ("logdump" | "snapdump" | "datadir")) => {
            return bench_exit_code(zabd::tools::main(tool, &args[2..]))
        }
        Some("--help" | "-h" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("zabd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    init_logging();
    match Config::from_args(&args[1..]) {
        Ok(config) => serve(config),
        Err(e) => config_error(&e),
    }
}

fn bench_exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info");
    // stderr is env_logger's default target.
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .try_init();
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("zabd: configuration error: {e}");
    eprintln!("run `zabd --help` for usage");
    ExitCode::from(EXIT_USAGE)
}

fn serve(config: Config) -> ExitCode {
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    let data_dir = config.data_dir.clone();
    let handle = match zabd::threads::run(config) {
        Ok(handle) => handle,
        Err(e) => {
            log::error!("cannot start the server: {e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "zabd {} serving clients on {}, data dir {}",
        env!("CARGO_PKG_VERSION"),
        handle.local_addr(),
        data_dir.display()
    );
    // Returns only if the server stops by itself (a failed log or a dead thread).
    match handle.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("server stopped: {e}");
            ExitCode::FAILURE
        }
    }
}
