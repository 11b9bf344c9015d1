//! Every request and answer of the JSON API, as the daemon sends them and
//! the client reads them. A field renamed here is renamed at both ends and
//! in the OpenAPI document; a field a reader does not know is ignored, so
//! an older CLI keeps working against a newer daemon.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable name: `NoSuchFile`, `StoreFull`, `InvalidName`, ...
    #[schema(example = "NoSuchFile")]
    pub code: String,
    /// What happened and what to do about it.
    pub message: String,
}

/// `GET /api/health`: whether the store is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Every node is connected.
    pub ready: bool,
    /// Nodes configured.
    pub nodes: usize,
    /// Nodes connected now.
    pub connected: usize,
    /// Files stored.
    pub files: usize,
    /// The index backup's progress.
    pub index_backup: BackupStatus,
    /// The daemon's version.
    pub version: String,
    /// Capacity in all and per principal.
    #[serde(default)]
    pub capacity: CapacitySummary,
}

/// Bytes the nodes hold and can hold: raw (shards, coding included) and
/// usable (what files of that size fit: raw times k / (k + m)). Draining
/// nodes are left out: what they hold is leaving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Capacity {
    /// Nodes counted.
    pub nodes: usize,
    /// Bytes of shards the nodes can hold (used and free).
    pub raw: u64,
    /// Bytes of shards they hold.
    pub used: u64,
    /// Bytes of shards they can still take.
    pub free: u64,
    /// File bytes the whole raw capacity holds after coding.
    pub usable: u64,
    /// File bytes that still fit.
    pub usable_free: u64,
}

/// Capacity of one principal's nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrincipalCapacity {
    /// The principal.
    pub principal: String,
    /// Its nodes' capacity.
    #[serde(flatten)]
    pub capacity: Capacity,
}

/// Capacity in all and per principal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CapacitySummary {
    /// Every node's.
    pub total: Capacity,
    /// Per principal, in the order their nodes are listed.
    pub principals: Vec<PrincipalCapacity>,
}

/// The index backup's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupStatus {
    /// A change is not in a backup yet.
    pub pending: bool,
    /// The generation of the last backup written by this daemon
    /// (milliseconds since the epoch).
    pub generation: Option<u64>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileInfo {
    /// Its name.
    pub name: String,
    /// The file id, hex: its shards on the nodes are named after it.
    pub id: String,
    /// Bytes.
    pub size: u64,
    /// Seconds since the epoch when it was stored.
    pub created: i64,
    /// Seconds since the epoch when its writer says it was last modified
    /// (`X-Cloudshell-Modified` on upload, `PATCH` later; a mount keeps the times
    /// programs set), when one said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<i64>,
    /// Chunks of its own (0 for a file made of parts).
    pub chunks: u64,
    /// Data shards per chunk.
    pub k: u8,
    /// Parity shards per chunk.
    pub m: u8,
    /// Stored encrypted.
    pub encrypted: bool,
    /// BLAKE3 of its content, hex (zeros for a file made of parts).
    pub blake3: String,
}

/// A file's redundancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Redundancy {
    /// Every shard good.
    Healthy,
    /// Some shards bad or unavailable; still readable.
    Degraded,
    /// Some chunk has fewer than k good shards.
    Unrecoverable,
}

/// A file's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileHealth {
    /// Healthy, degraded or unrecoverable.
    pub state: Redundancy,
    /// Further node losses the worst chunk survives (0 when
    /// unrecoverable), at most the number of nodes.
    pub survives: usize,
    /// Further losses of whole regions (every principal's node in one)
    /// the worst chunk survives, at most the number of regions.
    #[serde(default)]
    pub survives_regions: usize,
    /// Further losses of whole principals (every node of one) the worst
    /// chunk survives, at most the number of principals.
    #[serde(default)]
    pub survives_principals: usize,
    /// Shards not good now.
    pub bad_shards: usize,
    /// Under repair now.
    pub repairing: bool,
}

