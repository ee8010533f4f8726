//! Framing and parsing a file's records on their own thread, in chunks handed over in input
//! order, so that parsing (about half of the reading side's work) runs beside flattening and
//! buffering.

use std::sync::Arc;

use crate::decode::{
    parse_export_line, parse_record, ChangeRecord, DecodeError, ExportMeta, Frame, Framer,
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

    /// A frame that holds no record: an Ion version marker on a line of its own.
    pub(super) fn is_marker(&self, frame: &Frame) -> bool {
        matches!(self, Parser::Export(_)) && frame.bytes == b"$ion_1_0"
    }
}

/// Records parsed from a run of frames, borrowing from the frames' bytes.
#[derive(yoke::Yokeable)]
pub(super) struct Parsed<'a>(pub(super) Vec<Result<ChangeRecord<'a>, DecodeError>>);

/// A run of frames with their parsed records, sent from the decoding thread to the reading one.
pub(super) type ParsedChunk = yoke::Yoke<Parsed<'static>, Vec<Frame>>;

/// Frames per chunk, and bytes per chunk, handed from the decoding thread to the reading one.
pub(super) const CHUNK_FRAMES: usize = 1024;
pub(super) const CHUNK_BYTES: usize = 1 << 20;
/// Chunks decoded ahead of the reading thread (bounds the memory they hold).
pub(super) const DECODE_AHEAD: usize = 4;

/// Frames and parses a file's records on its own thread, so that parsing (about half of the
/// reading side's work) runs beside flattening and buffering. Chunks arrive in input order.
pub(super) fn decode_ahead(
    reader: Box<dyn std::io::BufRead + Send>,
    parser: Parser,
    tx: std::sync::mpsc::SyncSender<std::io::Result<ParsedChunk>>,
    used: std::sync::mpsc::Receiver<ParsedChunk>,
) {
    let parse = |frames: Vec<Frame>| {
        yoke::Yoke::attach_to_cart(frames, |frames: &[Frame]| {
            Parsed(frames.iter().map(|f| parser.parse(&f.bytes)).collect())
        })
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
                    used.try_iter().for_each(drop);
                    let full = std::mem::replace(&mut frames, Vec::with_capacity(CHUNK_FRAMES));
                    bytes = 0;
                    if tx.send(Ok(parse(full))).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                if !frames.is_empty() {
                    let _ = tx.send(Ok(parse(std::mem::take(&mut frames))));
                }
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
    if !frames.is_empty() {
        let _ = tx.send(Ok(parse(frames)));
    }
}
