//! Ties spec/README.md's maps to the code (issue 7): every TLA+ action of spec/Zab.tla is
//! mapped, every handler the action table names exists, and every invariant of the smoke model
//! has a row in the checker table whose checker exists once src/sim/checker.rs does.
//!
//! The check is textual: a handler `Type::name` must appear as `fn name` inside an
//! `impl ... Type` block of the named file (braces matched outside comments, strings and char
//! literals); a bare `name` must appear as `fn name` anywhere in the file.

use std::fs;
use std::path::{Path, PathBuf};

const ACTION_HEADER: &str = "| TLA+ action |";
const CHECKER_HEADER: &str = "simulator checker (src/sim/checker.rs)";
const CHECKER_FILE: &str = "src/sim/checker.rs";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The rows (split into cells) of the first table whose header line contains `header`.
fn table_rows(doc: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| !l.contains(header));
    assert!(
        lines.next().is_some(),
        "spec/README.md has no table with a header containing {header:?}"
    );
    lines
        .take_while(|l| l.trim_start().starts_with('|'))
        .filter(|l| !l.trim().trim_matches('|').trim().starts_with("---"))
        .map(|l| {
            let inner = l.trim().trim_start_matches('|').trim_end_matches('|');
            inner.split('|').map(|c| c.trim().to_owned()).collect()
        })
        .collect()
}

/// The `backticked` spans of a cell, in order.
fn backticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Debug)]
struct Handler {
    action: String,
    file: String,
    type_: Option<String>,
    name: String,
}

/// Every handler of the action table: in the second cell, a `path.rs` span names the file
/// for the `Type::function` / `function` spans after it.
fn action_handlers(rows: &[Vec<String>]) -> Result<Vec<Handler>, Vec<String>> {
    let mut handlers = Vec::new();
    let mut errors = Vec::new();
    for row in rows {
        let action = row.first().cloned().unwrap_or_default();
        let Some(cell) = row.get(1) else {
            errors.push(format!("row {action}: no handler cell"));
            continue;
        };
        let mut file: Option<&str> = None;
        let before = handlers.len();
        for span in backticked(cell) {
            if span.ends_with(".rs") {
                file = Some(span);
                continue;
            }
            let Some(f) = file else {
                errors.push(format!("row {action}: `{span}` comes before any file path"));
                continue;
            };
            let (type_, name) = match span.split_once("::") {
                Some((t, n)) => (Some(t), n),
                None => (None, span),
            };
            if !type_.is_none_or(is_ident) || !is_ident(name) {
                errors.push(format!(
                    "row {action}: `{span}` is not `Type::function` or `function`"
                ));
                continue;
            }
            handlers.push(Handler {
                action: action.clone(),
                file: f.to_owned(),
                type_: type_.map(str::to_owned),
                name: name.to_owned(),
            });
        }
        if handlers.len() == before {
            errors.push(format!("row {action}: names no handler"));
        }
    }
    if errors.is_empty() {
        Ok(handlers)
    } else {
        Err(errors)
    }
}

/// `src` with comments, string literals and char literals blanked out (same length, newlines
/// kept), so that braces and `fn` inside them do not count.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                blank(&mut out, i, end);
                i = end;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                let open = i + 1 + hashes;
                if b.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let end = src[open + 1..]
                    .find(&close)
                    .map_or(b.len(), |n| open + 1 + n + close.len());
                blank(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i, j + 1);
                i = j + 1;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}'), or else a lifetime.
                let end = if b.get(i + 1) == Some(&b'\\') {
                    src[i + 3..].find('\'').map(|n| i + 3 + n + 1)
                } else {
                    let ch_len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + ch_len) == Some(&b'\'')).then_some(i + 1 + ch_len + 1)
                };
                match end {
                    Some(end) => {
                        blank(&mut out, i, end);
                        i = end;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("only ASCII was replaced")
}

/// The bodies of the `impl` blocks whose self type is `type_` (`impl Type`, `impl<T> Type<T>`,
/// `impl Trait for Type`).
fn impl_bodies<'a>(code: &'a str, type_: &str) -> Vec<&'a str> {
    let mut bodies = Vec::new();
    let mut from = 0;
    while let Some(pos) = code[from..].find("impl") {
        let start = from + pos;
        from = start + 4;
        let prev_ok = start == 0 || {
            let c = code.as_bytes()[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let next_ok = code[start + 4..]
            .chars()
            .next()
            .is_some_and(|c| c.is_whitespace() || c == '<');
        if !prev_ok || !next_ok {
            continue;
        }
        let Some(open_rel) = code[start..].find(['{', ';']) else {
            break;
        };
        let open = start + open_rel;
        if code.as_bytes()[open] == b';' {
            continue;
        }
        let head = &code[start + 4..open];
        let self_type = match head.rfind(" for ") {
            Some(k) => &head[k + 5..],
            None => skip_generics(head),
        };
        let self_type = self_type.split("where").next().unwrap_or("").trim();
        let base = self_type.split('<').next().unwrap_or("").trim();
        let base = base.rsplit("::").next().unwrap_or("");
        let mut depth = 0usize;
        let mut end = code.len();
        for (k, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        if base == type_ {
            bodies.push(&code[open..end]);
        }
        from = open + 1;
    }
    bodies
}

/// `<T: Bound<U>> Type<T>` → ` Type<T>`.
fn skip_generics(head: &str) -> &str {
    let head = head.trim_start();
    if !head.starts_with('<') {
        return head;
    }
    let mut depth = 0;
    for (k, c) in head.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return &head[k + 1..];
                }
            }
            _ => {}
        }
    }
    ""
}

