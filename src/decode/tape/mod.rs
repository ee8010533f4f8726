//! The fast decoder for JSON change records: one pass over a record's bytes into a flat list of
//! nodes (the tape), reused from record to record, instead of a tree of vectors built and freed
//! per record. Hand-written because it is the hot path: the `decode` stage benchmark and the
//! side-by-side run in `docs/BENCHMARKS.md` measure it against serde_json's borrowed tree.
//!
//! It accepts exactly the records [`parse_record`](super::parse_record) turns into a
//! [`ChangeRecord`](super::ChangeRecord), and gives the flatten stage the same values (the
//! property test in `flatten/decoders_tests.rs` compares the two). Anything else, bad input
//! included, it declines: the caller then runs the reference decoder, so error reasons and
//! messages are the reference's own.

use std::str::FromStr;

use super::record::{event_time_us, table_from_arn, Operation};
use super::view::RecordView;

mod export;
mod json;
mod nav;

use json::Parser;
use nav::Doc;
pub use nav::{TapeAttr, TapeMap};

/// Deepest nesting the fast decoder parses; deeper records go to the reference decoder (whose
/// limit, 128, decides).
const MAX_DEPTH: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `len` entries (key node, then value subtree); `end` is the index after the subtree.
    Obj,
    /// `len` values; `end` is the index after the subtree.
    Arr,
    /// Text at `start..end` of the document.
    Str,
    /// Unescaped text at `start..end` of the tape's own text.
    EscStr,
    /// A number literal at `start..end` of the document.
    Num,
    True,
    False,
    Null,
    /// An attribute value (`{"TAG": payload}`), checked: the payload is the node after the tag.
    Attr(Tag),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    S,
    N,
    B,
    Bool,
    Null,
    M,
    L,
    Ss,
    Ns,
    Bs,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    kind: Kind,
    len: u32,
    start: u32,
    end: u32,
}

impl Node {
    fn leaf(kind: Kind, start: usize, end: usize) -> Node {
        Node {
            kind,
            len: 0,
            start: start as u32,
            end: end as u32,
        }
    }
}

/// Parsed records' nodes, and the text of strings that had escapes. Cleared or appended to,
/// never shrunk: its memory is reused.
#[derive(Debug, Default)]
pub struct Tape {
    nodes: Vec<Node>,
    text: String,
}

/// A record's fields, as indexes into its tape (no borrow, so that a chunk of them can travel
/// with the tape between threads).
#[derive(Debug, Clone, Copy)]
pub struct Head {
    operation: Operation,
    event_id: Option<u32>,
    table: Option<u32>,
    /// The table is the one named in the stream ARN at `table`.
    table_in_arn: bool,
    event_time_us: i64,
    ttl_delete: bool,
    sequence_number: Option<u32>,
    keys: u32,
    new_image: Option<u32>,
    old_image: Option<u32>,
}

