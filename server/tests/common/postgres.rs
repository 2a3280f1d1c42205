//! A throwaway PostgreSQL for a test, started with the project's own `scripts/postgres.sh`
//! (which installs Debian's package when it is missing) in a temporary folder, and stopped when
//! dropped. A test that needs one fails with a sentence saying what to install when it cannot be
//! had: it never skips.

use std::path::PathBuf;
use std::process::Command;

pub struct Postgres {
    pub url: String,
    dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh")
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        // The cluster runs as `postgres` when the tests run as root: it must reach its folder.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path().join("pg"))
            .output()
            .expect("bash runs scripts/postgres.sh");
        assert!(
            out.status.success(),
            "this test needs PostgreSQL (Debian: apt-get install postgresql), and \
             scripts/postgres.sh could not start one:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let url = stdout
            .lines()
            .last()
            .filter(|l| l.starts_with("postgres://"))
            .unwrap_or_else(|| panic!("scripts/postgres.sh printed no URL:\n{stdout}"))
            .to_owned();
        Postgres { url, dir }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path().join("pg"))
            .output();
    }
}
