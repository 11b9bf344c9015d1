//! The twelve operations, over the state store and the lifecycle model.
//!
//! Everything here is synchronous and takes `now` as an argument; the HTTP
//! layer runs it on a blocking thread (redb commits fsync).

use std::path::{Path, PathBuf};

use cloudshell::types::{VpcConfig, validate_environment_name};
use serde_json::{Value, json};

use crate::aws_error::AwsError;
use crate::config::EmulatorConfig;
use crate::lifecycle::{Effect, Environment, Millis, StoredVpcConfig};
use crate::sigv4::Verified;
use crate::store::{Session, Store, Txn};

/// How long a session token stays valid before its first use.
pub const TOKEN_TTL_MS: Millis = 60_000;

/// Most VPC environments per principal and region.
pub const MAX_VPC_ENVIRONMENTS: usize = 2;

/// The emulated CloudShell service.
#[derive(Debug)]
pub struct Service {
    store: Store,
    config: EmulatorConfig,
    homes: PathBuf,
    files: crate::presign::FileSigner,
}

/// The names of the operations, as `X-Amz-Target` and the paths spell them.
pub const OPERATIONS: &[&str] = &[
    "CreateEnvironment",
    "CreateSession",
    "DeleteEnvironment",
    "DeleteSession",
    "DescribeEnvironments",
    "GetEnvironmentStatus",
    "GetFileDownloadUrls",
    "GetFileUploadUrls",
    "PutCredentials",
    "SendHeartBeat",
    "StartEnvironment",
    "StopEnvironment",
];

impl Service {
    /// A service over an opened store.
    pub fn new(store: Store, config: EmulatorConfig) -> Self {
        let homes = config.data_dir.join("homes");
        Self {
            store,
            config,
            homes,
            files: crate::presign::FileSigner::default(),
        }
    }

    /// The signer of presigned file URLs.
    pub fn files(&self) -> &crate::presign::FileSigner {
        &self.files
    }

