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
use crate::text::for_log;

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

/// Most bytes a config file may have: GitHub's contents API serves files up
/// to 1 MB with every feature, and a real `.cirun.yml` is a few KB (the
/// largest of the corpus in `shared/corpus/cirun` is 8 KB).
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Most collections one inside another. The deepest real file nests 8
/// (an `extra_config.networkInterfaces` of GCP); every walk of the tree,
/// and dropping it, recurses once per level, so the depth is bounded while
/// reading, long before a 2 MiB worker stack could overflow.
pub const MAX_DEPTH: usize = 64;

/// Most nodes (scalars and collections) one file may make rigger build,
/// counting each copy an alias (`*name`) makes and the copy the anchor table
/// keeps. The largest real file has 355 (thebrowsercompany/swift-build, 16
/// runners); nine levels of nine aliases would make billions.
pub const MAX_NODES: usize = 50_000;

/// Most bytes of scalar text one file may make rigger hold, copies
/// included: an alias of a long scalar copies it.
pub const MAX_TEXT_BYTES: usize = 4 * MAX_FILE_BYTES;

/// Most bytes the colon repair below may read, all attempts together: each
/// repair reads the whole file again. Real files needing a repair are a
/// few KB; a file of 1 MiB gets one repair.
const MAX_REPAIR_READ_BYTES: usize = 2 * MAX_FILE_BYTES;

/// Most colon repairs in one file.
const MAX_REPAIRS: usize = 64;

