//! The files a run reads and writes (counterexamples, reports, analyses):
//! JSON read with errors that name the file, the line and what was
//! expected; every file written replaced whole, never through a symlink.

use std::{
    fs::{self, File},
    io::{BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
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
    replace(path, what, |file| {
        serde_json::to_writer_pretty(&mut *file, value)?;
        file.write_all(b"\n")
    })
}

/// Writes `path` anew through `write`, as root may: into a new file beside
/// it (created exclusively, never through a symlink), then renamed over
/// it, so a symlink planted at `path` is replaced, not followed, and a
/// reader never sees half a file.
pub fn replace(
    path: &Path,
    what: &str,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = || -> std::io::Result<()> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&temporary)?;
        let mut file = BufWriter::new(file);
        write(&mut file)?;
        file.flush()?;
        fs::rename(&temporary, path)
    };
    written().map_err(|e| {
        let _ = fs::remove_file(&temporary);
        anyhow::anyhow!("cannot write {what} {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = std::env::temp_dir().join(format!("filibuster-json-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        fs::write(&victim, "precious").unwrap();
        let report = dir.join("report.json");
        std::os::unix::fs::symlink(&victim, &report).unwrap();
        write(&report, "report", &serde_json::json!({"result": "passed"})).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(
            !fs::symlink_metadata(&report)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(fs::read_to_string(&report).unwrap().contains("passed"));
        // Only the report is left: no temporary file.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }
}
