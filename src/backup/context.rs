//! Build contexts: a directory packed as the tar stream Docker's build API takes. The same
//! bytes for the same tree (sorted entries, times and owners zeroed), so their digest names
//! the image built from them: a changed file is a new tag, an unchanged context no rebuild.

use std::fs;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::backup::error::{io_err, BackupError};

/// The context under `dir` as a tar stream, and the sha256 of that stream. Symlinks are
/// stored as links, never followed; sockets, FIFOs and devices are left out.
pub(crate) fn build_context(dir: &Path) -> Result<(Vec<u8>, String), BackupError> {
    let meta = fs::symlink_metadata(dir).map_err(io_err("reading", dir))?;
    if !meta.is_dir() {
        return Err(BackupError::NotADirectory(dir.to_path_buf()));
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut stack = vec![dir.to_path_buf()];
    let mut entries = Vec::new();
    while let Some(d) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(&d)
            .map_err(io_err("listing", &d))?
            .collect::<Result<Vec<_>, io::Error>>()
            .map_err(io_err("listing", &d))?;
        names.sort_by_key(fs::DirEntry::file_name);
        for e in names {
            let path = e.path();
            let kind = e.file_type().map_err(io_err("reading", &path))?;
            if kind.is_dir() {
                stack.push(path.clone());
            }
            entries.push(path);
        }
    }
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        let m = fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        {
            use std::os::unix::fs::PermissionsExt;
            h.set_mode(m.permissions().mode() & 0o7777);
        }
        let ft = m.file_type();
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            builder
                .append_data(&mut h, rel, io::empty())
                .map_err(io_err("packing", &path))?;
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            let data = fs::read(&path).map_err(io_err("reading", &path))?;
            h.set_size(data.len() as u64);
            builder
                .append_data(&mut h, rel, &data[..])
                .map_err(io_err("packing", &path))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err("reading", &path))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            builder
                .append_link(&mut h, rel, &target)
                .map_err(io_err("packing", &path))?;
        }
    }
    let bytes = builder.into_inner().map_err(io_err("packing", dir))?;
    let digest = hex::encode(Sha256::digest(&bytes));
    Ok((bytes, digest))
}

#[cfg(test)]
mod tests {
    use super::build_context;

    #[test]
    fn the_same_tree_packs_to_the_same_bytes_and_a_change_to_others() {
        let a = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("Dockerfile"), "FROM x\n").unwrap();
        std::fs::create_dir(a.path().join("src")).unwrap();
        std::fs::write(a.path().join("src/app.py"), "print(1)\n").unwrap();
        let (_, first) = build_context(a.path()).unwrap();
        // Touched, not changed: same digest (times are not part of it).
        std::fs::write(a.path().join("src/app.py"), "print(1)\n").unwrap();
        assert_eq!(build_context(a.path()).unwrap().1, first);
        std::fs::write(a.path().join("src/app.py"), "print(2)\n").unwrap();
        assert_ne!(build_context(a.path()).unwrap().1, first);
    }
}
