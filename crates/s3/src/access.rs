//! Who may do what, decided without I/O: users, ACLs (canned and explicit
//! grants), bucket policies and the public access block, combined as S3
//! combines them. The guard (`guard.rs`) feeds it what a request is and what the
//! bucket and object say.
//!
//! A user is a name; its canonical id (what S3 XML calls `ID`) is the
//! name's hex, so grants read back to names without a registry. Policies
//! name users as `arn:aws:iam::ACCOUNT:user/NAME` (any account: the store
//! has one), by canonical id, or everyone as `*`.

use serde::{Deserialize, Serialize};

/// The user a key belongs to when none was named (keys and buckets made
/// before users existed are this user's).
pub const DEFAULT_USER: &str = "default";

/// Whether `name` can name a user: IAM's user-name rules (1 to 64 of
/// letters, digits and `+=,.@_-`), so a name here can be an IAM user's.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a user name: use 1 to 64 letters, digits or any of + = , . @ _ -"
        ))
    }
}

/// The group of everyone, signed or not.
pub const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
/// The group of every signed request.
pub const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
/// The log-delivery group (accepted in grants, never a caller here).
pub const LOG_DELIVERY: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No signature.
    Anonymous,
    /// A request signed with one of this user's keys.
    User(String),
}

impl Caller {
    /// The user's name, if signed.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::User(u) => Some(u),
        }
    }

    fn is(&self, user: &str) -> bool {
        self.user() == Some(user)
    }
}

/// A user's canonical id: the hex of its name.
pub fn canonical_id(user: &str) -> String {
    hex::encode(user.as_bytes())
}

/// The user a canonical id names, if it is one of ours.
pub fn user_of_id(id: &str) -> Option<String> {
    let name = String::from_utf8(hex::decode(id).ok()?).ok()?;
    check_user_name(&name).ok()?;
    Some(name)
}

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Permission {
    /// List a bucket; read an object.
    #[serde(rename = "READ")]
    Read,
    /// Create, overwrite and delete a bucket's objects.
    #[serde(rename = "WRITE")]
    Write,
    /// Read the ACL.
    #[serde(rename = "READ_ACP")]
    ReadAcp,
    /// Change the ACL.
    #[serde(rename = "WRITE_ACP")]
    WriteAcp,
    /// All of them.
    #[serde(rename = "FULL_CONTROL")]
    FullControl,
}

impl Permission {
    /// S3's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::ReadAcp => "READ_ACP",
            Self::WriteAcp => "WRITE_ACP",
            Self::FullControl => "FULL_CONTROL",
        }
    }

    /// From S3's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "READ" => Self::Read,
            "WRITE" => Self::Write,
            "READ_ACP" => Self::ReadAcp,
            "WRITE_ACP" => Self::WriteAcp,
            "FULL_CONTROL" => Self::FullControl,
            _ => return None,
        })
    }

    fn covers(self, wanted: Self) -> bool {
        self == Self::FullControl || self == wanted
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grantee {
    /// One user, by name.
    User(String),
    /// A group, by its URI.
    Group(String),
}

impl Grantee {
    fn matches(&self, caller: &Caller, ignore_public: bool) -> bool {
        match self {
            Self::User(u) => caller.is(u),
            Self::Group(_) if ignore_public => false,
            Self::Group(uri) => match uri.as_str() {
                ALL_USERS => true,
                AUTHENTICATED_USERS => caller.user().is_some(),
                _ => false,
            },
        }
    }

    fn is_public(&self) -> bool {
        matches!(self, Self::Group(uri) if uri == ALL_USERS || uri == AUTHENTICATED_USERS)
    }
}

/// One grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// To whom.
    pub grantee: Grantee,
    /// What.
    pub permission: Permission,
}

/// An access control list: an owner and grants. The owner may always read
/// and change the ACL itself (S3's rule); everything else is granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// The owner's user name.
    pub owner: String,
    /// The grants, the owner's own included.
    pub grants: Vec<Grant>,
}

/// Why an ACL could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AclError(pub String);

impl Acl {
    /// Only the owner, with full control.
    pub fn private(owner: &str) -> Self {
        Self {
            owner: owner.to_owned(),
            grants: vec![Grant {
                grantee: Grantee::User(owner.to_owned()),
                permission: Permission::FullControl,
            }],
        }
    }

