//! A YAML tree that remembers where every node came from.
//!
//! serde_yaml reports where the *first* problem is, but a `.cirun.yml` check
//! must report every problem at once, each at its line and column, and tell a
//! duplicated key from a misspelled one. So rigger reads the file into this
//! small tree of spanned nodes and walks it (see `parse.rs`).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

use super::diagnostics::{Diagnostic, Diagnostics};
use super::model::Location;

/// A node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub at: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar as written, and whether it was quoted or a block (`|`, `>`),
    /// which makes it a string whatever it looks like.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Keys in file order. Duplicates are reported and the first one kept.
    Map(Vec<(Node, Node)>),
}

/// What a plain scalar means under YAML 1.2's core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Node {
    /// The typed value of a scalar node; `None` for collections.
    pub fn scalar(&self) -> Option<Scalar<'_>> {
        let Kind::Scalar { text, quoted } = &self.kind else {
            return None;
        };
        if *quoted {
            return Some(Scalar::Str(text));
        }
        Some(match text.as_str() {
            "" | "~" | "null" | "Null" | "NULL" => Scalar::Null,
            "true" | "True" | "TRUE" => Scalar::Bool(true),
            "false" | "False" | "FALSE" => Scalar::Bool(false),
            t => {
                if let Ok(i) = t.parse::<i64>() {
                    Scalar::Int(i)
                } else if let Some(f) = parse_float(t) {
                    Scalar::Float(f)
                } else {
                    Scalar::Str(t)
                }
            }
        })
    }

    /// The text of a scalar node, however it was written.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.scalar(), Some(Scalar::Null))
    }

    /// A word for the node's type, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
            Kind::Scalar { .. } => match self.scalar() {
                Some(Scalar::Null) => "nothing (null)",
                Some(Scalar::Bool(_)) => "a boolean",
                Some(Scalar::Int(_)) | Some(Scalar::Float(_)) => "a number",
                _ => "a string",
            },
        }
    }

    /// Convert to a serde_yaml value (for `extra_config` passed through to
    /// clouds rigger does not provision).
    pub fn to_value(&self) -> serde_yaml::Value {
        use serde_yaml::Value;
        match &self.kind {
            Kind::Seq(items) => Value::Sequence(items.iter().map(Node::to_value).collect()),
            Kind::Map(entries) => Value::Mapping(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_value(), v.to_value()))
                    .collect(),
            ),
            Kind::Scalar { .. } => match self.scalar() {
                Some(Scalar::Null) | None => Value::Null,
                Some(Scalar::Bool(b)) => Value::Bool(b),
                Some(Scalar::Int(i)) => Value::Number(i.into()),
                Some(Scalar::Float(f)) => Value::Number(f.into()),
                Some(Scalar::Str(s)) => Value::String(s.to_string()),
            },
        }
    }
}