/// A file in a listing: the file and, when known, its health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileEntry {
    /// The file.
    #[serde(flatten)]
    pub file: FileInfo,
    /// Its health.
    pub health: Option<FileHealth>,
}

/// `GET /api/files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileList {
    /// Every file, by name.
    pub files: Vec<FileEntry>,
}

/// `PUT /api/files/{name}`: what was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Stored {
    /// The file.
    pub file: FileInfo,
    /// Node losses it survives.
    pub survivable_losses: usize,
    /// Losses of whole regions it survives.
    #[serde(default)]
    pub survives_regions: usize,
    /// Losses of whole principals it survives.
    #[serde(default)]
    pub survives_principals: usize,
}

/// A shard's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShardState {
    /// Believed good.
    Ok,
    /// Known missing.
    Missing,
    /// Known corrupt.
    Corrupt,
    /// On a node that is not serving.
    Unavailable,
    /// Its file is being repaired.
    Repairing,
}

/// `GET /api/stat/{name}`: a file with its shard map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Stat {
    /// The file.
    pub file: FileInfo,
    /// Node losses it survives.
    pub survivable_losses: usize,
    /// Losses of whole regions it survives.
    #[serde(default)]
    pub survives_regions: usize,
    /// Losses of whole principals it survives.
    #[serde(default)]
    pub survives_principals: usize,
    /// Its health.
    pub health: FileHealth,
    /// Chunks in all (`chunks` holds one page of them).
    pub total_chunks: usize,
    /// The first chunk shown.
    pub offset: usize,
    /// Per node: shards held and how many are not ok, over every chunk.
    pub regions: Vec<NodeShards>,
    /// One page of chunks, from `offset`.
    pub chunks: Vec<ChunkMap>,
}

/// A node's share of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeShards {
    /// The node.
    pub node: String,
    /// Shards of the file it holds.
    pub shards: usize,
    /// Of those, shards not ok.
    pub not_ok: usize,
}

/// One chunk: where its shards are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChunkMap {
    /// Its index in the file.
    pub index: usize,
    /// Bytes of payload (the last chunk may be short).
    pub payload_len: u32,
    /// Its shards, data first.
    pub shards: Vec<ShardInfo>,
}

/// One shard of a chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardInfo {
    /// The node holding it.
    pub node: String,
    /// BLAKE3 of its bytes, hex.
    pub blake3: String,
    /// Its state.
    pub state: ShardState,
}

/// Which chunks of a shard map to show: a file may have thousands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
pub struct ChunkPage {
    /// The first chunk [default: 0].
    #[serde(default)]
    pub offset: usize,
    /// At most this many chunks [default: 1000, at most 10,000].
    #[serde(default = "ChunkPage::default_limit")]
    pub limit: usize,
}

impl ChunkPage {
    fn default_limit() -> usize {
        1000
    }
}

impl Default for ChunkPage {
    fn default() -> Self {
        Self {
            offset: 0,
            limit: Self::default_limit(),
        }
    }
}

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Finding or creating the environment and waiting for it to run.
    Provisioning,
    /// Installing and starting the agent, punching, connecting.
    Bootstrapping,
    /// Serving shards.
    Connected,
    /// Was connected, is not now, and is being brought back.
    Degraded,
    /// Gone for longer than the repair delay: its shards are rebuilt
    /// elsewhere.
    Lost,
    /// Taken offline by the user.
    Offline,
}

impl NodeState {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Bootstrapping => "bootstrapping",
            Self::Connected => "connected",
            Self::Degraded => "degraded",
            Self::Lost => "lost",
            Self::Offline => "offline",
        }
    }
}