    /// A canned ACL (`x-amz-acl`) for a resource owned by `owner`;
    /// `bucket_owner` is the bucket's owner, for an object's
    /// `bucket-owner-*` ACLs.
    pub fn canned(name: &str, owner: &str, bucket_owner: &str) -> Result<Self, AclError> {
        let mut acl = Self::private(owner);
        let mut grant = |grantee: Grantee, permission| {
            acl.grants.push(Grant {
                grantee,
                permission,
            })
        };
        match name {
            "private" => {}
            "public-read" => grant(Grantee::Group(ALL_USERS.into()), Permission::Read),
            "public-read-write" => {
                grant(Grantee::Group(ALL_USERS.into()), Permission::Read);
                grant(Grantee::Group(ALL_USERS.into()), Permission::Write);
            }
            "authenticated-read" => {
                grant(Grantee::Group(AUTHENTICATED_USERS.into()), Permission::Read);
            }
            "bucket-owner-read" => {
                if bucket_owner != owner {
                    grant(Grantee::User(bucket_owner.into()), Permission::Read);
                }
            }
            "bucket-owner-full-control" => {
                if bucket_owner != owner {
                    grant(Grantee::User(bucket_owner.into()), Permission::FullControl);
                }
            }
            "log-delivery-write" => {
                grant(Grantee::Group(LOG_DELIVERY.into()), Permission::Write);
                grant(Grantee::Group(LOG_DELIVERY.into()), Permission::ReadAcp);
            }
            "aws-exec-read" => {
                return Err(AclError(
                    "the canned ACL aws-exec-read grants EC2 access, which this store has not; use private or public-read".into(),
                ));
            }
            other => {
                return Err(AclError(format!(
                    "{other:?} is not a canned ACL: use private, public-read, public-read-write, authenticated-read, bucket-owner-read or bucket-owner-full-control"
                )));
            }
        }
        Ok(acl)
    }

    /// Grants from `x-amz-grant-*` headers: `(permission, header value)`,
    /// each value a comma-separated list of `id="..."`, `uri="..."` or
    /// `emailAddress="..."` (refused: there are no e-mail addresses here).
    pub fn from_grant_headers(
        owner: &str,
        headers: &[(Permission, &str)],
    ) -> Result<Self, AclError> {
        let mut acl = Self {
            owner: owner.to_owned(),
            grants: Vec::new(),
        };
        for (permission, value) in headers {
            for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (kind, quoted) = item.split_once('=').ok_or_else(|| {
                    AclError(format!(
                        "{item:?} is not a grantee: write id=\"...\" or uri=\"...\""
                    ))
                })?;
                let v = quoted.trim().trim_matches('"');
                let grantee = match kind.trim().to_ascii_lowercase().as_str() {
                    "id" => Grantee::User(user_of_id(v).ok_or_else(|| {
                        AclError(format!("{v:?} is not the canonical id of a user here"))
                    })?),
                    "uri" => Grantee::Group(check_group(v)?),
                    "emailaddress" => {
                        return Err(AclError(
                            "grants by e-mail address are not supported: grant to id=\"CANONICAL_ID\"".into(),
                        ));
                    }
                    other => {
                        return Err(AclError(format!(
                            "{other:?} is not a grantee type: use id or uri"
                        )));
                    }
                };
                acl.grants.push(Grant {
                    grantee,
                    permission: *permission,
                });
            }
        }
        Ok(acl)
    }

    /// Whether `caller` has `wanted`. With `ignore_public`, grants to the
    /// public groups count for nothing (the public access block's
    /// IgnorePublicAcls).
    pub fn allows(&self, caller: &Caller, wanted: Permission, ignore_public: bool) -> bool {
        if caller.is(&self.owner) && matches!(wanted, Permission::ReadAcp | Permission::WriteAcp) {
            return true;
        }
        self.grants
            .iter()
            .any(|g| g.permission.covers(wanted) && g.grantee.matches(caller, ignore_public))
    }

    /// Whether it grants anything to everyone or every signed request.
    pub fn is_public(&self) -> bool {
        self.grants.iter().any(|g| g.grantee.is_public())
    }
}

/// A group URI, checked.
pub fn check_group(uri: &str) -> Result<String, AclError> {
    match uri {
        ALL_USERS | AUTHENTICATED_USERS | LOG_DELIVERY => Ok(uri.to_owned()),
        other => Err(AclError(format!(
            "{other:?} is not a group: use {ALL_USERS} or {AUTHENTICATED_USERS}"
        ))),
    }
}

