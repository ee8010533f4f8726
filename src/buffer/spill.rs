//! Open partitions' rows moved to local disk when the open partitions together outgrow the
//! memory budget, instead of being written out as tiny files: each batch is one Arrow IPC
//! stream message (schema and batch, so batches of different tables and column prefixes share a
//! file) appended to an anonymous temporary file, read back when its partition flushes. The
//! files are anonymous (unlinked at creation), so a crash leaves nothing any reader sees, and
//! the rows are still buffered as far as the exactly-once bookkeeping is concerned: a spilled
//! partition is an open partition (docs/DESIGN.md, "Memory is bounded").
//!
//! Files roll at [`ROLL_BYTES`]; a file is dropped (its disk space freed) once every batch
//! written to it has been read back, so a long-running consumer's disk use stays near what is
//! spilled at once.

use std::fs::File;
use std::io::Cursor;
use std::os::unix::fs::FileExt;

use arrow_array::RecordBatch;

/// Bytes written to one spill file before the next batch starts a new one.
const ROLL_BYTES: u64 = 256 << 20;

/// Where one spilled batch is.
#[derive(Debug)]
pub struct Segment {
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
}

impl Spill {
    /// Bytes on disk now.
    pub fn on_disk(&self) -> u64 {
        self.on_disk
    }

    /// Appends a batch; returns where it is.
    pub fn write(&mut self, batch: &RecordBatch) -> std::io::Result<Segment> {
        let mut bytes = Vec::new();
        {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema())
                .map_err(std::io::Error::other)?;
            w.write(batch).map_err(std::io::Error::other)?;
            w.finish().map_err(std::io::Error::other)?;
        }
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
        f.file.write_all_at(&bytes, f.len)?;
        let seg = Segment {
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
        let mut bytes = vec![0u8; seg.len as usize];
        f.file.read_exact_at(&mut bytes, seg.offset)?;
        f.live -= 1;
        self.on_disk -= seg.len;
        if f.live == 0 && seg.file != last {
            self.files[seg.file] = None;
        }
        let mut r = arrow_ipc::reader::StreamReader::try_new(Cursor::new(bytes), None)
            .map_err(std::io::Error::other)?;
        r.next()
            .ok_or_else(|| std::io::Error::other("an empty spill segment"))?
            .map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn batches_of_any_schema_come_back_as_written_and_files_are_dropped() {
        let a = RecordBatch::try_from_iter([(
            "a",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        )])
        .unwrap();
        let b = RecordBatch::try_from_iter([
            ("a", Arc::new(Int64Array::from(vec![4])) as ArrayRef),
            ("s", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
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
}
