//! Text from messages and captures made safe to store: PostgreSQL refuses
//! NUL in `text` and `\u0000` in `jsonb`, and an indexed value must fit a
//! b-tree page. Everything the runtime stores that came from outside goes
//! through here, so a hostile key can make a run fail, never vanish.

use std::borrow::Cow;

use serde_json::Value;

/// What stands for a NUL character in stored text.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// `text` with every NUL replaced.
pub fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', &NUL_REPLACEMENT.to_string()))
    } else {
        Cow::Borrowed(s)
    }
}

/// At most `max_bytes` of `s` (cut at a character boundary), NULs
/// replaced, and when cut, how much was left out.
pub fn bounded(s: &str, max_bytes: usize) -> String {
    let s = text(s);
    if s.len() <= max_bytes {
        return s.into_owned();
    }
    let mut cut = max_bytes;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let left_out = s[cut..].chars().count();
    format!("{} … ({left_out} more characters)", &s[..cut])
}

/// A JSON value with NUL replaced in every string and object key.
pub fn json(value: &Value) -> Cow<'_, Value> {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(has_nul),
            Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    fn clean(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(text(s).into_owned()),
            Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (text(k).into_owned(), clean(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    if has_nul(value) {
        Cow::Owned(clean(value))
    } else {
        Cow::Borrowed(value)
    }
}

/// Indexed values (a failure row's item) stay well inside a b-tree page.
pub const MAX_ITEM_BYTES: usize = 1024;
/// Error texts are kept whole up to this size.
pub const MAX_ERROR_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_replaced_everywhere() {
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
        let v = serde_json::json!({"k\u{0}": ["x\u{0}", 1, {"y": "\u{0}"}]});
        let clean = json(&v);
        assert!(!serde_json::to_string(&*clean).unwrap().contains("\\u0000"));
        assert!(matches!(
            json(&serde_json::json!({"a": "b"})),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn long_text_is_cut_with_a_count() {
        let long = "é".repeat(2000);
        let cut = bounded(&long, 101);
        assert!(cut.starts_with(&"é".repeat(50)));
        assert!(cut.ends_with("(1950 more characters)"), "{cut}");
        assert_eq!(bounded("short", 100), "short");
    }
}
