//! Persistent emulator state in `redb`: environments and sessions.
//!
//! Records are JSON so the format stays readable and can grow fields; redb
//! gives atomic read-modify-write transactions and survives restarts. The
//! database file is locked by redb, so two emulators cannot share a data
//! directory by accident.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::aws_error::AwsError;
use crate::lifecycle::{Environment, Millis};

const ENVIRONMENTS: Table = TableDefinition::new("environments");
const SESSIONS: Table = TableDefinition::new("sessions");

/// A shell session opened by CreateSession.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Session id.
    pub id: String,
    /// Environment it belongs to.
    pub environment_id: String,
    /// Token the data channel must present.
    pub token: String,
    /// Tab it was opened for.
    pub tab_id: String,
    /// When it was created.
    pub created: Millis,
    /// Whether a data channel has presented the token; an unused token expires.
    #[serde(default)]
    pub opened: bool,
    /// The SessionType asked for (`TMUX`, or empty when left out).
    #[serde(default)]
    pub session_type: String,
}

/// Why the state database could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another emulator holds it (redb locks the file).
    #[error(
        "emulator state database {path} is already in use by another emulator; stop it or pass another --data-dir"
    )]
    InUse {
        /// The database file.
        path: String,
    },
    /// It could not be opened or set up.
    #[error("emulator state database {path}")]
    Database {
        /// The database file.
        path: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The emulator's state database.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let err = |source: Box<dyn std::error::Error + Send + Sync>| OpenError::Database {
            path: path.display().to_string(),
            source,
        };
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse {
                path: path.display().to_string(),
            },
            other => err(other.into()),
        })?;
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        txn.open_table(ENVIRONMENTS).map_err(|e| err(e.into()))?;
        txn.open_table(SESSIONS).map_err(|e| err(e.into()))?;
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(Self { db })
    }

    /// Runs `f` in one write transaction, committed only if it returns `Ok`.
    pub fn write<R>(&self, f: impl FnOnce(&mut Txn) -> Result<R, AwsError>) -> Result<R, AwsError> {
        let txn = self.db.begin_write().map_err(internal)?;
        let mut wrapped = Txn { txn };
        let result = f(&mut wrapped)?;
        wrapped.txn.commit().map_err(internal)?;
        Ok(result)
    }
}

/// One write transaction.
pub struct Txn {
    txn: WriteTransaction,
}

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

impl Txn {
    /// Environments matching `filter`.
    pub fn environments(
        &mut self,
        filter: impl Fn(&Environment) -> bool,
    ) -> Result<Vec<Environment>, AwsError> {
        self.scan(ENVIRONMENTS, filter)
    }

    /// One environment.
    pub fn environment(&mut self, id: &str) -> Result<Option<Environment>, AwsError> {
        self.get(ENVIRONMENTS, id)
    }

    /// Inserts or replaces an environment.
    pub fn put_environment(&mut self, env: &Environment) -> Result<(), AwsError> {
        self.put(ENVIRONMENTS, &env.id, env)
    }

    /// Forgets an environment and its sessions.
    pub fn remove_environment(&mut self, id: &str) -> Result<(), AwsError> {
        self.remove(ENVIRONMENTS, id)?;
        for session in self.sessions(id)? {
            self.remove_session(&session.id)?;
        }
        Ok(())
    }

    /// One session.
    pub fn session(&mut self, id: &str) -> Result<Option<Session>, AwsError> {
        self.get(SESSIONS, id)
    }

    /// The sessions of one environment.
    pub fn sessions(&mut self, environment_id: &str) -> Result<Vec<Session>, AwsError> {
        self.scan(SESSIONS, |s: &Session| s.environment_id == environment_id)
    }

    /// Records a session.
    pub fn put_session(&mut self, session: &Session) -> Result<(), AwsError> {
        self.put(SESSIONS, &session.id, session)
    }

    /// Forgets a session.
    pub fn remove_session(&mut self, id: &str) -> Result<(), AwsError> {
        self.remove(SESSIONS, id)
    }

    fn get<T: DeserializeOwned>(&mut self, table: Table, key: &str) -> Result<Option<T>, AwsError> {
        let table = self.txn.open_table(table).map_err(internal)?;
        let row = table.get(key).map_err(internal)?;
        row.map(|v| decode(v.value())).transpose()
    }

    fn put<T: Serialize>(&mut self, table: Table, key: &str, value: &T) -> Result<(), AwsError> {
        let mut table = self.txn.open_table(table).map_err(internal)?;
        table
            .insert(key, encode(value)?.as_slice())
            .map_err(internal)?;
        Ok(())
    }

    fn remove(&mut self, table: Table, key: &str) -> Result<(), AwsError> {
        let mut table = self.txn.open_table(table).map_err(internal)?;
        table.remove(key).map_err(internal)?;
        Ok(())
    }

    fn scan<T: DeserializeOwned>(
        &mut self,
        table: Table,
        filter: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, AwsError> {
        let table = self.txn.open_table(table).map_err(internal)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(internal)? {
            let (_, v) = row.map_err(internal)?;
            let item: T = decode(v.value())?;
            if filter(&item) {
                out.push(item);
            }
        }
        Ok(out)
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, AwsError> {
    serde_json::to_vec(value).map_err(internal)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AwsError> {
    serde_json::from_slice(bytes).map_err(internal)
}

fn internal(e: impl std::fmt::Display) -> AwsError {
    AwsError::internal(format!("emulator state: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Timings;

    fn env(id: &str) -> Environment {
        Environment::create(
            id.into(),
            "us-east-1".into(),
            "p".into(),
            None,
            None,
            0,
            &Timings::default(),
        )
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write(|t| {
                    t.put_environment(&env("a"))?;
                    t.put_environment(&env("b"))?;
                    t.put_session(&Session {
                        id: "s1".into(),
                        environment_id: "a".into(),
                        token: "t".into(),
                        tab_id: "x".into(),
                        created: 0,
                        opened: false,
                        session_type: "TMUX".into(),
                    })
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        store
            .write(|t| {
                assert_eq!(t.environments(|_| true)?.len(), 2);
                assert_eq!(t.sessions("a")?.len(), 1);
                t.remove_environment("a")?;
                assert!(t.environment("a")?.is_none());
                assert!(
                    t.session("s1")?.is_none(),
                    "sessions go with their environment"
                );
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let r: Result<(), _> = store.write(|t| {
            t.put_environment(&env("a"))?;
            Err(AwsError::validation("no"))
        });
        assert!(r.is_err());
        store
            .write(|t| {
                assert!(t.environment("a")?.is_none());
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_second_opener_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _first = Store::open(&path).unwrap();
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("already in use by another emulator"), "{err}");
    }
}
