//! The mounted namespace, without I/O: directories made of the stored
//! names' `/`-separated segments, inode numbers that stay with a path for
//! the mount's life (and follow it through renames), directories made here
//! that hold nothing yet, and files created here that are not stored yet.
//!
//! The store has no directories: a name `a/b/c` makes `a` and `a/b`
//! directories. A name that is both a file and a directory's prefix
//! (`a/b` and `a/b/c`) shows as the directory; the file stays reachable
//! through the API.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The root directory's inode number (FUSE's).
pub const ROOT: u64 = 1;

/// Name prefixes the S3 endpoint keeps for its uploads, versions and
/// staging: not shown (their files are pieces, not objects).
pub const HIDDEN: [&str; 3] = [
    cloudshell_s3::meta::UPLOADS_DIR,
    cloudshell_s3::versions::VERSIONS_DIR,
    cloudshell_s3::write::STAGING,
];

/// Where the S3 endpoint keeps its objects: shown, read-only (the daemon
/// refuses writes there from anywhere but S3, whose metadata would no
/// longer match).
pub const READ_ONLY: &str = cloudshell_s3::meta::OBJECTS_DIR;

/// What the mount knows of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// Bytes.
    pub size: u64,
    /// When this version was stored, seconds since the epoch.
    pub modified_secs: i64,
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A file.
    File(FileMeta),
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// Its inode number.
    pub ino: u64,
    /// Its name in the directory.
    pub name: String,
    /// What it is.
    pub kind: Kind,
}

/// The namespace.
#[derive(Debug)]
pub struct Tree {
    /// Stored files by name, as last listed and as changed here since.
    files: BTreeMap<String, FileMeta>,
    /// Directories made here (kept while empty; a listing does not know
    /// them).
    made: BTreeSet<String>,
    /// Files created here and not stored yet: kept through listings.
    pending: BTreeSet<String>,
    inos: HashMap<String, u64>,
    paths: HashMap<u64, String>,
    next_ino: u64,
    /// Bumped by every change made here: a listing requested before a
    /// change may not hold it, and must not undo it.
    generation: u64,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

/// `parent/name`, or `name` in the root.
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether a path is under the S3 endpoint's objects (or is their
/// directory).
pub fn is_read_only(path: &str) -> bool {
    let dir = READ_ONLY.trim_end_matches('/');
    path == dir || path.starts_with(READ_ONLY)
}

fn is_hidden(name: &str) -> bool {
    HIDDEN
        .iter()
        .any(|p| name.starts_with(p) || name == p.trim_end_matches('/'))
}

impl Tree {
    /// An empty namespace: the root alone.
    pub fn new() -> Self {
        let mut t = Self {
            files: BTreeMap::new(),
            made: BTreeSet::new(),
            pending: BTreeSet::new(),
            inos: HashMap::new(),
            paths: HashMap::new(),
            next_ino: ROOT + 1,
            generation: 0,
        };
        t.inos.insert(String::new(), ROOT);
        t.paths.insert(ROOT, String::new());
        t
    }

    /// The change counter a listing is stamped with before it is asked for.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Replaces what is known of the stored files with a listing asked for
    /// at `generation`. Returns false (and changes nothing) when a change
    /// was made here since: the listing may predate it.
    pub fn apply_listing(
        &mut self,
        generation: u64,
        listing: impl IntoIterator<Item = (String, FileMeta)>,
    ) -> bool {
        if generation != self.generation {
            return false;
        }
        let mut files: BTreeMap<String, FileMeta> = listing
            .into_iter()
            .filter(|(name, _)| !is_hidden(name))
            .collect();
        for name in &self.pending {
            if let Some(meta) = self.files.get(name) {
                files.entry(name.clone()).or_insert(*meta);
            }
        }
        self.files = files;
        true
    }

    /// The path of an inode number the kernel holds.
    pub fn path(&self, ino: u64) -> Option<&str> {
        self.paths.get(&ino).map(String::as_str)
    }

    /// The inode number of a path, given one if it has none yet.
    pub fn ino(&mut self, path: &str) -> u64 {
        if let Some(ino) = self.inos.get(path) {
            return *ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inos.insert(path.to_owned(), ino);
        self.paths.insert(ino, path.to_owned());
        ino
    }

    /// What `path` is, if anything.
    pub fn kind(&self, path: &str) -> Option<Kind> {
        if path.is_empty() || self.is_dir(path) {
            return Some(Kind::Dir);
        }
        self.files.get(path).map(|m| Kind::File(*m))
    }

    fn is_dir(&self, path: &str) -> bool {
        if self.made.contains(path) {
            return true;
        }
        let prefix = format!("{path}/");
        self.files
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(n, _)| n.starts_with(&prefix))
    }

    /// Whether a directory holds nothing (no file under it, no directory
    /// made in it).
    pub fn is_empty_dir(&self, path: &str) -> bool {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let has_file = self
            .files
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(n, _)| n.starts_with(&prefix));
        let has_dir = self
            .made
            .range(prefix.clone()..)
            .next()
            .is_some_and(|n| n.starts_with(&prefix));
        !has_file && !has_dir
    }

