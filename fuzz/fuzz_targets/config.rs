//! zoo.cfg text through `Config::parse`, and the same text with `-Dkey=value` overrides
//! through `split_args` and `Config::from_sources`.
//!
//! Input: the file's text; bytes after the first NUL are command-line arguments, one per line
//! (what `zabd -Dkey=value ... zoo.cfg` hands to the parser). Invalid UTF-8 is replaced, as a
//! file read with `read_to_string` would be refused before parsing.
//!
//! Checked: nothing panics; an accepted configuration satisfies the checks `Config::finish`
//! promises (minSessionTimeout <= maxSessionTimeout, snapCount >= 2, a whitelist that always
//! allows `srvr`), and parsing is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zabd::config::{split_args, Config};

fn check(config: &Config) {
    assert!(config.min_session_timeout_ms() <= config.max_session_timeout_ms());
    assert!(config.snap_count >= 2);
    assert!(config.autopurge_snap_retain_count >= 3);
    assert!(config.tick_time_ms >= 1);
    assert!(config.jute_max_buffer_bytes >= 1);
    assert!(config.four_letter_whitelist.allows("srvr"));
    let _ = config.ignored_keys();
}

fuzz_target!(|data: &[u8]| {
    let (file, args) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let text = String::from_utf8_lossy(file);
    let parsed = Config::parse(&text);
    if let Ok(config) = &parsed {
        check(config);
    }
    assert_eq!(parsed, Config::parse(&text), "parsing is deterministic");
    let Some(args) = args else { return };
    let args: Vec<String> = String::from_utf8_lossy(args)
        .lines()
        .map(str::to_owned)
        .collect();
    if let Ok((overrides, _path)) = split_args(&args) {
        if let Ok(config) = Config::from_sources(Some(&text), &overrides) {
            check(&config);
        }
        if let Ok(config) = Config::from_sources(None, &overrides) {
            check(&config);
        }
    }
});
