//! The DuckDB catalog of a root: opening it with extension loading locked down, schema
//! migrations, Arrow queries, table content hashes, and the root lock that keeps two writers
//! of one root apart.

use std::fs::File;
use std::io::Write;

use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{Config, Connection};
use t0_core::error::Context;
use t0_core::{Error, Result, Root};

/// Ordered migrations; the index + 1 is the schema version. Never edit a shipped one (the one
/// exception: 0001/0002 no longer create the clips measures, which a root now takes from its
/// project; `t0_project::schema` drops them from an older catalog while it is still empty, so
/// every root ends with the same columns).
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_acquire.sql"),
    include_str!("migrations/0003_audit_history.sql"),
    include_str!("migrations/0004_heal.sql"),
    include_str!("migrations/0005_certify.sql"),
    include_str!("migrations/0006_project_schema.sql"),
    include_str!("migrations/0007_audit_failing.sql"),
    include_str!("migrations/0008_drift.sql"),
    include_str!("migrations/0009_governance.sql"),
    include_str!("migrations/0010_acquire_resume.sql"),
    include_str!("migrations/0011_buckets.sql"),
    include_str!("migrations/0012_commits.sql"),
    include_str!("migrations/0013_heal_batches.sql"),
];

pub use duckdb;

/// An open catalog. Holds the DuckDB connection for the life of a stage run.
pub struct Catalog {
    conn: Connection,
}

impl Catalog {
    /// Open (creating if needed) `catalog.duckdb` under `root` and bring its schema up to date.
    pub fn open(root: &Root) -> Result<Self> {
        std::fs::create_dir_all(root.path()).map_err(|e| Error::io(root.path(), e))?;
        let path = root.catalog();
        let conn = Connection::open_with_flags(&path, config(Some(root))?)
            .map_err(|e| Error::internal(format!("open catalog {}", path.display()), e))?;
        let cat = Catalog { conn };
        cat.migrate()?;
        Ok(cat)
    }

    /// Open an existing catalog read-only: nothing run on this connection can change it (used
    /// for user-supplied SQL). Refuses a root without a catalog.
    pub fn open_read_only(root: &Root) -> Result<Self> {
        let path = root.catalog();
        if !path.exists() {
            return Err(Error::Refused(format!("no catalog at {}: run `acquire` first", path.display())));
        }
        let cfg = config(Some(root))?.access_mode(duckdb::AccessMode::ReadOnly).ctx(|| "duckdb config".into())?;
        let conn = Connection::open_with_flags(&path, cfg)
            .map_err(|e| Error::internal(format!("open catalog {} read-only", path.display()), e))?;
        let cat = Catalog { conn };
        if cat.schema_version()? != MIGRATIONS.len() {
            return Err(Error::Refused(format!(
                "catalog {} is at schema version {}, this build expects {}: run a writing stage first",
                path.display(),
                cat.schema_version()?,
                MIGRATIONS.len()
            )));
        }
        Ok(cat)
    }

