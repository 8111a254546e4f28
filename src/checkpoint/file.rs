//! Checkpoint files on the model volume: where they live, the atomic write, moving a refused
//! file aside, and reading a model folder read-only for `canopy serve` (with the stamp of each
//! file read, which `canopy serve`'s follower compares to notice a replaced file).

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::CheckpointError;
use super::format::decode;
use super::saved::SavedModel;

/// The one model file of a model folder.
pub const CHECKPOINT_FILE: &str = "model.ckpt";

/// The file a write goes to before it is renamed over [`CHECKPOINT_FILE`]; it does not end in
/// `.ckpt`, so nothing that looks for model files ever takes it for one.
pub const TEMP_FILE: &str = ".model.ckpt.tmp";

/// `{model_dir}/{name}/model.ckpt`.
pub fn model_path(model_dir: &Path, name: &str) -> PathBuf {
    model_dir.join(name).join(CHECKPOINT_FILE)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` as `folder/model.ckpt` so that a crash at any instant leaves either the old
/// file or the new one, whole: write `.model.ckpt.tmp`, fsync it, rename it over `model.ckpt`,
/// fsync the folder (so the rename itself survives a power cut). Creates the folder if needed.
pub fn write_atomic(folder: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    fs::create_dir_all(folder).map_err(io(folder))?;
    let temp = folder.join(TEMP_FILE);
    let target = folder.join(CHECKPOINT_FILE);
    let mut file = File::create(&temp).map_err(io(&temp))?;
    file.write_all(bytes).map_err(io(&temp))?;
    file.sync_all().map_err(io(&temp))?;
    drop(file);
    fs::rename(&temp, &target).map_err(io(&target))?;
    sync_folder(folder)
}

fn sync_folder(folder: &Path) -> Result<(), CheckpointError> {
    File::open(folder)
        .and_then(|d| d.sync_all())
        .map_err(io(folder))
}

/// Reads and decodes `path`.
pub(crate) fn read(path: &Path) -> Result<SavedModel, CheckpointError> {
    read_stamped(path).map(|(saved, _)| saved)
}

/// Renames a refused `folder/model.ckpt` to `model.ckpt.{why}-UNIXTIME` (kept for a person to
/// look at, no longer a model file) and returns the new path. `why` is
/// [`CheckpointError::aside_label`]: `corrupt` for a file that does not decode, `mismatch` for a
/// sound file whose model no longer fits the config.
pub(crate) fn move_aside(path: &Path, why: &str) -> Result<PathBuf, CheckpointError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".{why}-{now}"));
    let aside = PathBuf::from(aside);
    fs::rename(path, &aside).map_err(io(path))?;
    if let Some(folder) = path.parent() {
        sync_folder(folder)?;
    }
    Ok(aside)
}

/// Which file a path named when it was read: a renamed-over file is another inode, a file
/// rewritten in place has another length or modification time, and the stored CRC (the file's
/// last 4 bytes) tells apart two files that a reused inode number and a coarse clock would not.
/// Taken from the open file, so it describes the bytes read even if the path is replaced
/// meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
    checksum: Option<[u8; 4]>,
}

impl FileStamp {
    fn of(meta: &fs::Metadata, checksum: Option<[u8; 4]>) -> FileStamp {
        #[cfg(unix)]
        let (device, inode) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (device, inode) = (0, 0);
        FileStamp {
            device,
            inode,
            len: meta.len(),
            modified: meta.modified().ok(),
            checksum,
        }
    }

    /// The stamp of the file `path` names now: its metadata and its last 4 bytes, nothing more.
    pub(crate) fn read(path: &Path) -> std::io::Result<FileStamp> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let mut checksum = [0; 4];
        let checksum = if meta.len() >= 4 {
            file.seek(SeekFrom::End(-4))?;
            file.read_exact(&mut checksum)?;
            Some(checksum)
        } else {
            None
        };
        Ok(FileStamp::of(&meta, checksum))
    }

    /// When the file was last written, if the file system says.
    pub(crate) fn modified(&self) -> Option<SystemTime> {
        self.modified
    }
}

/// Reads and decodes `path`, with the stamp of the file the bytes came from.
pub(crate) fn read_stamped(path: &Path) -> Result<(SavedModel, FileStamp), CheckpointError> {
    let mut file = File::open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(io(path))?;
    let checksum = bytes
        .len()
        .checked_sub(4)
        .and_then(|at| bytes[at..].try_into().ok());
    let stamp = FileStamp::of(&meta, checksum);
    Ok((decode(&bytes)?, stamp))
}

/// What [`load_models`] read, per model: the file and the model saved in it.
pub(crate) struct LoadedModel {
    pub(crate) path: PathBuf,
    pub(crate) stamp: FileStamp,
    pub(crate) saved: SavedModel,
}

/// Reads the checkpoints of a model folder read-only, as KServe's sklearn server reads its
/// storage: a `model.ckpt` directly in `model_dir` (one model, named by its checkpoint), or one
/// subfolder per model each holding a `model.ckpt` (subfolders without one are skipped). Any
/// file that does not decode is an error naming it, since a read-only server must not move files
/// aside.
pub(crate) fn load_models(model_dir: &Path) -> Result<Vec<LoadedModel>, CheckpointError> {
    let direct = model_dir.join(CHECKPOINT_FILE);
    let mut paths = Vec::new();
    if direct.is_file() {
        paths.push(direct);
    } else {
        let entries = fs::read_dir(model_dir).map_err(io(model_dir))?;
        for entry in entries {
            let entry = entry.map_err(io(model_dir))?;
            let path = entry.path().join(CHECKPOINT_FILE);
            if path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
    }
    if paths.is_empty() {
        return Err(CheckpointError::NoModels(model_dir.to_owned()));
    }
    let mut loaded = Vec::new();
    for path in paths {
        let (saved, stamp) = read_stamped(&path).map_err(|e| match e {
            CheckpointError::Io { .. } => e,
            other => CheckpointError::Invalid(format!("{}: {other}", path.display())),
        })?;
        loaded.push(LoadedModel { path, stamp, saved });
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_the_file_whole_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let folder = dir.path().join("m");
        write_atomic(&folder, b"first").expect("first write");
        write_atomic(&folder, b"second").expect("second write");
        let names: Vec<_> = fs::read_dir(&folder)
            .expect("folder")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [CHECKPOINT_FILE]);
        assert_eq!(
            fs::read(folder.join(CHECKPOINT_FILE)).expect("read"),
            b"second"
        );

        let aside = move_aside(&folder.join(CHECKPOINT_FILE), "corrupt").expect("move aside");
        let name = aside.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(name.starts_with("model.ckpt.corrupt-"), "{name}");
        assert!(
            name["model.ckpt.corrupt-".len()..].parse::<u64>().is_ok(),
            "{name}"
        );
        assert!(!folder.join(CHECKPOINT_FILE).exists());
        assert!(matches!(
            load_models(&folder),
            Err(CheckpointError::NoModels(_))
        ));
    }
}