/// The public access block of a bucket (all off when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// Refuse ACLs that grant to the public.
    pub block_public_acls: bool,
    /// Treat grants to the public as absent.
    pub ignore_public_acls: bool,
    /// Refuse bucket policies that allow the public.
    pub block_public_policy: bool,
    /// A public policy allows only the bucket's owner.
    pub restrict_public_buckets: bool,
}

/// What a policy says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Some statement allows it and none denies it.
    Allow,
    /// Some statement denies it: nothing else can allow it.
    Deny,
}

/// What a request is, for a policy: its action (`s3:GetObject`), its
/// resource ARN and the values its conditions may test.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// `s3:...`.
    pub action: String,
    /// `arn:aws:s3:::BUCKET` or `arn:aws:s3:::BUCKET/KEY`.
    pub resource: String,
    /// `s3:prefix`, `s3:delimiter`, `s3:max-keys` of a listing.
    pub prefix: Option<String>,
    /// See [`RequestFacts::prefix`].
    pub delimiter: Option<String>,
    /// See [`RequestFacts::prefix`].
    pub max_keys: Option<String>,
    /// The `x-amz-acl` sent.
    pub canned_acl: Option<String>,
    /// Whether it came over TLS.
    pub secure_transport: bool,
}

/// The condition keys a policy may test here.
const CONDITION_KEYS: &[&str] = &[
    "aws:username",
    "aws:userid",
    "aws:securetransport",
    "s3:prefix",
    "s3:delimiter",
    "s3:max-keys",
    "s3:x-amz-acl",
];

/// The condition operators a policy may use here.
const CONDITION_OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "Bool",
    "Null",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalSet {
    Everyone,
    Users(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    operator: String,
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    deny: bool,
    principals: PrincipalSet,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

/// A bucket policy, parsed and checked; the text is kept as given, and is
/// what GetBucketPolicy returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    text: String,
    statements: Vec<Statement>,
}

/// Why a policy was refused (S3's `MalformedPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn one_or_many(v: &serde_json::Value, what: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        serde_json::Value::String(s) => Ok(vec![s.clone()]),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| PolicyError(format!("{what} must be strings")))
            })
            .collect(),
        _ => Err(PolicyError(format!(
            "{what} must be a string or a list of strings"
        ))),
    }
}

fn user_of_principal(p: &str) -> Result<Option<String>, PolicyError> {
    if p == "*" {
        return Ok(None);
    }
    if let Some(rest) = p.strip_prefix("arn:aws:iam::")
        && let Some((_account, name)) = rest.split_once(":user/")
    {
        // An IAM path (`user/path/NAME`) ends in the name.
        let name = name.rsplit('/').next().unwrap_or(name);
        check_user_name(name).map_err(PolicyError)?;
        return Ok(Some(name.to_owned()));
    }
    Err(PolicyError(format!(
        "principal {p:?} is not supported: name a user as arn:aws:iam::ACCOUNT:user/NAME (users are the names keys are made for), or everyone as \"*\""
    )))
}

fn principals(v: &serde_json::Value) -> Result<PrincipalSet, PolicyError> {
    if v.as_str() == Some("*") {
        return Ok(PrincipalSet::Everyone);
    }
    let obj = v.as_object().ok_or_else(|| {
        PolicyError("Principal must be \"*\" or {\"AWS\": ...} or {\"CanonicalUser\": ...}".into())
    })?;
    let mut users = Vec::new();
    for (kind, value) in obj {
        match kind.as_str() {
            "AWS" => {
                for p in one_or_many(value, "AWS principals")? {
                    match user_of_principal(&p)? {
                        None => return Ok(PrincipalSet::Everyone),
                        Some(u) => users.push(u),
                    }
                }
            }
            "CanonicalUser" => {
                for id in one_or_many(value, "CanonicalUser principals")? {
                    users.push(user_of_id(&id).ok_or_else(|| {
                        PolicyError(format!("{id:?} is not the canonical id of a user here"))
                    })?);
                }
            }
            other => {
                return Err(PolicyError(format!(
                    "{other} principals are not supported here: use AWS or CanonicalUser"
                )));
            }
        }
    }
    Ok(PrincipalSet::Users(users))
}

