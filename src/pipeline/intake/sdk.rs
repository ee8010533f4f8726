//! DynamoDB Streams records as the SDK returned them: read straight into the decoder's record
//! (`dynamodb_streams::change_record`), with no JSON text in between; the JSON is written only
//! for a record that goes to the error output, or that the reference decoder has to read.

use std::borrow::Cow;

use super::Intake;
use crate::buffer::StreamSource;
use crate::dynamodb_streams::{change_record, record_json};
use crate::flatten::Position;
use crate::kinesis::SdkRecord;
use crate::pipeline::PipelineError;

/// A record's original input: its bytes, or the SDK record they are written from.
#[derive(Clone, Copy)]
pub(super) enum Raw<'r> {
    /// The bytes read.
    Bytes(&'r [u8]),
    /// A DynamoDB Streams record as the SDK returned it.
    Sdk(&'r SdkRecord),
}

impl<'r> From<&'r [u8]> for Raw<'r> {
    fn from(bytes: &'r [u8]) -> Self {
        Raw::Bytes(bytes)
    }
}

impl<'r> Raw<'r> {
    /// The size counted as read: the bytes', or DynamoDB's `SizeBytes` of the record.
    pub(super) fn size(self) -> usize {
        match self {
            Raw::Bytes(b) => b.len(),
            Raw::Sdk(r) => r.size(),
        }
    }

    /// The bytes the error output keeps: for an SDK record, its DynamoDB Streams JSON.
    pub(super) fn bytes(self) -> Cow<'r, [u8]> {
        match self {
            Raw::Bytes(b) => Cow::Borrowed(b),
            Raw::Sdk(r) => Cow::Owned(record_json(&r.record, &r.arn)),
        }
    }
}

impl Intake<'_> {
    /// Decodes, flattens and buffers one DynamoDB Streams record read through the SDK.
    pub(in crate::pipeline) fn sdk_record(
        &mut self,
        r: &SdkRecord,
        pos: &Position,
        source: Option<StreamSource<'_>>,
    ) -> Result<(), PipelineError> {
        match change_record(r) {
            Some(rec) => self.parsed(Raw::Sdk(r), Ok(rec.view()), Some(&rec), pos, source),
            // What the direct reading declines, the decoders read from the JSON, so that the
            // error (if any) is the one every other source gives; it still counts its
            // `SizeBytes` as read, and the error output writes the same JSON again.
            None => self.text(&record_json(&r.record, &r.arn), Raw::Sdk(r), pos, source),
        }
    }
}
