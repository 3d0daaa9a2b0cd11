//! Directory listings and name lookups: one paged LIST walk per directory per TTL, the
//! negative cache, `lookup`, and `opendir`/`readdir` over a snapshot of the listing, which
//! skips keys that cannot be file names and files shadowed by a directory.
//!
//! Metadata caching, all governed by one TTL (`--metadata-ttl`, default 60 s, the value
//! Mountpoint uses when a cache is configured):
//! - a directory listing is kept for the TTL, so repeated `ls`, `find` and lookups inside
//!   a listed directory never touch the network; a lookup of a name absent from a fresh
//!   listing is answered ENOENT from memory;
//! - otherwise a lookup asks the store directly (HeadObject on `key` and a one-key
//!   ListObjectsV2 on `key/`, concurrently) and a miss goes to a negative cache
//!   ([`FsConfig::negative_cache_entries`](super::FsConfig::negative_cache_entries) names,
//!   same TTL);
//! - file attributes are trusted for the TTL; `getattr` and `open` after that re-HEAD.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tracing::{debug, warn};

use super::inodes::Inode;
use super::links::Shown;
use super::outage::Revalidated;
use super::{Attr, Kind, Tree, NAME_MAX};
use crate::fs::deadline::within;
use crate::fs::error::FsError;
use crate::store::limits::ListGuard;
use crate::store::{ListRequest, ObjectMeta, StoreError};

/// Does `dir` hold a listing, fresh or not?
fn listing_stale(dir: &Inode) -> bool {
    dir.state.lock().listing.is_some()
}

/// One entry of a directory read; `offset` is the cookie of the next entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub offset: u64,
    pub name: String,
    pub attr: Attr,
}

/// A directory's entries as of `fetched`, sorted by name. Entries are names, not inodes:
/// an inode exists only while the kernel references it.
pub(super) struct Listing {
    fetched: Instant,
    entries: Vec<ListEntry>,
    by_name: HashMap<String, usize>,
    /// Sum of the sizes of the files in it (for `statfs`).
    pub(super) bytes: u64,
}

impl Listing {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Names of the subdirectories, in name order, after `name` (from the first: `None`).
    pub(super) fn subdirs_after<'a>(&'a self, name: Option<&str>) -> impl Iterator<Item = &'a str> {
        let from = name.map_or(0, |n| {
            self.by_name.get(n).map_or(self.entries.len(), |&i| i + 1)
        });
        self.entries[from..]
            .iter()
            .filter(|e| e.kind == Kind::Dir)
            .map(|e| e.name.as_str())
    }
}

struct ListEntry {
    name: String,
    kind: Kind,
    /// Files: what the listing said about the object.
    meta: Option<ObjectMeta>,
    /// Symbolic links: the `readlink` text.
    link: Option<String>,
}

/// An open directory: a snapshot of its listing.
pub(super) struct DirHandle {
    listing: Arc<Listing>,
    /// Unreferenced inodes plain `readdir` reported from it: swept on release.
    unreferenced: Mutex<Vec<u64>>,
}

/// Why a name cannot be a file name, or `None` when it can.
fn invalid_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty path component")
    } else if name == "." || name == ".." {
        Some("component is . or ..")
    } else if name.len() > NAME_MAX {
        Some("component longer than 255 bytes")
    } else if name.contains('\0') {
        Some("component contains NUL")
    } else {
        None
    }
}

impl Tree {
    /// Log once per mount that `key` is not shown, and why.
    fn report(&self, key: &str, why: &str) {
        if self.reported.lock().insert(key.to_string()) {
            warn!(key, "key not shown in the mount: {why}");
        }
    }

    /// A fresh listing of `dir`: the one its inode holds, or the one kept by its key after
    /// the kernel forgot the inode (`drop_caches` and memory pressure forget them all; a
    /// lookup in it then cost a HEAD and a LIST per name, in the bench's `ls` then read of
    /// 2,000 small objects).
    fn fresh_listing(&self, dir: &Inode) -> Option<Arc<Listing>> {
        let held = dir.state.lock().listing.clone();
        held.filter(|l| self.fresh(Some(l.fetched)))
            .or_else(|| self.fresh_listing_by_key(&dir.key))
    }

