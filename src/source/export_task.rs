//! A table's point-in-time export, started and followed to its end, for `ddb-lake bootstrap`:
//! the table's ARN and stream (DescribeTable), point-in-time recovery checked
//! (DescribeContinuousBackups: exports need it), the export started
//! (ExportTableToPointInTime) and its state read (DescribeExport) until it is done. The export's
//! files are then read like any other export (`export.rs`), from its `manifest-summary.json`.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{ExportFormat, ExportStatus, ExportType};

use super::SourceError;

/// The table of a bootstrap, as DescribeTable gives it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// The table's name.
    pub name: String,
    /// The table's ARN (what ExportTableToPointInTime takes).
    pub arn: String,
    /// The table's latest DynamoDB stream, when it has one and it is on.
    pub stream_arn: Option<String>,
    /// The table's key attributes: the partition key, then the sort key if any.
    pub keys: Vec<String>,
}

/// Where an export stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Still running.
    InProgress,
    /// Done: its `manifest-summary.json`, as an `s3://` URL.
    Completed {
        /// The URL of the export's `manifest-summary.json`.
        manifest: String,
    },
    /// Failed, for the reason given.
    Failed {
        /// DescribeExport's failure code and message.
        reason: String,
    },
}

/// The DynamoDB client of a bootstrap.
pub struct ExportTask {
    client: aws_sdk_dynamodb::Client,
}

fn failed<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    table: &str,
    call: &'static str,
    e: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> SourceError {
    let message = match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or("")
        ),
        None => crate::errors::chain(&e),
    };
    SourceError::TableExport {
        table: table.to_string(),
        problem: format!("{call} failed: {message}"),
    }
}

impl ExportTask {
    /// A client from the standard AWS configuration (`AWS_ENDPOINT_URL_DYNAMODB`).
    pub async fn connect() -> Self {
        ExportTask {
            client: aws_sdk_dynamodb::Client::new(crate::aws::config().await),
        }
    }