impl Policy {
    /// Parses and checks `text` as the policy of `bucket`. Everything it
    /// cannot enforce is refused, saying what: a policy that is stored
    /// but only partly applied would allow what its author meant to deny.
    pub fn parse(text: &str, bucket: &str) -> Result<Self, PolicyError> {
        let doc: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| PolicyError(format!("the policy is not JSON: {e}")))?;
        let obj = doc
            .as_object()
            .ok_or_else(|| PolicyError("the policy must be a JSON object".into()))?;
        for key in obj.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(PolicyError(format!("unknown policy element {key:?}")));
            }
        }
        if let Some(v) = obj.get("Version")
            && !matches!(v.as_str(), Some("2012-10-17" | "2008-10-17"))
        {
            return Err(PolicyError(
                "Version must be \"2012-10-17\" (or \"2008-10-17\")".into(),
            ));
        }
        let raw = match obj.get("Statement") {
            Some(serde_json::Value::Array(items)) => items.clone(),
            Some(one @ serde_json::Value::Object(_)) => vec![one.clone()],
            _ => return Err(PolicyError("the policy needs a Statement list".into())),
        };
        if raw.is_empty() {
            return Err(PolicyError("the policy has no statements".into()));
        }
        let mut statements = Vec::new();
        for s in &raw {
            statements.push(Self::statement(s, bucket)?);
        }
        Ok(Self {
            text: text.to_owned(),
            statements,
        })
    }

    fn statement(s: &serde_json::Value, bucket: &str) -> Result<Statement, PolicyError> {
        let obj = s
            .as_object()
            .ok_or_else(|| PolicyError("each statement must be an object".into()))?;
        for key in obj.keys() {
            match key.as_str() {
                "Sid" | "Effect" | "Principal" | "Action" | "Resource" | "Condition" => {}
                "NotPrincipal" | "NotAction" | "NotResource" => {
                    return Err(PolicyError(format!(
                        "{key} is not supported here: write the statement with {}",
                        &key[3..]
                    )));
                }
                other => return Err(PolicyError(format!("unknown statement element {other:?}"))),
            }
        }
        let deny = match obj.get("Effect").and_then(|e| e.as_str()) {
            Some("Allow") => false,
            Some("Deny") => true,
            _ => return Err(PolicyError("Effect must be \"Allow\" or \"Deny\"".into())),
        };
        let principals =
            principals(obj.get("Principal").ok_or_else(|| {
                PolicyError("a bucket policy statement needs a Principal".into())
            })?)?;
        let actions = one_or_many(
            obj.get("Action")
                .ok_or_else(|| PolicyError("a statement needs an Action".into()))?,
            "actions",
        )?;
        for a in &actions {
            let lower = a.to_ascii_lowercase();
            if lower != "*" && !lower.starts_with("s3:") {
                return Err(PolicyError(format!(
                    "action {a:?} is not an S3 action (s3:...)"
                )));
            }
        }
        let resources = one_or_many(
            obj.get("Resource")
                .ok_or_else(|| PolicyError("a statement needs a Resource".into()))?,
            "resources",
        )?;
        let own = format!("arn:aws:s3:::{bucket}");
        for r in &resources {
            if r != &own && !r.starts_with(&format!("{own}/")) {
                return Err(PolicyError(format!(
                    "Policy has invalid resource {r:?}: a policy of {bucket} names {own} or {own}/KEY (wildcards allowed)"
                )));
            }
        }
        let mut conditions = Vec::new();
        if let Some(c) = obj.get("Condition") {
            let ops = c
                .as_object()
                .ok_or_else(|| PolicyError("Condition must be an object".into()))?;
            for (operator, tests) in ops {
                if !CONDITION_OPERATORS.contains(&operator.as_str()) {
                    return Err(PolicyError(format!(
                        "condition operator {operator:?} is not supported here; supported: {}",
                        CONDITION_OPERATORS.join(", ")
                    )));
                }
                let tests = tests
                    .as_object()
                    .ok_or_else(|| PolicyError(format!("{operator} must map keys to values")))?;
                for (key, values) in tests {
                    let lower = key.to_ascii_lowercase();
                    if !CONDITION_KEYS.contains(&lower.as_str()) {
                        return Err(PolicyError(format!(
                            "condition key {key:?} is not supported here; supported: {}",
                            CONDITION_KEYS.join(", ")
                        )));
                    }
                    let values = match values {
                        serde_json::Value::Bool(b) => vec![b.to_string()],
                        serde_json::Value::Number(n) => vec![n.to_string()],
                        other => one_or_many(other, "condition values")?,
                    };
                    conditions.push(Condition {
                        operator: operator.clone(),
                        key: lower,
                        values,
                    });
                }
            }
        }
        Ok(Statement {
            deny,
            principals,
            actions,
            resources,
            conditions,
        })
    }

    /// The policy as it was given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether some statement allows everyone without a condition that
    /// narrows who (S3's notion of a public policy, simplified: any
    /// condition counts as narrowing).
    pub fn is_public(&self) -> bool {
        self.statements
            .iter()
            .any(|s| !s.deny && s.principals == PrincipalSet::Everyone && s.conditions.is_empty())
    }

    /// What the policy says about `caller` doing `facts`. With
    /// `owner_only_public`, statements for everyone count only for
    /// `owner` (the public access block's RestrictPublicBuckets on a
    /// public policy).
    pub fn evaluate(
        &self,
        caller: &Caller,
        facts: &RequestFacts,
        restrict_public_to: Option<&str>,
    ) -> Option<Effect> {
        let mut allowed = false;
        for s in &self.statements {
            let who = match &s.principals {
                PrincipalSet::Everyone => match restrict_public_to {
                    Some(owner) if !s.deny => caller.is(owner),
                    _ => true,
                },
                PrincipalSet::Users(users) => users.iter().any(|u| caller.is(u)),
            };
            if !who
                || !s
                    .actions
                    .iter()
                    .any(|a| glob(&a.to_ascii_lowercase(), &facts.action.to_ascii_lowercase()))
                || !s.resources.iter().any(|r| glob(r, &facts.resource))
                || !s.conditions.iter().all(|c| c.holds(caller, facts))
            {
                continue;
            }
            if s.deny {
                return Some(Effect::Deny);
            }
            allowed = true;
        }
        allowed.then_some(Effect::Allow)
    }
}