/// Read `text` into a tree. Problems go to `diags`; `None` when the text is
/// not YAML at all (the error says where), holds no document, or is over
/// one of the limits above.
pub fn parse(text: &str, diags: &mut Diagnostics) -> Option<Node> {
    if text.len() > MAX_FILE_BYTES {
        diags.push(too_large(Some(text.len())));
        return None;
    }
    let mut source = text.to_string();
    let mut read = 0;
    // Cirun's own examples hold plain values such as `detail: see link: https://…`,
    // which YAML forbids (": " inside a plain scalar). Rather than fail the whole
    // file on a line a person can read unambiguously, read the rest of that line
    // as the value, say so, and say how to write it. Bounded: each repair
    // changes one line, and reads the file once more.
    for _ in 0..MAX_REPAIRS {
        read += source.len();
        let failure = match build(&source) {
            Ok(root) => return finish(root, diags),
            Err(Failure::Limit(d)) => {
                diags.push(d);
                return None;
            }
            Err(Failure::Scan(f)) => f,
        };
        let Some((repaired, line, col, value)) = repair_colon_in_value(&source, &failure) else {
            diags.push(failure.into_diagnostic());
            return None;
        };
        diags.push(
            Diagnostic::warning(
                Location { line, column: col },
                format!(
                    "this value contains \": \", which YAML does not allow in an \
                     unquoted value; rigger read it as the text {:?}",
                    for_log(&value)
                ),
            )
            .with_hint("quote the value so every YAML parser reads it the same way"),
        );
        source = repaired;
        if read + source.len() > MAX_REPAIR_READ_BYTES {
            break;
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

/// The error for a file over [`MAX_FILE_BYTES`]: `bytes` long, or, when
/// `None`, of a size only known to be over it (a pipe, a growing file).
pub fn too_large(bytes: Option<usize>) -> Diagnostic {
    let size = match bytes {
        Some(n) => format!("{n} bytes"),
        None => format!("over {MAX_FILE_BYTES} bytes"),
    };
    Diagnostic::error(
        Location { line: 1, column: 1 },
        format!(
            "the file is {size}; rigger reads config files of at most {MAX_FILE_BYTES} bytes \
             (1 MiB), as GitHub serves them"
        ),
    )
    .with_hint(
        "a .cirun.yml is a few KB: remove what is generated or repeated (YAML anchors `&name` \
         and aliases `*name` repeat a part without copying it)",
    )
}

fn finish(root: Built, diags: &mut Diagnostics) -> Option<Node> {
    for d in root.diagnostics {
        diags.push(d);
    }
    if let Some(at) = root.second_document_at {
        diags.push(
            Diagnostic::error(
                at,
                "this file holds more than one YAML document (`---`); rigger reads one".into(),
            )
            .with_hint("remove the extra `---` line and merge the documents"),
        );
    }
    root.node
}

/// Why building the tree stopped.
enum Failure {
    /// Not YAML.
    Scan(ScanFailure),
    /// YAML, but over a limit: this error, and nothing more to read.
    Limit(Diagnostic),
}

/// Where the parser found the text is not YAML, with what it had seen last.
struct ScanFailure {
    error: ScanError,
    /// The last scalar read before the error, if any.
    last_scalar: Option<Span>,
}

impl ScanFailure {
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
        } else if info.contains("recursion limit") {
            "`[` and `{` nest far too deep here; a .cirun.yml nests a few levels"
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
    failure: &ScanFailure,
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
    let index = line_no.checked_sub(1)?;
    let lines: Vec<&str> = source.split('\n').collect();
    let line = lines.get(index)?;
    // Saphyr counts columns in characters: cut there, never at a byte.
    let chars: Vec<char> = line.chars().collect();
    let start = value.start.col();
    // Only a plain value that follows `key: ` on this line qualifies.
    let before: String = chars.get(..start)?.iter().collect();
    if !before.trim_end().ends_with(':') || matches!(chars.get(start), Some('"' | '\'')) {
        return None;
    }
    let raw: String = chars.get(start..)?.iter().collect();
    let value_text = strip_comment(&raw).trim_end().to_string();
    let quoted = format!(
        "\"{}\"",
        value_text.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out[index] = format!("{before}{quoted}");
    Some((out.join("\n"), line_no, start + 1, value_text))
}

/// A plain scalar ends where ` #` starts a comment. (`find` gives the byte
/// where the match starts, always a character boundary.)
fn strip_comment(s: &str) -> &str {
    match s.find(" #") {
        Some(i) => &s[..i],
        None => s,
    }
}

struct Built {
    node: Option<Node>,
    /// Where a second document starts; rigger stops reading there.
    second_document_at: Option<Location>,
    diagnostics: Vec<Diagnostic>,
}

fn location(span: &Span) -> Location {
    Location {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// How much a finished node holds, to charge a copy of it before making one.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    text_bytes: usize,
    /// Collections from this node down to its deepest leaf: 0 for a scalar.
    height: usize,
}

impl Size {
    fn scalar(text: &str) -> Size {
        Size {
            nodes: 1,
            text_bytes: text.len(),
            height: 0,
        }
    }

    /// This collection's size once `child` is in it.
    fn add(&mut self, child: Size) {
        self.nodes = self.nodes.saturating_add(child.nodes);
        self.text_bytes = self.text_bytes.saturating_add(child.text_bytes);
        self.height = self.height.max(child.height + 1);
    }
}

/// What the file has made rigger build so far, against the limits.
#[derive(Default)]
struct Budget {
    nodes: usize,
    text_bytes: usize,
}

impl Budget {
    /// Charge `size`, or say which limit it would pass, at `at`, and why.
    fn charge(&mut self, size: Size, at: Location, what: Charge) -> Result<(), Failure> {
        let nodes = self.nodes.saturating_add(size.nodes);
        let text_bytes = self.text_bytes.saturating_add(size.text_bytes);
        let over = if nodes > MAX_NODES {
            format!("more than {MAX_NODES} YAML nodes")
        } else if text_bytes > MAX_TEXT_BYTES {
            format!("more than {MAX_TEXT_BYTES} bytes of text")
        } else {
            self.nodes = nodes;
            self.text_bytes = text_bytes;
            return Ok(());
        };
        let (what, hint) = match what {
            Charge::Written(what) => (
                what,
                "a .cirun.yml needs a few hundred values; this file has far more: remove what \
                 is generated or repeated",
            ),
            Charge::Anchor => (
                "keeping a copy of this anchored node for its aliases",
                ALIAS_HINT,
            ),
            Charge::Alias => ("this alias (a copy of what its anchor holds)", ALIAS_HINT),
        };
        Err(Failure::Limit(
            Diagnostic::error(
                at,
                format!(
                    "{what} would make rigger hold {over} for this file; it stops reading here"
                ),
            )
            .with_hint(hint),
        ))
    }
}

/// What a charge is for, which says what to do about it.
#[derive(Clone, Copy)]
enum Charge {
    /// A value or collection written in the file.
    Written(&'static str),
    /// The copy of an anchored node kept for its aliases.
    Anchor,
    /// The copy an alias makes.
    Alias,
}

const ALIAS_HINT: &str = "a .cirun.yml needs a few hundred values; an alias (`*name`) copies \
                          everything its anchor (`&name`) holds, so aliases of aliases grow \
                          without bound: write the repeated part once per use, or fewer times";

/// The error for a collection (or an alias of one) deeper than [`MAX_DEPTH`].
fn too_deep(at: Location, what: &str) -> Failure {
    Failure::Limit(
        Diagnostic::error(
            at,
            format!(
                "{what} nests collections more than {MAX_DEPTH} levels deep; rigger stops reading here"
            ),
        )
        .with_hint(
            "a .cirun.yml nests a few levels (runners, a runner, extra_config, a list in it); \
             check the indentation and the `[`/`{` brackets",
        ),
    )
}

/// An anchored node, and its size for charging each alias of it.
struct Anchored {
    node: Node,
    size: Size,
}

/// Turn the event stream into a tree, within the limits above.
fn build(source: &str) -> Result<Built, Failure> {
    let mut parser = Parser::new_from_str(source);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Anchored> = HashMap::new();
    let mut budget = Budget::default();
    let mut built = Built {
        node: None,
        second_document_at: None,
        diagnostics: Vec::new(),
    };
    let mut documents = 0;
    let mut last_scalar: Option<Span> = None;
    while let Some(next) = parser.next_event() {
        let (event, span) =
            next.map_err(|error| Failure::Scan(ScanFailure { error, last_scalar }))?;
        let at = location(&span);
        let (node, size) = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents == 2 {
                    // Reported in `finish`; whatever follows is not read.
                    built.second_document_at = Some(at);
                    break;
                }
                continue;
            }
            Event::Scalar(text, style, anchor, _) => {
                last_scalar = Some(span);
                let size = Size::scalar(&text);
                budget.charge(size, at, Charge::Written("this value"))?;
                let quoted = !matches!(style, ScalarStyle::Plain);
                let node = Node {
                    kind: Kind::Scalar {
                        text: text.into_owned(),
                        quoted,
                    },
                    at,
                };
                remember(&mut anchors, &mut budget, anchor, &node, size)?;
                (node, size)
            }
            Event::SequenceStart(anchor, _) => {
                open(&mut stack, &mut budget, Kind::Seq(Vec::new()), at, anchor)?;
                continue;
            }
            Event::MappingStart(anchor, _) => {
                open(&mut stack, &mut budget, Kind::Map(Vec::new()), at, anchor)?;
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = stack.pop() else { continue };
                let node = Node {
                    kind: frame.kind,
                    at: frame.at,
                };
                remember(&mut anchors, &mut budget, frame.anchor, &node, frame.size)?;
                (node, frame.size)
            }
            Event::Alias(id) => {
                let Some(anchored) = anchors.get(&id) else {
                    // Saphyr knows the anchor but rigger has not finished its node:
                    // the alias is inside the node it names.
                    return Err(Failure::Limit(
                        Diagnostic::error(at, "this alias refers to the node it is in".into())
                            .with_hint(
                                "an alias (`*name`) can only repeat a node that ends before it",
                            ),
                    ));
                };
                if stack.len() + anchored.size.height > MAX_DEPTH {
                    return Err(too_deep(at, "this alias"));
                }
                budget.charge(anchored.size, at, Charge::Alias)?;
                let node = Node {
                    at,
                    ..anchored.node.clone()
                };
                (node, anchored.size)
            }
            _ => continue,
        };
        match stack.last_mut() {
            Some(parent) => parent.add(node, size, &mut built.diagnostics),
            None if built.node.is_none() => built.node = Some(node),
            None => {}
        }
    }
    Ok(built)
}

/// Start a collection, unless it would be too deep or too many.
fn open(
    stack: &mut Vec<Frame>,
    budget: &mut Budget,
    kind: Kind,
    at: Location,
    anchor: usize,
) -> Result<(), Failure> {
    if stack.len() >= MAX_DEPTH {
        return Err(too_deep(at, "this collection"));
    }
    budget.charge(Size::scalar(""), at, Charge::Written("this collection"))?;
    stack.push(Frame::new(kind, at, anchor));
    Ok(())
}

/// Keep a copy of an anchored node for its aliases; the copy is charged too.
fn remember(
    anchors: &mut HashMap<usize, Anchored>,
    budget: &mut Budget,
    anchor: usize,
    node: &Node,
    size: Size,
) -> Result<(), Failure> {
    if anchor != 0 {
        budget.charge(size, node.at, Charge::Anchor)?;
        anchors.insert(
            anchor,
            Anchored {
                node: node.clone(),
                size,
            },
        );
    }
    Ok(())
}

/// A collection being filled.
struct Frame {
    kind: Kind,
    at: Location,
    anchor: usize,
    size: Size,
    pending_key: Option<Node>,
    /// A mapping's keys so far and the line of each: finding a duplicate
    /// must not compare every key with every other.
    seen: HashMap<String, usize>,
}

impl Frame {
    fn new(kind: Kind, at: Location, anchor: usize) -> Frame {
        Frame {
            kind,
            at,
            anchor,
            size: Size {
                height: 1,
                ..Size::scalar("")
            },
            pending_key: None,
            seen: HashMap::new(),
        }
    }

    fn add(&mut self, node: Node, size: Size, diags: &mut Vec<Diagnostic>) {
        self.size.add(size);
        match &mut self.kind {
            Kind::Seq(items) => items.push(node),
            Kind::Map(entries) => match self.pending_key.take() {
                None => self.pending_key = Some(node),
                Some(key) => {
                    let Some(name) = key.text() else {
                        entries.push((key, node));
                        return;
                    };
                    if let Some(first_line) = self.seen.get(name) {
                        diags.push(
                            Diagnostic::error(
                                key.at,
                                format!(
                                    "duplicated key `{}`: it is already set on line {first_line}",
                                    for_log(name)
                                ),
                            )
                            .with_hint("remove one of the two; YAML keeps only one of them"),
                        );
                    } else {
                        self.seen.insert(name.to_string(), key.at.line);
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
