//! Telling a full disk from a damaged database. Both make opening fail, often with the same
//! SQLite error ("disk I/O error"), but they call for opposite remedies: a full disk needs
//! space, and restoring a backup then would replace a good, newer file with an older one.

use rusqlite::ErrorCode;
use std::path::Path;

/// Below this many free bytes, the server does not start (its first writes would fail half
/// way, leaving the start to the disk's mercy), and an I/O error while opening is taken for a
/// full disk.
const NEARLY_FULL: u64 = 1024 * 1024;

/// Bytes free for this process on the file system that holds `path` (or its folder, when the
/// file does not exist yet); `None` when that cannot be read.
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    let probe = if path.exists() {
        path
    } else {
        path.parent().filter(|p| !p.as_os_str().is_empty())?
    };
    let stat = rustix::fs::statvfs(probe).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Whether `err` says, in any of its causes, that a write found no space (SQLite's "database or
/// disk is full", or ENOSPC / EDQUOT from the system).
fn says_full(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<rusqlite::Error>() {
            return e.sqlite_error_code() == Some(ErrorCode::DiskFull);
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            return e.kind() == std::io::ErrorKind::StorageFull
                || e.kind() == std::io::ErrorKind::QuotaExceeded;
        }
        false
    })
}

/// Whether `err` is an I/O failure rather than something read (SQLite's I/O errors, or the
/// system's).
fn is_io(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<rusqlite::Error>()
            .and_then(|e| e.sqlite_error_code())
            .is_some_and(|code| matches!(code, ErrorCode::SystemIoFailure | ErrorCode::DiskFull))
            || cause.downcast_ref::<std::io::Error>().is_some()
    })
}

/// Refuses to start writing to `db` on a disk with (nearly) no space left, before anything is
/// written: the message says so and what to do.
pub(crate) fn ensure_room(db: &Path) -> anyhow::Result<()> {
    match free_bytes(db) {
        Some(free) if free < NEARLY_FULL => Err(full(db, free, None)),
        _ => Ok(()),
    }
}

fn full(db: &Path, free: u64, err: Option<&anyhow::Error>) -> anyhow::Error {
    let why = err.map_or_else(
        || format!("less than {NEARLY_FULL} bytes are left, and the server needs room to start"),
        |e| format!("the database could not be opened: {e:#}"),
    );
    anyhow::anyhow!(
        "the disk holding {} is full ({free} bytes free; {why}). Nothing was changed, and the file \
         is not known to be damaged: free some space and start again. Do not restore a backup \
         over it: that would replace it with an older copy",
        db.display()
    )
}

/// `err`, from opening the database `db`, told as a full disk when that is what it is: the
/// error says so, or it is an I/O error and the disk has (nearly) no space left. Otherwise
/// `err` as it was.
pub(crate) fn explain(db: &Path, err: anyhow::Error) -> anyhow::Error {
    let free = free_bytes(db);
    let is_full = says_full(&err) || (is_io(&err) && free.is_some_and(|f| f < NEARLY_FULL));
    if !is_full {
        return err;
    }
    full(db, free.unwrap_or(0), Some(&err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_and_other_errors_pass_through() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auction.db");
        assert!(free_bytes(&db).is_some_and(|f| f > 0));

        let full = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull))
            .context("cannot open");
        let said = format!("{:#}", explain(&db, full));
        assert!(said.contains("is full"), "{said}");
        assert!(said.contains("Do not restore a backup"), "{said}");

        let sqlite_full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let said = format!("{:#}", explain(&db, sqlite_full.into()));
        assert!(said.contains("is full"), "{said}");

        // An I/O error with space left, or a damaged file, stays what it is.
        let io = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
            None,
        );
        let said = format!(
            "{:#}",
            explain(&db, anyhow::Error::new(io).context("reading"))
        );
        assert!(!said.contains("is full"), "{said}");
        let damaged = anyhow::anyhow!("{} is damaged", db.display());
        assert_eq!(
            format!("{:#}", explain(&db, damaged)),
            format!("{} is damaged", db.display())
        );
    }
}