    /// The home directory of an environment that is RUNNING now, for a
    /// presigned transfer (the URL's signature is the authorization).
    pub fn running_home(&self, environment_id: &str, now: Millis) -> Result<PathBuf, AwsError> {
        self.store.write(|t| {
            let not_found =
                || AwsError::not_found(format!("environment {environment_id} not found"));
            let env = t.environment(environment_id)?.ok_or_else(not_found)?;
            let env = self.advance(t, env, now)?.ok_or_else(not_found)?;
            t.put_environment(&env)?;
            if env.phase.status() != "RUNNING" {
                return Err(AwsError::validation(format!(
                    "environment {environment_id} is {}, not RUNNING; start it to transfer files",
                    env.phase.status()
                )));
            }
            Ok(self.home_dir(&env.id))
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// The home directory of an environment.
    pub fn home_dir(&self, environment_id: &str) -> PathBuf {
        self.homes.join(environment_id)
    }

    /// Every stored environment with its timed transitions applied.
    pub fn environments(&self, now: Millis) -> Result<Vec<Environment>, AwsError> {
        self.store.write(|t| {
            let all = t.environments(|_| true)?;
            let mut out = Vec::new();
            for env in all {
                if let Some(env) = self.advance(t, env, now)? {
                    out.push(env);
                }
            }
            Ok(out)
        })
    }

    /// Runs one operation for an authenticated caller.
    pub fn call(
        &self,
        operation: &str,
        caller: &Verified,
        input: &Value,
        now: Millis,
        host: &str,
    ) -> Result<Value, AwsError> {
        if !input.is_object() {
            return Err(AwsError::validation(
                "the request body must be a JSON object",
            ));
        }
        match operation {
            "DescribeEnvironments" => self.describe_environments(caller, now),
            "CreateEnvironment" => self.create_environment(caller, input, now),
            "GetEnvironmentStatus" => self.with_environment(caller, input, now, |_, env| {
                Ok(json!({
                    "EnvironmentId": env.id,
                    "Status": env.phase.status(),
                    "StatusReason": env.status_reason,
                    "EnvironmentName": env.name,
                    "VpcConfig": env.vpc_config,
                }))
            }),
            "StartEnvironment" => self.with_environment(caller, input, now, |_, env| {
                env.start(now, &self.config.timings).map_err(AwsError::validation)?;
                Ok(json!({"EnvironmentId": env.id, "Status": env.phase.status()}))
            }),
            "StopEnvironment" => self.with_environment(caller, input, now, |_, env| {
                env.stop(now, &self.config.timings).map_err(AwsError::validation)?;
                Ok(json!({"EnvironmentId": env.id, "Status": env.phase.status()}))
            }),
            "DeleteEnvironment" => self.with_environment(caller, input, now, |_, env| {
                env.delete(now, &self.config.timings).map_err(AwsError::validation)?;
                Ok(json!({}))
            }),
            "SendHeartBeat" => self.with_environment(caller, input, now, |_, env| {
                env.touch(now, "SendHeartBeat").map_err(AwsError::validation)?;
                Ok(json!({}))
            }),
            "CreateSession" => self.create_session(caller, input, now, host),
            "DeleteSession" => {
                let session_id = required_str(input, "SessionId")?.to_owned();
                self.with_environment(caller, input, now, |t, env| {
                    match t.session(&session_id)? {
                        Some(s) if s.environment_id == env.id => {
                            t.remove_session(&session_id)?;
                            Ok(json!({}))
                        }
                        _ => Err(AwsError::not_found(format!(
                            "session {session_id} not found in environment {}",
                            env.id
                        ))),
                    }
                })
            }
            "GetFileUploadUrls" | "GetFileDownloadUrls" => {
                self.file_urls(operation, caller, input, now, host)
            }
            "PutCredentials" => self.with_environment(caller, input, now, |_, _| {
                Err(AwsError::token_decryption(
                    "the credentials token could not be decrypted: PutCredentials carries the AWS Console's own encrypted token and works only from a Console session; export AWS credentials in the shell instead",
                ))
            }),
            other => Err(AwsError::unknown_operation(other)),
        }
    }

    fn describe_environments(&self, caller: &Verified, now: Millis) -> Result<Value, AwsError> {
        self.store.write(|t| {
            let mine = t.environments(|e| owned_by(e, caller))?;
            let mut listed = Vec::new();
            for env in mine {
                if let Some(env) = self.advance(t, env, now)? {
                    listed.push(json!({
                        "EnvironmentId": env.id,
                        "Status": env.phase.status(),
                        "EnvironmentName": env.name,
                        "VpcConfig": env.vpc_config,
                    }));
                }
            }
            Ok(json!({ "Environments": listed }))
        })
    }

    fn create_environment(
        &self,
        caller: &Verified,
        input: &Value,
        now: Millis,
    ) -> Result<Value, AwsError> {
        let name = optional_str(input, "EnvironmentName")?.map(str::to_owned);
        if let Some(n) = &name {
            validate_environment_name(n).map_err(|e| AwsError::validation(e.to_string()))?;
        }
        let vpc = match input.get("VpcConfig") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let vpc: VpcConfig = serde_json::from_value(v.clone()).map_err(|e| {
                    AwsError::validation(format!(
                        "invalid VpcConfig: {e} (it needs VpcId, SubnetIds and SecurityGroupIds)"
                    ))
                })?;
                vpc.validate()
                    .map_err(|e| AwsError::validation(e.to_string()))?;
                if name.is_none() {
                    return Err(AwsError::validation(
                        "invalid EnvironmentName: a VPC environment needs a name",
                    ));
                }
                Some(StoredVpcConfig {
                    vpc_id: vpc.vpc_id,
                    subnet_ids: vpc.subnet_ids,
                    security_group_ids: vpc.security_group_ids,
                })
            }
        };
        let env = self.store.write(|t| {
            let mut live = Vec::new();
            for env in t.environments(|e| owned_by(e, caller))? {
                if let Some(env) = self.advance(t, env, now)?
                    && env.phase.is_live()
                {
                    live.push(env);
                }
            }
            if vpc.is_none() {
                if let Some(existing) = live.iter().find(|e| e.vpc_config.is_none()) {
                    return Err(AwsError::quota(format!(
                        "a default environment already exists for this principal in {}: {}; delete it first or create a VPC environment",
                        caller.region, existing.id
                    )));
                }
            } else if live.iter().filter(|e| e.vpc_config.is_some()).count() >= MAX_VPC_ENVIRONMENTS {
                return Err(AwsError::quota(format!(
                    "at most {MAX_VPC_ENVIRONMENTS} VPC environments are allowed per principal in {}; delete one first",
                    caller.region
                )));
            }
            if let Some(n) = &name
                && live.iter().any(|e| e.name.as_deref() == Some(n)) {
                    return Err(AwsError::conflict(format!(
                        "an environment named {n:?} already exists in {}",
                        caller.region
                    )));
                }
            let env = Environment::create(
                uuid::Uuid::new_v4().to_string(),
                caller.region.clone(),
                caller.principal.clone(),
                name.clone(),
                vpc.clone(),
                now,
                &self.config.timings,
            );
            t.put_environment(&env)?;
            Ok(env)
        })?;
        std::fs::create_dir_all(self.home_dir(&env.id))
            .map_err(|e| AwsError::internal(format!("could not create the home directory: {e}")))?;
        Ok(json!({
            "EnvironmentId": env.id,
            "Status": env.phase.status(),
            "EnvironmentName": env.name,
            "VpcConfig": env.vpc_config,
        }))
    }

    fn create_session(
        &self,
        caller: &Verified,
        input: &Value,
        now: Millis,
        host: &str,
    ) -> Result<Value, AwsError> {
        // Public clients that work against CloudShell send EnvironmentId
        // alone; the Console adds SessionType TMUX, a TabId and
        // QCliDisabled. What is sent is checked; what is left out defaults.
        if let Some(session_type) = optional_str(input, "SessionType")?
            && session_type.is_empty()
        {
            return Err(AwsError::validation(
                "invalid SessionType: must not be empty (clients send TMUX)",
            ));
        }
        let tab_id = optional_str(input, "TabId")?.unwrap_or_default();
        if !tab_id.is_empty() {
            cloudshell::TabId::parse(tab_id).map_err(|e| AwsError::validation(e.to_string()))?;
        }
        if let Some(v) = input.get("QCliDisabled")
            && !v.is_boolean()
            && !v.is_null()
        {
            return Err(AwsError::validation(
                "invalid QCliDisabled: must be a boolean",
            ));
        }
        let tab_id = tab_id.to_owned();
        let session_type = optional_str(input, "SessionType")?
            .unwrap_or_default()
            .to_owned();
        self.with_environment(caller, input, now, |t, env| {
            env.touch(now, "CreateSession")
                .map_err(AwsError::validation)?;
            let session = Session {
                id: format!("{}-{}", session_user(&caller.principal), random_hex(8)),
                environment_id: env.id.clone(),
                token: random_hex(32),
                tab_id: tab_id.clone(),
                created: now,
                opened: false,
                session_type: session_type.clone(),
            };
            t.put_session(&session)?;
            Ok(json!({
                "SessionId": session.id,
                "TokenValue": session.token,
                "StreamUrl": stream_url(host, &session.id),
            }))
        })
    }

    /// SSM `ResumeSession`: a fresh token for a live session of the
    /// caller's, to redial its stream URL with after a dropped socket (what
    /// AWS's session-manager-plugin does). The old token stops working.
    pub fn resume_session(
        &self,
        caller: &Verified,
        session_id: &str,
        now: Millis,
        host: &str,
    ) -> Result<Value, AwsError> {
        self.store.write(|t| {
            let mut session = self.callers_session(t, caller, session_id)?;
            session.token = random_hex(32);
            session.created = now;
            session.opened = false;
            t.put_session(&session)?;
            Ok(json!({
                "SessionId": session.id,
                "TokenValue": session.token,
                "StreamUrl": stream_url(host, &session.id),
            }))
        })
    }

    /// SSM `TerminateSession`: forgets a session of the caller's (its shell
    /// is ended by the caller of this).
    pub fn terminate_session(
        &self,
        caller: &Verified,
        session_id: &str,
    ) -> Result<Value, AwsError> {
        self.store.write(|t| {
            self.callers_session(t, caller, session_id)?;
            t.remove_session(session_id)?;
            Ok(json!({ "SessionId": session_id }))
        })
    }

    /// A live session whose environment belongs to the caller; SSM's
    /// `DoesNotExistException` otherwise (whether it never existed, has
    /// ended, or is someone else's).
    fn callers_session(
        &self,
        t: &mut Txn,
        caller: &Verified,
        session_id: &str,
    ) -> Result<Session, AwsError> {
        let missing = || {
            AwsError::does_not_exist(format!(
                "Session Id {session_id} does not exist or has ended."
            ))
        };
        let session = t.session(session_id)?.ok_or_else(missing)?;
        let env = t
            .environment(&session.environment_id)?
            .ok_or_else(missing)?;
        if !owned_by(&env, caller) {
            return Err(missing());
        }
        Ok(session)
    }

    fn file_urls(
        &self,
        operation: &str,
        caller: &Verified,
        input: &Value,
        now: Millis,
        host: &str,
    ) -> Result<Value, AwsError> {
        let file = optional_str(input, "FileName")?.map(str::to_owned);
        self.with_environment(caller, input, now, |_, env| {
            if env.phase.status() != "RUNNING" {
                return Err(AwsError::validation(format!(
                    "{operation} needs environment {} to be RUNNING, but it is {}",
                    env.id,
                    env.phase.status()
                )));
            }
            let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
                .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
            if operation == "GetFileUploadUrls" {
                Ok(self.files.upload_form(
                    host,
                    &caller.region,
                    &env.id,
                    file.as_deref(),
                    self.config.home_quota,
                    now,
                ))
            } else {
                let file = file.ok_or_else(|| {
                    AwsError::validation("GetFileDownloadUrls needs FileName: the path of the file in the home directory")
                })?;
                Ok(self.files.download_url(host, &caller.region, &env.id, &file, now))
            }
        })
    }

    /// Checks a data channel's token for a session and marks it used. A token
    /// is good for its session's life once used (reconnects present it again),
    /// and expires if unused for [`TOKEN_TTL_MS`]. Returns the environment id,
    /// what the shell runs in.
    pub fn open_data_channel(
        &self,
        session_id: &str,
        token: &str,
        now: Millis,
    ) -> Result<OpenedChannel, String> {
        self.store
            .write(|t| {
                let refused = || AwsError::validation("unknown session or bad token");
                let mut session = t.session(session_id)?.ok_or_else(refused)?;
                if !crate::sigv4::same_secret(session.token.as_bytes(), token.as_bytes()) {
                    return Err(refused());
                }
                if !session.opened && now > session.created + TOKEN_TTL_MS {
                    return Err(AwsError::validation(
                        "the session token has expired; create a new session",
                    ));
                }
                let env = t
                    .environment(&session.environment_id)?
                    .ok_or_else(refused)?;
                let mut env = self.advance(t, env, now)?.ok_or_else(refused)?;
                env.touch(now, "the data channel")
                    .map_err(AwsError::validation)?;
                t.put_environment(&env)?;
                session.opened = true;
                t.put_session(&session)?;
                Ok(OpenedChannel {
                    environment_id: env.id.clone(),
                    region: env.region.clone(),
                    home: self.home_dir(&env.id),
                    in_tmux: session.session_type
                        == cloudshell::operation::create_session::SESSION_TYPE_TMUX
                        && !self.config.plain_sessions,
                })
            })
            .map_err(|e| e.message)
    }

    /// An open session keeps its environment from suspending.
    pub fn keep_alive(&self, environment_id: &str, now: Millis) -> Result<(), AwsError> {
        self.store.write(|t| {
            if let Some(env) = t.environment(environment_id)?
                && let Some(mut env) = self.advance(t, env, now)?
                && env.touch(now, "keep-alive").is_ok()
            {
                t.put_environment(&env)?;
            }
            Ok(())
        })
    }

    /// Forgets a session whose shell has ended.
    pub fn end_session(&self, session_id: &str) -> Result<(), AwsError> {
        self.store.write(|t| t.remove_session(session_id))
    }

    /// Loads the caller's environment named by `EnvironmentId`, brings it up
    /// to date, runs `f` on it and stores the result, all in one transaction.
    fn with_environment(
        &self,
        caller: &Verified,
        input: &Value,
        now: Millis,
        f: impl FnOnce(&mut Txn, &mut Environment) -> Result<Value, AwsError>,
    ) -> Result<Value, AwsError> {
        let id = required_str(input, "EnvironmentId")?;
        if id.is_empty() {
            return Err(AwsError::validation(
                "invalid EnvironmentId: must not be empty",
            ));
        }
        self.store.write(|t| {
            let not_found =
                || AwsError::not_found(format!("environment {id} not found in {}", caller.region));
            let env = t
                .environment(id)?
                .filter(|e| owned_by(e, caller))
                .ok_or_else(not_found)?;
            let mut env = self.advance(t, env, now)?.ok_or_else(not_found)?;
            let out = f(t, &mut env)?;
            t.put_environment(&env)?;
            Ok(out)
        })
    }

    /// Applies timed transitions and their effects; `None` if the environment was purged.
    fn advance(
        &self,
        t: &mut Txn,
        mut env: Environment,
        now: Millis,
    ) -> Result<Option<Environment>, AwsError> {
        let before = env.clone();
        let effects = env.advance(now, &self.config.timings);
        for effect in &effects {
            let home = self.home_dir(&env.id);
            match effect {
                Effect::WipeHome => {
                    remove_dir_if_present(&home)?;
                    std::fs::create_dir_all(&home).map_err(|e| {
                        AwsError::internal(format!("could not recreate {}: {e}", home.display()))
                    })?;
                }
                Effect::RemoveHome => remove_dir_if_present(&home)?,
                Effect::Purge => {
                    t.remove_environment(&env.id)?;
                    return Ok(None);
                }
            }
        }
        if env.phase.status() != "RUNNING" {
            // Sessions do not survive a suspension.
            for s in t.sessions(&env.id)? {
                t.remove_session(&s.id)?;
            }
        }
        if env.phase.status() != before.phase.status() && !env.phase.is_up() {
            // The machine went away, and every process in it.
            crate::processes::stop_environment_processes(&env.id);
        }
        if env != before {
            t.put_environment(&env)?;
        }
        Ok(Some(env))
    }
}

/// What a data channel opened onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedChannel {
    /// The session's environment.
    pub environment_id: String,
    /// Its region.
    pub region: String,
    /// Its home directory.
    pub home: PathBuf,
    /// The shell runs inside tmux (a `TMUX` session).
    pub in_tmux: bool,
}

