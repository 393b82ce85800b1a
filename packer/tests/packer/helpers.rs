//! Test helpers: real git repositories in temporary directories, and a way
//! to read back what a build packed.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use deploy::{AppName, Manifest, Version};
use git2::{IndexAddOption, Repository, RepositoryInitOptions, Signature, Time};
use packer::{BuildError, BuildOutput, BuildRequest};

/// A non-bare repository whose commits go on `main` (or the branch
/// [`TestRepo::switch`] chose).
pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub repo: Repository,
    /// Commit times count up from here, one second a commit.
    next_time: i64,
}

pub const FIRST_COMMIT_TIME: i64 = 1_700_000_000;

impl TestRepo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = Repository::init_opts(dir.path(), &opts).unwrap();
        Self {
            dir,
            repo,
            next_time: FIRST_COMMIT_TIME,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        self.path().display().to_string()
    }

    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    pub fn chmod(&self, rel: &str, mode: u32) -> &Self {
        std::fs::set_permissions(self.path().join(rel), std::fs::Permissions::from_mode(mode))
            .unwrap();
        self
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        std::os::unix::fs::symlink(target, self.path().join(rel)).unwrap();
        self
    }

    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.path().join(rel)).unwrap();
        self
    }

    /// Commits the whole work tree on the current branch; returns the full
    /// sha.
    pub fn commit(&mut self, message: &str) -> String {
        let mut index = self.repo.index().unwrap();
        index.add_all(["*"], IndexAddOption::DEFAULT, None).unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree_id = index.write_tree().unwrap();
        let tree = self.repo.find_tree(tree_id).unwrap();
        let sig =
            Signature::new("Test", "test@example.com", &Time::new(self.next_time, 0)).unwrap();
        self.next_time += 1;
        let parent = self
            .repo
            .head()
            .ok()
            .and_then(|h| h.target())
            .map(|oid| self.repo.find_commit(oid).unwrap());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap();
        oid.to_string()
    }

    /// Points `HEAD` at branch `name` (made at the current commit when it
    /// does not exist): the next commits go there.
    pub fn switch(&self, name: &str) {
        if self
            .repo
            .find_branch(name, git2::BranchType::Local)
            .is_err()
        {
            let head = self.repo.head().unwrap().peel_to_commit().unwrap();
            self.repo.branch(name, &head, false).unwrap();
        }
        self.repo.set_head(&format!("refs/heads/{name}")).unwrap();
    }

    /// Commits the work tree as a merge of the current branch and `other`
    /// (the merge's second parent); returns the full sha.
    pub fn merge(&mut self, message: &str, other: &str) -> String {
        let mut index = self.repo.index().unwrap();
        index.add_all(["*"], IndexAddOption::DEFAULT, None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig =
            Signature::new("Test", "test@example.com", &Time::new(self.next_time, 0)).unwrap();
        self.next_time += 1;
        let first = self.repo.head().unwrap().peel_to_commit().unwrap();
        let second = self
            .repo
            .find_commit(git2::Oid::from_str(other).unwrap())
            .unwrap();
        let oid = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&first, &second])
            .unwrap();
        oid.to_string()
    }

    pub fn tag_lightweight(&self, name: &str, commit: &str) {
        let obj = self.repo.revparse_single(commit).unwrap();
        self.repo.tag_lightweight(name, &obj, false).unwrap();
    }

    pub fn tag_annotated(&self, name: &str, commit: &str) {
        let obj = self.repo.revparse_single(commit).unwrap();
        let sig = Signature::new("Test", "test@example.com", &Time::new(1, 0)).unwrap();
        self.repo.tag(name, &obj, &sig, "release", false).unwrap();
    }

    pub fn branch(&self, name: &str, commit: &str) {
        let c = self
            .repo
            .find_commit(git2::Oid::from_str(commit).unwrap())
            .unwrap();
        self.repo.branch(name, &c, false).unwrap();
    }

    /// A bare clone, as a server would hold it.
    pub fn bare_clone(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git2::build::RepoBuilder::new()
            .bare(true)
            .clone(&self.url(), &dir.path().join("repo.git"))
            .unwrap();
        dir
    }
}

/// A build of one commit with fresh scratch and output directories.
pub struct Build {
    pub app: AppName,
    pub version: Version,
    pub work: tempfile::TempDir,
    pub out: tempfile::TempDir,
    /// No cache unless a test gives one.
    pub settings: packer::Settings,
    /// The app's root in a monorepo; the whole repository when `None`.
    pub root: Option<deploy::AppRoot>,
}

impl Build {
    pub fn new(commit: &str) -> Self {
        Self {
            app: AppName::parse("hello").unwrap(),
            version: Version::for_build(7, commit).unwrap(),
            work: tempfile::tempdir().unwrap(),
            out: tempfile::tempdir().unwrap(),
            settings: packer::Settings::default(),
            root: None,
        }
    }

    /// The same, keeping mirrors and dependencies under `cache`.
    pub fn cached(commit: &str, cache: &Path) -> Self {
        let mut b = Self::new(commit);
        b.settings.cache_dir = Some(cache.to_path_buf());
        b
    }

    pub fn run(&self, git_url: &str, commit: &str) -> Result<BuildOutput, BuildError> {
        packer::build(&BuildRequest {
            app: &self.app,
            git_url,
            commit,
            root: self.root.as_ref(),
            version: &self.version,
            work_dir: self.work.path(),
            out_dir: self.out.path(),
            settings: &self.settings,
            log_sink: None,
        })
    }
}

/// One entry of an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: tar::EntryType,
    pub mode: u32,
    pub mtime: u64,
    pub link: Option<PathBuf>,
    pub data: Vec<u8>,
}

/// Reads an artifact back: entries by path, in archive order.
pub fn unpack(path: &Path) -> Vec<(String, Entry)> {
    let f = std::fs::File::open(path).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((
            e.path().unwrap().display().to_string(),
            Entry {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                mtime: h.mtime().unwrap(),
                link: e.link_name().unwrap().map(|l| l.into_owned()),
                data,
            },
        ));
    }
    out
}

pub fn by_path(entries: &[(String, Entry)]) -> BTreeMap<String, Entry> {
    entries.iter().cloned().collect()
}

pub fn manifest_of(entries: &[(String, Entry)]) -> Manifest {
    let m = by_path(entries);
    serde_json::from_slice(&m[deploy::MANIFEST_PATH].data).unwrap()
}
