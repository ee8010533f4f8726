//! Open partitions' rows moved to local disk when the open partitions together outgrow the
//! memory budget, instead of being written out as tiny files: each batch is one Arrow IPC
//! record batch message appended to an anonymous temporary file, read back when its partition
//! flushes. Its schema message is kept in memory, once per distinct schema, with a decoder that
//! has read it, which decodes the batch when it is read (batches of different tables and column
//! prefixes share a file; reading the schema again for every batch was 6% of the
//! 40,000-partition run). The schema written with each batch had been a quarter of the bytes
//! spilled when thousands of partitions each spilled a few rows (docs/BENCHMARKS.md, "Many partitions"). The
//! files are anonymous (unlinked at creation), so a crash leaves nothing any reader sees, and
//! the rows are still buffered as far as the exactly-once bookkeeping is concerned: a spilled
//! partition is an open partition (docs/DESIGN.md, "Memory is bounded").
//!
//! Files roll at [`ROLL_BYTES`]; a file is dropped (its disk space freed) once every batch
//! written to it has been read back, so a long-running consumer's disk use stays near what is
//! spilled at once.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use rustc_hash::FxHashMap;

/// Bytes written to one spill file before the next batch starts a new one.
const ROLL_BYTES: u64 = 256 << 20;

/// Buffers aligned to 8 bytes rather than the IPC writer's default 64: a spilled batch often
/// holds a few rows of each of dozens of columns, and padding each buffer to 64 bytes made most of
/// its size (with 39,851 partitions: 443 MB spilled at 64, 212 MB at 8; docs/BENCHMARKS.md). The
/// reader copies a buffer that its type needs aligned wider (decimals) when it reads it back.
fn ipc_options() -> arrow_ipc::writer::IpcWriteOptions {
    arrow_ipc::writer::IpcWriteOptions::try_new(8, false, arrow_ipc::MetadataVersion::V5)
        .expect("8 is a valid IPC alignment")
}

/// A distinct schema of spilled batches: a stream decoder that has read its schema message, so
/// that it decodes the batch messages that follow it.
#[derive(Debug)]
struct Schema {
    /// The IPC schema message (also its key among the spill's schemas), to start a decoder
    /// again after a failed read (which leaves the decoder in the middle of a message).
    message: Arc<[u8]>,
    decoder: Mutex<StreamDecoder>,
}

/// A stream decoder that has read `message`, an IPC schema message.
fn decoder_after(message: &[u8]) -> std::io::Result<StreamDecoder> {
    let mut decoder = StreamDecoder::new();
    let read = decoder
        .decode(&mut Buffer::from(message.to_vec()))
        .map_err(std::io::Error::other)?;
    debug_assert!(read.is_none(), "a schema message holds no batch");
    Ok(decoder)
}

/// Where one spilled batch is.
#[derive(Debug)]
pub struct Segment {
    /// The schema that the batch message follows.
    schema: Arc<Schema>,
    file: usize,
    offset: u64,
    len: u64,
}

struct SpillFile {
    file: File,
    len: u64,
    /// Batches written and not read back yet.
    live: usize,
}

/// The spill files of one buffer.
#[derive(Default)]
pub struct Spill {
    /// By id; `None` once dropped.
    files: Vec<Option<SpillFile>>,
    /// Bytes on disk now (batches not read back, in files not dropped).
    on_disk: u64,
    /// Batches written so far.
    pub batches_written: u64,
    /// Bytes written so far.
    pub bytes_written: u64,
    /// The schemas of the batches not read back yet, each once, by their IPC schema message.
    schemas: FxHashMap<Arc<[u8]>, Arc<Schema>>,
}

impl Spill {
    /// Bytes on disk now.
    pub fn on_disk(&self) -> u64 {
        self.on_disk
    }

    /// Appends a batch; returns where it is.
    pub fn write(&mut self, batch: &RecordBatch) -> std::io::Result<Segment> {
        let mut stream = Vec::new();
        let head = {
            let mut w = arrow_ipc::writer::StreamWriter::try_new_with_options(
                &mut stream,
                &batch.schema(),
                ipc_options(),
            )
            .map_err(std::io::Error::other)?;
            let head = w.get_ref().len();
            w.write(batch).map_err(std::io::Error::other)?;
            head
        };
        let (head, bytes) = stream.split_at(head);
        let schema = match self.schemas.get(head) {
            Some(known) => Arc::clone(known),
            None => {
                // Schemas no batch on disk uses any more go, so that a long run whose tables
                // keep gaining columns does not keep every column list it ever spilled.
                self.schemas.retain(|_, s| Arc::strong_count(s) > 1);
                let message: Arc<[u8]> = Arc::from(head);
                let new = Arc::new(Schema {
                    message: Arc::clone(&message),
                    decoder: Mutex::new(decoder_after(head)?),
                });
                self.schemas.insert(message, Arc::clone(&new));
                new
            }
        };
        let roll = match self.files.last() {
            Some(Some(f)) => f.len >= ROLL_BYTES,
            _ => true,
        };
        if roll {
            // A full file whose batches were all read back goes now.
            if let Some(last) = self.files.last_mut() {
                if last.as_ref().is_some_and(|f| f.live == 0) {
                    *last = None;
                }
            }
            self.files.push(Some(SpillFile {
                file: tempfile::tempfile()?,
                len: 0,
                live: 0,
            }));
        }
        let id = self.files.len() - 1;
        let f = self.files[id].as_mut().expect("the current file is open");
        f.file.write_all_at(bytes, f.len)?;
        let seg = Segment {
            schema,
            file: id,
            offset: f.len,
            len: bytes.len() as u64,
        };
        f.len += seg.len;
        f.live += 1;
        self.on_disk += seg.len;
        self.batches_written += 1;
        self.bytes_written += seg.len;
        Ok(seg)
    }

