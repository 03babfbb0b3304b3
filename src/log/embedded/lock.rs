//! One process per role per data directory. Two `serve`s on one store
//! would both ACK and interleave offsets with no one noticing; two stages
//! would fight over the cursor. Each role takes an exclusive lock on a file
//! in the directory at start, and the kernel drops it when the process
//! ends, SIGKILL included. Readers (`tail`, `topics`, `reconcile`,
//! `inspect`) take none, and `serve --no-transform` beside `transform` is
//! one of each role.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Who holds a data directory: the listener, or the stage (in `serve` or
/// `transform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Transform,
}

impl Role {
    fn file(self) -> &'static str {
        match self {
            Role::Serve => "serve.lock",
            Role::Transform => "transform.lock",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Transform => "stage (serve or transform)",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the data directory {dir} is in use: another hl7bridge {role} holds it{holder}. \
         Stop that process first, or give this one another --data-dir"
    )]
    Held {
        dir: PathBuf,
        role: &'static str,
        /// ` (pid N)` when the holder wrote it.
        holder: String,
    },
    #[error("cannot lock the data directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Held while the process owns its role in the directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes `role`'s lock in `dir`, or says who holds it.
    pub fn acquire(dir: &Path, role: Role) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(role.file()))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    role: role.name(),
                    holder: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Ours now: say who we are, for the next one that asks.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_of_a_role_is_refused_with_the_directory_and_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), Role::Serve).unwrap();
        let err = DirLock::acquire(dir.path(), Role::Serve)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        // The other role is free: `serve --no-transform` beside `transform`.
        let stage = DirLock::acquire(dir.path(), Role::Transform).unwrap();
        drop((first, stage));
        DirLock::acquire(dir.path(), Role::Serve).expect("released on drop");
    }
}
