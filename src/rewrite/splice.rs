//! Applying edits to the original text: every byte not covered by an edit is kept.

/// Replace `text[start..end]` with `with`; an insertion when `start == end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edit {
    pub start: usize,
    pub end: usize,
    pub with: String,
}

impl Edit {
    pub fn insert(at: usize, with: impl Into<String>) -> Self {
        Edit {
            start: at,
            end: at,
            with: with.into(),
        }
    }
}

/// Applies edits in order of position; insertions at the same place keep the order they were
/// planned in. An edit identical to one already applied is skipped (a node reached twice
/// through aliases), and so is an edit overlapping an earlier one (never planned; a guard).
pub(crate) fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| e.start);
    let mut out =
        String::with_capacity(text.len() + edits.iter().map(|e| e.with.len()).sum::<usize>());
    let mut pos = 0;
    let mut applied: Vec<&Edit> = Vec::new();
    for e in &edits {
        let duplicate = applied
            .iter()
            .rev()
            .take_while(|a| a.end >= e.start)
            .any(|a| *a == e);
        if duplicate || e.start < pos {
            continue;
        }
        out.push_str(&text[pos..e.start]);
        out.push_str(&e.with);
        pos = e.end;
        applied.push(e);
    }
    out.push_str(&text[pos..]);
    out
}

/// The file's line ending, from its first line: `\r\n` or `\n`.
pub(crate) fn line_ending(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if text[..i].ends_with('\r') => "\r\n",
        _ => "\n",
    }
}

/// An edit inserting whole `lines` after the line that holds byte `after - 1` (right at
/// `after` when it already starts a line). At the end of a file without a final line break,
/// the line break goes before the new lines instead, so the file still ends as it did.
pub(crate) fn insert_lines(text: &str, after: usize, lines: &[String], eol: &str) -> Edit {
    let body = lines.join(eol);
    if after > 0 && text.as_bytes()[after - 1] == b'\n' {
        return Edit::insert(after, format!("{body}{eol}"));
    }
    match text[after..].find('\n') {
        Some(i) => Edit::insert(after + i + 1, format!("{body}{eol}")),
        None => Edit::insert(text.len(), format!("{eol}{body}")),
    }
}

/// `s` as a YAML scalar: plain when it is unmistakably a string (a Kubernetes object name
/// such as `regcred`), else double-quoted (JSON escaping is valid YAML).
pub(crate) fn yaml_string(s: &str) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_keeps_everything_else() {
        let text = "a: b # c\nd: e\n";
        let edits = vec![
            Edit::insert(9, "x: 1\n"),
            Edit {
                start: 3,
                end: 4,
                with: "B".into(),
            },
            Edit::insert(9, "y: 2\n"),
            Edit::insert(9, "x: 1\n"),
        ];
        assert_eq!(apply(text, edits), "a: B # c\nx: 1\ny: 2\nd: e\n");
    }

    #[test]
    fn insert_lines_at_end_of_file() {
        let l = ["  k: v".to_string()];
        assert_eq!(
            insert_lines("a: b", 3, &l, "\r\n"),
            Edit::insert(4, "\r\n  k: v")
        );
        assert_eq!(
            insert_lines("a: b\r\n", 3, &l, "\r\n"),
            Edit::insert(6, "  k: v\r\n")
        );
        assert_eq!(
            insert_lines("a: |\n  x\nb: c", 9, &l, "\n"),
            Edit::insert(9, "  k: v\n")
        );
    }

    #[test]
    fn strings() {
        assert_eq!(yaml_string("regcred"), "regcred");
        assert_eq!(yaml_string("my-secret.v2"), "my-secret.v2");
        assert_eq!(yaml_string("yes"), "\"yes\"");
        assert_eq!(yaml_string("123"), "\"123\"");
        assert_eq!(yaml_string("a b\"c"), "\"a b\\\"c\"");
        assert_eq!(line_ending("a\r\nb\n"), "\r\n");
        assert_eq!(line_ending("a\nb\r\n"), "\n");
    }
}
