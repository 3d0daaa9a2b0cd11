//! The world outside the process as the credential sources see it: environment variables,
//! files and the clock. Injected so that unit tests never read or change the process
//! environment (which is shared by every test thread) nor a real home directory.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;

pub trait System: Send + Sync {
    /// An environment variable, `None` when unset or empty.
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &Path) -> io::Result<String>;
    fn now(&self) -> SystemTime;
    /// The home directory, for `~/.aliyun` and `~/.alibabacloud`.
    fn home(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from)
    }
}

/// The real process environment, file system and clock.
pub struct RealSystem;

impl System for RealSystem {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A made-up world for tests: variables and files from maps, the real clock unless set.
#[derive(Default)]
pub struct FakeSystem {
    pub vars: HashMap<String, String>,
    pub files: Mutex<HashMap<PathBuf, String>>,
    pub now: Mutex<Option<SystemTime>>,
}

impl FakeSystem {
    pub fn with_vars(pairs: &[(&str, &str)]) -> Self {
        FakeSystem {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    pub fn file(self, path: &str, text: &str) -> Self {
        self.files.lock().insert(PathBuf::from(path), text.into());
        self
    }
}

impl System for FakeSystem {
    fn var(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .cloned()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .lock()
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn now(&self) -> SystemTime {
        self.now.lock().unwrap_or_else(SystemTime::now)
    }
}
