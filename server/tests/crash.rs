//! The server as a real process: killed with SIGKILL in the middle of a stream of bids, stopped
//! with SIGTERM, and started on damaged databases. What a client saw acknowledged must be in
//! the database after a crash, and the auctions must then finish with the right winners.

mod common;

use auction_client::{BidResult, Client};
use auction_protocol::channel::ChannelBody;
use auction_protocol::udp::ServerBody;
use auction_protocol::{Cents, Reason};
use common::process::{client, server_command, spawn_server, spawn_server_on};
use common::within;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        dir.join("auction.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

fn count(conn: &rusqlite::Connection, sql: &str, params: impl rusqlite::Params) -> i64 {
    conn.query_row(sql, params, |r| r.get(0)).unwrap()
}

/// A bid a client saw accepted: (item, bidder, amount, bid id).
type Seen = (u64, String, Cents, String);

/// Bids on `items` as fast as answers come back, each just above the latest price it knows,
/// until the connection breaks. Every acceptance is written to `seen` before the next bid.
async fn bid_until_cut_off(
    client: Arc<Client>,
    items: Vec<u64>,
    round: u32,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let name = client.name().unwrap();
    let mut channels = Vec::new();
    for &item in &items {
        channels.push((item, client.open_item(item).await.unwrap()));
    }
    let mut next: HashMap<u64, Cents> = channels.iter().map(|(i, c)| (*i, c.next_min)).collect();
    for n in 0u64.. {
        let (item, ch) = &mut channels[(n as usize) % items.len()];
        let amount = Cents(next[item].0 + rand::random_range(0..3));
        let id = format!("{name}-{round}-{n}");
        match ch.bid(amount, Some(id.clone())).await {
            Ok(BidResult::Accepted { amount, .. }) => {
                seen.lock().unwrap().push((*item, name.clone(), amount, id));
                next.insert(*item, Cents(amount.0 + 1));
            }
            Ok(BidResult::Rejected { next_min, .. }) => {
                next.insert(*item, next_min);
            }
            Err(_) => return,
        }
    }
}

/// With the server down: every acknowledged bid is in the database exactly as acknowledged,
/// no amount is accepted twice on an item, and each lead is the largest accepted bid. Returns
/// each item's leader and amount.
fn check_acknowledged(dir: &Path, seen: &[Seen], items: &[u64]) -> HashMap<u64, (String, Cents)> {
    let conn = db(dir);
    for (item, bidder, amount, id) in seen {
        let n = count(
            &conn,
            "SELECT count(*) FROM bids b JOIN accounts a ON a.id = b.bidder
             WHERE b.item = ?1 AND a.name = ?2 AND b.bid_id = ?3 AND b.accepted = 1
               AND b.amount_cents = ?4",
            rusqlite::params![item, bidder, id, amount.0],
        );
        assert_eq!(
            n, 1,
            "accepted bid {id} ({amount} on item {item}) is missing"
        );
    }
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM (SELECT item, amount_cents FROM bids WHERE accepted = 1
                                   GROUP BY item, amount_cents HAVING count(*) > 1)",
            [],
        ),
        0,
        "an amount was accepted twice on one item"
    );
    let mut leads = HashMap::new();
    for &item in items {
        let (highest, bidder, max): (i64, String, i64) = conn
            .query_row(
                "SELECT i.highest_cents, a.name,
                        (SELECT max(amount_cents) FROM bids WHERE item = i.id AND accepted = 1)
                 FROM items i JOIN accounts a ON a.id = i.highest_bidder WHERE i.id = ?1",
                [item],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            highest, max,
            "item {item}: the lead is not the largest accepted bid"
        );
        // The database may hold bids committed just before the crash whose answers never
        // left; it never holds less than what was acknowledged.
        let seen_max = seen
            .iter()
            .filter(|s| s.0 == item)
            .map(|s| s.2 .0 as i64)
            .max();
        assert!(highest >= seen_max.unwrap_or(0));
        leads.insert(item, (bidder, Cents(highest as u64)));
    }
    leads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_bidding_loses_nothing_acknowledged_and_auctions_finish() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let args = ["--recovery-grace", "1s", "--snipe-window", "0s"];
    let mut server = spawn_server(dir, "127.0.0.1:0", &args).await;
    let udp = server.udp;

    let seller = client(dir, udp, "seller").await;
    let mut bidders = Vec::new();
    for name in ["b1", "b2", "b3", "b4"] {
        bidders.push(Arc::new(client(dir, udp, name).await));
    }
    // C ends while the server is down; A and B stay open through three crashes. C's 5 s
    // leave room for two rounds on a loaded machine (2 s did not, once, with the whole CI
    // running); the test then waits for C's end before the second restart.
    let c = seller.offer("C", Cents(100), Some(5)).await.unwrap();
    let a = seller.offer("A", Cents(100), Some(14)).await.unwrap();
    let b = seller.offer("B", Cents(100), Some(14)).await.unwrap();
    let mut on_c = bidders[0].open_item(c.item).await.unwrap();
    assert!(matches!(
        on_c.bid(Cents(500), Some("c-bid".into())).await.unwrap(),
        BidResult::Accepted { .. }
    ));

    // Three rounds of: bid from four bidders for a second, SIGKILL, check the database.
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let mut leads = HashMap::new();
    for round in 1..=3 {
        let mut streams = Vec::new();
        for bidder in &bidders {
            streams.push(tokio::spawn(bid_until_cut_off(
                bidder.clone(),
                vec![a.item, b.item],
                round,
                seen.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        server.kill_9().await;
        for s in streams {
            within(40, "the bidders to notice the crash", s)
                .await
                .unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        eprintln!("round {round}: {} bids acknowledged so far", seen.len());
        leads = check_acknowledged(dir, &seen, &[a.item, b.item, c.item]);
        if round == 2 {
            // The next start comes after C's end (as the database has it: each restart so
            // far added the grace).
            let ends_at = count(
                &db(dir),
                "SELECT ends_at FROM items WHERE id = ?1",
                [c.item],
            );
            let ends_at = ends_at as u64;
            assert_eq!(ends_at, c.ends_at + 1000, "one restart, one grace period");
            assert!(
                auction_server::unix_ms() < ends_at,
                "the machine was too slow: item C ended before the second crash"
            );
            let wait = ends_at.saturating_sub(auction_server::unix_ms()) + 300;
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        server = spawn_server(dir, &udp.to_string(), &args).await;
        // C is still open in the database until the start after its end closes it.
        let open = if round == 3 { 2 } else { 3 };
        assert!(
            server.log().contains(&format!("open_items={open}")),
            "{}",
            server.log()
        );
    }
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 60, "only {} bids were accepted", seen.len());

    // A bid id resent after the restart gets its first answer and is not recorded again.
    let (item, bidder, amount, id) = seen.last().unwrap().clone();
    let who = bidders
        .iter()
        .find(|b| b.name().unwrap() == bidder)
        .unwrap();
    let mut ch = who.open_item(item).await.unwrap();
    match ch
        .bid(Cents(amount.0 + 100_000), Some(id.clone()))
        .await
        .unwrap()
    {
        BidResult::Accepted { amount: again, .. } => assert_eq!(again, amount),
        other => panic!("resent {id}: expected its first answer, got {other:?}"),
    }
    assert_eq!(
        count(
            &db(dir),
            "SELECT count(*) FROM bids WHERE bid_id = ?1",
            [&id]
        ),
        1
    );

    // Every auction finishes with the lead the database had at the last crash: C when the
    // server came back after its end, A and B after their time plus the grace.
    seller.attach().await.unwrap();
    let mut sold = HashMap::new();
    within(40, "SOLD for the three items", async {
        while sold.len() < 3 {
            match seller.next_announcement().await {
                Some(ServerBody::Sold {
                    item,
                    winner,
                    amount,
                    ..
                }) => {
                    sold.insert(item, (winner, amount));
                }
                Some(_) => {}
                None => panic!("announcements ended"),
            }
        }
    })
    .await;
    assert_eq!(sold, leads);
    assert_eq!(leads[&c.item], ("b1".to_owned(), Cents(500)));

    // SIGTERM: a clean stop, exit status 0, and the results are in the database.
    let status = server.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    let conn = db(dir);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM items WHERE closed_at IS NULL",
            []
        ),
        0
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM items
             WHERE price_cents IS NOT highest_cents OR winner IS NOT highest_bidder",
            []
        ),
        0
    );
}

#[tokio::test]
async fn sigterm_tells_bidders_commits_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = spawn_server(dir, "127.0.0.1:0", &[]).await;
    let seller = client(dir, server.udp, "seller").await;
    let bidder = client(dir, server.udp, "bidder").await;
    let offered = seller.offer("Lamp", Cents(100), Some(120)).await.unwrap();
    let mut ch = bidder.open_item(offered.item).await.unwrap();
    assert!(matches!(
        ch.bid(Cents(250), Some("x".into())).await.unwrap(),
        BidResult::Accepted { .. }
    ));
    let udp = server.udp;
    let status = server.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    // The bidder was told why the channel closed, then it closed.
    let mut told = false;
    while let Some(event) = within(5, "the channel to close", ch.next_event()).await {
        if let Ok(ChannelBody::Error {
            reason: Reason::Unavailable,
            message,
            ..
        }) = event
        {
            assert!(message.contains("shutting down"), "{message}");
            told = true;
        }
    }
    assert!(told, "no shutting-down message before the channel closed");

    // Started again, it resumes the auction with its bid.
    let server = spawn_server(dir, &udp.to_string(), &[]).await;
    let view = bidder.status(offered.item).await.unwrap();
    assert_eq!(view.highest, Some(Cents(250)));
    assert_eq!(view.bidder.as_deref(), Some("bidder"));
    drop(server);
}