/// A node: its state, where it runs, and its capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    /// The node's id: its region for the `default` principal,
    /// `PRINCIPAL:REGION` for another.
    pub id: String,
    /// The region.
    pub region: String,
    /// Whose environment it runs in: `default` (the standard credential
    /// chain) or an AWS profile's name.
    #[serde(default = "default_principal")]
    pub principal: String,
    /// Its state.
    pub state: NodeState,
    /// The CloudShell environment it runs in.
    pub environment_id: Option<String>,
    /// The agent's certificate fingerprint.
    pub fingerprint: Option<String>,
    /// Where it is dialled.
    pub addresses: Vec<String>,
    /// The agent's NAT, as its STUN servers saw it.
    pub nat: Option<String>,
    /// The agent's process id in the environment.
    pub agent_pid: Option<u32>,
    /// Bytes of shards held.
    pub used: u64,
    /// Its quota: the agent's.
    pub quota: u64,
    /// The store's own cap for this node (`store nodes --quota`), if set.
    pub store_quota: Option<u64>,
    /// Bytes free on the disk holding its shards, when known.
    pub disk_free: Option<u64>,
    /// Bytes it can still take: the least of what the quotas leave and
    /// its disk has free.
    pub room: u64,
    /// Too little room for a shard: new chunks go to the other nodes.
    pub full: bool,
    /// Shards held.
    pub shards: u64,
    /// The last thing that went wrong, if the node is not connected.
    pub last_error: Option<String>,
    /// Why it is being drained (it takes no new shards, and its shards
    /// are moved to the other nodes), when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining: Option<String>,
    /// Round trip of the last health check, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Seconds since the Unix epoch of the last heartbeat sent.
    pub last_heartbeat: Option<u64>,
    /// Seconds since the Unix epoch of the last state change.
    pub since: u64,
}

fn default_principal() -> String {
    "default".to_owned()
}

/// `GET /api/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    /// Every node, in configuration order.
    pub nodes: Vec<NodeStatus>,
}

/// One node, after a change to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeAnswer {
    /// The node.
    pub node: NodeStatus,
}

/// `POST /api/nodes`: a region to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewRegion {
    /// The region, say `sa-east-1`.
    pub region: String,
    /// Whose environment: a principal the daemon runs (`default` when
    /// left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// `PUT /api/nodes/{id}/quota`: the store's cap on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewQuota {
    /// A size (`200M`, `1G`, bytes); `null` or `"none"` lifts the cap.
    #[schema(example = "200M")]
    pub quota: Option<String>,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Rebuild missing and corrupt shards of every file.
    Repair,
    /// Move shards from fuller nodes to emptier ones.
    Redistribute,
    /// Drain a node and remove it.
    Remove,
}

impl JobKind {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Repair => "repair",
            Self::Redistribute => "redistribute",
            Self::Remove => "remove",
        }
    }
}

/// A long operation, started by a POST and followed through
/// `GET /api/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Its id.
    pub id: u64,
    /// What it does.
    pub kind: JobKind,
    /// Still under way.
    pub running: bool,
    /// Units done (files for a repair).
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// What it did, once finished.
    pub result: Option<JobResult>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// What a finished job did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum JobResult {
    /// A repair's.
    Repair(RepairResult),
    /// A node's removal (before the redistribution's, whose fields it
    /// has: untagged variants are tried in order).
    Remove(RemoveResult),
    /// A redistribution's.
    Redistribute(RedistributeResult),
}

/// What removing a node did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RemoveResult {
    /// The nodes removed.
    pub nodes: Vec<String>,
    /// Shards copied off them to other nodes.
    pub shards_moved: usize,
    /// Shards they could not give, rebuilt from the others instead.
    pub shards_rebuilt: usize,
    /// What became of each one's environment.
    pub environments: Vec<String>,
}

/// `POST /api/key`: a new passphrase (the old one given to confirm), or a
/// new key file in place of the old.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyChange {
    /// The passphrase in use (a passphrase store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_passphrase: Option<String>,
    /// The passphrase to change to (a passphrase store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_passphrase: Option<String>,
    /// Replace the key file with a new random key (a key file store).
    #[serde(default)]
    pub new_key_file: bool,
}

/// What a key change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyChanged {
    /// Data keys rewrapped under the new key (no shard was rewritten).
    pub rewrapped: usize,
    /// The key file now holding the key, for a key file store.
    pub key_file: Option<String>,
}