impl Condition {
    fn value(&self, caller: &Caller, facts: &RequestFacts) -> Option<String> {
        match self.key.as_str() {
            "aws:username" => caller.user().map(str::to_owned),
            "aws:userid" => caller.user().map(canonical_id),
            "aws:securetransport" => Some(facts.secure_transport.to_string()),
            "s3:prefix" => facts.prefix.clone(),
            "s3:delimiter" => facts.delimiter.clone(),
            "s3:max-keys" => facts.max_keys.clone(),
            "s3:x-amz-acl" => facts.canned_acl.clone(),
            _ => None,
        }
    }

    fn holds(&self, caller: &Caller, facts: &RequestFacts) -> bool {
        let value = self.value(caller, facts);
        let any = |f: &dyn Fn(&str, &str) -> bool| {
            value
                .as_deref()
                .is_some_and(|v| self.values.iter().any(|want| f(want, v)))
        };
        match self.operator.as_str() {
            "StringEquals" => any(&|w, v| w == v),
            "StringNotEquals" => !any(&|w, v| w == v),
            "StringEqualsIgnoreCase" => any(&|w, v| w.eq_ignore_ascii_case(v)),
            "StringNotEqualsIgnoreCase" => !any(&|w, v| w.eq_ignore_ascii_case(v)),
            "StringLike" => any(&|w, v| glob(w, v)),
            "StringNotLike" => !any(&|w, v| glob(w, v)),
            "Bool" => any(&|w, v| w.eq_ignore_ascii_case(v)),
            "Null" => {
                let absent = value.is_none();
                self.values
                    .iter()
                    .any(|w| w.eq_ignore_ascii_case(&absent.to_string()))
            }
            _ => false,
        }
    }
}

