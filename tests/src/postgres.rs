//! A fresh PostgreSQL database per test, created on the server at `$PIPELINE_TEST_POSTGRES_URL` and
//! dropped (WITH FORCE) when the handle drops.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::random_string;

pub const URL_ENV: &str = "PIPELINE_TEST_POSTGRES_URL";
/// When set to 1 (scripts/test.sh does), a PostgreSQL test without a server fails instead of skipping.
pub const REQUIRE_ENV: &str = "PIPELINE_REQUIRE_POSTGRES";

/// The server URL, or `None` when the test `test` should skip. Skipping is only allowed outside
/// scripts/test.sh and CI: with `PIPELINE_REQUIRE_POSTGRES=1` or `CI` set, a missing URL fails.
pub fn server_url_or_skip(test: &str) -> Option<String> {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
                || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            if required {
                panic!(
                    "{test}: {URL_ENV} is not set but PostgreSQL tests are required \
                     ({REQUIRE_ENV}=1 or CI): run scripts/test.sh, which provides a server"
                );
            }
            eprintln!("SKIPPED {test}: {URL_ENV} is not set (scripts/test.sh sets it)");
            None
        }
    }
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

async fn connect(url: &str) -> PgConnection {
    match tokio::time::timeout(Duration::from_secs(15), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "cannot connect to PostgreSQL at {url}: {e} (is the server up? scripts/test.sh starts one)"
        ),
        Err(_) => panic!("connecting to PostgreSQL at {url} timed out after 15 s"),
    }
}

async fn exec(url: &str, sql: String) -> Result<(), String> {
    let mut conn = connect(url).await;
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        conn.execute(AssertSqlSafe(sql.clone())),
    )
    .await;
    let _ = conn.close().await;
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{sql}: {e}")),
        Err(_) => Err(format!("{sql}: timed out after 30 s")),
    }
}

/// A database `pipeline_t_<random>` that exists until this handle drops.
pub struct PgDatabase {
    name: String,
    server_url: String,
    url: String,
}

impl PgDatabase {
    pub async fn create(server_url: &str) -> PgDatabase {
        let name = format!("pipeline_t_{}", random_string(12));
        exec(server_url, format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database: {e}"));
        let url = with_database(server_url, &name);
        PgDatabase {
            name,
            server_url: server_url.to_string(),
            url,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of this database (the host's DATABASE_URL).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop may run inside a runtime: do the async work on a thread with its own runtime.
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(exec(&server_url, sql))
        })
        .join();
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