    /// Reads a batch back (once: its space counts as freed).
    pub fn read(&mut self, seg: &Segment) -> std::io::Result<RecordBatch> {
        let last = self.files.len() - 1;
        let f = self.files[seg.file]
            .as_mut()
            .ok_or_else(|| std::io::Error::other("a spill file was dropped too early"))?;
        let mut bytes = vec![0; seg.len as usize];
        f.file.read_exact_at(&mut bytes, seg.offset)?;
        f.live -= 1;
        self.on_disk -= seg.len;
        if f.live == 0 && seg.file != last {
            self.files[seg.file] = None;
        }
        let mut decoder = seg
            .schema
            .decoder
            .lock()
            .map_err(|_| std::io::Error::other("a spill decoder was poisoned"))?;
        let read = decoder
            .decode(&mut Buffer::from(bytes))
            .map_err(std::io::Error::other)
            .and_then(|b| b.ok_or_else(|| std::io::Error::other("an incomplete spill segment")));
        if read.is_err() {
            // The decoder stopped inside a message: the next batch starts on a fresh one.
            *decoder = decoder_after(&seg.schema.message)?;
        }
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Decimal128Array, Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn batches_of_any_schema_come_back_as_written_and_files_are_dropped() {
        let a = RecordBatch::try_from_iter([(
            "a",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        )])
        .unwrap();
        // A decimal's 16-byte values come back aligned although spilled at 8.
        let d = Decimal128Array::from(vec![Some(-12_345), None, Some(i128::MAX)])
            .with_precision_and_scale(38, 4)
            .unwrap();
        let b = RecordBatch::try_from_iter([
            ("a", Arc::new(Int64Array::from(vec![4, 5, 6])) as ArrayRef),
            (
                "s",
                Arc::new(StringArray::from(vec!["x", "", "z"])) as ArrayRef,
            ),
            ("d", Arc::new(d) as ArrayRef),
        ])
        .unwrap();
        let mut s = Spill::default();
        let (sa, sb) = (s.write(&a).unwrap(), s.write(&b).unwrap());
        assert!(s.on_disk() > 0);
        assert_eq!(s.read(&sb).unwrap(), b);
        assert_eq!(s.read(&sa).unwrap(), a);
        assert_eq!(s.on_disk(), 0);
        assert_eq!(s.batches_written, 2);
    }

    /// A read that fails halfway (here: a segment cut short) leaves its schema's decoder fit
    /// for the next batch of that schema.
    #[test]
    fn a_failed_read_does_not_spoil_the_next_one() {
        let b = RecordBatch::try_from_iter([
            ("a", Arc::new(Int64Array::from(vec![4, 5, 6])) as ArrayRef),
            (
                "s",
                Arc::new(StringArray::from(vec!["x", "", "z"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut s = Spill::default();
        let (first, second) = (s.write(&b).unwrap(), s.write(&b).unwrap());
        let cut = Segment {
            schema: Arc::clone(&first.schema),
            file: first.file,
            offset: first.offset,
            len: first.len - 8,
        };
        assert!(s.read(&cut).is_err());
        assert_eq!(s.read(&second).unwrap(), b);
    }

    #[test]
    fn a_schema_is_kept_once_not_written_with_every_batch() {
        let columns: Vec<(String, ArrayRef)> = (0..30)
            .map(|c| {
                let a: ArrayRef = Arc::new(Int64Array::from(vec![c]));
                (format!("a_rather_long_column_name_{c}"), a)
            })
            .collect();
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut stream = Vec::new();
        let mut w = arrow_ipc::writer::StreamWriter::try_new_with_options(
            &mut stream,
            &batch.schema(),
            ipc_options(),
        )
        .unwrap();
        let head = w.get_ref().len();
        w.write(&batch).unwrap();
        let message = stream.len() - head;
        assert!(head > message / 2, "the schema message is not negligible");
        let mut s = Spill::default();
        let segs: Vec<Segment> = (0..100).map(|_| s.write(&batch).unwrap()).collect();
        assert_eq!(s.bytes_written, 100 * message as u64);
        assert_eq!(s.schemas.len(), 1);
        for seg in segs {
            assert_eq!(s.read(&seg).unwrap(), batch);
        }
        assert_eq!(s.on_disk(), 0);
        // Once no spilled batch uses a schema, the next new schema replaces it.
        let other = RecordBatch::try_from_iter([(
            "other",
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        let seg = s.write(&other).unwrap();
        assert_eq!(s.schemas.len(), 1);
        assert_eq!(s.read(&seg).unwrap(), other);
    }
}
