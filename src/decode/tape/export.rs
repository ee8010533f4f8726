//! The fast decoder for the lines of a table export in DynamoDB JSON (`{"Item":...}`, or
//! `{"Metadata":...,"Keys":...,"NewImage":...,"OldImage":...}`): the same tape as change
//! records, read as [`parse_export_line`](crate::decode::parse_export_line) reads the line.
//! Like the change-record decoder, it declines what the reference refuses or might read
//! differently, and the reference decides (the property test in `flatten/decoders_tests.rs`
//! compares the two).

use super::nav::{Doc, TapeMap};
use super::{Head, Kind, Node, Tag, Tape};
use crate::decode::export::{ExportMeta, ExportType};
use crate::decode::record::Operation;
use crate::decode::view::RecordView;

impl Tape {
    /// Parses one data-file line of the DynamoDB JSON export described by `meta`, appended to
    /// the tape; `None` (and the tape as it was) when the fast decoder declines it.
    pub fn parse_export(&mut self, doc: &str, meta: &ExportMeta) -> Option<Head> {
        self.attempt(doc, |tape| tape.export_line(doc, meta))
    }

    /// The export line `head` (parsed from `doc` by [`Tape::parse_export`]) as the flatten stage
    /// reads it: the export's id and table are every line's.
    pub fn view_export<'a>(
        &'a self,
        doc: &'a str,
        head: &Head,
        meta: &'a ExportMeta,
    ) -> RecordView<'a, TapeMap<'a>> {
        let mut rec = self.view(doc, head);
        rec.event_id = Some(&meta.export_id);
        rec.table = Some(&meta.table);
        rec
    }

    fn export_line(&mut self, doc: &str, meta: &ExportMeta) -> Option<Head> {
        let root = self.root(doc)?;
        let t = Doc { tape: self, doc };
        let [item, metadata, keys, new_image, old_image] =
            t.fields(root, ["Item", "Metadata", "Keys", "NewImage", "OldImage"])?;
        let obj = |i| t.opt_obj(i);
        let (item, keys) = (obj(item)?, obj(keys)?);
        let (new_image, old_image) = (obj(new_image)?, obj(old_image)?);
        let micros = match t.opt_obj(metadata)? {
            Some(m) => {
                let [micros] = t.fields(m, ["WriteTimestampMicros"])?;
                micros.filter(|&v| t.kind(v) != Kind::Null)
            }
            None => None,
        };
        // Every image is checked, also those the export type does not read, as the reference
        // decoder reads them all.
        for image in [item, keys, new_image, old_image].into_iter().flatten() {
            self.check_item(doc, image)?;
        }
        let micros = match micros {
            Some(at) => {
                self.check_attr(doc, at)?;
                let t = Doc { tape: self, doc };
                if t.kind(at) != Kind::Attr(Tag::N) {
                    return None;
                }
                Some(t.str(at + 2).parse::<i64>().ok()?)
            }
            None => None,
        };
        let (operation, event_time_us, keys, new_image, old_image) = match meta.export_type {
            ExportType::Full => {
                let item = item?;
                let keys = self.pick(doc, item, meta.keys.as_deref().unwrap_or_default());
                let time = meta.export_time_us;
                (Operation::Snapshot, time, keys, Some(item), None)
            }
            ExportType::Incremental => {
                let operation = meta.operation(new_image.is_some(), old_image.is_some());
                (operation, micros?, keys?, new_image, old_image)
            }
        };
        Some(Head {
            operation,
            event_id: None,
            table: None,
            table_in_arn: false,
            event_time_us,
            ttl_delete: false,
            sequence_number: None,
            keys,
            new_image,
            old_image,
        })
    }

    /// A new map on the tape of the item's first value of each of `names`, in their order (a
    /// full export's items do not say which attributes are the key); returns its node.
    fn pick(&mut self, doc: &str, item: u32, names: &[String]) -> u32 {
        let at = self.nodes.len();
        self.nodes.push(Node::leaf(Kind::Obj, 0, 0));
        let mut len = 0;
        for name in names {
            let t = Doc { tape: self, doc };
            let Some((k, v)) = t.entries(item).find(|&(k, _)| t.str(k) == name) else {
                continue;
            };
            let (k, v, end) = (k as usize, v as usize, t.end_of(v) as usize);
            self.nodes.push(self.nodes[k]);
            // The value's subtree, its node indexes moved with it.
            let shift = self.nodes.len() - v;
            for i in v..end {
                let mut node = self.nodes[i];
                if matches!(node.kind, Kind::Obj | Kind::Arr | Kind::Attr(_)) {
                    node.end += shift as u32;
                }
                self.nodes.push(node);
            }
            len += 1;
        }
        let end = self.nodes.len() as u32;
        self.nodes[at].len = len;
        self.nodes[at].end = end;
        at as u32
    }
}
