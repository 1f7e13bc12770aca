//! Znode paths: ZooKeeper's `PathUtils.validatePath` rules and the parent/name split.
//!
//! ZooKeeper validates UTF-16 code units. A Rust `str` holds code points, so the rules are
//! restated per code point: every character above U+FFFF is invalid, because Java sees it as a
//! surrogate pair whose first unit (U+D800..U+DBFF) falls in a forbidden range.

use crate::jute::proto::Code;

/// The special paths ZooKeeper creates itself (`DataTree.isSpecialPath`): no client may
/// create or delete them.
pub const SPECIAL_PATHS: [&str; 4] = ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"];

/// `PathUtils.validatePath`: absolute, no empty component, no trailing '/', no "." or ".."
/// component, and no forbidden character. Fails with `BadArguments`, as PrepRequestProcessor
/// reports it.
pub fn validate(path: &str) -> Result<(), Code> {
    if is_valid(path) {
        Ok(())
    } else {
        Err(Code::BadArguments)
    }
}

/// `PathUtils.validatePath(path, true)`: a sequential create validates `path + "1"`, so a
/// trailing '/' is a legal prefix ("/a/" becomes "/a/0000000003").
pub fn validate_sequential(path: &str) -> Result<(), Code> {
    let mut with_suffix = String::with_capacity(path.len() + 1);
    with_suffix.push_str(path);
    with_suffix.push('1');
    validate(&with_suffix)
}

fn is_valid(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    // Splitting what follows the leading '/' yields exactly the components Java walks; an
    // empty one is "//" or a trailing '/'.
    rest.split('/').all(valid_component)
}

fn valid_component(component: &str) -> bool {
    !component.is_empty()
        && component != "."
        && component != ".."
        && component.chars().all(valid_char)
}

/// The characters `validatePath` accepts, per code point.
fn valid_char(c: char) -> bool {
    !matches!(
        u32::from(c),
        0x0000..=0x001f | 0x007f..=0x009f | 0xd800..=0xf8ff | 0xfff0..=0x10_ffff
    )
}

/// The parent of a path: "/a/b" -> "/a", "/a" -> "/". The root is its own parent, and a
/// string without '/' (never a valid path) has the root as parent too.
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component: "/a/b" -> "b", "/" -> "".
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// `DataTree.isSpecialPath`.
pub fn is_special(path: &str) -> bool {
    SPECIAL_PATHS.contains(&path)
}

/// Java's `String.length()`: UTF-16 code units. ZooKeeper's approximate data size counts
/// paths this way.
pub fn java_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Java's `String.trim().isEmpty()`: true when every character is at most U+0020.
pub(crate) fn java_blank(s: &str) -> bool {
    s.chars().all(|c| c <= ' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let valid = [
            "/",
            "/a",
            "/a/b",
            "/this is / a valid/path",
            "/name/with.period.",
            "/...",
            "/a/.b",
            "/a/..b",
            "/a/b..",
            "/test\u{20}",
            "/test\u{7e}",
            "/test\u{a0}",
            "/test\u{d7ff}",
            "/test\u{f900}",
            "/test\u{ffef}",
            "/zookeeper",
            "/\u{4e2d}\u{6587}",
        ];
        for p in valid {
            assert_eq!(validate(p), Ok(()), "{p:?} should be valid");
        }
        let invalid = [
            "",
            "a",
            "not/valid",
            "//",
            "/ends/with/slash/",
            "/double//slash",
            "/single/./period",
            "/double/../period",
            "/.",
            "/..",
            "/a/.",
            "/a/..",
            "/test\u{0}",
            "/test\u{1}",
            "/test\u{1f}",
            "/test\u{7f}",
            "/test\u{80}",
            "/test\u{9f}",
            "/test\u{e000}",
            "/test\u{f8ff}",
            "/test\u{fff0}",
            "/test\u{fffd}",
            "/test\u{ffff}",
            "/test\u{1f600}",
            "/test\u{10000}",
        ];
        for p in invalid {
            assert_eq!(
                validate(p),
                Err(Code::BadArguments),
                "{p:?} should be invalid"
            );
        }
    }

    #[test]
    fn sequential_validation_appends_a_digit() {
        assert_eq!(validate_sequential("/a/"), Ok(()));
        assert_eq!(validate_sequential("/"), Ok(()));
        assert_eq!(validate_sequential("/a/b"), Ok(()));
        assert_eq!(validate_sequential("/a//"), Err(Code::BadArguments));
        assert_eq!(validate_sequential("/./"), Err(Code::BadArguments));
        assert_eq!(validate_sequential(""), Err(Code::BadArguments));
        // "/a/." + "1" is the component ".1": fine.
        assert_eq!(validate_sequential("/a/."), Ok(()));
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/"), "/");
        assert_eq!(parent("/a/"), "/a");
        assert_eq!(parent("x"), "/");
        assert_eq!(name("/a/b"), "b");
        assert_eq!(name("/a"), "a");
        assert_eq!(name("/"), "");
        assert_eq!(name("/a/"), "");
    }

    #[test]
    fn java_lengths_count_utf16_units() {
        assert_eq!(java_len("/zookeeper"), 10);
        assert_eq!(java_len("/\u{e9}"), 2);
        assert_eq!(java_len("/\u{1f600}"), 3);
        assert!(java_blank(" \t"));
        assert!(!java_blank(" a "));
    }

    #[test]
    fn special_paths() {
        assert!(is_special("/zookeeper/config"));
        assert!(!is_special("/zookeeper/quota/a"));
    }
}
