//! Splits a decompressed input stream into one frame per record.
//!
//! The shape is detected from the first value, not from the file name:
//! - a first object holding a `Records` array is a Lambda event (or a `GetRecords` answer): each
//!   element is a record;
//! - a first object followed by a line break is JSON lines: each non-empty line is a record, so a
//!   truncated or non-JSON line is one bad record and never swallows its neighbours;
//! - otherwise records are concatenated (Firehose's raw archives) or pretty-printed: frames are
//!   cut at balanced braces. A record cut short there would swallow the following ones, so the
//!   framer learns the first record's opening (`{"awsRegion":`) and re-cuts a frame where that
//!   opening appears again inside it.

use std::collections::VecDeque;
use std::io::{self, BufRead};

use serde::Deserialize;
use serde_json::value::RawValue;

/// One record's bytes and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The record's bytes, without surrounding whitespace; not necessarily valid JSON or UTF-8.
    pub bytes: Vec<u8>,
    /// 1-based line number where the record starts.
    pub line: u64,
    /// Byte offset of the record's first byte in the decompressed stream.
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Detect,
    Lines,
    Braces,
}

/// Iterator of frames over a reader. I/O errors end the iteration with an `Err`.
pub struct Framer<R> {
    reader: R,
    mode: Mode,
    /// Line and offset of the next unread byte.
    line: u64,
    offset: u64,
    pending: VecDeque<Frame>,
    /// The first record's opening bytes, used to re-cut swallowed records in brace mode.
    marker: Option<Vec<u8>>,
    done: bool,
}

/// Shortest opening that is distinctive enough to re-cut frames on.
const MIN_MARKER: usize = 8;

impl<R: BufRead> Framer<R> {
    /// A framer over `reader`, which must yield the decompressed stream from its start.
    pub fn new(reader: R) -> Self {
        Framer {
            reader,
            mode: Mode::Detect,
            line: 1,
            offset: 0,
            pending: VecDeque::new(),
            marker: None,
            done: false,
        }
    }

    /// A framer that takes every non-empty line as one record, whatever the first one holds
    /// (a table export's data files: one item or change per line, JSON or Ion).
    pub fn lines(reader: R) -> Self {
        Framer {
            mode: Mode::Lines,
            ..Framer::new(reader)
        }
    }

