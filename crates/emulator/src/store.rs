//! Persistent emulator state in `redb`: environments and sessions.
//!
//! Records are JSON so the format stays readable and can grow fields; redb
//! gives atomic read-modify-write transactions and survives restarts. The
//! database file is locked by redb, so two emulators cannot share a data
//! directory by accident.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::aws_error::AwsError;
use crate::lifecycle::{Environment, Millis};

const ENVIRONMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("environments");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

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
}

/// Why the state database could not be used.
#[derive(Debug, thiserror::Error)]
#[error("emulator state database {path}: {message}")]
pub struct OpenError {
    path: String,
    message: String,
}

/// The emulator's state database.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let err = |message: String| OpenError {
            path: path.display().to_string(),
            message,
        };
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                err("already in use by another emulator; stop it or pass another --data-dir".into())
            }
            other => err(other.to_string()),
        })?;
        let txn = db.begin_write().map_err(|e| err(e.to_string()))?;
        txn.open_table(ENVIRONMENTS)
            .map_err(|e| err(e.to_string()))?;
        txn.open_table(SESSIONS).map_err(|e| err(e.to_string()))?;
        txn.commit().map_err(|e| err(e.to_string()))?;
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

    /// Every environment, for tools and tests.
    pub fn all_environments(&self) -> Result<Vec<Environment>, AwsError> {
        let txn = self.db.begin_read().map_err(internal)?;
        let table = txn.open_table(ENVIRONMENTS).map_err(internal)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(internal)? {
            let (_, v) = row.map_err(internal)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

/// One write transaction.
pub struct Txn {
    txn: WriteTransaction,
}

impl Txn {
    /// Environments matching `filter`.
    pub fn environments(
        &mut self,
        filter: impl Fn(&Environment) -> bool,
    ) -> Result<Vec<Environment>, AwsError> {
        let table = self.txn.open_table(ENVIRONMENTS).map_err(internal)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(internal)? {
            let (_, v) = row.map_err(internal)?;
            let env: Environment = decode(v.value())?;
            if filter(&env) {
                out.push(env);
            }
        }
        Ok(out)
    }

    /// One environment.
    pub fn environment(&mut self, id: &str) -> Result<Option<Environment>, AwsError> {
        let table = self.txn.open_table(ENVIRONMENTS).map_err(internal)?;
        let row = table.get(id).map_err(internal)?;
        row.map(|v| decode(v.value())).transpose()
    }

    /// Inserts or replaces an environment.
    pub fn put_environment(&mut self, env: &Environment) -> Result<(), AwsError> {
        let mut table = self.txn.open_table(ENVIRONMENTS).map_err(internal)?;
        table
            .insert(env.id.as_str(), encode(env)?.as_slice())
            .map_err(internal)?;
        Ok(())
    }

    /// Forgets an environment and its sessions.
    pub fn remove_environment(&mut self, id: &str) -> Result<(), AwsError> {
        self.txn
            .open_table(ENVIRONMENTS)
            .map_err(internal)?
            .remove(id)
            .map_err(internal)?;
        for session in self.sessions(id)? {
            self.remove_session(&session.id)?;
        }
        Ok(())
    }

    /// One session.
    pub fn session(&mut self, id: &str) -> Result<Option<Session>, AwsError> {
        let table = self.txn.open_table(SESSIONS).map_err(internal)?;
        let row = table.get(id).map_err(internal)?;
        row.map(|v| decode(v.value())).transpose()
    }

    /// The sessions of one environment.
    pub fn sessions(&mut self, environment_id: &str) -> Result<Vec<Session>, AwsError> {
        let table = self.txn.open_table(SESSIONS).map_err(internal)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(internal)? {
            let (_, v) = row.map_err(internal)?;
            let s: Session = decode(v.value())?;
            if s.environment_id == environment_id {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Records a session.
    pub fn put_session(&mut self, session: &Session) -> Result<(), AwsError> {
        let mut table = self.txn.open_table(SESSIONS).map_err(internal)?;
        table
            .insert(session.id.as_str(), encode(session)?.as_slice())
            .map_err(internal)?;
        Ok(())
    }

    /// Forgets a session.
    pub fn remove_session(&mut self, id: &str) -> Result<(), AwsError> {
        self.txn
            .open_table(SESSIONS)
            .map_err(internal)?
            .remove(id)
            .map_err(internal)?;
        Ok(())
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
