//! Which history a reading command reads: `--db PATH` (the router's
//! SQLite) or `--postgres URL [--sensor NAME]` (the fleet's). The choice
//! is made here; `plot`, `top`, `detect` and `serve` then hold a
//! `dyn History` and do not know which they got.

use std::path::PathBuf;

use crate::{
    fleet::pgstore::PgStore,
    store::{History, HistorySource, Store, StoreError},
};

/// Where a reading command's history is: a SQLite file, or the fleet's
/// PostgreSQL (optionally one sensor of it).
#[derive(Clone, Debug)]
pub enum HistorySpec {
    Sqlite(PathBuf),
    Postgres { url: String, sensor: Option<String> },
}

impl HistorySource for HistorySpec {
    fn open(&self) -> Result<Box<dyn History>, StoreError> {
        match self {
            HistorySpec::Sqlite(p) => Ok(Box::new(Store::open_read_only(p)?)),
            HistorySpec::Postgres { url, sensor } => {
                Ok(Box::new(PgStore::open(url, sensor.as_deref())?))
            }
        }
    }
}