    /// Skips whitespace; returns the next byte without consuming it, or None at the end.
    fn skip_ws(&mut self) -> io::Result<Option<u8>> {
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let mut n = 0;
            for &b in buf {
                if !b.is_ascii_whitespace() {
                    break;
                }
                if b == b'\n' {
                    self.line += 1;
                }
                n += 1;
            }
            let found = buf.get(n).copied();
            self.reader.consume(n);
            self.offset += n as u64;
            if found.is_some() {
                return Ok(found);
            }
        }
    }

    /// Reads bytes up to (not including) the next `{` at the start of a value, or the end of
    /// the line: a run of bytes that cannot start a record.
    fn read_garbage(&mut self) -> io::Result<Frame> {
        let (line, offset) = (self.line, self.offset);
        let mut bytes = Vec::new();
        'outer: loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let mut n = 0;
            for &b in buf {
                if b == b'{' && !bytes.is_empty() || b == b'\n' {
                    bytes.extend_from_slice(&buf[..n]);
                    self.reader.consume(n);
                    self.offset += n as u64;
                    break 'outer;
                }
                n += 1;
            }
            bytes.extend_from_slice(&buf[..n]);
            self.reader.consume(n);
            self.offset += n as u64;
        }
        Ok(Frame {
            bytes,
            line,
            offset,
        })
    }

    /// Reads one brace-balanced value starting at `{`. Stops at the end of input if the value is
    /// cut short (the frame then fails to parse downstream).
    fn read_braced(&mut self) -> io::Result<Frame> {
        let (line, offset) = (self.line, self.offset);
        let mut bytes = Vec::new();
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                if b == b'\n' {
                    self.line += 1;
                }
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let n = end.unwrap_or(buf.len());
            bytes.extend_from_slice(&buf[..n]);
            self.reader.consume(n);
            self.offset += n as u64;
            if end.is_some() {
                break;
            }
        }
        Ok(Frame {
            bytes,
            line,
            offset,
        })
    }

    /// Reads the rest of the current line as one frame.
    fn read_line(&mut self) -> io::Result<Frame> {
        let (line, offset) = (self.line, self.offset);
        let mut bytes = Vec::new();
        let n = self.reader.read_until(b'\n', &mut bytes)?;
        self.offset += n as u64;
        if bytes.last() == Some(&b'\n') {
            self.line += 1;
        }
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        Ok(Frame {
            bytes,
            line,
            offset,
        })
    }

    /// Reads the first value, decides the mode and queues the first frame(s).
    fn detect(&mut self) -> io::Result<()> {
        let Some(first) = self.skip_ws()? else {
            self.done = true;
            return Ok(());
        };
        if first != b'{' {
            // Not an object: treat the input as lines; this line is one bad record.
            self.mode = Mode::Lines;
            return Ok(());
        }
        let frame = self.read_braced()?;
        let multi_line = frame.line != self.line;
        if let Some(records) = lambda_records(&frame) {
            self.pending.extend(records);
            self.mode = Mode::Braces;
            return Ok(());
        }
        // What separates the first value from the next one decides between lines and braces.
        let mut newline_follows = true;
        let start_line = self.line;
        if let Some(next) = self.skip_ws()? {
            newline_follows = self.line != start_line || next != b'{';
        }
        self.marker = marker_of(&frame.bytes);
        if newline_follows && !multi_line {
            self.mode = Mode::Lines;
            self.pending.push_back(frame);
        } else {
            // Braces: a first record cut short may have swallowed the next ones; re-cut it.
            self.mode = Mode::Braces;
            self.push_recut(frame);
        }
        Ok(())
    }

    /// In brace mode, cuts a frame again wherever the first record's opening appears inside it.
    fn push_recut(&mut self, frame: Frame) {
        let Some(marker) = self.marker.as_deref() else {
            self.pending.push_back(frame);
            return;
        };
        let cuts: Vec<usize> = memchr::memmem::find_iter(&frame.bytes[1..], marker)
            .map(|i| i + 1)
            .collect();
        if cuts.is_empty() {
            self.pending.push_back(frame);
            return;
        }
        let mut start = 0;
        for cut in cuts.into_iter().chain(std::iter::once(frame.bytes.len())) {
            let piece = &frame.bytes[start..cut];
            let lines_before = memchr::memchr_iter(b'\n', &frame.bytes[..start]).count() as u64;
            let mut bytes = piece.to_vec();
            while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                bytes.pop();
            }
            self.pending.push_back(Frame {
                bytes,
                line: frame.line + lines_before,
                offset: frame.offset + start as u64,
            });
            start = cut;
        }
    }

    fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Ok(Some(f));
            }
            if self.done {
                return Ok(None);
            }
            match self.mode {
                Mode::Detect => self.detect()?,
                Mode::Lines => {
                    if self.skip_ws()?.is_none() {
                        self.done = true;
                        continue;
                    }
                    let f = self.read_line()?;
                    return Ok(Some(f));
                }
                Mode::Braces => match self.skip_ws()? {
                    None => self.done = true,
                    Some(b'{') => {
                        let f = self.read_braced()?;
                        if let Some(records) = lambda_records(&f) {
                            self.pending.extend(records);
                        } else {
                            self.push_recut(f);
                        }
                    }
                    Some(_) => return self.read_garbage().map(Some),
                },
            }
        }
    }
}

impl<R: BufRead> Iterator for Framer<R> {
    type Item = io::Result<Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_frame() {
            Ok(Some(f)) => Some(Ok(f)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                self.pending.clear();
                Some(Err(e))
            }
        }
    }
}

/// The first record's bytes up to and including its first `":`, if distinctive enough.
fn marker_of(bytes: &[u8]) -> Option<Vec<u8>> {
    let end = memchr::memmem::find(bytes, b"\":")? + 2;
    (end >= MIN_MARKER && !bytes[..end].contains(&b'\n')).then(|| bytes[..end].to_vec())
}