/// Runs the server on `db` and expects it to refuse to start: (exit code, stderr).
async fn refused_start(dir: &Path, db: &Path) -> (i32, String) {
    let mut cmd = server_command(dir, db, "127.0.0.1:0", &[]);
    let out = within(20, "the server to refuse to start", cmd.output())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_damaged_or_unreadable_database_stops_the_start_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // Not a database at all.
    let junk: PathBuf = dir.join("junk.db");
    let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 31 + 7) as u8).collect();
    std::fs::write(&junk, &bytes).unwrap();
    let (code, err) = refused_start(dir, &junk).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not a readable SQLite database"), "{err}");
    assert!(err.contains("the file was not changed"), "{err}");
    assert_eq!(std::fs::read(&junk).unwrap(), bytes);

    // A real auction database with its pages overwritten in the middle.
    let damaged = dir.join("damaged.db");
    {
        let (storage, _) =
            auction_server::SqliteStorage::open(&damaged, Default::default()).unwrap();
        drop(storage);
    }
    let mut data = std::fs::read(&damaged).unwrap();
    assert!(data.len() > 8192, "{}", data.len());
    for (i, b) in data[4096..8192].iter_mut().enumerate() {
        *b = (i * 13) as u8;
    }
    std::fs::write(&damaged, &data).unwrap();
    let (code, err) = refused_start(dir, &damaged).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("damaged") || err.contains("not a readable"),
        "{err}"
    );
    assert_eq!(std::fs::read(&damaged).unwrap(), data);

    // Something that cannot be opened as a file at all (a folder in its place).
    let folder = dir.join("folder.db");
    std::fs::create_dir(&folder).unwrap();
    let (code, err) = refused_start(dir, &folder).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot open the database"), "{err}");
}

