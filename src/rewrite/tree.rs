//! A YAML stream as a tree of nodes that know where they are in the text, in bytes.
//!
//! Built from saphyr-parser's events rather than from `saphyr::MarkedYaml`, because the
//! rewriter needs what the DOM loses: which node an alias points to (the DOM copies it), the
//! scalar style, and exact extents. The parser's markers count characters, not bytes, and its
//! spans are loose (a quoted scalar's span runs on to the next token, comment included; a
//! scalar's span includes its anchor and tag), so every extent is recomputed here from the
//! text itself.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Span};

pub(crate) type NodeId = usize;

#[derive(Debug)]
pub(crate) enum Kind {
    Scalar {
        value: String,
        style: ScalarStyle,
    },
    Mapping {
        entries: Vec<(NodeId, NodeId)>,
        flow: bool,
    },
    Sequence {
        items: Vec<NodeId>,
        flow: bool,
    },
    /// `*name`: the node the anchor was on.
    Alias {
        target: NodeId,
    },
}

#[derive(Debug)]
pub(crate) struct Node {
    pub kind: Kind,
    /// Where the parser's span starts: at the node's anchor or tag when it has one.
    pub raw_start: usize,
    /// The node's first byte after its properties: a quote, `{`, `[`, `|`, `*` or the first
    /// character of a plain scalar. For a block collection, its first child.
    pub start: usize,
    /// Just past the node's last byte: the closing quote, `}` or `]`, the end of a plain
    /// scalar, the end of a block collection's last child. An empty scalar (`key:` with no
    /// value) is empty and sits right after its key.
    pub end: usize,
}

pub(crate) struct Tree<'t> {
    pub text: &'t str,
    pub nodes: Vec<Node>,
    /// The root node of every document, in order.
    pub documents: Vec<NodeId>,
    /// Byte offset of the start of every line.
    line_starts: Vec<usize>,
}

impl<'t> Tree<'t> {
    pub fn parse(text: &'t str) -> Result<Self, ScanError> {
        let mut builder = Builder {
            text,
            offsets: CharOffsets::new(text),
            nodes: Vec::new(),
            stack: Vec::new(),
            anchors: HashMap::new(),
            documents: Vec::new(),
        };
        let mut parser = Parser::new_from_str(text);
        while let Some(event) = parser.next_event() {
            let (event, span) = event?;
            if event == Event::StreamEnd {
                break;
            }
            builder.on_event(event, span)?;
        }
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Ok(Tree {
            text,
            nodes: builder.nodes,
            documents: builder.documents,
            line_starts,
        })
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// The node itself, or the anchored node when it is an alias.
    pub fn resolve(&self, id: NodeId) -> NodeId {
        match self.nodes[id].kind {
            Kind::Alias { target } => target,
            _ => id,
        }
    }

    /// The value and style of a scalar, through an alias.
    pub fn scalar(&self, id: NodeId) -> Option<(&str, ScalarStyle)> {
        match &self.nodes[self.resolve(id)].kind {
            Kind::Scalar { value, style } => Some((value, *style)),
            _ => None,
        }
    }

    pub fn str(&self, id: NodeId) -> Option<&str> {
        self.scalar(id).map(|(v, _)| v)
    }

    /// True for an empty plain scalar, `~` and `null` (and the other spellings of null).
    pub fn is_null(&self, id: NodeId) -> bool {
        matches!(
            self.scalar(id),
            Some(("" | "~" | "null" | "Null" | "NULL", ScalarStyle::Plain))
        )
    }

    /// 1-based line of a byte offset.
    pub fn line(&self, byte: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= byte)
    }

    /// 1-based line where a node starts.
    pub fn line_of(&self, id: NodeId) -> usize {
        self.line(self.nodes[id].start)
    }

    /// 0-based column of a byte offset, in characters (as YAML counts indentation).
    pub fn col(&self, byte: usize) -> usize {
        let line_start = self.line_starts[self.line(byte) - 1];
        self.text[line_start..byte].chars().count()
    }
}

/// Converts the parser's character indices (a leading byte-order mark counts) to byte offsets.
struct CharOffsets {
    /// Byte offset of every character (and of the end), when the text is not ASCII.
    table: Option<Vec<usize>>,
}

impl CharOffsets {
    fn new(text: &str) -> Self {
        let table = (!text.is_ascii()).then(|| {
            text.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .collect()
        });
        CharOffsets { table }
    }

    fn byte(&self, mark: Marker) -> usize {
        match &self.table {
            Some(t) => t[mark.index().min(t.len() - 1)],
            None => mark.index(),
        }
    }
}

struct Open {
    id: NodeId,
    pending_key: Option<NodeId>,
    anchor: usize,
}

