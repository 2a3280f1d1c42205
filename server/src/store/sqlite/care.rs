//! The operator's care of a database file: refusing a state that looks like lost data before
//! SQLite can make it permanent, a full check (`auction-server check`), and a consistent copy
//! while a server runs (`auction-server backup`). Each runs in its own process or before the
//! server starts: they own no server state and wait for no writer (WAL lets them read while
//! the server commits).

use anyhow::{bail, Context, Result};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::schema::{APPLICATION_ID, MIGRATIONS};

/// Problems `check` lists at most (SQLite's own limit for `integrity_check` is 100).
const MAX_PROBLEMS: usize = 100;

/// How long a backup waits for a moment when it can read (a checkpoint may hold the lock).
const BACKUP_BUSY_WAIT: Duration = Duration::from_secs(10);

/// The write-ahead log beside `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Refuses a database file that is missing or empty while its write-ahead log holds data: the
/// log's commits belong to a database that is gone (deleted, truncated, or not restored with
/// it). Opening it would make SQLite start a new database and empty the log, losing them for
/// good; this says so instead and changes nothing.
pub(crate) fn refuse_lost_database(db: &Path) -> Result<()> {
    let wal = wal_path(db);
    let wal_len = fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    if wal_len == 0 {
        return Ok(());
    }
    let state = match fs::metadata(db) {
        Err(_) => "missing",
        Ok(m) if m.len() == 0 => "empty",
        Ok(_) => return Ok(()),
    };
    bail!(
        "{} is {state} but its write-ahead log {} holds {wal_len} bytes of commits: the database \
         file was lost or cut short, and starting would discard those commits. Nothing was \
         changed. Put the database file back (or restore a backup together with no log), or \
         start with another --db",
        db.display(),
        wal.display()
    )
}

/// What `auction-server check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub db: PathBuf,
    pub schema_version: i64,
    /// SQLite's `integrity_check` and `foreign_key_check`, and this program's own checks; empty
    /// when the file is sound.
    pub problems: Vec<String>,
    pub accounts: i64,
    pub items: i64,
    /// Accepted bids.
    pub bids: i64,
}

/// Reads the whole file with SQLite's full `integrity_check` (every page, every index entry
/// against its row: what the quick check at start does not do) and `foreign_key_check`, read
/// only.
pub fn check(db: &Path) -> Result<CheckReport> {
    refuse_lost_database(db)?;
    super::wal::refuse_damaged_log(db)?;
    if !db.exists() {
        bail!("{} does not exist", db.display());
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", db.display()))?;
    let shown = db.display();
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .with_context(|| format!("{shown} is not a readable SQLite database"))?;
    if app != APPLICATION_ID {
        bail!("{shown} is not an auction database (application_id {app:#x})");
    }
    let schema_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if schema_version > MIGRATIONS.len() as i64 {
        bail!(
            "{shown} has schema version {schema_version}, newer than this build's {}",
            MIGRATIONS.len()
        );
    }
    let mut problems = Vec::new();
    let mut stmt = conn.prepare(&format!("PRAGMA integrity_check({MAX_PROBLEMS})"))?;
    for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let line = row?;
        if line != "ok" {
            problems.push(line);
        }
    }
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = stmt.query_map([], |r| {
        Ok(format!(
            "row {} of table {} refers to a missing row of {}",
            r.get::<_, Option<i64>>("rowid")?.unwrap_or(-1),
            r.get::<_, String>("table")?,
            r.get::<_, String>("parent")?
        ))
    })?;
    for row in rows.take(MAX_PROBLEMS) {
        problems.push(row?);
    }
    let count = |table: &str| -> Result<i64> {
        Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
    };
    Ok(CheckReport {
        db: db.to_owned(),
        schema_version,
        accounts: count("accounts")?,
        items: count("items")?,
        // Accepted bids only: earlier versions also stored rejected bids that carried an id.
        bids: count("bids WHERE accepted = 1")?,
        problems,
    })
}

/// Copies the database at `db` to `to` as one consistent snapshot (SQLite's online backup, in
/// one read transaction), beside a running server or without one. The copy is written to
/// `to.partial` (its folder created if need be), synced, checked and only then renamed to
/// `to`, so a failed backup never leaves a file that looks like one. An existing `to` is not
/// overwritten.
pub fn backup(db: &Path, to: &Path) -> Result<CheckReport> {
    refuse_lost_database(db)?;
    if to.exists() {
        bail!(
            "{} exists already; choose another name (a backup never overwrites a file)",
            to.display()
        );
    }
    let src = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", db.display()))?;
    let app: i32 = src
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .with_context(|| format!("{} is not a readable SQLite database", db.display()))?;
    if app != APPLICATION_ID {
        bail!("{} is not an auction database", db.display());
    }
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = fs::remove_file(&partial);
    let result = copy(&src, &partial).and_then(|()| {
        File::open(&partial)?.sync_all()?;
        let report = check(&partial)?;
        if !report.problems.is_empty() {
            bail!(
                "the copy does not check out: {}",
                report.problems.join("; ")
            );
        }
        fs::rename(&partial, to)
            .with_context(|| format!("cannot rename the copy to {}", to.display()))?;
        if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(CheckReport {
            db: to.to_owned(),
            ..report
        })
    });
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result.with_context(|| format!("backing up {} to {}", db.display(), to.display()))
}

/// Every page of `src` into a new database at `to`, in one step (one read transaction: a
/// consistent snapshot however fast the server commits meanwhile).
fn copy(src: &Connection, to: &Path) -> Result<()> {
    let mut dst =
        Connection::open(to).with_context(|| format!("cannot create {}", to.display()))?;
    {
        let backup = Backup::new(src, &mut dst)?;
        let started = std::time::Instant::now();
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => continue,
                // Busy or locked (the enum is open to more): wait a moment, for a while.
                _ if started.elapsed() < BACKUP_BUSY_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => bail!("the database stayed locked for {BACKUP_BUSY_WAIT:?}"),
            }
        }
    }
    // The copy is a plain file: no write-ahead log to carry along with it.
    dst.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

impl CheckReport {
    /// The report as sentences.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}: schema version {}, {} account(s), {} item(s), {} accepted bid(s).\n",
            self.db.display(),
            self.schema_version,
            self.accounts,
            self.items,
            self.bids
        );
        if self.problems.is_empty() {
            s.push_str("Every page, index entry and reference checks out.\n");
        } else {
            s.push_str(&format!(
                "{} problem(s) found (the file was not changed; restore the latest backup that \
                 checks out, see README \"Data and recovery\"):\n",
                self.problems.len()
            ));
            for p in &self.problems {
                s.push_str(&format!("  {p}\n"));
            }
        }
        s
    }
}
