//! End users' OAuth tokens in a file: `credentials.json` under the user's
//! config directory (`$XDG_CONFIG_HOME/mcp-group/`, else
//! `~/.config/mcp-group/`), one entry per credential key (principal,
//! authorization-server issuer, resource).
//!
//! The file is the user's alone: created `0600` in a `0700` directory,
//! written whole to a temporary file and renamed over the old one (a
//! reader never sees half a file), and not read at all when group or
//! others may read it (like ssh's private keys).
//!
//! Several `mcp-group` processes may share it. A refresh runs under an
//! exclusive `flock` of `credentials.json.refresh-lock` (and a per-key lock
//! inside the process), held from loading the refresh token to saving its
//! successor, so a rotating refresh token is sent once; every write
//! re-reads the file under `credentials.json.write-lock`, so writers of
//! different keys do not lose each other's entries.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use mcp_group::{
    core::CredentialKey,
    http::{
        TokenStore,
        credentials::{AuthError, CredentialRefreshGuard, CredentialStore, StoredCredentials},
    },
};
use serde::{Deserialize, Serialize};

/// The file's contents.
#[derive(Default, Serialize, Deserialize)]
struct Contents {
    #[serde(default)]
    credentials: Vec<Entry>,
}

/// One stored credential.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) principal: Option<String>,
    pub(crate) issuer: String,
    pub(crate) resource: String,
    pub(crate) stored: StoredCredentials,
}

impl Entry {
    fn is(&self, key: &CredentialKey) -> bool {
        self.principal.as_deref() == key.principal()
            && self.issuer == key.issuer()
            && self.resource == key.resource()
    }
}

/// The token file, as a [`TokenStore`].
#[derive(Clone)]
pub(crate) struct FileTokenStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Per key, the in-process half of the refresh guard.
    refresh: std::sync::Mutex<HashMap<CredentialKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl FileTokenStore {
    /// The store at `credentials.json` in the user's config directory.
    pub(crate) fn open_default() -> Result<Self, String> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|dir| !dir.is_empty())
                    .map(|home| PathBuf::from(home).join(".config"))
            })
            .ok_or("neither XDG_CONFIG_HOME nor HOME is set: no place for the token file")?;
        Ok(Self::at(base.join("mcp-group").join("credentials.json")))
    }

    /// The store at `path`.
    pub(crate) fn at(path: PathBuf) -> Self {
        Self {
            inner: Arc::new(Inner {
                path,
                refresh: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Every stored credential.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>, String> {
        Ok(self.inner.read()?.credentials)
    }

    /// Removes the entries `remove` picks; how many went.
    pub(crate) fn remove(&self, remove: impl Fn(&Entry) -> bool) -> Result<usize, String> {
        self.inner.update(|contents| {
            let before = contents.credentials.len();
            contents.credentials.retain(|entry| !remove(entry));
            before - contents.credentials.len()
        })
    }
}

impl Inner {
    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    fn read(&self) -> Result<Contents, String> {
        let shown = self.path.display();
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::default()),
            Err(e) => return Err(format!("cannot open {shown}: {e}")),
        };
        let mode = file
            .metadata()
            .map_err(|e| format!("cannot read {shown}: {e}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{shown} holds OAuth tokens but others may access it (mode {:o}): run `chmod 600 {shown}`",
                mode & 0o777
            ));
        }
        serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|e| format!("{shown} is not a token file: {e}"))
    }

    /// Reads, changes and writes the file under the write lock.
    fn update<T>(&self, change: impl FnOnce(&mut Contents) -> T) -> Result<T, String> {
        self.ensure_dir()?;
        let _lock = lock_file(&self.sibling(".write-lock"))?;
        let mut contents = self.read()?;
        let result = change(&mut contents);
        self.write(&contents)?;
        Ok(result)
    }

    fn ensure_dir(&self) -> Result<(), String> {
        let Some(dir) = self.path.parent() else {
            return Ok(());
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
    }

    /// Writes `contents` to a `0600` temporary file, then renames it over
    /// the file.
    fn write(&self, contents: &Contents) -> Result<(), String> {
        let temporary = self.sibling(&format!(".{}.tmp", std::process::id()));
        let shown = temporary.display();
        let json = serde_json::to_vec_pretty(contents)
            .map_err(|e| format!("cannot encode the token file: {e}"))?;
        let _ = std::fs::remove_file(&temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| format!("cannot create {shown}: {e}"))?;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {shown}: {e}"))?;
        std::fs::rename(&temporary, &self.path)
            .map_err(|e| format!("cannot replace {}: {e}", self.path.display()))
    }
}