    /// An in-memory catalog (tests, scratch work) with the same settings and schema.
    pub fn in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory_with_flags(config(None)?).ctx(|| "open in-memory catalog".into())?;
        let cat = Catalog { conn };
        cat.migrate()?;
        Ok(cat)
    }

    /// An empty in-memory DuckDB with the same locked-down settings and no schema at all:
    /// scratch work that must see nothing of any catalog (the feature-store sandbox's dry run,
    /// comparisons of Parquet files).
    pub fn scratch() -> Result<Self> {
        let conn = Connection::open_in_memory_with_flags(config(None)?).ctx(|| "open scratch database".into())?;
        Ok(Catalog { conn })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The tables of this catalog's own schema, in name order.
    pub fn tables(&self) -> Result<std::collections::BTreeSet<String>> {
        let sql = "SELECT table_name FROM duckdb_tables() \
                   WHERE database_name = current_database() AND schema_name = 'main' AND NOT temporary";
        let mut stmt = self.conn.prepare(sql).ctx(|| "list tables".into())?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0)).ctx(|| "list tables".into())?;
        names.collect::<std::result::Result<_, _>>().ctx(|| "list tables".into())
    }

    /// Tables the migrations create that this catalog lacks: dropped behind t0-clip's back
    /// (`verify` names them instead of failing on the first query that reads one).
    pub fn missing_tables(&self) -> Result<Vec<String>> {
        let want = Catalog::in_memory()?.tables()?;
        let have = self.tables()?;
        Ok(want.difference(&have).cloned().collect())
    }

    /// The name DuckDB gives this catalog's database (`catalog` for `catalog.duckdb`): SQL on
    /// a connection whose search path excludes it must qualify its tables with it.
    pub fn database_name(&self) -> Result<String> {
        self.conn.query_row("SELECT current_database()", [], |r| r.get(0)).ctx(|| "database name".into())
    }

    pub fn schema_version(&self) -> Result<usize> {
        let v: i64 = self
            .conn
            .query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |r| r.get(0))
            .ctx(|| "read schema version".into())?;
        Ok(v as usize)
    }

    fn migrate(&self) -> Result<()> {
        self.conn
            .execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
            .ctx(|| "create schema_migrations".into())?;
        let current = self.schema_version()?;
        if current > MIGRATIONS.len() {
            return Err(Error::Refused(format!(
                "catalog schema version {current} is newer than this build knows ({}); use a newer t0-clip",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let version = i + 1;
            let tx = format!("BEGIN TRANSACTION; {sql}\nINSERT INTO schema_migrations VALUES ({version}); COMMIT;");
            if let Err(e) = self.conn.execute_batch(&tx) {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(Error::internal(format!("catalog migration {version}"), e));
            }
        }
        Ok(())
    }

    /// Run `sql` and collect the result as Arrow batches with its schema.
    pub fn query_arrow(&self, sql: &str, params: &[&dyn duckdb::ToSql]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        query_arrow(&self.conn, sql, params)
    }

    /// Canonical content hash and row count of the rows `sql` returns (see `t0-table`),
    /// streamed: one Arrow batch in memory at a time.
    pub fn content_hash(&self, sql: &str, params: &[&dyn duckdb::ToSql]) -> Result<(String, u64)> {
        content_hash(&self.conn, sql, params)
    }

    /// Column name -> DuckDB type of `table` (empty when there is no such table).
    pub fn column_types(&self, table: &str) -> Result<std::collections::BTreeMap<String, String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?")
            .ctx(|| format!("read schema of {table}"))?;
        let rows = stmt
            .query_map([table], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .ctx(|| format!("read schema of {table}"))?;
        rows.collect::<std::result::Result<_, _>>().ctx(|| format!("read schema of {table}"))
    }

    /// Run `f` inside one transaction: all of its catalog changes commit together or none do.
    pub fn transaction<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN TRANSACTION").ctx(|| "begin".into())?;
        match f(&self.conn) {
            Ok(v) => {
                t0_core::fault::pause_point("catalog.commit");
                self.conn.execute_batch("COMMIT").ctx(|| "commit".into())?;
                t0_core::fault::pause_point("catalog.committed");
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// [`Catalog::query_arrow`] on any connection (a sandbox's, a scratch database's).
pub fn query_arrow(
    conn: &Connection,
    sql: &str,
    params: &[&dyn duckdb::ToSql],
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut stmt = conn.prepare(sql).ctx(|| format!("prepare {}", short(sql)))?;
    let arrow = stmt.query_arrow(params).ctx(|| format!("query {}", short(sql)))?;
    let schema = arrow.get_schema();
    Ok((schema, arrow.collect()))
}

/// The first column of every row `sql` returns.
pub fn column<T: duckdb::types::FromSql>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn duckdb::ToSql],
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare(sql).ctx(|| format!("prepare {}", short(sql)))?;
    stmt.query_map(params, |r| r.get(0))
        .ctx(|| format!("query {}", short(sql)))?
        .collect::<std::result::Result<_, _>>()
        .ctx(|| format!("read {}", short(sql)))
}

/// `(column, type)` of `table` in the connection's current database, in table order (empty
/// when there is no such table).
pub fn table_columns(conn: &Connection, table: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn
        .prepare(
            "SELECT column_name, data_type FROM information_schema.columns
             WHERE table_catalog = current_database() AND table_schema = 'main' AND table_name = ?
             ORDER BY ordinal_position",
        )
        .ctx(|| format!("read schema of {table}"))?;
    stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx(|| format!("read schema of {table}"))?
        .collect::<std::result::Result<_, _>>()
        .ctx(|| format!("read schema of {table}"))
}

/// [`Catalog::content_hash`] on any connection.
pub fn content_hash(conn: &Connection, sql: &str, params: &[&dyn duckdb::ToSql]) -> Result<(String, u64)> {
    let h = content_hasher(conn, sql, params)?;
    Ok((h.finish(), h.state().rows))
}

/// The hasher after every row `sql` returns: its state adds to other row sets' (`commit`
/// joins bucket tables this way).
pub fn content_hasher(conn: &Connection, sql: &str, params: &[&dyn duckdb::ToSql]) -> Result<t0_table::ContentHasher> {
    let mut stmt = conn.prepare(sql).ctx(|| format!("prepare {}", short(sql)))?;
    let arrow = stmt.query_arrow(params).ctx(|| format!("query {}", short(sql)))?;
    let mut h = t0_table::ContentHasher::new(&arrow.get_schema())?;
    for b in arrow {
        h.push(&b)?;
    }
    Ok(h)
}

pub use t0_core::config::quote_literal;

/// What a stage process lets DuckDB use: set once by the binary (`--memory-limit`,
/// `--temp-dir`), read by every catalog it opens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// Bytes DuckDB may hold in memory; beyond it, it spills to `temp_dir` or fails.
    pub memory_limit: Option<u64>,
    /// Where DuckDB spills (default: `<root>/tmp`).
    pub temp_dir: Option<std::path::PathBuf>,
    /// How long a stage waits for a root's lock another stage holds before it exits 3
    /// (`--lock-wait`; default none: refused at once).
    pub lock_wait: Option<std::time::Duration>,
}

static RESOURCES: std::sync::OnceLock<Resources> = std::sync::OnceLock::new();

/// Set the process's resources (once; a second call is ignored).
pub fn set_resources(r: Resources) {
    let _ = RESOURCES.set(r);
}

/// The process's resources.
pub fn resources() -> Resources {
    RESOURCES.get().cloned().unwrap_or_default()
}

/// Bytes of a size like `1GB`, `512MiB`, `2g` or `1073741824` (decimal units are powers of
/// 1000, binary ones of 1024, a bare letter binary, as DuckDB reads them).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("{text:?} is not a size (e.g. 1GB, 512MiB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        other => return Err(format!("{text:?}: unknown size unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")),
    };
    let bytes = value * scale;
    if !(1.0..1e18).contains(&bytes) {
        return Err(format!("{text:?} is not a usable memory size"));
    }
    Ok(bytes as u64)
}