    /// A fresh listing of directory `key` kept by key (a forgotten directory's, or one read
    /// ahead, see `dir_ahead.rs`).
    pub(super) fn fresh_listing_by_key(&self, key: &str) -> Option<Arc<Listing>> {
        let l = self.stale_listings.lock().get(key)?;
        self.fresh(Some(l.fetched)).then_some(l)
    }

    /// The directory's listing, from memory when fresh, else one paged LIST walk.
    async fn listing(&self, dir: &Arc<Inode>) -> Result<Arc<Listing>, FsError> {
        if let Some(l) = self.fresh_listing(dir) {
            self.hold(dir, &l);
            return Ok(l);
        }
        let _guard = dir.refresh.lock().await;
        // Someone else may have refreshed it while we waited, or it is being read ahead.
        self.wait_for_read_ahead(&dir.key).await;
        if let Some(l) = self.fresh_listing(dir) {
            self.hold(dir, &l);
            return Ok(l);
        }
        let held = dir.state.lock().listing.clone();
        let stale = held.or_else(|| self.stale_listings.lock().get(&dir.key));
        // Stale-if-error (`outage.rs`): the listing held is served while the store is away.
        if self.outage.down() {
            return stale.ok_or_else(|| self.outage.fail_fast(&format!("listing {:?}", dir.key)));
        }
        let listing = match self
            .ask(stale.is_some(), self.fetch_listing(&dir.key, Some(dir.ino)))
            .await
        {
            Revalidated::Answer(r) => Arc::new(r?),
            Revalidated::Unreachable => return Ok(stale.expect("asked with a stale listing")),
        };
        self.stale_listings
            .lock()
            .put(&dir.key, listing.clone(), listing.entries.len());
        self.hold(dir, &listing);
        Ok(listing)
    }

    /// Make `listing` the one `dir`'s inode holds (and counts in `statfs`), if it does not
    /// already: a listing found by key (read ahead, or kept after a forget) as well as one
    /// just fetched.
    fn hold(&self, dir: &Arc<Inode>, listing: &Arc<Listing>) {
        // Installed under the table lock, so a concurrent forget of `dir` cannot remove it
        // between our check and the install (which would leave its bytes counted).
        let table = self.table.read();
        if !table.by_ino.contains_key(&dir.ino) {
            return;
        }
        let mut st = dir.state.lock();
        if st.listing.as_ref().is_some_and(|l| Arc::ptr_eq(l, listing)) {
            return;
        }
        let old = st.listing.replace(listing.clone());
        drop(st);
        self.listed_bytes
            .fetch_add(listing.bytes, Ordering::Relaxed);
        if let Some(old) = old {
            self.listed_bytes.fetch_sub(old.bytes, Ordering::Relaxed);
        }
    }

