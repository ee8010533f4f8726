//! Reading a parsed record on the tape: the flatten stage's view of its maps and values.

use super::{Kind, Node, Tag, Tape};
use crate::decode::view::{AttrView, MapView, Shape};

/// A tape and the document its nodes point into.
#[derive(Debug, Clone, Copy)]
pub(super) struct Doc<'a> {
    pub(super) tape: &'a Tape,
    pub(super) doc: &'a str,
}

impl<'a> Doc<'a> {
    #[inline]
    pub(super) fn node(self, i: u32) -> Node {
        self.tape.nodes[i as usize]
    }

    pub(super) fn kind(self, i: u32) -> Kind {
        self.node(i).kind
    }

    /// The text of a string node (or a number's literal).
    #[inline]
    pub(super) fn str(self, i: u32) -> &'a str {
        let n = self.node(i);
        let range = n.start as usize..n.end as usize;
        match n.kind {
            Kind::EscStr => &self.tape.text[range],
            Kind::Str | Kind::Num => &self.doc[range],
            _ => "",
        }
    }

    /// `Some(None)` for a missing or null field, `Some(Some(i))` for a string, `None` otherwise.
    pub(super) fn opt_str(self, i: Option<u32>) -> Option<Option<u32>> {
        match i.map(|i| (i, self.kind(i))) {
            None | Some((_, Kind::Null)) => Some(None),
            Some((i, Kind::Str | Kind::EscStr)) => Some(Some(i)),
            Some(_) => None,
        }
    }

    /// `Some(None)` for a missing or null field, `Some(Some(i))` for an object, `None` otherwise.
    pub(super) fn opt_obj(self, i: Option<u32>) -> Option<Option<u32>> {
        match i.map(|i| (i, self.kind(i))) {
            None | Some((_, Kind::Null)) => Some(None),
            Some((i, Kind::Obj)) => Some(Some(i)),
            Some(_) => None,
        }
    }

    /// The values of the fields `names` of the object at `at`, in their order (`None` for a
    /// missing one); `None` when one of them is given twice, which the reference decoder
    /// refuses. Other fields are skipped.
    pub(super) fn fields<const N: usize>(
        self,
        at: u32,
        names: [&str; N],
    ) -> Option<[Option<u32>; N]> {
        let mut values = [None; N];
        for (k, v) in self.entries(at) {
            let key = self.str(k);
            if let Some(n) = names.iter().position(|&name| name == key) {
                if values[n].replace(v).is_some() {
                    return None;
                }
            }
        }
        Some(values)
    }

    /// Key and value indexes of the object at `at`.
    pub(super) fn entries(self, at: u32) -> Entries<'a> {
        Entries {
            t: self,
            next: at + 1,
            left: self.node(at).len,
        }
    }

    /// Whether a `userIdentity` object names DynamoDB's TTL process; `None` when the reference
    /// decoder would refuse it (a field twice, or a value that is not a string).
    pub(super) fn ttl_identity(self, at: u32) -> Option<bool> {
        if self.kind(at) != Kind::Obj {
            return None;
        }
        let (mut kind, mut principal) = (None, None);
        for (k, v) in self.entries(at) {
            let slot = match self.str(k) {
                "type" | "Type" => &mut kind,
                "principalId" | "PrincipalId" => &mut principal,
                _ => continue,
            };
            if slot.replace(v).is_some() {
                return None;
            }
        }
        let kind = self.opt_str(kind)?.map(|i| self.str(i));
        let principal = self.opt_str(principal)?.map(|i| self.str(i));
        Some(kind == Some("Service") && principal == Some("dynamodb.amazonaws.com"))
    }
}

pub(super) struct Entries<'a> {
    t: Doc<'a>,
    next: u32,
    left: u32,
}

impl Iterator for Entries<'_> {
    type Item = (u32, u32);
    fn next(&mut self) -> Option<(u32, u32)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (k, v) = (self.next, self.next + 1);
        self.next = self.t.end_of(v);
        Some((k, v))
    }
}

impl Doc<'_> {
    /// The index after the subtree at `i`.
    pub(super) fn end_of(self, i: u32) -> u32 {
        let n = self.node(i);
        match n.kind {
            Kind::Obj | Kind::Arr | Kind::Attr(_) => n.end,
            _ => i + 1,
        }
    }
}

/// An item or map on the tape.
#[derive(Debug, Clone, Copy)]
pub struct TapeMap<'a> {
    pub(super) t: Doc<'a>,
    pub(super) at: u32,
}

/// An attribute value on the tape.
#[derive(Debug, Clone, Copy)]
pub struct TapeAttr<'a> {
    t: Doc<'a>,
    at: u32,
}

/// The values of a list, or the members of a set, on the tape.
#[derive(Debug, Clone)]
pub struct TapeSeq<'a> {
    t: Doc<'a>,
    next: u32,
    left: u32,
}

impl<'a> Iterator for TapeSeq<'a> {
    type Item = TapeAttr<'a>;
    fn next(&mut self) -> Option<TapeAttr<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let at = self.next;
        self.next = self.t.end_of(at);
        Some(TapeAttr { t: self.t, at })
    }
}

/// The members of a set on the tape.
#[derive(Debug, Clone)]
pub struct TapeSet<'a>(TapeSeq<'a>);

impl<'a> Iterator for TapeSet<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        self.0.next().map(|a| a.t.str(a.at))
    }
}

/// The entries of a map on the tape.
#[derive(Debug)]
pub struct TapeEntries<'a>(Entries<'a>);

impl<'a> Iterator for TapeEntries<'a> {
    type Item = (&'a str, TapeAttr<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        let t = self.0.t;
        self.0
            .next()
            .map(|(k, v)| (t.str(k), TapeAttr { t, at: v }))
    }
}

impl std::fmt::Debug for Entries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries").field("next", &self.next).finish()
    }
}

impl<'a> MapView<'a> for TapeMap<'a> {
    type Value = TapeAttr<'a>;
    type Entries = TapeEntries<'a>;

    fn entries(self) -> TapeEntries<'a> {
        TapeEntries(self.t.entries(self.at))
    }

    fn is_empty(self) -> bool {
        self.t.node(self.at).len == 0
    }
}

impl<'a> AttrView<'a> for TapeAttr<'a> {
    type Map = TapeMap<'a>;
    type List = TapeSeq<'a>;
    type Set = TapeSet<'a>;

    fn shape(self) -> Shape<'a, TapeMap<'a>, TapeSeq<'a>, TapeSet<'a>> {
        let t = self.t;
        let payload = self.at + 2;
        let seq = || TapeSeq {
            t,
            next: payload + 1,
            left: t.node(payload).len,
        };
        let Kind::Attr(tag) = t.kind(self.at) else {
            unreachable!("the tape's attribute values are checked when parsed")
        };
        match tag {
            Tag::S => Shape::S(t.str(payload)),
            Tag::N => Shape::N(t.str(payload)),
            Tag::B => Shape::B(t.str(payload)),
            Tag::Bool => Shape::Bool(t.kind(payload) == Kind::True),
            Tag::Null => Shape::Null,
            Tag::M => Shape::M(TapeMap { t, at: payload }),
            Tag::L => Shape::L(seq()),
            Tag::Ss => Shape::Ss(TapeSet(seq())),
            Tag::Ns => Shape::Ns(TapeSet(seq())),
            Tag::Bs => Shape::Bs(TapeSet(seq())),
        }
    }
}