fn config(root: Option<&Root>) -> Result<Config> {
    // No network and no surprise downloads: extensions are never installed or autoloaded.
    let mut cfg = Config::default()
        .enable_autoload_extension(false)
        .and_then(|c| c.with("autoinstall_known_extensions", "false"))
        .ctx(|| "duckdb config".into())?;
    let r = resources();
    if let Some(bytes) = r.memory_limit {
        // In KiB: DuckDB reads the unit, and a round number shows in its own error messages.
        cfg = cfg.with("memory_limit", format!("{}KiB", (bytes / 1024).max(1))).ctx(|| "duckdb memory_limit".into())?;
    }
    let temp = r.temp_dir.or_else(|| root.map(|root| root.path().join("tmp")));
    if let Some(dir) = temp {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        cfg = cfg.with("temp_directory", dir.to_string_lossy()).ctx(|| "duckdb temp_directory".into())?;
    }
    Ok(cfg)
}

fn short(sql: &str) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.len() > 80 { format!("{}...", &one[..one.floor_char_boundary(80)]) } else { one }
}

/// Exclusive lock over a root for the life of a writing stage. Backed by an OS file lock, so a
/// killed process never leaves a stale lock behind.
pub struct RootLock {
    _file: File,
}

impl RootLock {
    /// The root's lock, waiting up to the process's `lock_wait` for a holder to finish; exit 3
    /// naming the holder when it does not. A second run of a stage never interleaves its
    /// writes with the first's.
    pub fn acquire(root: &Root) -> Result<Self> {
        Self::acquire_within(root, resources().lock_wait.unwrap_or_default())
    }

