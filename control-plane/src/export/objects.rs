//! Stored objects: the values of a file's storage columns are keys in the
//! application's file store; each object is copied, byte for byte, into
//! `files/<file name>/<key>`. A key is made safe as a path inside the
//! archive (no `..`, no absolute path, no backslash), and one object named
//! twice is copied once.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use sha2::Digest;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::error::ExportError;

/// Folder of the stored objects in the archive.
pub const FILES_DIR: &str = "files";

/// The archive path of object `key` of file `file`.
pub fn entry_name(file: &str, key: &str) -> String {
    let segments: Vec<String> = key
        .split(['/', '\\'])
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .map(|s| {
            s.chars()
                .map(|c| if c.is_control() || c == ':' { '_' } else { c })
                .collect()
        })
        .collect();
    if segments.is_empty() {
        // Nothing of the key is a usable name: name it by its digest.
        let digest = sha2::Sha256::digest(key.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        return format!("{FILES_DIR}/{file}/object-{hex}");
    }
    format!("{FILES_DIR}/{file}/{}", segments.join("/"))
}

/// The object keys a file spooled, read back one at a time.
pub struct Keys {
    lines: tokio::io::Lines<BufReader<tokio::fs::File>>,
}

impl Keys {
    pub fn new(spool: std::fs::File) -> Self {
        Self {
            lines: BufReader::new(tokio::fs::File::from_std(spool)).lines(),
        }
    }

    /// The next key, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<String>, ExportError> {
        let Some(line) = self.lines.next_line().await? else {
            return Ok(None);
        };
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| ExportError::Archive(format!("object key spool: {e}")))
    }
}

/// Entry names already in the archive, remembered by a 64-bit hash each
/// (not the names: a subject with a hundred thousand stored files would
/// hold them all in memory; the ZIP writer keeps only what its central
/// directory needs).
#[derive(Default)]
pub struct Seen {
    hashes: HashSet<u64>,
    state: RandomState,
}

impl Seen {
    /// Whether `entry` is new (and remember it).
    pub fn first(&mut self, entry: &str) -> bool {
        self.hashes.insert(self.state.hash_one(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_safe_paths_inside_the_archive() {
        assert_eq!(
            entry_name("uploaded-files", "workspaces/3/files/a.png"),
            "files/uploaded-files/workspaces/3/files/a.png"
        );
        assert_eq!(entry_name("f", "/etc/passwd"), "files/f/etc/passwd");
        assert_eq!(entry_name("f", "../../x/./y"), "files/f/x/y");
        assert_eq!(entry_name("f", "a\\..\\b"), "files/f/a/b");
        assert_eq!(entry_name("f", "c:\\x\ny"), "files/f/c_/x_y");
        assert_eq!(entry_name("f", "山田/Zoë.txt"), "files/f/山田/Zoë.txt");
        let odd = entry_name("f", "/../");
        assert!(odd.starts_with("files/f/object-"), "{odd}");
        assert_ne!(odd, entry_name("f", "/./"));
    }

    #[tokio::test]
    async fn spooled_keys_are_read_back() {
        use std::io::{Seek, Write};
        let mut spool = tempfile::tempfile().unwrap();
        for key in ["a/b", "line\nbreak", "é"] {
            serde_json::to_writer(&mut spool, key).unwrap();
            spool.write_all(b"\n").unwrap();
        }
        spool.rewind().unwrap();
        let mut keys = Keys::new(spool);
        let mut back = Vec::new();
        while let Some(k) = keys.next().await.unwrap() {
            back.push(k);
        }
        assert_eq!(back, ["a/b", "line\nbreak", "é"]);
        let mut seen = Seen::default();
        assert!(seen.first("x"));
        assert!(!seen.first("x"));
        assert!(seen.first("y"));
    }
}