impl Tape {
    /// Empties the tape, keeping its memory.
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.text.clear();
    }

    /// Parses one change record appended to the tape; `None` (and the tape as it was) when the
    /// fast decoder declines it (bytes that are not UTF-8 among other things).
    pub fn parse(&mut self, bytes: &[u8]) -> Option<Head> {
        self.parse_str(std::str::from_utf8(bytes).ok()?)
    }

    /// Like [`Tape::parse`], for a record already known to be text.
    pub fn parse_str(&mut self, doc: &str) -> Option<Head> {
        self.attempt(doc, |tape| tape.record(doc))
    }

    /// Runs `parse` on `doc`, leaving the tape as it was when it declines.
    fn attempt(
        &mut self,
        doc: &str,
        parse: impl FnOnce(&mut Self) -> Option<Head>,
    ) -> Option<Head> {
        let (nodes, text) = (self.nodes.len(), self.text.len());
        // Positions are kept in 32 bits: larger records go to the reference decoder.
        if doc.len() > u32::MAX as usize - text {
            return None;
        }
        let head = parse(self);
        if head.is_none() {
            self.nodes.truncate(nodes);
            self.text.truncate(text);
        }
        head
    }

    /// Parses `doc` as one JSON object; returns its node.
    fn root(&mut self, doc: &str) -> Option<u32> {
        let root = self.nodes.len() as u32;
        let mut p = Parser {
            b: doc.as_bytes(),
            i: 0,
            tape: self,
        };
        p.value(0)?;
        p.ws();
        let whole = p.i == p.b.len();
        (whole && self.nodes[root as usize].kind == Kind::Obj).then_some(root)
    }

    /// The record `head` (parsed from `doc`) as the flatten stage reads it.
    pub fn view<'a>(&'a self, doc: &'a str, head: &Head) -> RecordView<'a, TapeMap<'a>> {
        let t = Doc { tape: self, doc };
        let s = |i: Option<u32>| i.map(|i| t.str(i));
        let table = match (head.table, head.table_in_arn) {
            (Some(i), true) => table_from_arn(t.str(i)),
            (i, _) => s(i),
        };
        RecordView {
            operation: head.operation,
            event_id: s(head.event_id),
            table,
            event_time_us: head.event_time_us,
            ttl_delete: head.ttl_delete,
            sequence_number: s(head.sequence_number),
            keys: TapeMap { t, at: head.keys },
            new_image: head.new_image.map(|at| TapeMap { t, at }),
            old_image: head.old_image.map(|at| TapeMap { t, at }),
        }
    }

    fn record(&mut self, doc: &str) -> Option<Head> {
        let root = self.root(doc)?;
        let t = Doc { tape: self, doc };
        let [event_name, event_id, table_name, arn, identity, dynamodb] = t.fields(
            root,
            [
                "eventName",
                "eventID",
                "tableName",
                "eventSourceARN",
                "userIdentity",
                "dynamodb",
            ],
        )?;
        let ttl_delete = match identity.filter(|&i| t.kind(i) != Kind::Null) {
            Some(i) => t.ttl_identity(i)?,
            None => false,
        };
        let operation = match t.opt_str(event_name)?.map(|i| t.str(i)) {
            Some("INSERT") => Operation::Insert,
            Some("MODIFY") => Operation::Modify,
            Some("REMOVE") => Operation::Remove,
            _ => return None,
        };
        let ddb = dynamodb.filter(|&i| t.kind(i) == Kind::Obj)?;
        let [time, precision, keys, new_image, old_image, sequence] = t.fields(
            ddb,
            [
                "ApproximateCreationDateTime",
                "ApproximateCreationDateTimePrecision",
                "Keys",
                "NewImage",
                "OldImage",
                "SequenceNumber",
            ],
        )?;
        let precision = t.opt_str(precision)?.map(|i| t.str(i));
        let sequence_number = t.opt_str(sequence)?;
        let arn = t.opt_str(arn)?;
        let time = time.filter(|&i| t.kind(i) == Kind::Num)?;
        let time = serde_json::Number::from_str(t.str(time)).ok()?;
        let streams = sequence_number.is_some() || arn.is_some();
        let event_time_us = event_time_us(&time, precision, streams)?;
        let item = |i| t.opt_obj(i);
        let (keys, new_image, old_image) = (item(keys)??, item(new_image)?, item(old_image)?);
        let (table, table_in_arn) = match (t.opt_str(table_name)?, arn) {
            (Some(name), _) => (Some(name), false),
            (None, Some(arn)) => (table_from_arn(t.str(arn)).map(|_| arn), true),
            (None, None) => (None, false),
        };
        let event_id = t.opt_str(event_id)?;
        for item in [Some(keys), new_image, old_image].into_iter().flatten() {
            self.check_item(doc, item)?;
        }
        Some(Head {
            operation,
            event_id,
            table,
            table_in_arn,
            event_time_us,
            ttl_delete,
            sequence_number,
            keys,
            new_image,
            old_image,
        })
    }

    /// Checks that the object at `at` is an item (names to attribute values), marking each value
    /// with its tag.
    fn check_item(&mut self, doc: &str, at: u32) -> Option<()> {
        let mut i = at + 1;
        for _ in 0..self.nodes[at as usize].len {
            i = self.check_attr(doc, i + 1)?;
        }
        Some(())
    }

    /// Checks the attribute value at `at`, as the reference decoder does; returns the index
    /// after it.
    fn check_attr(&mut self, doc: &str, at: u32) -> Option<u32> {
        let node = self.nodes[at as usize];
        if node.kind != Kind::Obj || node.len != 1 {
            return None; // No tag, or a second one.
        }
        let tag = tag_named(Doc { tape: self, doc }.str(at + 1))?;
        let payload = at + 2;
        let p = self.nodes[payload as usize];
        let string = |k: Kind| matches!(k, Kind::Str | Kind::EscStr);
        let ok = match tag {
            Tag::S | Tag::N | Tag::B => string(p.kind),
            Tag::Bool => matches!(p.kind, Kind::True | Kind::False),
            Tag::Null => p.kind == Kind::True,
            Tag::M => p.kind == Kind::Obj,
            Tag::L | Tag::Ss | Tag::Ns | Tag::Bs => p.kind == Kind::Arr,
        };
        if !ok {
            return None;
        }
        match tag {
            Tag::M => self.check_item(doc, payload)?,
            Tag::L => {
                let mut i = payload + 1;
                for _ in 0..p.len {
                    i = self.check_attr(doc, i)?;
                }
            }
            Tag::Ss | Tag::Ns | Tag::Bs => {
                let members = &self.nodes[payload as usize + 1..p.end as usize];
                if !members.iter().all(|m| string(m.kind)) {
                    return None;
                }
            }
            _ => {}
        }
        self.nodes[at as usize].kind = Kind::Attr(tag);
        Some(node.end)
    }
}

fn tag_named(name: &str) -> Option<Tag> {
    Some(match name {
        "S" => Tag::S,
        "N" => Tag::N,
        "B" => Tag::B,
        "BOOL" => Tag::Bool,
        "NULL" => Tag::Null,
        "M" => Tag::M,
        "L" => Tag::L,
        "SS" => Tag::Ss,
        "NS" => Tag::Ns,
        "BS" => Tag::Bs,
        _ => return None,
    })
}