struct Builder<'t> {
    text: &'t str,
    offsets: CharOffsets,
    nodes: Vec<Node>,
    stack: Vec<Open>,
    /// Anchor id → node, registered when the node is complete, so that an alias can never
    /// point at a node that contains it.
    anchors: HashMap<usize, NodeId>,
    documents: Vec<NodeId>,
}

impl Builder<'_> {
    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), ScanError> {
        let raw = self.offsets.byte(span.start);
        let raw_end = self.offsets.byte(span.end);
        match event {
            Event::Scalar(value, style, anchor, _) => {
                let (start, end) = if value.is_empty() && style == ScalarStyle::Plain {
                    // Its span is unreliable (it may cover the next `---`); placed at attach.
                    (raw, raw)
                } else {
                    let start = skip_properties(self.text, raw);
                    let end = match style {
                        ScalarStyle::SingleQuoted => quoted_end(self.text, start, b'\''),
                        ScalarStyle::DoubleQuoted => quoted_end(self.text, start, b'"'),
                        ScalarStyle::Plain => raw_end,
                        // The span runs on to the next token; the scalar ends with the
                        // line break before that token's indentation.
                        ScalarStyle::Literal | ScalarStyle::Folded => {
                            self.text[..raw_end].trim_end_matches([' ', '\t']).len()
                        }
                    };
                    (start, end)
                };
                let kind = Kind::Scalar {
                    value: value.into_owned(),
                    style,
                };
                let id = self.push(kind, raw, start, end);
                self.register(anchor, id);
                self.attach(id);
            }
            Event::Alias(anchor) => {
                let Some(&target) = self.anchors.get(&anchor) else {
                    return Err(ScanError::new_str(
                        span.start,
                        "alias refers to a node that contains it",
                    ));
                };
                let id = self.push(Kind::Alias { target }, raw, raw, raw_end);
                self.attach(id);
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let start = skip_properties(self.text, raw);
                // A block mapping whose first key is a flow collection (`[a]: b`) looks the
                // same here; `attach` corrects that when the key turns out to start at `start`.
                let flow = matches!(self.text.as_bytes().get(start), Some(b'{' | b'['));
                let kind = if matches!(event, Event::MappingStart(..)) {
                    Kind::Mapping {
                        entries: Vec::new(),
                        flow,
                    }
                } else {
                    Kind::Sequence {
                        items: Vec::new(),
                        flow,
                    }
                };
                let id = self.push(kind, raw, start, start);
                self.stack.push(Open {
                    id,
                    pending_key: None,
                    anchor,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let open = self.stack.pop().expect("the parser balances collections");
                let node = &self.nodes[open.id];
                let (last, flow) = match &node.kind {
                    Kind::Mapping { entries, flow } => (entries.last().map(|&(_, v)| v), *flow),
                    Kind::Sequence { items, flow } => (items.last().copied(), *flow),
                    _ => unreachable!("only collections are opened"),
                };
                let content_end =
                    last.map_or(node.start + usize::from(flow), |l| self.nodes[l].end);
                // The parser's span of `]` or `}` may be a trailing comma instead: find it.
                let end = if flow {
                    closing_bracket(self.text, content_end).unwrap_or(raw_end)
                } else {
                    content_end
                };
                self.nodes[open.id].end = end;
                self.register(open.anchor, open.id);
                self.attach(open.id);
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
        Ok(())
    }

    fn push(&mut self, kind: Kind, raw_start: usize, start: usize, end: usize) -> NodeId {
        self.nodes.push(Node {
            kind,
            raw_start,
            start,
            end,
        });
        self.nodes.len() - 1
    }

    fn register(&mut self, anchor: usize, id: NodeId) {
        if anchor > 0 {
            self.anchors.insert(anchor, id);
        }
    }

    fn attach(&mut self, id: NodeId) {
        let Some(open) = self.stack.last_mut() else {
            self.documents.push(id);
            return;
        };
        let is_mapping = matches!(self.nodes[open.id].kind, Kind::Mapping { .. });
        if is_mapping && open.pending_key.is_none() {
            open.pending_key = Some(id);
            return;
        }
        let key = open.pending_key.take();
        let parent = open.id;
        if self.nodes[id].raw_start == self.nodes[parent].start {
            // The first child starts at the parent's "bracket": the parent is a block mapping
            // whose first key is a flow collection.
            match &mut self.nodes[parent].kind {
                Kind::Mapping { flow, .. } | Kind::Sequence { flow, .. } => *flow = false,
                _ => {}
            }
        }
        if let Some(k) = key {
            if matches!(&self.nodes[id].kind, Kind::Scalar { value, style: ScalarStyle::Plain } if value.is_empty())
            {
                let after_key = self.nodes[k].end;
                self.nodes[id].start = after_key;
                self.nodes[id].end = after_key;
            }
        }
        match &mut self.nodes[parent].kind {
            Kind::Mapping { entries, .. } => entries.push((key.expect("a key was pending"), id)),
            Kind::Sequence { items, .. } => items.push(id),
            _ => unreachable!("only collections are opened"),
        }
    }
}

/// Skips a node's properties (`&anchor`, `!tag`, `!<verbatim>`) and the white space and
/// comments between them.
fn skip_properties(text: &str, mut i: usize) -> usize {
    let b = text.as_bytes();
    let ends_property =
        |c: u8| c.is_ascii_whitespace() || matches!(c, b',' | b'[' | b']' | b'{' | b'}');
    while matches!(b.get(i), Some(b'&' | b'!')) {
        let len = if b[i..].starts_with(b"!<") {
            b[i..]
                .iter()
                .position(|&c| c == b'>')
                .map_or(b.len() - i, |p| p + 1)
        } else {
            b[i..]
                .iter()
                .position(|&c| ends_property(c))
                .unwrap_or(b.len() - i)
        };
        i += len;
        // Separation: white space, and comments after white space.
        loop {
            match b.get(i) {
                Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
                Some(b'#') => {
                    i += b[i..]
                        .iter()
                        .position(|&c| c == b'\n')
                        .unwrap_or(b.len() - i);
                }
                _ => break,
            }
        }
    }
    i
}

/// Just past the `]` or `}` that closes a flow collection whose last child ends at `from`:
/// only white space, comments, a trailing `,` (or the `:` of an empty value) may come between.
fn closing_bracket(text: &str, mut i: usize) -> Option<usize> {
    let b = text.as_bytes();
    while let Some(&c) = b.get(i) {
        match c {
            b']' | b'}' => return Some(i + 1),
            b' ' | b'\t' | b'\r' | b'\n' | b',' | b':' => i += 1,
            b'#' => {
                i += b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .unwrap_or(b.len() - i)
            }
            _ => return None,
        }
    }
    None
}

/// The end (past the closing quote) of a quoted scalar starting at `start`.
fn quoted_end(text: &str, start: usize, quote: u8) -> usize {
    let b = text.as_bytes();
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent(t: &Tree, id: NodeId) -> String {
        let n = t.node(id);
        t.text[n.start..n.end].to_string()
    }

    /// The extents of all nodes, in the order the parser met them.
    fn all_extents(text: &str) -> Vec<String> {
        let t = Tree::parse(text).unwrap();
        (0..t.nodes.len()).map(|id| extent(&t, id)).collect()
    }

    #[test]
    fn extents_are_exact_bytes() {
        let text = "é: \"x\\\"y\" # c\nb: &a 'it''s' # d\nc: !!str plain text # e\nd: *a\n";
        assert_eq!(
            all_extents(text),
            [
                "é: \"x\\\"y\" # c\nb: &a 'it''s' # d\nc: !!str plain text # e\nd: *a",
                "é",
                "\"x\\\"y\"",
                "b",
                "'it''s'",
                "c",
                "plain text",
                "d",
                "*a",
            ]
        );
    }

    #[test]
    fn flow_collections_and_empty_values() {
        let text = "k: &s [ \"a\" , {x: }, ]\nl:\nm: x\n";
        let t = Tree::parse(text).unwrap();
        let ex = all_extents(text);
        assert_eq!(ex[2], "[ \"a\" , {x: }, ]");
        assert_eq!(ex[3], "\"a\"");
        assert_eq!(ex[4], "{x: }");
        assert_eq!(ex[6], "", "empty value");
        assert_eq!(
            t.node(6).start,
            t.node(5).end,
            "an empty value sits after its key"
        );
        assert_eq!(t.node(8).start, text.find("l:").unwrap() + 1);
        assert!(matches!(t.node(2).kind, Kind::Sequence { flow: true, .. }));
        assert!(matches!(t.node(0).kind, Kind::Mapping { flow: false, .. }));
    }

    #[test]
    fn bom_and_unicode() {
        let text = "\u{feff}# ünï\na: ß\nb: \"c\"\n";
        let t = Tree::parse(text).unwrap();
        assert_eq!(&all_extents(text)[1..], ["a", "ß", "b", "\"c\""]);
        assert_eq!(t.line_of(4), 3);
        assert_eq!(t.col(t.node(4).start), 3);
    }

    #[test]
    fn self_referencing_alias_is_refused() {
        assert!(Tree::parse("a: &x [*x]\n").is_err());
    }
}
