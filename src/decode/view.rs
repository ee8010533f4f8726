//! The decode stage's output as the flatten stage reads it, whichever decoder produced it: the
//! record tree of [`ChangeRecord`] (every source, and the reference for the fast path) or the
//! tape of [`super::tape`] (JSON change records: no tree built or freed per record).

use super::attr::{AttrValue, Item};
use super::record::{ChangeRecord, Operation};

/// What one attribute value is, with its text borrowed for `'a` and its children behind `M`
/// (a map), `L` (a list's values) and `S` (a set's members).
#[derive(Debug, Clone, Copy)]
pub enum Shape<'a, M, L, S> {
    /// A string (`S`).
    S(&'a str),
    /// A number as its exact decimal text (`N`).
    N(&'a str),
    /// Binary as it appears in the record: base64 text (`B`).
    B(&'a str),
    /// A boolean (`BOOL`).
    Bool(bool),
    /// An explicit null (`NULL`).
    Null,
    /// A map (`M`).
    M(M),
    /// A list (`L`).
    L(L),
    /// A string set (`SS`).
    Ss(S),
    /// A number set (`NS`).
    Ns(S),
    /// A binary set (`BS`).
    Bs(S),
}

/// One attribute value.
pub trait AttrView<'a>: Copy {
    /// The map type of this representation.
    type Map: MapView<'a, Value = Self>;
    /// A list's values, in input order.
    type List: Iterator<Item = Self>;
    /// A set's members, in input order.
    type Set: Iterator<Item = &'a str>;
    /// The value's type and content.
    fn shape(self) -> Shape<'a, Self::Map, Self::List, Self::Set>;
}

/// An item or map: attribute names and values in input order.
pub trait MapView<'a>: Copy {
    /// The value type of this representation.
    type Value: AttrView<'a, Map = Self>;
    /// Name and value pairs, in input order.
    type Entries: Iterator<Item = (&'a str, Self::Value)>;
    /// Name and value pairs, in input order.
    fn entries(self) -> Self::Entries;
    /// The first value named `name`.
    fn get(self, name: &str) -> Option<Self::Value> {
        self.entries().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
    /// True when the map has no entry.
    fn is_empty(self) -> bool {
        self.entries().next().is_none()
    }
}

/// A change record's fields, with its images as maps of representation `M`.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a, M> {
    /// What the change did.
    pub operation: Operation,
    /// The record's `eventID`.
    pub event_id: Option<&'a str>,
    /// The DynamoDB table, from `tableName` or the stream ARN.
    pub table: Option<&'a str>,
    /// Event time in microseconds since the epoch (UTC).
    pub event_time_us: i64,
    /// True for deletes made by DynamoDB's TTL process.
    pub ttl_delete: bool,
    /// DynamoDB Streams sequence number, when the record carries one.
    pub sequence_number: Option<&'a str>,
    /// The item's primary key attributes.
    pub keys: M,
    /// The item after the change.
    pub new_image: Option<M>,
    /// The item before the change.
    pub old_image: Option<M>,
}

impl<'a> ChangeRecord<'a> {
    /// The record as the flatten stage reads it.
    pub fn view(&'a self) -> RecordView<'a, &'a Item<'a>> {
        RecordView {
            operation: self.operation,
            event_id: self.event_id.as_deref(),
            table: self.table.as_deref(),
            event_time_us: self.event_time_us,
            ttl_delete: self.ttl_delete,
            sequence_number: self.sequence_number.as_deref(),
            keys: &self.keys,
            new_image: self.new_image.as_ref(),
            old_image: self.old_image.as_ref(),
        }
    }
}

type StrIter<'a> = std::iter::Map<
    std::slice::Iter<'a, std::borrow::Cow<'a, str>>,
    fn(&'a std::borrow::Cow<'a, str>) -> &'a str,
>;

impl<'a> AttrView<'a> for &'a AttrValue<'a> {
    type Map = &'a Item<'a>;
    type List = std::slice::Iter<'a, AttrValue<'a>>;
    type Set = StrIter<'a>;

    fn shape(self) -> Shape<'a, Self::Map, Self::List, Self::Set> {
        let set =
            |v: &'a Vec<std::borrow::Cow<'a, str>>| -> StrIter<'a> { v.iter().map(|s| s.as_ref()) };
        match self {
            AttrValue::S(s) => Shape::S(s),
            AttrValue::N(s) => Shape::N(s),
            AttrValue::B(s) => Shape::B(s),
            AttrValue::Bool(b) => Shape::Bool(*b),
            AttrValue::Null => Shape::Null,
            AttrValue::M(m) => Shape::M(m),
            AttrValue::L(l) => Shape::L(l.iter()),
            AttrValue::Ss(v) => Shape::Ss(set(v)),
            AttrValue::Ns(v) => Shape::Ns(set(v)),
            AttrValue::Bs(v) => Shape::Bs(set(v)),
        }
    }
}

type EntryIter<'a> = std::iter::Map<
    std::slice::Iter<'a, (std::borrow::Cow<'a, str>, AttrValue<'a>)>,
    fn(&'a (std::borrow::Cow<'a, str>, AttrValue<'a>)) -> (&'a str, &'a AttrValue<'a>),
>;

impl<'a> MapView<'a> for &'a Item<'a> {
    type Value = &'a AttrValue<'a>;
    type Entries = EntryIter<'a>;

    fn entries(self) -> Self::Entries {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    fn is_empty(self) -> bool {
        self.0.is_empty()
    }
}
