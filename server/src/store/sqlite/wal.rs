//! Noticing a write-ahead log that lost commits, before SQLite opens it. SQLite reads the log
//! up to its first frame that does not check out and silently drops the rest: right after a
//! crash the rest is the one transaction that was being written (never acknowledged), but a
//! log cut short (a bad copy, a truncation) or with a flipped bit loses acknowledged commits the
//! same way. Two witnesses tell these apart, without writing anything:
//!
//! - the **wal-index** (`-shm`), which SQLite updates only after a commit is durable and which
//!   a crash leaves on disk: it names the last committed frame, so a log of the same generation
//!   (the same salts) whose valid frames end before it has lost commits. The index is never
//!   synced, so after a power loss it may be older than the log; an index of another
//!   generation proves nothing and the log is judged alone;
//! - without a usable wal-index, the log itself: frames of the current log generation (its
//!   salts) that end a transaction but lie beyond the first bad frame. A crash leaves at most
//!   one such transaction (the next begins only after the previous one's commit was synced);
//!   two or more mean committed frames were cut off by damage.
//!
//! What neither can see: a log cut exactly after a commit frame with no wal-index (or one of
//! another generation) beside it (SECURITY.md lists it).
//!
//! File formats: <https://www.sqlite.org/fileformat.html#the_write_ahead_log> and SQLite's
//! `wal.c` for the wal-index header.

use anyhow::{bail, Result};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
const WAL_MAGIC: u32 = 0x377f_0682;
const WAL_VERSION: u32 = 3_007_000;
/// Two copies of the wal-index header (48 bytes each), then the checkpoint info.
const SHM_HEADER: usize = 48;
const SHM_BACKFILL: usize = 96;

fn path_with(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What the wal-index says about the log it indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Index {
    /// The last committed frame (1-based; 0: none).
    max_frame: u32,
    /// Frames already copied into the database file.
    backfilled: u32,
    /// The log generation it describes, as the log header's salts (raw bytes).
    salts: [u8; 8],
}

/// The wal-index header, when the `-shm` file holds a complete, initialised one (its two copies
/// equal, version right); `None` otherwise (absent, torn, from another version).
fn read_index(shm: &Path) -> Option<Index> {
    let mut head = [0u8; SHM_BACKFILL + 4];
    File::open(shm).ok()?.read_exact(&mut head).ok()?;
    read_index_bytes(&head)
}

fn read_index_bytes(head: &[u8]) -> Option<Index> {
    let head = head.get(..SHM_BACKFILL + 4)?;
    let (a, b) = (&head[..SHM_HEADER], &head[SHM_HEADER..2 * SHM_HEADER]);
    let word = |at: usize| u32::from_ne_bytes(head[at..at + 4].try_into().unwrap());
    if a != b || word(0) != WAL_VERSION || head[12] != 1 {
        return None;
    }
    Some(Index {
        max_frame: word(16),
        backfilled: word(SHM_BACKFILL),
        salts: head[32..40].try_into().unwrap(),
    })
}

/// SQLite's log checksum: pairs of 32-bit words (big-endian when `big`), two running sums.
fn checksum(big: bool, bytes: &[u8], sums: &mut (u32, u32)) {
    for pair in bytes.chunks_exact(8) {
        let word = |b: &[u8]| {
            let b: [u8; 4] = b.try_into().unwrap();
            if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        sums.0 = sums.0.wrapping_add(word(&pair[..4])).wrapping_add(sums.1);
        sums.1 = sums.1.wrapping_add(word(&pair[4..])).wrapping_add(sums.0);
    }
}

/// What reading the log found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Scan {
    /// The log header checks out.
    valid_header: bool,
    salts: [u8; 8],
    /// The last frame of the valid run that ends a transaction (what SQLite will keep).
    last_commit: u32,
    /// Transaction-ending frames of this generation beyond the first bad frame.
    commits_after_break: u32,
}

fn be(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[..4].try_into().unwrap())
}