    /// [`RootLock::acquire`] with an explicit wait.
    pub fn acquire_within(root: &Root, wait: std::time::Duration) -> Result<Self> {
        std::fs::create_dir_all(root.path()).map_err(|e| Error::io(root.path(), e))?;
        let path = root.lock_file();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let start = std::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                    std::thread::sleep(LOCK_POLL.min(wait.saturating_sub(start.elapsed())));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let waited = if wait.is_zero() {
                        String::new()
                    } else {
                        format!(" after waiting {:.1} s (--lock-wait)", start.elapsed().as_secs_f64())
                    };
                    return Err(Error::Refused(format!(
                        "lock held: another stage is writing {} ({}){waited}; wait for it to finish",
                        root.path().display(),
                        holder.trim()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
        }
        let _ = file.set_len(0);
        let _ = write!(file, "pid {}", std::process::id());
        Ok(RootLock { _file: file })
    }
}

/// How often a waiting stage tries the lock again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_held_lock_is_waited_for_then_refused_and_free_once_released() {
        let dir = std::env::temp_dir().join(format!("t0clip-lock-test-{}", std::process::id()));
        let root = Root::new(&dir);
        let first = RootLock::acquire_within(&root, Duration::ZERO).unwrap();
        let e = RootLock::acquire_within(&root, Duration::ZERO).err().unwrap();
        assert_eq!(e.exit_code(), t0_core::ExitCode::Refused);
        assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
        let start = std::time::Instant::now();
        let e = RootLock::acquire_within(&root, Duration::from_millis(300)).err().unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300), "waited {:?}", start.elapsed());
        assert!(e.to_string().contains("after waiting"), "{e}");
        // Released while the second waits: it gets the lock.
        let waiter = std::thread::spawn({
            let root = root.clone();
            move || RootLock::acquire_within(&root, Duration::from_secs(20)).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
        waiter.join().unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sizes_parse_as_duckdb_reads_them_and_bad_ones_say_why() {
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size(" 1048576 ").unwrap(), 1 << 20);
        assert_eq!(parse_size("1.5GB").unwrap(), 1_500_000_000);
        for bad in ["", "GB", "12 parsecs", "0MB", "-1GB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("12 parsecs").unwrap_err().contains("unknown size unit"));
    }

    /// The only test in this binary that sets the process's resources (they are set once).
    #[test]
    fn the_memory_limit_and_temp_directory_reach_duckdb() {
        let dir = std::env::temp_dir().join(format!("t0clip-catalog-test-{}", std::process::id()));
        set_resources(Resources { memory_limit: Some(200 << 20), temp_dir: Some(dir.clone()), lock_wait: None });
        let cat = Catalog::in_memory().unwrap();
        let setting = |name: &str| -> String {
            cat.conn().query_row(&format!("SELECT current_setting('{name}')"), [], |r| r.get(0)).unwrap()
        };
        assert_eq!(setting("memory_limit"), "200.0 MiB");
        assert_eq!(setting("temp_directory"), dir.to_string_lossy());
        assert!(dir.is_dir());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
