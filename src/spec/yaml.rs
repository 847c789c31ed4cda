//! Typed access to a `saphyr::MarkedYaml` tree, with every error pointing at `file:line:col`.
//!
//! The spec is read from the marked tree rather than through serde so that every value keeps
//! its position, unknown keys can be reported where they are, and scalars such as `tag: 9.4`
//! or `tag: 1.10` keep the text the user wrote instead of becoming the float `9.4` / `1.1`.

use std::path::Path;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::{ErrorKind, Location, SpecError};

/// A mapping as `(key, key node, value node)` in document order.
pub(super) type Entries<'n, 'i> = Vec<(&'n str, &'n MarkedYaml<'i>, &'n MarkedYaml<'i>)>;

/// Extra advice for an unknown key, instead of the closest allowed key.
pub(super) type Hint<'h> = &'h dyn Fn(&str) -> Option<String>;

/// The source text and file name, used to turn node spans into locations and raw text.
pub(super) struct Doc<'a> {
    pub text: &'a str,
    pub path: &'a Path,
}

impl<'a> Doc<'a> {
    /// Parses `text` into exactly one YAML document. An empty file or a file holding only
    /// comments is `None`.
    pub fn load(&self) -> Result<Option<MarkedYaml<'a>>, SpecError> {
        let docs = MarkedYaml::load_from_str(self.text).map_err(|e| SpecError::Yaml {
            at: self.location(e.marker().line(), e.marker().col()),
            message: e.info().to_string(),
        })?;
        let mut docs = docs.into_iter();
        let first = docs.next();
        if let Some(second) = docs.next() {
            return Err(self.invalid(
                &second,
                ErrorKind::BadValue,
                "the file holds more than one YAML document (`---`); put everything in one",
            ));
        }
        Ok(first.filter(|d| !matches!(d.data, YamlData::BadValue)))
    }

    /// `line` as saphyr counts it (1-based), `col` 0-based.
    pub fn location(&self, line: usize, col: usize) -> Location {
        Location {
            path: self.path.to_path_buf(),
            line: line.max(1),
            column: col + 1,
        }
    }

    pub fn at(&self, node: &MarkedYaml) -> Location {
        self.location(node.span.start.line(), node.span.start.col())
    }

    pub fn invalid(
        &self,
        node: &MarkedYaml,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> SpecError {
        SpecError::Invalid {
            at: self.at(node),
            kind,
            message: message.into(),
        }
    }

    fn wrong_type(&self, node: &MarkedYaml, what: &str, expected: &str) -> SpecError {
        self.invalid(
            node,
            ErrorKind::WrongType,
            format!("{what}: expected {expected}, found {}", self.describe(node)),
        )
    }

    /// The mapping's entries in document order; keys must be strings.
    pub fn mapping<'n>(
        &self,
        node: &'n MarkedYaml<'a>,
        what: &str,
        expected: &str,
    ) -> Result<Entries<'n, 'a>, SpecError> {
        let YamlData::Mapping(map) = &node.data else {
            return Err(self.wrong_type(node, what, expected));
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            match &k.data {
                YamlData::Value(Scalar::String(s)) => out.push((s.as_ref(), k, v)),
                _ => {
                    return Err(self.invalid(
                        k,
                        ErrorKind::WrongType,
                        format!("{what}: keys must be strings, found {}", self.describe(k)),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// Rejects any key not in `allowed`, suggesting the closest allowed key.
    pub fn check_keys(
        &self,
        entries: &Entries<'_, 'a>,
        allowed: &[&str],
        what: &str,
        hint: Option<Hint<'_>>,
    ) -> Result<(), SpecError> {
        for (key, knode, _) in entries {
            if allowed.contains(key) {
                continue;
            }
            let mut message = format!("unknown key `{key}` in {what}");
            if let Some(extra) = hint.and_then(|h| h(key)) {
                message.push_str(&format!(" ({extra})"));
            } else if let Some(close) = closest(key, allowed) {
                message.push_str(&format!(" (did you mean `{close}`?)"));
            } else {
                let list: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
                message.push_str(&format!("; allowed keys: {}", list.join(", ")));
            }
            return Err(self.invalid(knode, ErrorKind::UnknownKey, message));
        }
        Ok(())
    }

    pub fn sequence<'n>(
        &self,
        node: &'n MarkedYaml<'a>,
        what: &str,
        expected: &str,
    ) -> Result<&'n [MarkedYaml<'a>], SpecError> {
        match &node.data {
            YamlData::Sequence(items) => Ok(items),
            _ => Err(self.wrong_type(node, what, expected)),
        }
    }

    /// A scalar as the text the user wrote: strings as they are, numbers and booleans as
    /// written (`9.4`, `1.10`, `true`). Null, collections and bad values are type errors.
    pub fn string(&self, node: &MarkedYaml<'a>, what: &str) -> Result<String, SpecError> {
        match &node.data {
            YamlData::Value(Scalar::String(s)) => Ok(s.to_string()),
            YamlData::Value(Scalar::Null) => Err(self.invalid(
                node,
                ErrorKind::WrongType,
                format!("{what} is empty: expected a string"),
            )),
            YamlData::Value(_) => self.raw(node).ok_or_else(|| {
                self.invalid(
                    node,
                    ErrorKind::WrongType,
                    format!(
                        "{what}: cannot tell how {} was written (an alias?); write it in quotes",
                        self.describe(node)
                    ),
                )
            }),
            _ => Err(self.wrong_type(node, what, "a string")),
        }
    }

    /// The source text of a plain scalar node, if its span covers that scalar (after any
    /// `&anchor` and `!!tag` properties): an alias's span covers `*name`, which does not
    /// parse back to the same value.
    fn raw(&self, node: &MarkedYaml<'a>) -> Option<String> {
        let YamlData::Value(v) = &node.data else {
            return None;
        };
        let start = char_to_byte(self.text, node.span.start.index())?;
        let end = char_to_byte(self.text, node.span.end.index())?;
        let mut raw = self.text.get(start..end)?.trim();
        while raw.starts_with(['&', '!']) {
            raw = raw.split_once(char::is_whitespace)?.1.trim_start();
        }
        (Scalar::parse_from_cow(raw.into()) == *v).then(|| raw.to_string())
    }

    /// A short description of a node's type and value, for error messages.
    pub fn describe(&self, node: &MarkedYaml<'a>) -> String {
        match &node.data {
            YamlData::Mapping(_) => "a mapping".into(),
            YamlData::Sequence(_) => "a list".into(),
            YamlData::Value(Scalar::Null) => "an empty value".into(),
            YamlData::Value(Scalar::Boolean(b)) => format!("the boolean {b}"),
            YamlData::Value(v @ (Scalar::Integer(_) | Scalar::FloatingPoint(_))) => {
                format!(
                    "the number {}",
                    self.raw(node).unwrap_or_else(|| scalar_text(v))
                )
            }
            YamlData::Value(Scalar::String(s)) => format!("the string {s:?}"),
            YamlData::Tagged(tag, _) => {
                format!("a value tagged {tag} (YAML tags are not supported)")
            }
            YamlData::Alias(_) | YamlData::BadValue | YamlData::Representation(..) => {
                "an invalid value".into()
            }
        }
    }
}

fn scalar_text(v: &Scalar) -> String {
    match v {
        Scalar::Null => String::new(),
        Scalar::Boolean(b) => b.to_string(),
        Scalar::Integer(i) => i.to_string(),
        Scalar::FloatingPoint(f) => f.to_string(),
        Scalar::String(s) => s.to_string(),
    }
}

/// saphyr's `Marker::index()` counts characters, not bytes.
fn char_to_byte(text: &str, chars: usize) -> Option<usize> {
    if text.is_ascii() {
        return (chars <= text.len()).then_some(chars);
    }
    text.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .nth(chars)
}

/// The allowed key closest to `key` (case-insensitive equal, or edit distance at most 2).
fn closest<'k>(key: &str, allowed: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase();
    allowed
        .iter()
        .map(|a| (edit_distance(&lower, &a.to_ascii_lowercase()), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_key() {
        let allowed = ["usernameEnv", "passwordEnv"];
        assert_eq!(closest("usernameenv", &allowed), Some("usernameEnv"));
        assert_eq!(closest("passwordEnc", &allowed), Some("passwordEnv"));
        assert_eq!(closest("password", &allowed), None);
    }

    #[test]
    fn char_offsets() {
        assert_eq!(char_to_byte("abc", 3), Some(3));
        assert_eq!(char_to_byte("é: 1", 3), Some(4));
        assert_eq!(char_to_byte("é", 1), Some(2));
        assert_eq!(char_to_byte("é", 2), None);
    }
}
