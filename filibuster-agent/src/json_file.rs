//! The JSON files a run reads and writes (counterexamples, reports,
//! analyses), with errors that name the file, the line and what was
//! expected.

use std::{
    fs::{self, File},
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::{Context, Result};
use serde::{Serialize, de::DeserializeOwned};

/// Reads `path` as `what` ("counterexample file"); `expected` says what a
/// valid one is ("a counterexample written by `filibuster test`").
pub fn read<T: DeserializeOwned>(path: &Path, what: &str, expected: &str) -> Result<T> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: line {}: {e}: expected {expected}",
            path.display(),
            e.line()
        )
    })
}

/// Writes `value` to `path` as it is serialised: a report of a run with
/// many calls is hundreds of megabytes, which need not be held in memory.
pub fn write<T: Serialize>(path: &Path, what: &str, value: &T) -> Result<()> {
    let written = || -> std::io::Result<()> {
        let mut file = BufWriter::new(File::create(path)?);
        serde_json::to_writer_pretty(&mut file, value)?;
        file.write_all(b"\n")?;
        file.flush()
    };
    written().with_context(|| format!("cannot write {what} {}", path.display()))
}