/// `fn name(` or `fn name<` in `code`, as whole words.
fn defines_fn(code: &str, name: &str) -> bool {
    let needle = format!("fn {name}");
    code.match_indices(&needle).any(|(k, _)| {
        let before_ok = k == 0 || {
            let c = code.as_bytes()[k - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let after = code[k + needle.len()..].trim_start();
        before_ok && (after.starts_with('(') || after.starts_with('<'))
    })
}

/// None when the handler exists, else why not.
fn missing(h: &Handler) -> Option<String> {
    let path = root().join(&h.file);
    let Ok(src) = fs::read_to_string(&path) else {
        return Some(format!("file {} does not exist", h.file));
    };
    let code = code_only(&src);
    match &h.type_ {
        None => (!defines_fn(&code, &h.name)).then(|| format!("no `fn {}` in {}", h.name, h.file)),
        Some(t) => {
            let bodies = impl_bodies(&code, t);
            if bodies.is_empty() {
                Some(format!("no `impl {t}` in {}", h.file))
            } else if !bodies.iter().any(|b| defines_fn(b, &h.name)) {
                Some(format!(
                    "no `fn {}` in any `impl {t}` of {}",
                    h.name, h.file
                ))
            } else {
                None
            }
        }
    }
}

/// The action names of `Next` in spec/Zab.tla (`\E ... : Name(` or `\/ Name(`).
fn next_actions(tla: &str) -> Vec<String> {
    let body: Vec<&str> = tla
        .lines()
        .skip_while(|l| !l.starts_with("Next =="))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("\\/"))
        .collect();
    body.iter()
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches("\\/").trim();
            let l = l.rsplit(" : ").next().unwrap_or(l);
            let name = l.split('(').next()?.trim();
            is_ident(name).then(|| name.to_owned())
        })
        .collect()
}

/// The INVARIANTS and PROPERTIES of a TLC .cfg.
fn cfg_properties(cfg: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut listing = false;
    for line in cfg.lines() {
        let t = line.trim();
        if t.starts_with("\\*") || t.is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            listing = matches!(t, "INVARIANTS" | "INVARIANT" | "PROPERTIES" | "PROPERTY");
            continue;
        }
        if listing && is_ident(t) {
            names.push(t.to_owned());
        }
    }
    names
}

