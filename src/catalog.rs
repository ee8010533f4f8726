//! Catalog registration: the lake's tables in the AWS Glue Data Catalog (which Athena and Redshift
//! Spectrum read). Compares what the catalog holds with what the lake needs and either prints the
//! statements that close the gap or makes the Glue calls: CreateDatabase, CreateTable, UpdateTable
//! (new columns), BatchCreatePartition (layouts without partition projection).

use std::collections::{BTreeSet, HashMap};

use aws_sdk_glue::types::{
    Column, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput,
};

use crate::ddl::{self, AthenaTable, Partition};

const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
/// BatchCreatePartition takes at most 100 partitions a call.
const PARTITIONS_PER_CALL: usize = 100;

/// Why the Glue Data Catalog could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A Glue call failed.
    #[error("Glue {op} {name}: {message}")]
    Glue {
        /// The Glue operation, such as `GetTable` or `BatchCreatePartition`.
        op: &'static str,
        /// What the call was about: the database, or `database.table`.
        name: String,
        /// The error with its causes (for BatchCreatePartition: the first partition error other
        /// than `AlreadyExistsException`).
        message: String,
    },
    /// The catalog has a table of that name whose columns are not a prefix of the lake's
    /// (in order, names compared without case): it was made from something else.
    #[error("Glue table {database}.{table} has column `{column}` where the lake has `{expected}`: it was not made from this lake (drop it, or choose another --database)")]
    Mismatch {
        /// The Glue database.
        database: String,
        /// The table's name in `database`.
        table: String,
        /// The catalog's column at the first position that differs.
        column: String,
        /// The lake's column at that position (empty when the lake's table has fewer columns).
        expected: String,
    },
}

fn glue_err<E: std::error::Error + 'static>(op: &'static str, name: &str, e: E) -> CatalogError {
    CatalogError::Glue {
        op,
        name: name.to_string(),
        message: crate::errors::chain(&e),
    }
}

/// What the catalog lacks for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChange {
    /// The lake's table as the catalog should hold it afterwards (its projection ranges
    /// kept where the catalog's start earlier).
    pub table: AthenaTable,
    /// The table does not exist yet.
    pub create: bool,
    /// Columns the catalog's table has (the rest are to be added).
    pub known_columns: usize,
    /// Partitions to register (layouts without projection).
    pub partitions: Vec<Partition>,
    /// Projection ranges to widen (the lake has hours older than the catalog's range covers).
    pub properties: Vec<(String, String)>,
}

impl TableChange {
    /// Whether the catalog already has everything: no table to create, no column to add,
    /// no partition to register, no range to widen.
    pub fn is_empty(&self) -> bool {
        !self.create
            && self.known_columns == self.table.columns.len()
            && self.partitions.is_empty()
            && self.properties.is_empty()
    }

    /// The statements that make the change in Athena.
    pub fn sql(&self, database: &str) -> String {
        let mut o = String::new();
        if self.create {
            o.push_str(&ddl::athena_create(&self.table, database));
        } else {
            if let Some(alter) = ddl::athena_add_columns(&self.table, database, self.known_columns)
            {
                o.push_str(&alter);
            }
            if let Some(set) = ddl::athena_set_properties(&self.table, database, &self.properties) {
                o.push_str(&set);
            }
        }
        o.push_str(&ddl::athena_add_partitions(
            &self.table,
            database,
            &self.partitions,
        ));
        o
    }
}

/// The Glue Data Catalog, through the AWS SDK (credentials, region and `AWS_ENDPOINT_URL_GLUE`
/// from the standard AWS configuration).
pub struct Glue {
    client: aws_sdk_glue::Client,
}

impl Glue {
    /// A client from the shared AWS configuration (`aws::config`).
    pub async fn connect() -> Self {
        Glue {
            client: aws_sdk_glue::Client::new(crate::aws::config().await),
        }
    }

