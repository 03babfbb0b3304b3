//! Finding and reading the input files of `replay`, `convert` and
//! `inspect`, one set of rules for all three.
//!
//! A directory means the files in it (recursively, in sorted order) whose
//! name ends with an HL7 extension, optionally followed by `.gz`; a file
//! named on the command line is always read. `.gz` files are decompressed
//! as a stream, up to [`MAX_FILE_BYTES`]. Whatever is left out, a file
//! skipped or bytes dropped by the splitter, is counted and named, never
//! passed over in silence.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::split::{self, Dropped, Split};

/// What a directory is searched for unless `--ext` says otherwise.
pub const DEFAULT_EXTENSIONS: &[&str] = &["hl7", "hl7v2", "txt", "msg", "dat"];

/// The most one file may hold (after decompression): files are read whole,
/// and an export larger than this is better split than held in memory.
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// Errors name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds more than {limit} bytes{}; split it into smaller files", .path.display(), if *.compressed { " once decompressed" } else { "" })]
    TooLarge {
        path: PathBuf,
        limit: u64,
        compressed: bool,
    },
    #[error(
        "no messages in {paths} ({files} file(s) read, {skipped} skipped for their extension)"
    )]
    Empty {
        paths: String,
        files: usize,
        skipped: usize,
    },
}

/// Which files a directory stands for.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// Extensions without the dot, compared without case.
    pub extensions: Vec<String>,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            extensions: DEFAULT_EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
        }
    }
}

/// The files to read, and those a directory held that were left out.
#[derive(Debug, Default)]
pub struct Found {
    pub files: Vec<PathBuf>,
    pub skipped: Vec<PathBuf>,
}

impl Discovery {
    /// `--ext hl7,txt`: a list overriding the defaults; empty keeps them.
    pub fn with_extensions(list: &[String]) -> Self {
        let extensions: Vec<String> = list
            .iter()
            .flat_map(|e| e.split(','))
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        if extensions.is_empty() {
            Self::default()
        } else {
            Self { extensions }
        }
    }

    /// Files named in `paths`, and the matching files under each directory
    /// (recursively, each level in sorted order).
    pub fn find(&self, paths: &[PathBuf]) -> Result<Found, InputError> {
        let mut found = Found::default();
        for p in paths {
            if p.is_dir() {
                self.walk(p, &mut found)?;
            } else {
                found.files.push(p.clone());
            }
        }
        Ok(found)
    }

    fn walk(&self, dir: &Path, found: &mut Found) -> Result<(), InputError> {
        let read_err = |source| InputError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(read_err)?;
        entries.sort();
        for e in entries {
            // Hidden entries (.git, editor swap files, .DS_Store) are not
            // messages, nor worth naming.
            if e.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if e.is_dir() {
                self.walk(&e, found)?;
            } else if self.matches(&e) {
                found.files.push(e);
            } else {
                found.skipped.push(e);
            }
        }
        Ok(())
    }

    /// `name.ext` or `name.ext.gz` with `ext` one of the extensions.
    pub fn matches(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        self.extensions.iter().any(|e| {
            name.strip_suffix(e.as_str())
                .is_some_and(|s| s.ends_with('.'))
        })
    }
}

/// A file's bytes: decompressed when it is gzip (by its magic bytes, so a
/// misnamed export still reads), bounded by [`MAX_FILE_BYTES`].
pub fn read(path: &Path) -> Result<Vec<u8>, InputError> {
    let err = |source| InputError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut head = [0u8; 2];
    let mut reader = std::io::BufReader::new(file);
    let gzip = {
        let peeked = std::io::BufRead::fill_buf(&mut reader).map_err(err)?;
        head[..peeked.len().min(2)].copy_from_slice(&peeked[..peeked.len().min(2)]);
        head == [0x1f, 0x8b]
    };
    let mut out = Vec::new();
    let limited = |r: &mut dyn Read, out: &mut Vec<u8>| r.take(MAX_FILE_BYTES + 1).read_to_end(out);
    if gzip {
        // Several members, as `cat a.gz b.gz` makes, are one stream.
        limited(&mut flate2::read::MultiGzDecoder::new(reader), &mut out).map_err(err)?;
    } else {
        limited(&mut reader, &mut out).map_err(err)?;
    }
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
            compressed: gzip,
        });
    }
    Ok(out)
}

/// One file read and split.
pub struct Loaded {
    pub content: Vec<u8>,
    pub split: Split,
}

/// Reads and splits `path`, writing a warning per dropped run of bytes to
/// `warnings` (file, byte offset, length, what; never the bytes).
pub fn load(path: &Path, warnings: &mut impl std::io::Write) -> Result<Loaded, InputError> {
    let content = read(path)?;
    let split = split::split_checked(&content);
    for d in &split.dropped {
        // A warning that cannot be written (stderr closed) is still counted.
        let _ = writeln!(warnings, "{}", warning(path, d));
    }
    Ok(Loaded { content, split })
}

/// `file: byte N: dropped L byte(s): what`.
pub fn warning(path: &Path, d: &Dropped) -> String {
    format!(
        "warning: {}: byte {}: dropped {} byte(s): {}",
        path.display(),
        d.offset,
        d.len,
        d.what
    )
}

/// The `Empty` error for `paths`.
pub fn empty(paths: &[PathBuf], found: &Found) -> InputError {
    InputError::Empty {
        paths: paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        files: found.files.len(),
        skipped: found.skipped.len(),
    }
}

/// The line for skipped files: a count, and with `verbose` each name.
pub fn note_skipped(found: &Found, verbose: bool, notes: &mut impl std::io::Write) {
    if found.skipped.is_empty() {
        return;
    }
    let _ = writeln!(
        notes,
        "skipped {} file(s) without an HL7 extension (--ext changes the list{})",
        found.skipped.len(),
        if verbose {
            ""
        } else {
            "; --verbose names them"
        }
    );
    if verbose {
        for s in &found.skipped {
            let _ = writeln!(notes, "  skipped {}", s.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hl7_extensions_with_or_without_gz_match_and_others_do_not() {
        let d = Discovery::default();
        for yes in [
            "a.hl7", "B.HL7", "c.hl7v2", "d.txt", "e.msg", "f.dat", "g.hl7.gz",
        ] {
            assert!(d.matches(Path::new(yes)), "{yes}");
        }
        for no in [
            "README.md",
            "manifest.toml",
            "hl7",
            "x.gz",
            "x.mllp",
            "xhl7",
        ] {
            assert!(!d.matches(Path::new(no)), "{no}");
        }
        let only = Discovery::with_extensions(&["mllp, .cap".into()]);
        assert!(only.matches(Path::new("a.mllp")) && only.matches(Path::new("a.cap.gz")));
        assert!(!only.matches(Path::new("a.hl7")));
    }
}