/// YAML 1.2 floats, plus `.inf`/`.nan` spellings, but not Rust-only forms
/// such as `inf` or `NaN` that YAML reads as strings.
fn parse_float(t: &str) -> Option<f64> {
    match t {
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let looks_numeric = t
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && t.chars().any(|c| c.is_ascii_digit());
    if looks_numeric { t.parse().ok() } else { None }
}

/// Read `text` into a tree. Problems go to `diags`; `None` when the text is
/// not YAML at all (the error says where), or holds no document.
pub fn parse(text: &str, diags: &mut Diagnostics) -> Option<Node> {
    let mut source = text.to_string();
    // Cirun's own examples hold plain values such as `detail: see link: https://…`,
    // which YAML forbids (": " inside a plain scalar). Rather than fail the whole
    // file on a line a person can read unambiguously, read the rest of that line
    // as the value, say so, and say how to write it. Bounded: each repair
    // changes one line, and a file has only so many.
    for _ in 0..64 {
        match build(&source) {
            Ok(root) => return finish(root, diags),
            Err(failure) => match repair_colon_in_value(&source, &failure) {
                Some((repaired, line, col, value)) => {
                    diags.push(
                        Diagnostic::warning(
                            Location { line, column: col },
                            format!(
                                "this value contains \": \", which YAML does not allow in an \
                                 unquoted value; rigger read it as the text {value:?}"
                            ),
                        )
                        .with_hint("quote the value so every YAML parser reads it the same way"),
                    );
                    source = repaired;
                }
                None => {
                    diags.push(failure.into_diagnostic());
                    return None;
                }
            },
        }
    }
    diags.push(
        Diagnostic::error(
            Location { line: 1, column: 1 },
            "too many unquoted values containing \": \"; quote them".to_string(),
        )
        .with_hint("put values that contain \": \" in quotes: `key: \"a: b\"`"),
    );
    None
}

fn finish(root: Built, diags: &mut Diagnostics) -> Option<Node> {
    for d in root.diagnostics {
        diags.push(d);
    }
    if root.documents > 1 {
        diags.push(
            Diagnostic::error(
                root.second_document_at,
                "this file holds more than one YAML document (`---`); rigger reads one".into(),
            )
            .with_hint("remove the extra `---` line and merge the documents"),
        );
    }
    root.node
}

/// Why the parser stopped, with what it had seen last.
struct Failure {
    error: ScanError,
    /// The last scalar read before the error, if any.
    last_scalar: Option<Span>,
}

impl Failure {
    fn into_diagnostic(self) -> Diagnostic {
        let m = self.error.marker();
        let info = self.error.info();
        let hint = if info.contains("tab") {
            "YAML indents with spaces only; replace the tab with spaces"
        } else if info.contains("mapping values are not allowed") {
            "check the indentation of this line, or quote a value that contains \": \""
        } else if info.contains("did not find expected key") || info.contains("block end") {
            "check the indentation: keys of one mapping must start in the same column"
        } else if info.contains("quoted scalar") {
            "a quote is not closed"
        } else if info.contains("flow sequence") || info.contains("flow mapping") {
            "a `[` or `{` is not closed"
        } else {
            // A scan error rigger has no specific advice for.
            "check this line and the one before it: indentation with spaces, matching \
             quotes and brackets, and `key: value` with a space after the colon"
        };
        Diagnostic::error(
            Location {
                line: m.line(),
                column: m.col() + 1,
            },
            format!("not valid YAML: {info}"),
        )
        .with_hint(hint)
    }
}

/// If the parser failed on ": " inside a plain value that starts on the same
/// line, quote the rest of that line. Returns the new source, the value's
/// 1-based line and column, and the value as read.
fn repair_colon_in_value(
    source: &str,
    failure: &Failure,
) -> Option<(String, usize, usize, String)> {
    if !failure
        .error
        .info()
        .contains("mapping values are not allowed")
    {
        return None;
    }
    let value = failure.last_scalar?;
    let line_no = failure.error.marker().line();
    if value.start.line() != line_no || value.end.line() != line_no {
        return None;
    }
    let lines: Vec<&str> = source.split('\n').collect();
    let line = lines.get(line_no - 1)?;
    let chars: Vec<char> = line.chars().collect();
    let start = value.start.col();
    // Only a plain value that follows `key: ` on this line qualifies.
    let before: String = chars.get(..start)?.iter().collect();
    if !before.trim_end().ends_with(':') || matches!(chars.get(start), Some('"' | '\'')) {
        return None;
    }
    let raw: String = chars[start..].iter().collect();
    let value_text = strip_comment(&raw).trim_end().to_string();
    let quoted = format!(
        "\"{}\"",
        value_text.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out[line_no - 1] = format!("{before}{quoted}");
    Some((out.join("\n"), line_no, start + 1, value_text))
}

/// A plain scalar ends where ` #` starts a comment.
fn strip_comment(s: &str) -> &str {
    match s.find(" #") {
        Some(i) => &s[..i],
        None => s,
    }
}

struct Built {
    node: Option<Node>,
    documents: usize,
    second_document_at: Location,
    diagnostics: Vec<Diagnostic>,
}

fn location(span: &Span) -> Location {
    Location {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// Turn the event stream into a tree.
fn build(source: &str) -> Result<Built, Failure> {
    let mut parser = Parser::new_from_str(source);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut built = Built {
        node: None,
        documents: 0,
        second_document_at: Location::default(),
        diagnostics: Vec::new(),
    };
    let mut last_scalar: Option<Span> = None;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|error| Failure { error, last_scalar })?;
        let node = match event {
            Event::DocumentStart(_) => {
                built.documents += 1;
                if built.documents == 2 {
                    built.second_document_at = location(&span);
                }
                continue;
            }
            Event::Scalar(text, style, anchor, _) => {
                last_scalar = Some(span);
                let quoted = !matches!(style, ScalarStyle::Plain);
                let node = Node {
                    kind: Kind::Scalar {
                        text: text.into_owned(),
                        quoted,
                    },
                    at: location(&span),
                };
                remember(&mut anchors, anchor, &node);
                node
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::new(Kind::Seq(Vec::new()), location(&span), anchor));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::new(Kind::Map(Vec::new()), location(&span), anchor));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = stack.pop() else { continue };
                let node = Node {
                    kind: frame.kind,
                    at: frame.at,
                };
                remember(&mut anchors, frame.anchor, &node);
                node
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => Node {
                    at: location(&span),
                    ..n.clone()
                },
                None => continue,
            },
            _ => continue,
        };
        match stack.last_mut() {
            Some(parent) => parent.add(node, &mut built.diagnostics),
            // Keep the first document; a second one is reported in `finish`.
            None if built.node.is_none() => built.node = Some(node),
            None => {}
        }
    }
    Ok(built)
}

fn remember(anchors: &mut HashMap<usize, Node>, anchor: usize, node: &Node) {
    if anchor != 0 {
        anchors.insert(anchor, node.clone());
    }
}

/// A collection being filled.
struct Frame {
    kind: Kind,
    at: Location,
    anchor: usize,
    pending_key: Option<Node>,
}

impl Frame {
    fn new(kind: Kind, at: Location, anchor: usize) -> Frame {
        Frame {
            kind,
            at,
            anchor,
            pending_key: None,
        }
    }