/// IAM's wildcard match: `*` any run, `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: &str) -> Caller {
        Caller::User(n.into())
    }

    fn facts(action: &str, resource: &str) -> RequestFacts {
        RequestFacts {
            action: action.into(),
            resource: resource.into(),
            ..Default::default()
        }
    }

    #[test]
    fn canned_acls_grant_what_s3_grants() {
        let acl = Acl::canned("public-read", "alice", "alice").unwrap();
        assert!(acl.allows(&Caller::Anonymous, Permission::Read, false));
        assert!(!acl.allows(&Caller::Anonymous, Permission::Write, false));
        assert!(!acl.allows(&Caller::Anonymous, Permission::Read, true));
        assert!(acl.allows(&user("alice"), Permission::Write, false));
        assert!(acl.is_public());
        let acl = Acl::canned("authenticated-read", "alice", "alice").unwrap();
        assert!(acl.allows(&user("bob"), Permission::Read, false));
        assert!(!acl.allows(&Caller::Anonymous, Permission::Read, false));
        let acl = Acl::canned("bucket-owner-read", "bob", "alice").unwrap();
        assert!(acl.allows(&user("alice"), Permission::Read, false));
        assert!(!acl.allows(&user("alice"), Permission::WriteAcp, false));
        let private = Acl::canned("private", "alice", "alice").unwrap();
        assert!(!private.allows(&user("bob"), Permission::Read, false));
        assert!(!private.is_public());
        let e = Acl::canned("public", "a", "a").unwrap_err();
        assert!(e.0.contains("public-read"), "{e}");
    }

    #[test]
    fn the_owner_keeps_the_acl_itself_even_without_a_grant() {
        let acl = Acl {
            owner: "alice".into(),
            grants: vec![],
        };
        assert!(acl.allows(&user("alice"), Permission::WriteAcp, false));
        assert!(!acl.allows(&user("alice"), Permission::Read, false));
    }

    #[test]
    fn grant_headers_name_users_by_canonical_id_and_groups_by_uri() {
        let id = canonical_id("bob");
        let value = format!("id=\"{id}\", uri=\"{ALL_USERS}\"");
        let acl = Acl::from_grant_headers("alice", &[(Permission::Read, &value)]).unwrap();
        assert!(acl.allows(&user("bob"), Permission::Read, false));
        assert!(acl.allows(&Caller::Anonymous, Permission::Read, false));
        assert_eq!(user_of_id(&id).as_deref(), Some("bob"));
        let e = Acl::from_grant_headers("a", &[(Permission::Read, "emailAddress=\"x@y\"")])
            .unwrap_err();
        assert!(e.0.contains("e-mail"), "{e}");
        assert!(Acl::from_grant_headers("a", &[(Permission::Read, "uri=\"http://x\"")]).is_err());
    }

    #[test]
    fn policies_allow_deny_and_refuse_what_they_cannot_enforce() {
        let text = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/public/*"},
            {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"Action":["s3:List*"],"Resource":"arn:aws:s3:::b",
             "Condition":{"StringLike":{"s3:prefix":"bob/*"}}},
            {"Effect":"Deny","Principal":{"AWS":["*"]},"Action":"s3:*","Resource":"arn:aws:s3:::b/secret/*"}]}"#;
        let p = Policy::parse(text, "b").unwrap();
        assert!(p.is_public());
        let get = |key: &str| facts("s3:GetObject", &format!("arn:aws:s3:::b/{key}"));
        assert_eq!(
            p.evaluate(&Caller::Anonymous, &get("public/x"), None),
            Some(Effect::Allow)
        );
        assert_eq!(p.evaluate(&Caller::Anonymous, &get("other"), None), None);
        assert_eq!(
            p.evaluate(&user("alice"), &get("secret/x"), None),
            Some(Effect::Deny)
        );
        assert_eq!(
            p.evaluate(&Caller::Anonymous, &get("public/x"), Some("alice")),
            None,
            "RestrictPublicBuckets keeps public statements to the owner"
        );
        let mut list = facts("s3:ListBucket", "arn:aws:s3:::b");
        list.prefix = Some("bob/photos".into());
        assert_eq!(p.evaluate(&user("bob"), &list, None), Some(Effect::Allow));
        list.prefix = Some("alice/".into());
        assert_eq!(p.evaluate(&user("bob"), &list, None), None);
        list.prefix = None;
        assert_eq!(p.evaluate(&user("bob"), &list, None), None);

        for (bad, says) in [
            ("{", "not JSON"),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}]}"#,
                "invalid resource",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","NotPrincipal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#,
                "NotPrincipal",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#,
                "IpAddress",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringEquals":{"aws:Referer":"x"}}}]}"#,
                "aws:Referer",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"x"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#,
                "Service",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ec2:Run","Resource":"arn:aws:s3:::b/*"}]}"#,
                "not an S3 action",
            ),
        ] {
            let e = Policy::parse(bad, "b").unwrap_err();
            assert!(e.0.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn user_names_follow_iam() {
        assert!(check_user_name("alice.b@example-1").is_ok());
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn globs_match_as_iam_does() {
        assert!(glob("s3:get*", "s3:getobject"));
        assert!(glob("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b"));
        assert!(!glob("arn:aws:s3:::b/*", "arn:aws:s3:::b"));
        assert!(glob("a?c", "abc"));
        assert!(glob("*", ""));
        assert!(!glob("a*b", "acbd"));
    }
}