/// Where a session's data channel is dialled.
fn stream_url(host: &str, session_id: &str) -> String {
    format!("ws://{host}/v1/data-channel/{session_id}?role=publish_subscribe")
}

fn owned_by(env: &Environment, caller: &Verified) -> bool {
    env.region == caller.region && env.principal == caller.principal
}

fn remove_dir_if_present(dir: &Path) -> Result<(), AwsError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AwsError::internal(format!(
            "could not remove {}: {e}",
            dir.display()
        ))),
    }
}

/// Session ids look like `<user>-<hex>` on AWS.
fn session_user(principal: &str) -> String {
    principal
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("user")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rng(), buf.as_mut_slice());
    hex::encode(buf)
}

/// Smithy's wording for a missing required member, with the member named.
fn required_str<'a>(input: &'a Value, member: &str) -> Result<&'a str, AwsError> {
    match input.get(member) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(AwsError::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_camel(member)
        ))),
        Some(_) => Err(AwsError::validation(format!(
            "invalid {member}: must be a string"
        ))),
    }
}

fn optional_str<'a>(input: &'a Value, member: &str) -> Result<Option<&'a str>, AwsError> {
    match input.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AwsError::validation(format!(
            "invalid {member}: must be a string"
        ))),
    }
}

fn lower_camel(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}
