//! Framing and parsing a file's records on their own thread, in chunks handed over in input
//! order, so that parsing (about half of the reading side's work) runs beside flattening and
//! buffering.

use std::sync::Arc;

use crate::decode::{
    parse_export_line, parse_record, ChangeRecord, DecodeError, ExportFormat, ExportMeta, Frame,
    Framer, Head, RecordView, Tape, TapeMap,
};

/// How a file's records are framed and parsed.
#[derive(Debug, Clone)]
pub(super) enum Parser {
    /// Change records (JSON lines, concatenated JSON, Lambda events), shape detected.
    Change,
    /// A table export's data file: one line per item or change.
    Export(Arc<ExportMeta>),
}

impl Parser {
    fn parse<'a>(&self, bytes: &'a [u8]) -> Result<ChangeRecord<'a>, DecodeError> {
        match self {
            Parser::Change => parse_record(bytes),
            Parser::Export(meta) => parse_export_line(bytes, meta),
        }
    }

    /// Whether this format has a fast decoder (Ion exports have not).
    fn has_fast(&self) -> bool {
        match self {
            Parser::Change => true,
            Parser::Export(meta) => meta.format == ExportFormat::DynamoDbJson,
        }
    }

    /// Parses `doc` with the fast decoder, onto `tape`; `None` when it declines.
    fn fast(&self, tape: &mut Tape, doc: &str) -> Option<Head> {
        match self {
            Parser::Change => tape.parse_str(doc),
            Parser::Export(meta) => tape.parse_export(doc, meta),
        }
    }

    /// The record a fast-decoded `head` stands for, as the flatten stage reads it.
    pub(super) fn view<'a>(
        &'a self,
        tape: &'a Tape,
        doc: &'a str,
        head: &Head,
    ) -> RecordView<'a, TapeMap<'a>> {
        match self {
            Parser::Change => tape.view(doc, head),
            Parser::Export(meta) => tape.view_export(doc, head, meta),
        }
    }

    /// A frame that holds no record: an Ion version marker on a line of its own.
    pub(super) fn is_marker(&self, frame: &Frame) -> bool {
        matches!(self, Parser::Export(_)) && frame.bytes == b"$ion_1_0"
    }
}

/// A record decoded by the fast decoder (its fields on the chunk's tape), or by the reference
/// one (a tree borrowing from the frame's bytes, or why it could not be decoded).
pub(super) enum Entry<'a> {
    /// The record's fields on the tape, and its bytes (moved out of the frame: text, checked
    /// once).
    Fast(Head, String),
    Slow(Result<ChangeRecord<'a>, DecodeError>),
}

/// Records parsed from a run of frames, borrowing from the frames' bytes.
#[derive(yoke::Yokeable)]
pub(super) struct Parsed<'a>(pub(super) Vec<Entry<'a>>);

/// A run of frames, and the tape their fast-decoded records are on.
pub(super) struct Cart {
    pub(super) frames: Vec<Frame>,
    pub(super) tape: Tape,
}

/// A run of frames with their parsed records, sent from the decoding thread to the reading one.
pub(super) type ParsedChunk = yoke::Yoke<Parsed<'static>, Box<Cart>>;

/// Frames per chunk, and bytes per chunk, handed from the decoding thread to the reading one.
pub(super) const CHUNK_FRAMES: usize = 1024;
pub(super) const CHUNK_BYTES: usize = 1 << 20;
/// Chunks decoded ahead of the reading thread (bounds the memory they hold).
pub(super) const DECODE_AHEAD: usize = 4;

/// Frames and parses a file's records on its own thread, so that parsing (about half of the
/// reading side's work) runs beside flattening and buffering. Chunks arrive in input order.
/// `fast`: JSON change records and DynamoDB JSON export lines go through the fast decoder first
/// (the reading side needs no [`ChangeRecord`] of them: no filter is set).
pub(super) fn decode_ahead(
    reader: Box<dyn std::io::BufRead + Send>,
    parser: Parser,
    fast: bool,
    tx: std::sync::mpsc::SyncSender<std::io::Result<ParsedChunk>>,
    used: std::sync::mpsc::Receiver<ParsedChunk>,
) {
    let fast = fast && parser.has_fast();
    // Tapes of chunks the reading side is done with, reused: no allocation per chunk.
    let mut tapes: Vec<Tape> = Vec::new();
    let parse = |mut frames: Vec<Frame>, tapes: &mut Vec<Tape>| {
        let mut tape = tapes.pop().unwrap_or_default();
        tape.clear();
        let mut fast_one = |f: &mut Frame| -> Option<(Head, String)> {
            let text = String::from_utf8(std::mem::take(&mut f.bytes));
            match text.map(|t| (parser.fast(&mut tape, &t), t)) {
                Ok((Some(head), text)) => Some((head, text)),
                Ok((None, text)) => {
                    f.bytes = text.into_bytes();
                    None
                }
                Err(e) => {
                    f.bytes = e.into_bytes();
                    None
                }
            }
        };
        let heads: Vec<Option<(Head, String)>> = frames
            .iter_mut()
            .map(|f| if fast { fast_one(f) } else { None })
            .collect();
        yoke::Yoke::attach_to_cart(Box::new(Cart { frames, tape }), |cart: &Cart| {
            let entries = cart.frames.iter().zip(heads).map(|(f, head)| match head {
                Some((h, text)) => Entry::Fast(h, text),
                None => Entry::Slow(parser.parse(&f.bytes)),
            });
            Parsed(entries.collect())
        })
    };
    let recycle = |tapes: &mut Vec<Tape>| {
        for chunk in used.try_iter() {
            // The frames are freed here, by the thread that allocated them.
            tapes.push(chunk.into_backing_cart().tape);
        }
    };
    let mut frames = Vec::with_capacity(CHUNK_FRAMES);
    let mut bytes = 0;
    let framer = match parser {
        Parser::Change => Framer::new(reader),
        Parser::Export(_) => Framer::lines(reader),
    };
    for frame in framer {
        match frame {
            Ok(frame) => {
                bytes += frame.bytes.len();
                frames.push(frame);
                if frames.len() == CHUNK_FRAMES || bytes >= CHUNK_BYTES {
                    recycle(&mut tapes);
                    let full = std::mem::replace(&mut frames, Vec::with_capacity(CHUNK_FRAMES));
                    bytes = 0;
                    if tx.send(Ok(parse(full, &mut tapes))).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                if !frames.is_empty() {
                    let _ = tx.send(Ok(parse(std::mem::take(&mut frames), &mut tapes)));
                }
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
    if !frames.is_empty() {
        let _ = tx.send(Ok(parse(frames, &mut tapes)));
    }
}