    /// A directory's entries, sorted by name (`.` and `..` not included).
    pub fn children(&mut self, dir: &str) -> Vec<Child> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut found: BTreeMap<String, Kind> = BTreeMap::new();
        for (name, meta) in self.files.range(prefix.clone()..) {
            let Some(rest) = name.strip_prefix(&prefix) else {
                break;
            };
            match rest.split_once('/') {
                Some((segment, _)) => {
                    found.insert(segment.to_owned(), Kind::Dir);
                }
                None => {
                    found.entry(rest.to_owned()).or_insert(Kind::File(*meta));
                }
            }
        }
        for made in self.made.range(prefix.clone()..) {
            let Some(rest) = made.strip_prefix(&prefix) else {
                break;
            };
            let segment = rest.split('/').next().unwrap_or(rest);
            found.insert(segment.to_owned(), Kind::Dir);
        }
        if dir.is_empty() {
            found.retain(|name, _| !is_hidden(name));
        }
        found
            .into_iter()
            .map(|(name, kind)| Child {
                ino: self.ino(&join(dir, &name)),
                name,
                kind,
            })
            .collect()
    }

    /// Records a file as stored (after a write here, or as created and
    /// not stored yet with `pending`).
    pub fn set_file(&mut self, path: &str, meta: FileMeta, pending: bool) {
        self.generation += 1;
        self.files.insert(path.to_owned(), meta);
        if pending {
            self.pending.insert(path.to_owned());
        } else {
            self.pending.remove(path);
        }
    }

    /// Forgets a file (deleted, or created here and never stored), and
    /// its inode number: a descriptor still open on it writes to nothing
    /// stored (as on a disk, where an unlinked file goes at last close).
    pub fn remove_file(&mut self, path: &str) {
        self.generation += 1;
        self.files.remove(path);
        self.pending.remove(path);
        if let Some(ino) = self.inos.remove(path) {
            self.paths.remove(&ino);
        }
    }

    /// Whether a file was created here and is not stored yet.
    pub fn is_pending(&self, path: &str) -> bool {
        self.pending.contains(path)
    }

    /// Makes an (empty) directory.
    pub fn make_dir(&mut self, path: &str) {
        self.generation += 1;
        self.made.insert(path.to_owned());
    }

    /// Forgets a directory made here.
    pub fn remove_dir(&mut self, path: &str) {
        self.generation += 1;
        self.made.remove(path);
    }

    /// The stored files under a directory, by full name.
    pub fn files_under(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.files
            .range(prefix.clone()..)
            .take_while(|(n, _)| n.starts_with(&prefix))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Moves a file or directory (the names under it, the directories
    /// made in it, and the inode numbers of all of them) from `from` to
    /// `to`, replacing what `to` was.
    pub fn rename(&mut self, from: &str, to: &str) {
        self.generation += 1;
        let from_prefix = format!("{from}/");
        let moved = |p: &str| -> Option<String> {
            if p == from {
                Some(to.to_owned())
            } else {
                p.strip_prefix(&from_prefix).map(|rest| join(to, rest))
            }
        };
        let files: Vec<(String, FileMeta)> = self
            .files
            .iter()
            .filter_map(|(n, m)| moved(n).map(|_| (n.clone(), *m)))
            .collect();
        for (old, meta) in files {
            self.files.remove(&old);
            let pending = self.pending.remove(&old);
            if let Some(new) = moved(&old) {
                if pending {
                    self.pending.insert(new.clone());
                }
                self.files.insert(new, meta);
            }
        }
        let made: Vec<String> = self
            .made
            .iter()
            .filter(|n| moved(n).is_some())
            .cloned()
            .collect();
        for old in made {
            self.made.remove(&old);
            if let Some(new) = moved(&old) {
                self.made.insert(new);
            }
        }
        let inos: Vec<(String, u64)> = self
            .inos
            .iter()
            .filter(|(p, _)| moved(p).is_some())
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        // What `to` was is replaced: its inode numbers name nothing now.
        let replaced: Vec<String> = self
            .inos
            .keys()
            .filter(|p| *p == to || p.starts_with(&format!("{to}/")))
            .cloned()
            .collect();
        for p in replaced {
            if let Some(i) = self.inos.remove(&p) {
                self.paths.remove(&i);
            }
        }
        for (old, _) in &inos {
            self.inos.remove(old);
        }
        for (old, ino) in inos {
            if let Some(new) = moved(&old) {
                self.paths.insert(ino, new.clone());
                self.inos.insert(new, ino);
            }
        }
    }

    /// Files known, for the directory count `df -i` shows.
    pub fn file_count(&self) -> u64 {
        self.files.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> FileMeta {
        FileMeta {
            size,
            modified_secs: 1,
        }
    }

    fn listed(names: &[&str]) -> Tree {
        let mut t = Tree::new();
        let g = t.generation();
        assert!(t.apply_listing(g, names.iter().map(|n| ((*n).to_owned(), meta(3)))));
        t
    }

    fn names(t: &mut Tree, dir: &str) -> Vec<(String, bool)> {
        t.children(dir)
            .into_iter()
            .map(|c| (c.name, c.kind == Kind::Dir))
            .collect()
    }

    #[test]
    fn directories_come_from_the_names_segments() {
        let mut t = listed(&["a/b/c.txt", "a/d.txt", "e.txt", "a/b.txt"]);
        assert_eq!(
            names(&mut t, ""),
            [("a".to_owned(), true), ("e.txt".to_owned(), false)]
        );
        assert_eq!(
            names(&mut t, "a"),
            [
                ("b".to_owned(), true),
                ("b.txt".to_owned(), false),
                ("d.txt".to_owned(), false)
            ]
        );
        assert_eq!(t.kind("a/b"), Some(Kind::Dir));
        assert_eq!(t.kind("a/b/c.txt"), Some(Kind::File(meta(3))));
        assert_eq!(t.kind("a/x"), None);
        assert_eq!(t.kind("a/b/c"), None);
    }

    #[test]
    fn a_name_that_is_also_a_directory_shows_as_the_directory() {
        let mut t = listed(&["a/b", "a/b/c"]);
        assert_eq!(names(&mut t, "a"), [("b".to_owned(), true)]);
        assert_eq!(t.kind("a/b"), Some(Kind::Dir));
    }

    #[test]
    fn the_s3_endpoints_pieces_are_hidden_and_its_objects_shown() {
        let mut t = listed(&[".s3-uploads/x/1", ".s3-versions/a", "s3/bucket/key", "f"]);
        assert_eq!(
            names(&mut t, ""),
            [("f".to_owned(), false), ("s3".to_owned(), true)]
        );
        assert!(is_read_only("s3"));
        assert!(is_read_only("s3/bucket/key"));
        assert!(!is_read_only("s3x"));
    }

    #[test]
    fn inode_numbers_stay_with_a_path_and_follow_renames() {
        let mut t = listed(&["d/one", "d/two", "x"]);
        let d = t.ino("d");
        let one = t.ino("d/one");
        let x = t.ino("x");
        assert_eq!(t.ino("d/one"), one);
        t.rename("d", "e");
        assert_eq!(t.path(d), Some("e"));
        assert_eq!(t.path(one), Some("e/one"));
        assert_eq!(t.kind("e/two"), Some(Kind::File(meta(3))));
        assert_eq!(t.kind("d"), None);
        // A rename onto a file replaces it: its old number names nothing.
        t.rename("e/one", "x");
        assert_eq!(t.path(one), Some("x"));
        assert_eq!(t.path(x), None);
        assert_eq!(t.kind("x"), Some(Kind::File(meta(3))));
    }

    #[test]
    fn made_directories_are_kept_while_empty_and_moved_with_their_parent() {
        let mut t = listed(&["f"]);
        t.make_dir("new");
        t.make_dir("new/inner");
        assert_eq!(t.kind("new"), Some(Kind::Dir));
        assert!(!t.is_empty_dir("new"));
        assert!(t.is_empty_dir("new/inner"));
        // A listing does not know them, and does not drop them.
        let g = t.generation();
        assert!(t.apply_listing(g, [("f".to_owned(), meta(1))]));
        assert_eq!(t.kind("new/inner"), Some(Kind::Dir));
        t.rename("new", "old");
        assert_eq!(t.kind("old/inner"), Some(Kind::Dir));
        assert_eq!(t.kind("new"), None);
        t.remove_dir("old/inner");
        assert!(t.is_empty_dir("old"));
    }

    #[test]
    fn a_removed_files_number_names_nothing_and_its_name_gets_a_new_one() {
        let mut t = listed(&["f"]);
        let old = t.ino("f");
        t.remove_file("f");
        assert_eq!(t.path(old), None);
        t.set_file("f", meta(1), true);
        assert_ne!(t.ino("f"), old);
    }

    #[test]
    fn a_listing_older_than_a_change_here_is_not_applied() {
        let mut t = listed(&["f"]);
        let g = t.generation();
        t.remove_file("f");
        assert!(!t.apply_listing(g, [("f".to_owned(), meta(1))]));
        assert_eq!(t.kind("f"), None);
    }

    #[test]
    fn files_created_here_survive_a_listing_until_stored_or_dropped() {
        let mut t = listed(&[]);
        t.set_file("new.txt", meta(0), true);
        let g = t.generation();
        assert!(t.apply_listing(g, Vec::new()));
        assert_eq!(t.kind("new.txt"), Some(Kind::File(meta(0))));
        t.set_file("new.txt", meta(5), false);
        let g = t.generation();
        assert!(t.apply_listing(g, Vec::new()));
        assert_eq!(t.kind("new.txt"), None);
    }
}