#[derive(Deserialize)]
struct LambdaEvent<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<&'a RawValue>,
}

/// If the frame is an object with a `Records` array, the frames of its elements.
fn lambda_records(frame: &Frame) -> Option<Vec<Frame>> {
    // Cheap test before a parse: Lambda events and GetRecords answers name `Records` early.
    memchr::memmem::find(&frame.bytes, b"\"Records\"")?;
    let text = std::str::from_utf8(&frame.bytes).ok()?;
    let event: LambdaEvent = serde_json::from_str(text).ok()?;
    let base = text.as_ptr() as usize;
    Some(
        event
            .records
            .iter()
            .map(|raw| {
                let start = raw.get().as_ptr() as usize - base;
                let lines = memchr::memchr_iter(b'\n', &frame.bytes[..start]).count() as u64;
                Frame {
                    bytes: raw.get().as_bytes().to_vec(),
                    line: frame.line + lines,
                    offset: frame.offset + start as u64,
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &str) -> Vec<(String, u64, u64)> {
        Framer::new(input.as_bytes())
            .map(|f| {
                let f = f.unwrap();
                (String::from_utf8(f.bytes).unwrap(), f.line, f.offset)
            })
            .collect()
    }

    #[test]
    fn json_lines_with_bad_lines() {
        let got = frames("{\"a\":1}\n\nnot json\n{\"a\":\n{\"b\":2}\n");
        assert_eq!(
            got,
            vec![
                ("{\"a\":1}".into(), 1, 0),
                ("not json".into(), 3, 9),
                ("{\"a\":".into(), 4, 18),
                ("{\"b\":2}".into(), 5, 24),
            ]
        );
    }

    #[test]
    fn concatenated_records() {
        let got = frames(r#"{"a":"}{"}{"a":{"b":[1,{}]}}  {"a":3}"#);
        let texts: Vec<_> = got.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            texts,
            [r#"{"a":"}{"}"#, r#"{"a":{"b":[1,{}]}}"#, r#"{"a":3}"#]
        );
        assert_eq!(got[1].2, 10);
    }

    #[test]
    fn concatenated_truncated_record_is_recut() {
        let rec = |v: &str| format!(r#"{{"awsRegion":"x","v":"{v}"}}"#);
        let input = format!("{}{}{}", rec("1"), &rec("2")[..20], rec("3"));
        let got = frames(&input);
        let texts: Vec<_> = got.iter().map(|f| f.0.clone()).collect();
        assert_eq!(texts, [rec("1"), rec("2")[..20].to_string(), rec("3")]);
    }

    #[test]
    fn a_cut_first_line_does_not_swallow_the_rest() {
        let input = "{\"awsRegion\":\"x\",\"v\":\"1\n{\"awsRegion\":\"x\",\"v\":\"2\"}\n{\"awsRegion\":\"x\",\"v\":\"3\"}\n";
        let got = frames(input);
        let texts: Vec<_> = got.iter().map(|f| (f.0.as_str(), f.1)).collect();
        assert_eq!(
            texts,
            [
                ("{\"awsRegion\":\"x\",\"v\":\"1", 1),
                ("{\"awsRegion\":\"x\",\"v\":\"2\"}", 2),
                ("{\"awsRegion\":\"x\",\"v\":\"3\"}", 3)
            ]
        );
    }

    #[test]
    fn lambda_event() {
        let input = "{\n \"Records\": [\n  {\"a\": 1},\n  {\"a\": 2}\n ]\n}\n";
        let got = frames(input);
        assert_eq!(
            got,
            vec![("{\"a\": 1}".into(), 3, 18), ("{\"a\": 2}".into(), 4, 30)]
        );
    }

    #[test]
    fn single_record_and_empty_input() {
        assert_eq!(frames("{\"a\":1}"), vec![("{\"a\":1}".into(), 1, 0)]);
        assert!(frames("  \n").is_empty());
        assert_eq!(frames("garbage"), vec![("garbage".into(), 1, 0)]);
    }

    #[test]
    fn pretty_printed_records_stay_whole() {
        let got = frames("{\n \"a\": 1\n}\n{\n \"a\": 2\n}\n");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, 4);
    }
}