/// `POST /api/principals`: a principal to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewPrincipal {
    /// Its name: an AWS profile (the daemon's emulator makes credentials
    /// for any name).
    pub name: String,
    /// Its regions [default: the daemon's configured regions].
    #[serde(default)]
    pub regions: Vec<String>,
}

/// `PATCH /api/files/{name}`: what to change of a file's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileUpdate {
    /// When it was last modified, seconds since the epoch.
    pub modified: i64,
}

/// `POST /api/rename`: a file's new name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rename {
    /// The file's name now.
    pub from: String,
    /// Its new name; a file of that name is replaced.
    pub to: String,
}

/// `POST /api/nodes/{id}/remove` and `POST /api/principals/{name}/remove`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RemoveNode {
    /// Delete its environment (home and all) once drained, instead of
    /// suspending it.
    #[serde(default)]
    pub delete_environment: bool,
}

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RepairResult {
    /// Files looked at.
    pub files: usize,
    /// Chunks that needed shards rebuilt or moved.
    pub chunks_repaired: usize,
    /// Shards rebuilt.
    pub shards_rebuilt: usize,
    /// Shards moved off nodes holding two of a chunk.
    pub shards_spread: usize,
    /// Files not (fully) repaired, and why.
    pub failed: Vec<RepairFailure>,
}

/// A file a repair could not finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RepairFailure {
    /// The file.
    pub name: String,
    /// Why.
    pub error: String,
    /// Shards it could not rebuild.
    pub shards_left: usize,
}

/// What a redistribution did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RedistributeResult {
    /// Shards moved.
    pub shards_moved: usize,
    /// Moves that failed (the shards stayed; running it again retries).
    #[serde(default)]
    pub shards_failed: usize,
}

/// The scrubber's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScrubStatus {
    /// A pass is under way.
    pub running: bool,
    /// Files in the current (or last) pass.
    pub files: usize,
    /// Files done so far.
    pub files_done: usize,
    /// Shards hashed by their agents.
    pub shards_checked: usize,
    /// Shards found missing.
    pub missing: usize,
    /// Shards found corrupt.
    pub corrupt: usize,
    /// Chunks read whole as a spot check.
    pub chunks_read: usize,
    /// Spot checks that failed to read.
    pub read_failures: usize,
    /// Shards rebuilt by the repairs the pass started.
    pub shards_rebuilt: usize,
    /// Orphaned shards deleted.
    pub orphans_deleted: usize,
    /// Seconds since the epoch when the last pass finished.
    pub last_finished: Option<u64>,
}

/// `GET /api/s3/keys`: the S3 endpoint's access keys, without secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// The keys.
    pub keys: Vec<KeySummary>,
    /// The S3 endpoint's URL, when it runs.
    pub endpoint: Option<String>,
}

/// An access key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeySummary {
    /// Its id.
    pub access_key_id: String,
    /// The S3 user it acts as (owner of what it creates).
    #[serde(default = "default_user")]
    pub user: String,
    /// Seconds since the epoch when it was made.
    pub created: u64,
}

/// The user a key belongs to when none is named: keys made before users
/// existed belong to it, and so do buckets made with them.
pub const DEFAULT_USER: &str = "default";

fn default_user() -> String {
    DEFAULT_USER.to_owned()
}

/// `POST /api/s3/keys`: what the new key is for (an empty body is the
/// default user).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyRequest {
    /// The S3 user the key acts as: 1 to 64 of `A-Z a-z 0-9 + = , . @ _ -`
    /// (IAM's user-name characters) [default: `default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "alice")]
    pub user: Option<String>,
}

/// `POST /api/s3/keys`: the new key, with its secret (shown only now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewKey {
    /// The key.
    pub key: AccessKey,
}

/// An access key with its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessKey {
    /// Its id.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    /// The S3 user it acts as (owner of what it creates).
    #[serde(default = "default_user")]
    pub user: String,
    /// Seconds since the epoch when it was made.
    pub created: u64,
}