fn scan(wal: &Path) -> std::io::Result<Scan> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(wal)?);
    let mut header = [0u8; WAL_HEADER];
    if reader.read_exact(&mut header).is_err() {
        return Ok(Scan::default());
    }
    let magic = be(&header);
    let page_size = be(&header[8..]) as usize;
    let mut sums = (0, 0);
    let big = magic & 1 == 1;
    checksum(big, &header[..24], &mut sums);
    let valid_header = magic & !1 == WAL_MAGIC
        && be(&header[4..]) == WAL_VERSION
        && page_size.is_power_of_two()
        && (512..=65536).contains(&page_size)
        && (be(&header[24..]), be(&header[28..])) == sums;
    let mut found = Scan {
        valid_header,
        salts: header[16..24].try_into().unwrap(),
        ..Scan::default()
    };
    if !valid_header {
        return Ok(found);
    }
    let mut frame = vec![0u8; FRAME_HEADER + page_size];
    let mut broken = false;
    let mut n = 0u32;
    while reader.read_exact(&mut frame).is_ok() {
        n += 1;
        let ours = frame[8..16] == found.salts;
        let commit = be(&frame[4..]) != 0;
        if !broken {
            let mut next = sums;
            checksum(big, &frame[..8], &mut next);
            checksum(big, &frame[FRAME_HEADER..], &mut next);
            let stored = (be(&frame[16..]), be(&frame[20..]));
            if ours && be(&frame) != 0 && stored == next {
                sums = next;
                if commit {
                    found.last_commit = n;
                }
                continue;
            }
            broken = true;
        }
        if ours && commit {
            found.commits_after_break += 1;
        }
    }
    Ok(found)
}

