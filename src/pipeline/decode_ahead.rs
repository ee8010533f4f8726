//! Framing and parsing a file's records on their own threads, in chunks handed over in input
//! order, so that parsing (about half of the reading side's work) runs beside flattening and
//! buffering: on the framing thread when records take the fast decoder, on one thread per core
//! when parsing is the bound (Ion exports, the reference decoder).

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
/// Small, so that a chunk's tape is still in cache when the reading thread reads it: 64 frames
/// or 64 KiB against 1,024 or 1 MiB took 5-9% less user CPU on the 1M side-by-side input, runs
/// taking turns (16 frames: no better, and more waiting; docs/BENCHMARKS.md).
pub(super) const CHUNK_FRAMES: usize = 64;
pub(super) const CHUNK_BYTES: usize = 1 << 16;
/// Chunks decoded ahead of the reading thread (bounds the memory they hold), per parsing thread.
pub(super) const DECODE_AHEAD: usize = 4;

type Out = std::io::Result<ParsedChunk>;

/// A file's chunks as the reading thread receives them: in input order, whichever thread parsed
/// them, each given back once read (its tape is reused, and its frames are freed by the thread
/// that parsed them, not the reading one: glibc's allocator makes frees from another thread
/// contend; with parsing threads, they were allocated by the framing one).
pub(super) struct Chunks {
    outs: Vec<std::sync::mpsc::Receiver<Out>>,
    backs: Vec<std::sync::mpsc::Sender<ParsedChunk>>,
    received: usize,
    returned: usize,
}

impl Chunks {
    /// The next chunk (or the read error where the input stopped); `None` at the end.
    pub(super) fn next(&mut self) -> Option<Out> {
        // Chunks are dealt to the parsing threads in turn, so they come back in turn.
        let out = self.outs[self.received % self.outs.len()].recv().ok()?;
        self.received += 1;
        Some(out)
    }

    /// Gives a chunk back to the thread that parsed it, once read (chunks are given back in the
    /// order received).
    pub(super) fn give_back(&mut self, chunk: ParsedChunk) {
        let _ = self.backs[self.returned % self.backs.len()].send(chunk);
        self.returned += 1;
    }
}

/// How many threads parse a file's chunks beside the one that frames them: none (it parses them
/// itself) for JSON, whose parsing keeps up with the reading thread on one thread (measured with
/// either decoder: with a filter set, the reference decoder's, more threads only added CPU);
/// one per core, at most [`MAX_PARSE_THREADS`], for Ion, whose parsing is the bound (100,000
/// items: 1.30-1.37 s at 113% on one thread, 0.93-1.12 s at 165-168% on two).
pub(super) fn parse_threads(parser: &Parser) -> usize {
    if parser.has_fast() {
        return 0;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(MAX_PARSE_THREADS)
}

/// Parsing threads per file, at most: each holds up to [`DECODE_AHEAD`] parsed chunks (up to 1 MiB
/// of text each, and their records) beside the memory budget.
const MAX_PARSE_THREADS: usize = 4;

/// Frames a file's records on their own thread and parses them there (`threads` 0) or on
/// `threads` threads of their own, so that parsing runs beside flattening and buffering; chunks
/// of up to `chunk_frames` frames arrive in input order (the output does not depend on
/// `threads`). `fast`: JSON change records and DynamoDB JSON export lines go through the fast
/// decoder first (the reading side needs no [`ChangeRecord`] of them: no filter is set).
pub(super) fn decode_ahead<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    reader: Box<dyn std::io::BufRead + Send>,
    parser: Parser,
    fast: bool,
    threads: usize,
    chunk_frames: usize,
) -> Chunks {
    let fast = fast && parser.has_fast();
    let mut chunks = Chunks {
        outs: Vec::new(),
        backs: Vec::new(),
        received: 0,
        returned: 0,
    };
    let mut jobs = Vec::new();
    for _ in 0..threads.max(1) {
        let (tx, rx) = std::sync::mpsc::sync_channel(DECODE_AHEAD);
        let (back_tx, back_rx) = std::sync::mpsc::channel();
        chunks.outs.push(rx);
        chunks.backs.push(back_tx);
        let mut worker = Worker {
            parser: parser.clone(),
            fast,
            tapes: Vec::new(),
            tx,
            used: back_rx,
        };
        if threads == 0 {
            jobs.push(Job::Inline(worker));
            break;
        }
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<Frame>>>(1);
        jobs.push(Job::Thread(job_tx));
        scope.spawn(move || {
            for job in job_rx {
                if !worker.deliver(job) {
                    return;
                }
            }
        });
    }
    scope.spawn(move || frame(reader, &parser, jobs, chunk_frames));
    chunks
}

/// Where the framing thread sends a chunk of frames: parsed there, or on a thread of its own.
enum Job {
    Inline(Worker),
    Thread(std::sync::mpsc::SyncSender<std::io::Result<Vec<Frame>>>),
}

/// Parses chunks of frames and sends them to the reading thread, reusing the tapes of the chunks
/// it gives back.
struct Worker {
    parser: Parser,
    fast: bool,
    tapes: Vec<Tape>,
    tx: std::sync::mpsc::SyncSender<Out>,
    used: std::sync::mpsc::Receiver<ParsedChunk>,
}