/// Runs `auction-server` with `args` on `db` to its end: (exit code, stdout, stderr).
async fn run_tool(dir: &Path, db: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = server_command(dir, db, "127.0.0.1:0", args);
    cmd.stdout(Stdio::piped());
    let out = within(60, "auction-server to finish", cmd.output())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_database_lost_beside_its_log_is_refused_and_nothing_is_changed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = spawn_server(dir, "127.0.0.1:0", &[]).await;
    let seller = client(dir, server.udp, "seller").await;
    seller.offer("Lamp", Cents(100), Some(60)).await.unwrap();
    // Killed, the server leaves its commits in the write-ahead log.
    server.kill_9().await;
    let db = dir.join("auction.db");
    let wal = dir.join("auction.db-wal");
    let log = std::fs::read(&wal).unwrap();
    assert!(!log.is_empty(), "the commits are in the log");

    // The database file emptied (or never restored with its log).
    std::fs::write(&db, b"").unwrap();
    let (code, err) = refused_start(dir, &db).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is empty but its write-ahead log"), "{err}");
    assert!(err.contains("Nothing was changed"), "{err}");
    assert_eq!(std::fs::read(&wal).unwrap(), log);
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    // `check` says the same instead of reading an empty database.
    let (code, _, err) = run_tool(dir, &db, &["check"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is empty but its write-ahead log"), "{err}");

    // The database file gone.
    std::fs::remove_file(&db).unwrap();
    let (code, err) = refused_start(dir, &db).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is missing but its write-ahead log"), "{err}");
    assert!(!db.exists());
    assert_eq!(std::fs::read(&wal).unwrap(), log);
}

/// The byte offset of the last byte of a leaf page of the index whose root is `root`, found
/// by following right-most child pointers down from the root (SQLite's file format: an
/// interior index page has type 2 and its right-most pointer at bytes 8..12).
fn last_byte_of_an_index_leaf(file: &[u8], page_size: usize, root: usize) -> usize {
    let mut page = root;
    loop {
        let start = (page - 1) * page_size;
        match file[start] {
            0x0a => return start + page_size - 1,
            0x02 => {
                let ptr = &file[start + 8..start + 12];
                page = u32::from_be_bytes(ptr.try_into().unwrap()) as usize;
            }
            other => panic!("page {page} is not an index page (type {other:#x})"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_keeps_every_acknowledged_bid_and_check_finds_a_flipped_bit() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let db = dir.join("auction.db");
    let server = spawn_server(dir, "127.0.0.1:0", &["--snipe-window", "0s"]).await;
    let udp = server.udp;
    let seller = client(dir, udp, "seller").await;
    let item = seller.offer("A", Cents(100), Some(120)).await.unwrap().item;
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let mut streams = Vec::new();
    for name in ["b1", "b2"] {
        let bidder = Arc::new(client(dir, udp, name).await);
        streams.push(tokio::spawn(bid_until_cut_off(
            bidder,
            vec![item],
            1,
            seen.clone(),
        )));
    }
    within(20, "bids to be acknowledged", async {
        while seen.lock().unwrap().len() < 50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // A backup while the bids go on: everything acknowledged before it started is in it.
    let before: Vec<Seen> = seen.lock().unwrap().clone();
    let copy = dir.join("backup.db");
    let copy_arg = copy.to_str().unwrap();
    let (code, out, err) = run_tool(dir, &db, &["backup", "--to", copy_arg]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Every page, index entry and reference checks out"),
        "{out}"
    );
    let after_backup = seen.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(seen.lock().unwrap().len() > after_backup, "bidding went on");
    assert!(server.terminate().await.success());
    for s in streams {
        within(10, "the bidders to stop", s).await.unwrap();
    }
    let backup =
        rusqlite::Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    for (item, bidder, amount, id) in &before {
        let n = count(
            &backup,
            "SELECT count(*) FROM bids b JOIN accounts a ON a.id = b.bidder
             WHERE b.item = ?1 AND a.name = ?2 AND b.bid_id = ?3 AND b.accepted = 1
               AND b.amount_cents = ?4",
            rusqlite::params![item, bidder, id, amount.0],
        );
        assert_eq!(n, 1, "{bidder}'s acknowledged bid {id} is in the backup");
    }
    drop(backup);
    // A backup is a database the server starts from (README: restore by copying it back).
    let restored = dir.join("restored.db");
    std::fs::copy(&copy, &restored).unwrap();
    let server = spawn_server_on(dir, &restored, "127.0.0.1:0", &[]).await;
    assert!(server.terminate().await.success());
    let (code, _, err) = run_tool(dir, &copy, &["backup", "--to", copy_arg]).await;
    assert_eq!(code, 1, "an existing file is not overwritten");
    assert!(err.contains("exists already"), "{err}");

    // The live database checks out; then one bit of an index entry is flipped.
    let (code, out, err) = run_tool(dir, &db, &["check"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("checks out"), "{out}");
    // A clean stop leaves every page in the main file (a reader may leave an empty log).
    let wal = std::fs::metadata(dir.join("auction.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "a clean stop leaves no commits in the log");
    let (root, page_size) = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'bids'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        (root as usize, size as usize)
    };
    let mut file = std::fs::read(&db).unwrap();
    let at = last_byte_of_an_index_leaf(&file, page_size, root);
    file[at] ^= 1;
    std::fs::write(&db, &file).unwrap();
    // The quick check a start runs does not see it...
    let quick: String =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap()
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .unwrap();
    assert_eq!(quick, "ok");
    // ...`check` does, says so with exit code 1, and changes nothing.
    let (code, out, err) = run_tool(dir, &db, &["check"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("problem(s) found"), "{out}");
    assert!(out.contains("index"), "{out}");
    assert!(err.contains("is damaged"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), file);
}

/// A server on `db` with an item and `bids` acknowledged bids (100, 101, ... cents, ids
/// `b100`, ...), killed at once: its last commits are in the write-ahead log. The item's number.
async fn bid_then_kill(dir: &Path, db: &Path, bids: u64) -> u64 {
    let server = spawn_server_on(dir, db, "127.0.0.1:0", &[]).await;
    let seller = client(dir, server.udp, "seller").await;
    let item = seller
        .offer("Lamp", Cents(100), Some(600))
        .await
        .unwrap()
        .item;
    let bidder = client(dir, server.udp, "bidder").await;
    let mut ch = bidder.open_item(item).await.unwrap();
    for amount in 100..100 + bids {
        ch.bid(Cents(amount), Some(format!("b{amount}")))
            .await
            .unwrap();
    }
    server.kill_9().await;
    item
}

/// A small file system of its own (tmpfs, mounted for the test and unmounted when dropped), so
/// a test can fill a disk without filling the machine's. Mounting needs root, which CI has.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it and needs root for that: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            path: at.to_owned(),
        }
    }

    /// Writes a file until the disk refuses more.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0xa5u8; 64 * 1024];
        loop {
            if let Err(e) = f.write_all(&block) {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                break;
            }
        }
        // Byte by byte, the last few.
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_at_start_is_named_as_one_and_nothing_is_changed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let disk = SmallDisk::mount(&dir.join("disk"), "8m");
    let db = disk.path.join("auction.db");
    let wal = disk.path.join("auction.db-wal");
    let item = bid_then_kill(dir, &db, 30).await;
    let (db_bytes, wal_bytes) = (std::fs::read(&db).unwrap(), std::fs::read(&wal).unwrap());
    assert!(!wal_bytes.is_empty());

    let filler = disk.fill();
    let (code, err) = refused_start(dir, &db).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is full"), "{err}");
    assert!(err.contains("Do not restore a backup"), "{err}");
    assert!(!err.contains("restore it from a backup"), "{err}");
    assert!(
        std::fs::read(&db).unwrap() == db_bytes,
        "the database file changed"
    );
    let after = std::fs::read(&wal).unwrap();
    let first = after.iter().zip(&wal_bytes).position(|(a, b)| a != b);
    assert!(
        after == wal_bytes,
        "the log changed: {} bytes before, {} after, first difference at {first:?}\n{err}",
        wal_bytes.len(),
        after.len()
    );

    // With space again, it starts with every acknowledged bid.
    std::fs::remove_file(filler).unwrap();
    let server = spawn_server_on(dir, &db, "127.0.0.1:0", &[]).await;
    let view = client(dir, server.udp, "bidder")
        .await
        .status(item)
        .await
        .unwrap();
    assert_eq!(view.highest, Some(Cents(129)));
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn a_log_cut_short_after_a_crash_is_refused_and_nothing_is_changed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let db = dir.join("auction.db");
    let (wal, shm) = (dir.join("auction.db-wal"), dir.join("auction.db-shm"));
    let item = bid_then_kill(dir, &db, 40).await;
    // The log loses its last 10,000 bytes (a bad copy, a truncation): acknowledged bids.
    let mut log = std::fs::read(&wal).unwrap();
    log.truncate(log.len() - 10_000);
    std::fs::write(&wal, &log).unwrap();
    let before = std::fs::read(&db).unwrap();
    let (code, err) = refused_start(dir, &db).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is cut short or damaged"), "{err}");
    assert!(err.contains("Nothing was changed"), "{err}");
    assert!(std::fs::read(&wal).unwrap() == log, "the log changed");
    assert!(
        std::fs::read(&db).unwrap() == before,
        "the database file changed"
    );
    // `check` says the same.
    let (code, _, err) = run_tool(dir, &db, &["check"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is cut short or damaged"), "{err}");

    // The operator's way out, as the message gives it: start with what the log still holds.
    std::fs::remove_file(&shm).unwrap();
    let server = spawn_server(dir, "127.0.0.1:0", &[]).await;
    let view = client(dir, server.udp, "seller")
        .await
        .status(item)
        .await
        .unwrap();
    let highest = view.highest.expect("the bids the log still holds");
    assert!(
        highest < Cents(139),
        "{highest:?}: the cut-off bids are gone"
    );
    assert!(server.terminate().await.success());
}