/// Refuses to open `db` when its write-ahead log has lost commits (see the module's comment),
/// saying what was found and what to do; changes nothing.
pub(crate) fn refuse_damaged_log(db: &Path) -> Result<()> {
    let wal = path_with(db, "-wal");
    let shm = path_with(db, "-shm");
    let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Ok(());
    }
    // The index first: it is updated after the log, so a log read after it holds at least
    // what it names even while a server appends (`check` beside a running server). If the
    // index changed while the log was read (a checkpoint started a new generation), again.
    let (mut index, mut found) = (read_index(&shm), scan(&wal)?);
    for _ in 0..3 {
        let again = read_index(&shm);
        if again == index {
            break;
        }
        (index, found) = (again, scan(&wal)?);
    }
    let lost = match index {
        // The log's generation: everything the index saw committed must still be there.
        Some(ix) if found.valid_header && ix.salts == found.salts => {
            (ix.max_frame > found.last_commit).then(|| {
                format!(
                    "its wal-index {} says frames up to {} were committed, but the log's valid \
                     frames end at {}",
                    shm.display(),
                    ix.max_frame,
                    found.last_commit
                )
            })
        }
        // The index describes another generation of the log, or the log's header does not
        // check out. The index is never synced, so after a power loss the copy on disk may be
        // older than the log (a checkpoint has started the log again since): it proves nothing
        // then, and the log is judged alone, as without an index.
        _ => (found.commits_after_break >= 2).then(|| {
            format!(
                "{} committed transactions lie beyond its first damaged frame (a crash leaves \
                 at most one unfinished)",
                found.commits_after_break
            )
        }),
    };
    if let Some(why) = lost {
        bail!(
            "the write-ahead log {} of {} is cut short or damaged: {why}. Starting would drop \
             those commits for good. Nothing was changed. Put back the complete log if you have \
             it, or restore a backup; to start with what the log still holds, losing the rest, \
             delete {} and start again",
            wal.display(),
            db.display(),
            shm.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// The files a server killed right after `commits` transactions leaves: the database, its
    /// log and its wal-index, copied while the connection that wrote them is still open.
    fn crashed(dir: &Path, commits: u32) -> PathBuf {
        let live = dir.join("live.db");
        let conn = Connection::open(&live).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE bids (id INTEGER PRIMARY KEY, amount INTEGER)")
            .unwrap();
        for i in 0..commits {
            conn.execute("INSERT INTO bids (amount) VALUES (?1)", [i])
                .unwrap();
        }
        let db = dir.join("crashed.db");
        for suffix in ["", "-wal", "-shm"] {
            std::fs::copy(path_with(&live, suffix), path_with(&db, suffix)).unwrap();
        }
        drop(conn);
        db
    }

    fn rows(db: &Path) -> i64 {
        let conn = Connection::open(db).unwrap();
        conn.query_row("SELECT count(*) FROM bids", [], |r| r.get(0))
            .unwrap()
    }

    fn page_size(db: &Path) -> usize {
        let wal = std::fs::read(path_with(db, "-wal")).unwrap();
        be(&wal[8..]) as usize
    }

    #[test]
    fn an_intact_log_after_a_crash_passes_and_keeps_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = crashed(dir.path(), 20);
        refuse_damaged_log(&db).unwrap();
        // Without its wal-index too.
        std::fs::remove_file(path_with(&db, "-shm")).unwrap();
        refuse_damaged_log(&db).unwrap();
        assert_eq!(rows(&db), 20);
    }

    #[test]
    fn a_log_cut_short_is_refused_while_its_wal_index_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let db = crashed(dir.path(), 20);
        let wal = path_with(&db, "-wal");
        let mut bytes = std::fs::read(&wal).unwrap();
        // The last transaction's frame gone, and half of the one before.
        bytes.truncate(bytes.len() - (FRAME_HEADER + page_size(&db)) - 100);
        std::fs::write(&wal, &bytes).unwrap();
        let err = format!("{:#}", refuse_damaged_log(&db).unwrap_err());
        assert!(err.contains("cut short or damaged"), "{err}");
        assert!(err.contains("says frames up to"), "{err}");
        assert_eq!(std::fs::read(&wal).unwrap(), bytes, "nothing changed");
        // The way out the message gives: without the index it starts with what remains.
        std::fs::remove_file(path_with(&db, "-shm")).unwrap();
        refuse_damaged_log(&db).unwrap();
        assert_eq!(rows(&db), 18);
    }

    #[test]
    fn a_flipped_bit_in_the_middle_of_the_log_is_refused_with_or_without_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = crashed(dir.path(), 20);
        let wal = path_with(&db, "-wal");
        let mut bytes = std::fs::read(&wal).unwrap();
        let frame = FRAME_HEADER + page_size(&db);
        // A bit in the page data of the 10th frame.
        bytes[WAL_HEADER + 9 * frame + FRAME_HEADER + 100] ^= 0x04;
        std::fs::write(&wal, &bytes).unwrap();
        let err = format!("{:#}", refuse_damaged_log(&db).unwrap_err());
        assert!(err.contains("says frames up to"), "{err}");
        std::fs::remove_file(path_with(&db, "-shm")).unwrap();
        let err = format!("{:#}", refuse_damaged_log(&db).unwrap_err());
        assert!(err.contains("committed transactions lie beyond"), "{err}");
    }

    #[test]
    fn a_torn_last_frame_from_a_crash_is_no_loss() {
        let dir = tempfile::tempdir().unwrap();
        let db = crashed(dir.path(), 5);
        let wal = path_with(&db, "-wal");
        let mut bytes = std::fs::read(&wal).unwrap();
        // A transaction being written when the power went: its frame half there, never
        // committed (the wal-index does not count it).
        let frame = FRAME_HEADER + page_size(&db);
        let last = bytes[bytes.len() - frame..].to_vec();
        bytes.extend_from_slice(&last[..frame / 2]);
        std::fs::write(&wal, &bytes).unwrap();
        refuse_damaged_log(&db).unwrap();
        // A whole frame of the same generation with a bad checksum (a torn write).
        let mut torn = last.clone();
        torn[FRAME_HEADER + 7] ^= 0xff;
        bytes.truncate(bytes.len() - frame / 2);
        bytes.extend_from_slice(&torn);
        std::fs::write(&wal, &bytes).unwrap();
        refuse_damaged_log(&db).unwrap();
        std::fs::remove_file(path_with(&db, "-shm")).unwrap();
        refuse_damaged_log(&db).unwrap();
        assert_eq!(rows(&db), 5);
    }

    #[test]
    fn a_wal_index_of_another_generation_proves_nothing() {
        // A wal-index from before the log was started again (after a power loss the one on
        // disk may be that old): the healthy log is not refused for it.
        let dir = tempfile::tempdir().unwrap();
        let old = crashed(dir.path(), 10);
        let older_index = std::fs::read(path_with(&old, "-shm")).unwrap();
        let live = dir.path().join("live.db");
        let conn = Connection::open(&live).unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        // Everything into the file, then the log starts a new generation.
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
            .unwrap();
        for i in 0..3 {
            conn.execute("INSERT INTO bids (amount) VALUES (?1)", [i])
                .unwrap();
        }
        let db = dir.path().join("newer.db");
        for suffix in ["", "-wal"] {
            std::fs::copy(path_with(&live, suffix), path_with(&db, suffix)).unwrap();
        }
        drop(conn);
        let index = read_index_bytes(&older_index).expect("a complete index");
        assert_ne!(index.salts, scan(&path_with(&db, "-wal")).unwrap().salts);
        std::fs::write(path_with(&db, "-shm"), &older_index).unwrap();
        refuse_damaged_log(&db).unwrap();
        assert_eq!(rows(&db), 13);
    }

    #[test]
    fn the_checksum_is_sqlites() {
        // The log header SQLite wrote checks out with this checksum (the tests above would
        // also fail otherwise, but this says why).
        let dir = tempfile::tempdir().unwrap();
        let db = crashed(dir.path(), 1);
        let found = scan(&path_with(&db, "-wal")).unwrap();
        assert!(found.valid_header);
        assert!(found.last_commit >= 1);
        assert_eq!(found.commits_after_break, 0);
    }
}