    /// One paged LIST walk of directory `prefix`; `dir_ino`: its inode, whose children
    /// the kernel holds learn what the listing says (none for a directory read ahead).
    pub(super) async fn fetch_listing(
        &self,
        prefix: &str,
        dir_ino: Option<u64>,
    ) -> Result<Listing, FsError> {
        let prefix = prefix.to_string();
        let mut files: BTreeMap<String, ObjectMeta> = BTreeMap::new();
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        let mut token = None;
        let started = Instant::now();
        let mut pages = 0u32;
        let mut guard = ListGuard::new(format!("listing of {prefix:?}"));
        loop {
            let req = ListRequest {
                prefix: prefix.clone(),
                delimiter: Some("/".to_string()),
                continuation_token: token.take(),
                max_keys: self.config.list_page_size,
            };
            self.counters.lists.fetch_add(1, Ordering::Relaxed);
            // The deadline counts per page, not for the whole listing: a directory of
            // 100,000 keys is 100 pages and may rightly take longer than one deadline, while
            // a page that never comes is cut like any other request.
            let page = within(
                self.config.request_deadline,
                || format!("page {} of the listing of {prefix:?}", pages + 1),
                async { Ok(self.store.list(&req).await?) },
            )
            .await?;
            pages += 1;
            let next = guard.next(&page)?;
            for obj in page.objects {
                let Some(name) = obj.key.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if name.is_empty() {
                    // The directory's own `dir/` marker object.
                    continue;
                }
                if let Some(why) = invalid_name(name) {
                    self.report(&obj.key, why);
                    continue;
                }
                files.insert(name.to_string(), obj);
            }
            for cp in page.common_prefixes {
                let Some(rest) = cp.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                let name = rest.strip_suffix('/').unwrap_or(rest);
                if let Some(why) = invalid_name(name) {
                    self.report(&cp, why);
                    continue;
                }
                dirs.insert(name.to_string());
            }
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        for name in &dirs {
            if let Some(shadowed) = files.remove(name) {
                self.report(
                    &shadowed.key,
                    "a directory of the same name hides this file",
                );
            }
        }
        // Symlink objects: each shows as a link, as its target file, or not at all.
        let link_keys: Vec<String> = files
            .values()
            .filter(|m| m.is_symlink())
            .map(|m| m.key.clone())
            .collect();
        let mut links: BTreeMap<String, String> = BTreeMap::new();
        if !link_keys.is_empty() {
            for (key, shown) in self.show_links(link_keys).await {
                let name = key[prefix.len()..].to_string();
                match shown {
                    Shown::Link(text) => {
                        files.remove(&name);
                        links.insert(name, text);
                    }
                    Shown::File(meta) => {
                        files.insert(name, meta);
                    }
                    Shown::Hidden(why) => {
                        files.remove(&name);
                        self.report(&key, why);
                    }
                }
            }
        }
        debug!(prefix, pages, entries = files.len() + dirs.len() + links.len(), elapsed = ?started.elapsed(), "listed");
        // Inodes the kernel holds for these files learn what the listing says.
        let known: Vec<(Arc<Inode>, ObjectMeta)> = {
            let table = self.table.read();
            files
                .iter()
                .filter_map(|(name, meta)| {
                    let ino = table.by_name.get(&(dir_ino?, name.clone(), Kind::File))?;
                    Some((table.by_ino.get(ino)?.clone(), meta.clone()))
                })
                .collect()
        };
        for (inode, meta) in known {
            self.set_meta(&inode, meta);
        }
        let known_links: Vec<(Arc<Inode>, &String)> = {
            let table = self.table.read();
            links
                .iter()
                .filter_map(|(name, text)| {
                    let ino = table
                        .by_name
                        .get(&(dir_ino?, name.clone(), Kind::Symlink))?;
                    Some((table.by_ino.get(ino)?.clone(), text))
                })
                .collect()
        };
        for (inode, text) in known_links {
            self.set_link(&inode, text);
        }
        let bytes = files.values().map(|m| m.size).sum();
        let mut entries = Vec::with_capacity(files.len() + dirs.len() + links.len());
        for name in dirs {
            entries.push(ListEntry {
                name,
                kind: Kind::Dir,
                meta: None,
                link: None,
            });
        }
        for (name, meta) in files {
            entries.push(ListEntry {
                name,
                kind: Kind::File,
                meta: Some(meta),
                link: None,
            });
        }
        for (name, text) in links {
            entries.push(ListEntry {
                name,
                kind: Kind::Symlink,
                meta: None,
                link: Some(text),
            });
        }
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Ok(Listing {
            fetched: Instant::now(),
            entries,
            by_name,
            bytes,
        })
    }

    /// The inode of listing entry `e` of `dir`, with `refs` references added.
    fn entry_inode(&self, dir: &Inode, l: &Listing, e: &ListEntry, refs: u64) -> Arc<Inode> {
        let meta = e.meta.as_ref().map(|m| (m, l.fetched));
        let inode = self.intern(dir, &e.name, e.kind, meta, refs);
        if let Some(text) = &e.link {
            self.set_link(&inode, text);
        }
        inode
    }

    /// Look `name` up in directory `parent`. A success is one kernel reference to the
    /// returned inode (the kernel counts every lookup reply and forgets them later).
    pub async fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let dir = self.inode(parent)?;
        if dir.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let name = name.to_str().ok_or(FsError::NotFound)?;
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if invalid_name(name).is_some() || name.contains('/') {
            return Err(FsError::NotFound);
        }
        // 1. A fresh listing of the parent answers both ways.
        if let Some(l) = self.fresh_listing(&dir) {
            return match l.by_name.get(name) {
                Some(&i) => Ok(self.attr_of(&self.entry_inode(&dir, &l, &l.entries[i], 1))),
                None => Err(FsError::NotFound),
            };
        }
        // 2. A recent miss.
        let nkey = (parent, name.to_string());
        if let Some(at) = self.negative.lock().get(&nkey).copied() {
            if self.fresh(Some(at)) {
                return Err(FsError::NotFound);
            }
        }
        // 3. An inode seen recently (directories are as fresh as the name; files carry their
        //    own validation time).
        let known_dir = self
            .table
            .read()
            .by_name
            .get(&(parent, name.to_string(), Kind::Dir))
            .copied();
        let known_file = self
            .table
            .read()
            .by_name
            .get(&(parent, name.to_string(), Kind::File))
            .copied();
        if let Some(ino) = known_file {
            let fresh = self
                .inode(ino)
                .is_ok_and(|i| self.fresh(i.state.lock().validated));
            if known_dir.is_none() && fresh {
                // Referenced only if it is still there (a forget may have just removed it).
                let id = (parent, name.to_string(), Kind::File);
                if let Some(inode) = self.find_and_ref(&id, 1) {
                    return Ok(self.attr_of(&inode));
                }
            }
        }
        // 4. Ask the store: is it a directory (anything under `name/`) or an object? While
        //    it is unreachable, what is held answers, or the lookup fails at once.
        let have_stale = listing_stale(&dir)
            || known_dir.is_some()
            || known_file.is_some()
            || self.stale_listings.lock().get(&dir.key).is_some();
        if self.outage.down() {
            return self.stale_lookup(&dir, name).unwrap_or_else(|| {
                Err(self
                    .outage
                    .fail_fast(&format!("lookup of {:?}", format!("{}{name}", dir.key))))
            });
        }
        match self.ask(have_stale, self.remote_lookup(&dir, name)).await {
            Revalidated::Answer(r) => r,
            Revalidated::Unreachable => self.stale_lookup(&dir, name).unwrap_or_else(|| {
                Err(self
                    .outage
                    .fail_fast(&format!("lookup of {:?}", format!("{}{name}", dir.key))))
            }),
        }
    }