    fn add(&mut self, node: Node, diags: &mut Vec<Diagnostic>) {
        match &mut self.kind {
            Kind::Seq(items) => items.push(node),
            Kind::Map(entries) => match self.pending_key.take() {
                None => self.pending_key = Some(node),
                Some(key) => {
                    let first = entries
                        .iter()
                        .find(|(k, _)| k.text().is_some() && k.text() == key.text());
                    if let Some((first, _)) = first {
                        diags.push(
                            Diagnostic::error(
                                key.at,
                                format!(
                                    "duplicated key `{}`: it is already set on line {}",
                                    key.text().unwrap_or_default(),
                                    first.at.line
                                ),
                            )
                            .with_hint("remove one of the two; YAML keeps only one of them"),
                        );
                    } else {
                        entries.push((key, node));
                    }
                }
            },
            Kind::Scalar { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> (Option<Node>, Diagnostics) {
        let mut d = Diagnostics::default();
        let n = parse(text, &mut d);
        (n, d)
    }

    fn map_keys(n: &Node) -> Vec<String> {
        match &n.kind {
            Kind::Map(e) => e
                .iter()
                .map(|(k, _)| k.text().unwrap().to_string())
                .collect(),
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn scalars_are_typed_like_yaml_1_2() {
        let (n, d) = tree("a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: yes\ng: 1e3\nh: 12.0.0\n");
        assert!(d.is_empty(), "{d:?}");
        let Kind::Map(e) = n.unwrap().kind else {
            panic!()
        };
        let v: Vec<Scalar> = e.iter().map(|(_, v)| v.scalar().unwrap()).collect();
        assert_eq!(v[0], Scalar::Int(1));
        assert_eq!(v[1], Scalar::Float(1.5));
        assert_eq!(v[2], Scalar::Bool(true));
        assert_eq!(v[3], Scalar::Null);
        assert_eq!(v[4], Scalar::Str("1"));
        assert_eq!(v[5], Scalar::Str("yes"));
        assert_eq!(v[6], Scalar::Float(1000.0));
        assert_eq!(v[7], Scalar::Str("12.0.0"));
    }

    #[test]
    fn positions_are_one_based() {
        let (n, _) = tree("runners:\n  - name: x\n");
        let n = n.unwrap();
        let Kind::Map(e) = &n.kind else { panic!() };
        let (_, runners) = &e[0];
        let Kind::Seq(items) = &runners.kind else {
            panic!()
        };
        assert_eq!(items[0].at, Location { line: 2, column: 5 });
        let Kind::Map(fields) = &items[0].kind else {
            panic!()
        };
        assert_eq!(
            fields[0].1.at,
            Location {
                line: 2,
                column: 11
            }
        );
    }

    #[test]
    fn duplicated_keys_are_errors_at_the_second() {
        let (n, d) = tree("a: 1\nb: 2\na: 3\n");
        assert_eq!(map_keys(&n.unwrap()), vec!["a", "b"]);
        let e = &d.items()[0];
        assert!(e.is_error());
        assert_eq!(e.location, Location { line: 3, column: 1 });
        assert!(e.message.contains("line 1"), "{}", e.message);
    }

    #[test]
    fn broken_yaml_is_an_error_with_a_place() {
        let (n, d) = tree("a: [1, 2\nb: 3\n");
        assert!(n.is_none());
        let e = &d.items()[0];
        assert!(e.is_error());
        assert!(e.message.starts_with("not valid YAML"));
        assert_eq!(e.location.line, 2);
    }

    #[test]
    fn colon_in_a_plain_value_is_read_with_a_warning() {
        let text =
            "setup_info:\n  - group: G\n    detail: Some text with link: https://cirun.io  # c\n";
        let (n, d) = tree(text);
        let n = n.expect("repaired");
        assert_eq!(d.items().len(), 1);
        let w = &d.items()[0];
        assert!(!w.is_error());
        assert_eq!(
            w.location,
            Location {
                line: 3,
                column: 13
            }
        );
        let Kind::Map(top) = &n.kind else { panic!() };
        let Kind::Seq(items) = &top[0].1.kind else {
            panic!()
        };
        let Kind::Map(entry) = &items[0].kind else {
            panic!()
        };
        assert_eq!(
            entry[1].1.text(),
            Some("Some text with link: https://cirun.io")
        );
    }

    #[test]
    fn anchors_and_aliases_are_expanded() {
        let (n, d) = tree("a: &img nvidia/cuda:12.0.0-base-ubuntu22.04\nb: *img\n");
        assert!(d.is_empty());
        let Kind::Map(e) = n.unwrap().kind else {
            panic!()
        };
        assert_eq!(e[1].1.text(), e[0].1.text());
        assert_eq!(e[1].1.at.line, 2);
    }

    #[test]
    fn empty_text_has_no_document() {
        let (n, d) = tree("# nothing\n");
        assert!(n.is_none());
        assert!(d.is_empty());
    }

    #[test]
    fn two_documents_are_an_error() {
        let (_, d) = tree("a: 1\n---\nb: 2\n");
        assert!(d.items()[0].is_error());
        assert_eq!(d.items()[0].location.line, 2);
    }
}