    /// The table's ARN and stream.
    pub async fn table(&self, name: &str) -> Result<TableInfo, SourceError> {
        let resp = self
            .client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| failed(name, "DescribeTable", e))?;
        let t = resp.table();
        let enabled = t
            .and_then(|t| t.stream_specification())
            .is_some_and(|s| s.stream_enabled());
        Ok(TableInfo {
            name: name.to_string(),
            arn: t
                .and_then(|t| t.table_arn())
                .ok_or_else(|| SourceError::TableExport {
                    table: name.into(),
                    problem: "DescribeTable gave no table ARN".into(),
                })?
                .to_string(),
            stream_arn: t
                .and_then(|t| t.latest_stream_arn())
                .filter(|_| enabled)
                .map(str::to_string),
            keys: {
                let mut k: Vec<_> = t.map(|t| t.key_schema().to_vec()).unwrap_or_default();
                // HASH before RANGE.
                k.sort_by_key(|e| e.key_type().as_str() != "HASH");
                k.iter().map(|e| e.attribute_name().to_string()).collect()
            },
        })
    }

    /// Fails with [`SourceError::PitrOff`] unless point-in-time recovery is on for `table`.
    pub async fn require_pitr(&self, table: &str) -> Result<(), SourceError> {
        let resp = self
            .client
            .describe_continuous_backups()
            .table_name(table)
            .send()
            .await
            .map_err(|e| failed(table, "DescribeContinuousBackups", e))?;
        let on = resp
            .continuous_backups_description()
            .and_then(|d| d.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status())
            .is_some_and(|s| s.as_str() == "ENABLED");
        if on {
            Ok(())
        } else {
            Err(SourceError::PitrOff {
                table: table.to_string(),
            })
        }
    }

    /// Starts a full export of the table as it is now, in DynamoDB JSON, to
    /// `s3://{bucket}/{prefix}`; its ARN.
    pub async fn start(
        &self,
        table: &TableInfo,
        bucket: &str,
        prefix: &str,
    ) -> Result<String, SourceError> {
        let mut call = self
            .client
            .export_table_to_point_in_time()
            .table_arn(&table.arn)
            .s3_bucket(bucket)
            .export_format(ExportFormat::DynamodbJson)
            .export_type(ExportType::FullExport);
        if !prefix.is_empty() {
            call = call.s3_prefix(prefix);
        }
        let resp = call.send().await.map_err(|e| {
            let pitr = e
                .as_service_error()
                .and_then(|s| s.code())
                .is_some_and(|c| c == "PointInTimeRecoveryUnavailableException");
            if pitr {
                SourceError::PitrOff {
                    table: table.name.clone(),
                }
            } else {
                failed(&table.name, "ExportTableToPointInTime", e)
            }
        })?;
        resp.export_description()
            .and_then(|d| d.export_arn())
            .map(str::to_string)
            .ok_or_else(|| SourceError::TableExport {
                table: table.name.clone(),
                problem: "ExportTableToPointInTime gave no export ARN".into(),
            })
    }

    /// Where the export `arn` stands (an error: the call failed).
    pub async fn state(&self, table: &str, arn: &str) -> Result<TaskState, SourceError> {
        let resp = self
            .client
            .describe_export()
            .export_arn(arn)
            .send()
            .await
            .map_err(|e| failed(table, "DescribeExport", e))?;
        let d = resp
            .export_description()
            .ok_or_else(|| SourceError::TableExport {
                table: table.into(),
                problem: format!("DescribeExport gave no description of {arn}"),
            })?;
        match d.export_status() {
            Some(ExportStatus::Completed) => Ok(TaskState::Completed {
                manifest: manifest_url(
                    d.s3_bucket().unwrap_or_default(),
                    d.s3_prefix().unwrap_or_default(),
                    d.export_manifest(),
                    arn,
                ),
            }),
            Some(ExportStatus::Failed) => Ok(TaskState::Failed {
                reason: format!(
                    "{} {}",
                    d.failure_code().unwrap_or("(no code)"),
                    d.failure_message().unwrap_or("")
                ),
            }),
            _ => Ok(TaskState::InProgress),
        }
    }
}

/// The `s3://` URL of an export's `manifest-summary.json`: `{prefix}/AWSDynamoDB/{id}/` as AWS
/// lays exports out, from the `ExportManifest` DescribeExport gives (with or without the prefix
/// in front) or else from the export id (the last part of its ARN).
pub fn manifest_url(bucket: &str, prefix: &str, manifest: Option<&str>, arn: &str) -> String {
    let prefix = prefix.trim_matches('/');
    let tail = match manifest.and_then(|m| m.find("AWSDynamoDB/").map(|i| &m[i..])) {
        Some(tail) => tail.to_string(),
        None => {
            let id = arn.rsplit('/').next().unwrap_or(arn);
            format!("AWSDynamoDB/{id}/manifest-summary.json")
        }
    };
    match prefix {
        "" => format!("s3://{bucket}/{tail}"),
        p => format!("s3://{bucket}/{p}/{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::manifest_url;

    #[test]
    fn the_manifest_is_found_under_the_prefix_whichever_way_aws_names_it() {
        let arn = "arn:aws:dynamodb:us-east-1:1:table/T/export/0169-ab";
        let want = "s3://b/lake/_ddb_lake/exports/AWSDynamoDB/0169-ab/manifest-summary.json";
        for given in [
            None,
            Some("AWSDynamoDB/0169-ab/manifest-summary.json"),
            Some("lake/_ddb_lake/exports/AWSDynamoDB/0169-ab/manifest-summary.json"),
        ] {
            assert_eq!(
                manifest_url("b", "/lake/_ddb_lake/exports/", given, arn),
                want,
                "{given:?}"
            );
        }
        assert_eq!(
            manifest_url("b", "", None, arn),
            "s3://b/AWSDynamoDB/0169-ab/manifest-summary.json"
        );
    }
}