    /// Whether `database` exists.
    pub async fn has_database(&self, database: &str) -> Result<bool, CatalogError> {
        match self.client.get_database().name(database).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(glue_err("GetDatabase", database, e)),
        }
    }

    /// Creates `database`; one that already exists (made meanwhile) is fine.
    pub async fn create_database(&self, database: &str) -> Result<(), CatalogError> {
        let input = DatabaseInput::builder()
            .name(database)
            .description("DynamoDB change data written by ddb-lake")
            .build()
            .map_err(|e| glue_err("CreateDatabase", database, e))?;
        match self
            .client
            .create_database()
            .database_input(input)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(glue_err("CreateDatabase", database, e)),
        }
    }

    /// Compares the catalog's table with the lake's: what is missing. `partitions` are the
    /// lake's partitions (for tables without projection).
    pub async fn plan(
        &self,
        database: &str,
        table: AthenaTable,
        partitions: Vec<Partition>,
    ) -> Result<TableChange, CatalogError> {
        let name = format!("{database}.{}", table.name);
        let existing = match self
            .client
            .get_table()
            .database_name(database)
            .name(&table.name)
            .send()
            .await
        {
            Ok(r) => r.table().cloned(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(glue_err("GetTable", &name, e)),
        };
        let Some(existing) = existing else {
            return Ok(TableChange {
                known_columns: 0,
                create: true,
                properties: Vec::new(),
                partitions: if table.projected() {
                    Vec::new()
                } else {
                    partitions
                },
                table,
            });
        };
        let have: Vec<&str> = existing
            .storage_descriptor()
            .map(|sd| sd.columns().iter().map(|c| c.name()).collect())
            .unwrap_or_default();
        for (i, col) in have.iter().enumerate() {
            let expected = table.columns.get(i).map(|c| c.0.as_str()).unwrap_or("");
            if !col.eq_ignore_ascii_case(expected) {
                return Err(CatalogError::Mismatch {
                    database: database.into(),
                    table: table.name.clone(),
                    column: col.to_string(),
                    expected: expected.to_string(),
                });
            }
        }
        let known_columns = have.len();
        let mut table = table;
        let properties = widen_ranges(&mut table, existing.parameters());
        let partitions = if table.projected() {
            Vec::new()
        } else {
            let registered = self.partition_values(database, &table.name).await?;
            partitions
                .into_iter()
                .filter(|p| !registered.contains(&p.values))
                .collect()
        };
        Ok(TableChange {
            table,
            create: false,
            known_columns,
            partitions,
            properties,
        })
    }

    async fn partition_values(
        &self,
        database: &str,
        table: &str,
    ) -> Result<BTreeSet<Vec<String>>, CatalogError> {
        let mut out = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let r = self
                .client
                .get_partitions()
                .database_name(database)
                .table_name(table)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| glue_err("GetPartitions", &format!("{database}.{table}"), e))?;
            out.extend(r.partitions().iter().map(|p| p.values().to_vec()));
            match r.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// The location of a table (`None`: no such table), to tell whether `{table}_current`
    /// points at the current snapshot.
    pub async fn location(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Option<String>, CatalogError> {
        match self
            .client
            .get_table()
            .database_name(database)
            .name(table)
            .send()
            .await
        {
            Ok(r) => Ok(Some(
                r.table()
                    .and_then(|t| t.storage_descriptor())
                    .and_then(|sd| sd.location())
                    .unwrap_or_default()
                    .to_string(),
            )),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(glue_err("GetTable", &format!("{database}.{table}"), e)),
        }
    }

    /// Points a table without partitions (`{table}_current`) at `t.location` with `t.columns`:
    /// creates it, or replaces its definition in one UpdateTable, so that a query sees the
    /// previous snapshot or the new one, never a mix.
    pub async fn put_unpartitioned(
        &self,
        database: &str,
        t: &AthenaTable,
    ) -> Result<(), CatalogError> {
        let create = self.location(database, &t.name).await?.is_none();
        self.put_table(database, t, create).await
    }

    /// Creates the table `t`, or replaces its definition in one UpdateTable.
    async fn put_table(
        &self,
        database: &str,
        t: &AthenaTable,
        create: bool,
    ) -> Result<(), CatalogError> {
        let name = format!("{database}.{}", t.name);
        let input = table_input(t).map_err(|e| glue_err("TableInput", &name, e))?;
        if create {
            self.client
                .create_table()
                .database_name(database)
                .table_input(input)
                .send()
                .await
                .map_err(|e| glue_err("CreateTable", &name, e))?;
        } else {
            self.client
                .update_table()
                .database_name(database)
                .table_input(input)
                .send()
                .await
                .map_err(|e| glue_err("UpdateTable", &name, e))?;
        }
        Ok(())
    }

    /// Makes the change: creates or updates the table, registers the partitions.
    pub async fn apply(&self, database: &str, change: &TableChange) -> Result<(), CatalogError> {
        let t = &change.table;
        let name = format!("{database}.{}", t.name);
        if change.create || change.known_columns < t.columns.len() || !change.properties.is_empty()
        {
            self.put_table(database, t, change.create).await?;
        }
        for chunk in change.partitions.chunks(PARTITIONS_PER_CALL) {
            let inputs: Vec<PartitionInput> = chunk
                .iter()
                .map(|p| {
                    PartitionInput::builder()
                        .set_values(Some(p.values.clone()))
                        .storage_descriptor(storage(t, &p.location, false))
                        .build()
                })
                .collect();
            let r = self
                .client
                .batch_create_partition()
                .database_name(database)
                .table_name(&t.name)
                .set_partition_input_list(Some(inputs))
                .send()
                .await
                .map_err(|e| glue_err("BatchCreatePartition", &name, e))?;
            // A partition registered meanwhile is fine; anything else is not.
            if let Some(err) = r.errors().iter().find(|e| {
                e.error_detail()
                    .and_then(|d| d.error_code())
                    .is_none_or(|c| c != "AlreadyExistsException")
            }) {
                return Err(CatalogError::Glue {
                    op: "BatchCreatePartition",
                    name,
                    message: format!("{err:?}"),
                });
            }
        }
        Ok(())
    }
}

/// Projection ranges (`projection.*.range`, `START,END`) never narrow: where the catalog's starts
/// earlier than the lake's, the catalog's stays in `table` (so an update for new columns keeps
/// it); where the lake's starts earlier (older hours appeared), it is returned, to be set.
fn widen_ranges(
    table: &mut AthenaTable,
    catalog: Option<&HashMap<String, String>>,
) -> Vec<(String, String)> {
    let start = |v: &str| v.split(',').next().unwrap_or_default().to_string();
    let mut widen = Vec::new();
    for (k, v) in &mut table.properties {
        if !k.ends_with(".range") {
            continue;
        }
        let Some(old) = catalog.and_then(|c| c.get(k.as_str())) else {
            continue;
        };
        if start(old) <= start(v) {
            *v = old.clone();
        } else {
            widen.push((k.clone(), v.clone()));
        }
    }
    widen
}

fn storage(t: &AthenaTable, location: &str, with_columns: bool) -> StorageDescriptor {
    let columns = with_columns.then(|| {
        t.columns
            .iter()
            .map(|(name, ty, comment)| {
                Column::builder()
                    .name(name)
                    .r#type(ty)
                    .comment(comment)
                    .build()
                    .expect("columns have names")
            })
            .collect()
    });
    StorageDescriptor::builder()
        .set_columns(columns)
        .location(location)
        .input_format(INPUT_FORMAT)
        .output_format(OUTPUT_FORMAT)
        .serde_info(SerDeInfo::builder().serialization_library(SERDE).build())
        .build()
}

fn table_input(t: &AthenaTable) -> Result<TableInput, aws_sdk_glue::error::BuildError> {
    let mut parameters: HashMap<String, String> = t.properties.iter().cloned().collect();
    parameters.insert("EXTERNAL".into(), "TRUE".into());
    parameters.insert("classification".into(), "parquet".into());
    let keys = t
        .partition_keys
        .iter()
        .map(|k| Column::builder().name(k).r#type("string").build())
        .collect::<Result<Vec<_>, _>>()?;
    TableInput::builder()
        .name(&t.name)
        .table_type("EXTERNAL_TABLE")
        .set_parameters(Some(parameters))
        .storage_descriptor(storage(t, &t.location, true))
        .set_partition_keys(Some(keys))
        .build()
}