/// An exclusive `flock` of `path` (created `0600`), released when the file
/// is dropped. Blocks the thread: call it off the async runtime's workers
/// when it may wait long.
fn lock_file(path: &Path) -> Result<File, String> {
    use std::os::fd::AsRawFd;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; no memory involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    if locked != 0 {
        return Err(format!(
            "cannot lock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(file)
}

impl TokenStore for FileTokenStore {
    fn slot(&self, key: &CredentialKey) -> Arc<dyn CredentialStore> {
        Arc::new(FileSlot {
            inner: self.inner.clone(),
            key: key.clone(),
        })
    }
}

/// One key's credentials in the file.
struct FileSlot {
    inner: Arc<Inner>,
    key: CredentialKey,
}

fn store_error(message: String) -> AuthError {
    AuthError::CredentialStoreError(message)
}

#[mcp_group::core::async_trait]
impl CredentialStore for FileSlot {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        let contents = self.inner.read().map_err(store_error)?;
        Ok(contents
            .credentials
            .into_iter()
            .find(|entry| entry.is(&self.key))
            .map(|entry| entry.stored))
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let key = &self.key;
        self.inner
            .update(|contents| {
                let entry = Entry {
                    principal: key.principal().map(str::to_owned),
                    issuer: key.issuer().to_owned(),
                    resource: key.resource().to_owned(),
                    stored: credentials,
                };
                match contents.credentials.iter_mut().find(|e| e.is(key)) {
                    Some(existing) => *existing = entry,
                    None => contents.credentials.push(entry),
                }
            })
            .map_err(store_error)
    }

    async fn clear(&self) -> Result<(), AuthError> {
        let key = &self.key;
        self.inner
            .update(|contents| contents.credentials.retain(|e| !e.is(key)))
            .map_err(store_error)
    }

    async fn acquire_refresh_guard(&self) -> Result<Option<CredentialRefreshGuard>, AuthError> {
        let in_process = {
            let mut locks = self
                .inner
                .refresh
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.entry(self.key.clone()).or_default().clone()
        };
        let in_process = in_process.lock_owned().await;
        self.inner.ensure_dir().map_err(store_error)?;
        let path = self.inner.sibling(".refresh-lock");
        // Another process may hold it for a whole token request.
        let across_processes = tokio::task::spawn_blocking(move || lock_file(&path))
            .await
            .map_err(|e| store_error(format!("the refresh lock task failed: {e}")))?
            .map_err(store_error)?;
        Ok(Some(CredentialRefreshGuard::new((
            in_process,
            across_processes,
        ))))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn credentials(client: &str) -> StoredCredentials {
        StoredCredentials::new(client.to_owned(), None, vec!["read".into()], Some(1))
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mcp-group-token-file-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn saved_credentials_come_back_per_key_from_a_0600_file() {
        let dir = temp_dir("roundtrip");
        let store = FileTokenStore::at(dir.join("sub").join("credentials.json"));
        let alice = CredentialKey::new(Some("alice"), "https://as", "https://mcp");
        let bob = CredentialKey::new(Some("bob"), "https://as", "https://mcp");
        store.slot(&alice).save(credentials("a")).await.unwrap();
        store.slot(&bob).save(credentials("b")).await.unwrap();
        let loaded = store.slot(&alice).load().await.unwrap().unwrap();
        assert_eq!(loaded.client_id, "a");
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(dir.join("sub"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        store.slot(&alice).clear().await.unwrap();
        assert!(store.slot(&alice).load().await.unwrap().is_none());
        assert!(store.slot(&bob).load().await.unwrap().is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_file_others_can_read_is_refused() {
        let dir = temp_dir("mode");
        let store = FileTokenStore::at(dir.join("credentials.json"));
        let key = CredentialKey::new(None, "https://as", "https://mcp");
        store.slot(&key).save(credentials("a")).await.unwrap();
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = store.slot(&key).load().await.unwrap_err();
        assert!(error.to_string().contains("chmod 600"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