    /// A lookup answered from what is held, however old: the parent's listing, else an
    /// inode the kernel still references. `None`: nothing is known of the name.
    fn stale_lookup(&self, dir: &Arc<Inode>, name: &str) -> Option<Result<Attr, FsError>> {
        let listing = dir.state.lock().listing.clone();
        if let Some(l) = listing.or_else(|| self.stale_listings.lock().get(&dir.key)) {
            return Some(match l.by_name.get(name) {
                Some(&i) => Ok(self.attr_of(&self.entry_inode(dir, &l, &l.entries[i], 1))),
                None => Err(FsError::NotFound),
            });
        }
        [Kind::Dir, Kind::File].into_iter().find_map(|kind| {
            let inode = self.find_and_ref(&(dir.ino, name.to_string(), kind), 1)?;
            Some(Ok(self.attr_of(&inode)))
        })
    }

    async fn remote_lookup(&self, dir: &Arc<Inode>, name: &str) -> Result<Attr, FsError> {
        let key = format!("{}{}", dir.key, name);
        let dir_req = ListRequest {
            prefix: format!("{key}/"),
            delimiter: Some("/".to_string()),
            continuation_token: None,
            max_keys: 1,
        };
        self.counters.heads.fetch_add(1, Ordering::Relaxed);
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        let (head, list) = tokio::join!(self.store.head(&key), self.store.list(&dir_req));
        let is_dir = match list {
            Ok(page) => !page.objects.is_empty() || !page.common_prefixes.is_empty(),
            Err(e) => return Err(e.into()),
        };
        if is_dir {
            if head.is_ok() {
                self.report(&key, "a directory of the same name hides this file");
            }
            let inode = self.intern(dir, name, Kind::Dir, None, 1);
            return Ok(self.attr_of(&inode));
        }
        // A link whose target is missing or is a link itself answers HEAD with an error
        // that says so (OSS: SymlinkTargetNotExist, InvalidTargetType).
        let link_error = matches!(&head,
            Err(StoreError::NoSuchKey(e) | StoreError::Other(e))
                if e.code == "SymlinkTargetNotExist" || e.code == "InvalidTargetType");
        if link_error || head.as_ref().is_ok_and(|m| m.is_symlink()) {
            return match self.show_link(&key).await {
                Shown::Link(text) => {
                    let inode = self.intern(dir, name, Kind::Symlink, None, 1);
                    self.set_link(&inode, &text);
                    Ok(self.attr_of(&inode))
                }
                Shown::File(meta) => {
                    let inode =
                        self.intern(dir, name, Kind::File, Some((&meta, Instant::now())), 1);
                    self.set_meta(&inode, meta);
                    Ok(self.attr_of(&inode))
                }
                Shown::Hidden(why) => {
                    self.report(&key, why);
                    Err(FsError::NotFound)
                }
            };
        }
        match head {
            Ok(meta) => {
                let inode = self.intern(dir, name, Kind::File, Some((&meta, Instant::now())), 1);
                self.set_meta(&inode, meta);
                Ok(self.attr_of(&inode))
            }
            Err(StoreError::NoSuchKey(_)) => {
                self.negative
                    .lock()
                    .put((dir.ino, name.to_string()), Instant::now());
                Err(FsError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Start reading a directory: snapshot its listing so a multi-call `readdir` sees one
    /// consistent set of entries.
    pub async fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let dir = self.inode(ino)?;
        if dir.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let listing = self.listing(&dir).await?;
        self.read_ahead_dirs(&dir.key, &listing);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let handle = DirHandle {
            listing,
            unreferenced: Mutex::new(Vec::new()),
        };
        self.dir_handles.lock().insert(fh, Arc::new(handle));
        Ok(fh)
    }

    /// Entries of an open directory from cookie `offset` on (0 = start), `.` and `..` first.
    /// The caller stops adding when its reply buffer is full and asks again from the cookie
    /// of the last entry it kept. Convenience form of [`Tree::readdir_with`] for tests.
    pub fn readdir(&self, ino: u64, fh: u64, offset: u64) -> Result<Vec<DirEntry>, FsError> {
        let mut out = Vec::new();
        self.readdir_with(ino, fh, offset, false, &mut |e| {
            out.push(e);
            false
        })?;
        Ok(out)
    }

    /// Feed entries from cookie `offset` on to `add` until it returns `true` (buffer full).
    /// Work is proportional to what the caller takes, not to the directory: the kernel reads
    /// a 100k-entry directory in thousands of page-sized calls.
    ///
    /// `plus` (readdirplus): every entry `add` accepts, except `.` and `..`, is a kernel
    /// reference to its inode, as for a lookup; the entry that did not fit is not.
    pub fn readdir_with(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        plus: bool,
        add: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<(), FsError> {
        let dir = self.inode(ino)?;
        let handle = self
            .dir_handles
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle(fh))?;
        // The parent is pinned by the kernel while a child is; fall back to the directory
        // itself rather than fail a readdir over `..`.
        let parent = self.inode(dir.parent).unwrap_or_else(|_| dir.clone());
        for (i, (name, inode)) in [(".", &dir), ("..", &parent)].into_iter().enumerate() {
            if (i as u64) >= offset {
                let e = DirEntry {
                    offset: i as u64 + 1,
                    name: name.to_string(),
                    attr: self.attr_of(inode),
                };
                if add(e) {
                    return Ok(());
                }
            }
        }
        let listing = &handle.listing;
        let skip = offset.saturating_sub(2) as usize;
        for (i, entry) in listing.entries.iter().enumerate().skip(skip) {
            let inode = self.entry_inode(&dir, listing, entry, u64::from(plus));
            if !plus && inode.lookups.load(Ordering::Relaxed) == 0 {
                handle.unreferenced.lock().push(inode.ino);
            }
            let e = DirEntry {
                offset: i as u64 + 3,
                name: entry.name.clone(),
                attr: self.attr_of(&inode),
            };
            if add(e) {
                if plus {
                    // Not sent: not a reference.
                    self.forget(&[(inode.ino, 1)]);
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Close a directory handle; inodes that plain `readdir` created for it and that the
    /// kernel has not looked up since are removed.
    pub fn releasedir(&self, fh: u64) {
        let Some(handle) = self.dir_handles.lock().remove(&fh) else {
            return;
        };
        let unreferenced = std::mem::take(&mut *handle.unreferenced.lock());
        if unreferenced.is_empty() {
            return;
        }
        let mut table = self.table.write();
        let mut swept = 0usize;
        for ino in unreferenced {
            let idle = table
                .by_ino
                .get(&ino)
                .is_some_and(|i| i.lookups.load(Ordering::Relaxed) == 0);
            if idle {
                self.remove_locked(&mut table, ino);
                swept += 1;
            }
        }
        tracing::trace!(
            swept,
            left = table.by_ino.len(),
            "swept unreferenced inodes"
        );
    }
}
