//! Checkpoints on the model volume: the file format, atomic writes, and restore.
//!
//! A checkpoint lets a restarted agent carry on where the last one left off instead of
//! relearning: it holds one model's forest, the data it retrains from (the detector's reservoir,
//! the forecaster's per-entity feature history), the config that shaped it (so `canopy serve`
//! needs no config) and what it was trained from.
//!
//! # At rest
//! `{model_dir}/{model-name}/model.ckpt`: exactly one model file per folder, as KServe expects.
//! Only that file ends in `.ckpt`: a write in progress is `.model.ckpt.tmp` in the same folder, and
//! a file refused at start is moved aside: to `model.ckpt.corrupt-UNIXTIME` when it does not
//! decode, to `model.ckpt.mismatch-UNIXTIME` when it decodes but its model no longer fits the
//! config.
//!
//! # File format ([`format`](mod@format))
//! ```text
//! offset  size  what
//! 0       8     magic  b"CANOPYCK"
//! 8       4     format version, u32 little-endian: 2 for a forecaster, 1 for a detector
//! 12      8     payload length n, u64 little-endian
//! 20      n     payload: the protobuf `canopy.checkpoint.Checkpoint` (proto/canopy/checkpoint.proto)
//! 20+n    4     CRC32 (IEEE, crc32fast) of bytes 0..20+n, u32 little-endian
//! ```
//! Decoding checks, in order and naming what failed: the length (truncated), the magic (not a
//! checkpoint), the version (written by a newer canopy), the CRC (corrupt), the protobuf payload,
//! and finally every index the models will follow, so no file, however damaged, can make the
//! agent panic or index out of bounds. Within a format version the schema only grows (new fields,
//! new numbers), so a newer canopy reads older files; the version changes only for a change an
//! older reader must refuse. Version 2 is the forecaster's shared leaves (a leaf names rows of
//! one target table instead of storing its mean); a file is written with the oldest version that
//! reads it, so a detector's files stay version 1 and an older canopy still reads them, while
//! this canopy reads both.
//!
//! # Writing ([`file`](mod@file), [`writer`])
//! The bytes go to `.model.ckpt.tmp`, which is fsynced, renamed over `model.ckpt`, and the folder
//! fsynced: whenever the process dies, `model.ckpt` is either the previous complete file or the
//! new complete file. Writes happen on the checkpoint writer thread, from snapshots the
//! evaluation thread hands it (the published forest is an `Arc` taken lock-free from its
//! `arc-swap` cell; the reservoir or history is copied, a few hundred kilobytes), so encoding,
//! fsync and rename never hold up scoring or ingest.
//!
//! # Restoring ([`restore`])
//! At start each configured model's file is read; a valid one whose model still means what the
//! config's does (same kind and step, each feature's PromQL expression the same in canonical form,
//! for the forecaster the same targets, lookback and horizon) is published, its reservoir or
//! history refilled, and the model's first retrain comes one `retrain_interval` after start.
//! Anything else is moved aside with a logged reason and counted, and the model trains anew.
//!
//! # Serving
//! [`file::load_models`] reads checkpoints read-only for `canopy serve`, as plain saved models:
//! serve turns them into its registry and follows the files (`serve::reload`).

pub(crate) mod file;
pub mod format;
pub(crate) mod restore;
pub mod saved;
pub(crate) mod writer;

pub use file::model_path;
pub use file::{CHECKPOINT_FILE, TEMP_FILE, write_atomic};
pub use format::{FORMAT_VERSION, MAGIC, OLDEST_FORMAT_VERSION, decode, encode};
pub use saved::{SavedData, SavedModel};

/// The protobuf types generated from `proto/canopy/checkpoint.proto`.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/canopy.checkpoint.rs"));
}

/// Why a checkpoint could not be written, read or used. Every variant names what failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("truncated: {len} bytes, expected {expected}")]
    Truncated { len: usize, expected: u64 },
    #[error("not a canopy checkpoint (bad magic {found:02x?})")]
    BadMagic { found: Vec<u8> },
    #[error("unsupported format version {found} (this canopy reads versions 1 to {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("CRC mismatch: stored {stored:08x}, computed {computed:08x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("{extra} unexpected bytes after the checksum")]
    TrailingBytes { extra: usize },
    #[error("invalid protobuf payload: {0}")]
    Payload(#[from] prost::DecodeError),
    #[error("invalid checkpoint: {0}")]
    Invalid(String),
    #[error("the checkpoint no longer matches the config: {0}")]
    Mismatch(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("no checkpoint in {0} (expected model.ckpt there or in one subfolder per model)")]
    NoModels(std::path::PathBuf),
}

impl CheckpointError {
    /// A short reason for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckpointError::Truncated { .. } => "truncated",
            CheckpointError::BadMagic { .. } => "bad_magic",
            CheckpointError::UnsupportedVersion { .. } => "unsupported_version",
            CheckpointError::CrcMismatch { .. } => "crc_mismatch",
            CheckpointError::TrailingBytes { .. } => "trailing_bytes",
            CheckpointError::Payload(_) => "invalid_payload",
            CheckpointError::Invalid(_) => "invalid_model",
            CheckpointError::Mismatch(_) => "mismatch",
            CheckpointError::Io { .. } => "io",
            CheckpointError::NoModels(_) => "no_models",
        }
    }

    /// What a refused file is renamed with: `mismatch` for a sound checkpoint of a model the
    /// config no longer describes, `corrupt` for everything else.
    pub(crate) fn aside_label(&self) -> &'static str {
        match self {
            CheckpointError::Mismatch(_) => "mismatch",
            _ => "corrupt",
        }
    }
}