#[test]
fn every_handler_in_the_action_map_exists() {
    let readme = read("spec/README.md");
    let rows = table_rows(&readme, ACTION_HEADER);
    let handlers = action_handlers(&rows).unwrap_or_else(|errors| {
        panic!(
            "malformed action table in spec/README.md:\n  {}",
            errors.join("\n  ")
        )
    });
    assert!(
        rows.len() >= 15,
        "parsed too few rows of the action table: {}",
        rows.len()
    );
    let failures: Vec<String> = handlers
        .iter()
        .filter_map(|h| {
            missing(h).map(|why| {
                let shown = match &h.type_ {
                    Some(t) => format!("{t}::{}", h.name),
                    None => h.name.clone(),
                };
                format!(
                    "{}: handler `{shown}` in {} is missing ({why})",
                    h.action, h.file
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "spec/README.md names handlers that do not exist; fix the code or the map:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn every_action_of_next_is_mapped() {
    let actions = next_actions(&read("spec/Zab.tla"));
    assert!(
        actions.len() >= 15,
        "parsed too few actions from Zab.tla's Next: {actions:?}"
    );
    let readme = read("spec/README.md");
    let rows = table_rows(&readme, ACTION_HEADER);
    let mapped: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.first())
        .flat_map(|c| backticked(c))
        .collect();
    let unmapped: Vec<&String> = actions
        .iter()
        .filter(|a| !mapped.contains(&a.as_str()))
        .collect();
    assert!(
        unmapped.is_empty(),
        "TLA+ actions of Next without a row in spec/README.md's action table: {unmapped:?}"
    );
}

/// The `"Name"` strings after `marker` in `text` (Trace.tla's `e.a = "Name"`, trace.rs's
/// `push("Name"`).
fn quoted_after(text: &str, marker: &str) -> Vec<String> {
    text.split(marker)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|name| is_ident(name))
        .map(str::to_owned)
        .collect()
}

/// Trace validation covers the protocol: every action of `Next` but the ones spec/README.md
/// says are not traced can be replayed, and the simulator's tracer names no other action.
#[test]
fn trace_validation_replays_every_traced_action() {
    const NOT_TRACED: [&str; 1] = ["CrashDuringNEWLEADER"];
    let actions = next_actions(&read("spec/Zab.tla"));
    let replayed = quoted_after(&read("spec/Trace.tla"), "e.a = \"");
    let missing: Vec<&String> = actions
        .iter()
        .filter(|a| !replayed.contains(a) && !NOT_TRACED.contains(&a.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "actions Trace.tla cannot replay: {missing:?}"
    );
    let written = quoted_after(&read("src/sim/trace.rs"), "push(\"");
    assert!(
        written.len() >= 15,
        "parsed too few actions from trace.rs: {written:?}"
    );
    let unknown: Vec<&String> = written.iter().filter(|a| !replayed.contains(a)).collect();
    assert!(
        unknown.is_empty(),
        "trace.rs writes actions Trace.tla does not replay: {unknown:?}"
    );
    let readme = read("spec/README.md");
    for a in NOT_TRACED {
        assert!(
            readme.contains(&format!("**Not traced:** `{a}`")),
            "README names {a}"
        );
    }
}

#[test]
fn every_property_has_a_checker_row() {
    let props = cfg_properties(&read("spec/MC_Zab_smoke.cfg"));
    assert!(
        props.len() >= 10,
        "parsed too few properties from MC_Zab_smoke.cfg: {props:?}"
    );
    let readme = read("spec/README.md");
    let rows = table_rows(&readme, CHECKER_HEADER);
    let listed: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.first())
        .map(|c| c.trim_matches('`'))
        .collect();
    let unlisted: Vec<&String> = props
        .iter()
        .filter(|p| !listed.contains(&p.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "invariants/properties of the smoke model without a row in the checker table: {unlisted:?}"
    );

    let checkers: Vec<(&str, &str)> = rows
        .iter()
        .filter_map(|r| Some((r.first()?.as_str(), r.get(1)?.as_str())))
        .flat_map(|(p, c)| backticked(c).into_iter().map(move |f| (p, f)))
        .collect();
    assert!(
        checkers.iter().all(|(_, f)| is_ident(f)),
        "checker names must be plain function names: {checkers:?}"
    );
    let path = root().join(CHECKER_FILE);
    if !Path::new(&path).exists() {
        eprintln!(
            "note: {CHECKER_FILE} does not exist yet; {} checker names not checked",
            checkers.len()
        );
        return;
    }
    let code = code_only(&read(CHECKER_FILE));
    let missing: Vec<String> = checkers
        .iter()
        .filter(|(_, f)| !defines_fn(&code, f))
        .map(|(p, f)| format!("{p}: checker `{f}` is missing from {CHECKER_FILE}"))
        .collect();
    assert!(
        missing.is_empty(),
        "spec/README.md names checkers that do not exist:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_textual_checks_see_impls_fns_and_skip_comments() {
    let src = r##"
        // impl Fake { fn ghost() {} }
        struct Leader;
        impl<T: Into<u8>> Wrapper<T> { fn wrapped(&self) {} }
        impl Leader {
            fn on_ack(&self) { let _ = "}"; let _ = '{'; let _ = r#"fn fake("#; }
            pub fn start<'a>(&'a self) {}
        }
        impl std::fmt::Debug for Leader { fn fmt(&self) {} }
        fn free() {}
    "##;
    let code = code_only(src);
    let leader = impl_bodies(&code, "Leader");
    assert_eq!(leader.len(), 2, "inherent and trait impls of Leader");
    assert!(leader.iter().any(|b| defines_fn(b, "on_ack")));
    assert!(leader.iter().any(|b| defines_fn(b, "start")));
    assert!(leader.iter().any(|b| defines_fn(b, "fmt")));
    assert!(!leader.iter().any(|b| defines_fn(b, "free")));
    assert!(!leader.iter().any(|b| defines_fn(b, "fake")));
    assert!(impl_bodies(&code, "Fake").is_empty(), "commented-out impl");
    assert!(defines_fn(impl_bodies(&code, "Wrapper")[0], "wrapped"));
    assert!(defines_fn(&code, "free") && !defines_fn(&code, "fre"));

    let rows = table_rows(
        "| TLA+ action | handler |\n| --- | --- |\n| `A` | `src/x.rs` `T::f`, `g` → `src/y.rs` `U::h` |\n",
        ACTION_HEADER,
    );
    let hs = action_handlers(&rows).expect("well-formed");
    let got: Vec<(&str, Option<&str>, &str)> = hs
        .iter()
        .map(|h| (h.file.as_str(), h.type_.as_deref(), h.name.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("src/x.rs", Some("T"), "f"),
            ("src/x.rs", None, "g"),
            ("src/y.rs", Some("U"), "h")
        ]
    );
    let bad = table_rows(
        "| TLA+ action | handler |\n| --- | --- |\n| `A` | `T::f` |\n",
        ACTION_HEADER,
    );
    assert!(action_handlers(&bad).is_err(), "a handler needs a file");
}