impl Worker {
    /// Parses and sends one chunk (or passes an error on); false once the reading side is gone.
    fn deliver(&mut self, job: std::io::Result<Vec<Frame>>) -> bool {
        for chunk in self.used.try_iter() {
            // The frames are freed here, by the thread that allocated them or one that took
            // them over.
            self.tapes.push(chunk.into_backing_cart().tape);
        }
        let out = job.map(|frames| self.parse(frames));
        self.tx.send(out).is_ok()
    }

    fn parse(&mut self, mut frames: Vec<Frame>) -> ParsedChunk {
        let mut tape = self.tapes.pop().unwrap_or_default();
        tape.clear();
        let parser = &self.parser;
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
            .map(|f| if self.fast { fast_one(f) } else { None })
            .collect();
        yoke::Yoke::attach_to_cart(Box::new(Cart { frames, tape }), |cart: &Cart| {
            let entries = cart.frames.iter().zip(heads).map(|(f, head)| match head {
                Some((h, text)) => Entry::Fast(h, text),
                None => Entry::Slow(parser.parse(&f.bytes)),
            });
            Parsed(entries.collect())
        })
    }
}

/// The framing thread: cuts the input into chunks of frames and deals them to the parsing
/// threads in turn (or parses them itself), a read error in its place in the order.
fn frame(
    reader: Box<dyn std::io::BufRead + Send>,
    parser: &Parser,
    mut jobs: Vec<Job>,
    chunk_frames: usize,
) {
    let mut turn = 0;
    let mut deal = |job: std::io::Result<Vec<Frame>>| {
        let n = jobs.len();
        let sent = match &mut jobs[turn % n] {
            Job::Inline(worker) => worker.deliver(job),
            Job::Thread(tx) => tx.send(job).is_ok(),
        };
        turn += 1;
        sent
    };
    let mut frames = Vec::with_capacity(chunk_frames);
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
                if frames.len() == chunk_frames || bytes >= CHUNK_BYTES {
                    let full = std::mem::replace(&mut frames, Vec::with_capacity(chunk_frames));
                    bytes = 0;
                    if !deal(Ok(full)) {
                        return;
                    }
                }
            }
            Err(e) => {
                if !frames.is_empty() && !deal(Ok(std::mem::take(&mut frames))) {
                    return;
                }
                deal(Err(e));
                return;
            }
        }
    }
    if !frames.is_empty() {
        deal(Ok(frames));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FailAfter(std::io::Cursor<Vec<u8>>);

    impl std::io::Read for FailAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::other("cut off")),
                n => Ok(n),
            }
        }
    }

    /// Whatever the number of parsing threads, chunks come in input order, each record parsed,
    /// and a read error comes last, after every record read before it.
    #[test]
    fn chunks_come_in_input_order_whichever_thread_parsed_them() {
        let line = |i: usize| {
            format!(
                r#"{{"eventID":"{i}","eventName":"INSERT","tableName":"T","dynamodb":{{"ApproximateCreationDateTime":1795000000331,"Keys":{{"Id":{{"N":"{i}"}}}}}}}}"#
            )
        };
        let mut text = String::new();
        for i in 0..101 {
            text.push_str(&if i == 40 { "not json".into() } else { line(i) });
            text.push('\n');
        }
        for (threads, fast, fails) in [
            (0, true, false),
            (3, false, false),
            (3, true, true),
            (1, false, true),
        ] {
            let bytes = text.clone().into_bytes();
            let reader: Box<dyn std::io::BufRead + Send> = if fails {
                Box::new(std::io::BufReader::with_capacity(
                    64,
                    FailAfter(std::io::Cursor::new(bytes)),
                ))
            } else {
                Box::new(std::io::Cursor::new(bytes))
            };
            let (ids, error) = std::thread::scope(|scope| {
                let mut chunks = decode_ahead(scope, reader, Parser::Change, fast, threads, 2);
                let (mut ids, mut error) = (Vec::new(), None);
                while let Some(chunk) = chunks.next() {
                    let chunk = match chunk {
                        Ok(c) => c,
                        Err(e) => {
                            error = Some(e.to_string());
                            continue;
                        }
                    };
                    assert!(error.is_none(), "a chunk after the error");
                    let cart = chunk.backing_cart();
                    for (f, e) in cart.frames.iter().zip(&chunk.get().0) {
                        let id = match e {
                            Entry::Fast(h, text) => {
                                cart.tape.view(text, h).event_id.map(str::to_string)
                            }
                            Entry::Slow(Ok(r)) => r.event_id.as_deref().map(str::to_string),
                            Entry::Slow(Err(_)) => None,
                        };
                        ids.push((f.line, id));
                    }
                    chunks.give_back(chunk);
                }
                (ids, error)
            });
            let want: Vec<(u64, Option<String>)> = (0..101)
                .map(|i| (i as u64 + 1, (i != 40).then(|| i.to_string())))
                .collect();
            assert_eq!(ids, want, "{threads} threads");
            assert_eq!(error.is_some(), fails, "{threads} threads");
        }
    }
}
