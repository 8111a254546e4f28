//! The bytes of a checkpoint file: magic, format version, payload length, protobuf payload,
//! CRC32. Pure functions over byte slices; no I/O. The layout is in the module docs of
//! [`crate::checkpoint`].

use prost::Message;

use super::CheckpointError;
use super::proto;
use super::saved::SavedModel;

/// The first 8 bytes of every checkpoint.
pub const MAGIC: &[u8; 8] = b"CANOPYCK";

/// The newest format version, which this canopy writes for a forecaster: 2 since forecaster
/// leaves refer to a shared table of target rows, which an older canopy cannot read, so it must
/// refuse the file by its version rather than find its forest invalid.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this canopy reads, and writes for a model whose layout has not
/// changed since (the detector), so that an older canopy still reads those files.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

const HEADER: usize = 8 + 4 + 8;
const TRAILER: usize = 4;

/// The file bytes of `model`. The payload is encoded straight into the file buffer (a forecaster
/// checkpoint is tens of megabytes: one copy fewer is measurable).
pub fn encode(model: &SavedModel) -> Vec<u8> {
    let message = model.to_proto();
    let len = message.encoded_len();
    let mut out = Vec::with_capacity(HEADER + len + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&model.format_version().to_le_bytes());
    out.extend_from_slice(&(len as u64).to_le_bytes());
    message.encode_raw(&mut out);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Frames `payload` with the header and CRC of format `version` (other versions only in tests).
pub fn frame(payload: &[u8], version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The model in `bytes`, every check done: framing, CRC, protobuf, and every index the model
/// will follow.
pub fn decode(bytes: &[u8]) -> Result<SavedModel, CheckpointError> {
    let payload = unframe(bytes)?;
    let message = proto::Checkpoint::decode(payload)?;
    SavedModel::from_proto(message)
}

/// The payload of a framed file, after checking magic, version, length and CRC.
pub(crate) fn unframe(bytes: &[u8]) -> Result<&[u8], CheckpointError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // A prefix of the magic is a file cut short, anything else is not a checkpoint.
        if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
            return Err(CheckpointError::Truncated {
                len: bytes.len(),
                expected: (HEADER + TRAILER) as u64,
            });
        }
        return Err(CheckpointError::BadMagic {
            found: bytes[..bytes.len().min(MAGIC.len())].to_vec(),
        });
    }
    if bytes.len() < HEADER {
        return Err(CheckpointError::Truncated {
            len: bytes.len(),
            expected: (HEADER + TRAILER) as u64,
        });
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(CheckpointError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[12..HEADER]);
    let len = u64::from_le_bytes(len);
    let expected = len.saturating_add((HEADER + TRAILER) as u64);
    if (bytes.len() as u64) < expected {
        return Err(CheckpointError::Truncated {
            len: bytes.len(),
            expected,
        });
    }
    // `expected` ≤ bytes.len() here, so it fits in usize.
    let end = HEADER + len as usize;
    if bytes.len() > end + TRAILER {
        return Err(CheckpointError::TrailingBytes {
            extra: bytes.len() - end - TRAILER,
        });
    }
    let stored = u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
    let computed = crc32fast::hash(&bytes[..end]);
    if stored != computed {
        return Err(CheckpointError::CrcMismatch { stored, computed });
    }
    Ok(&bytes[HEADER..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_and_names_each_failure() {
        let payload = b"some payload bytes";
        let file = frame(payload, FORMAT_VERSION);
        assert_eq!(unframe(&file).expect("valid"), payload);

        for cut in [0, 3, 8, 15, 20, file.len() - 1] {
            assert!(
                matches!(
                    unframe(&file[..cut]),
                    Err(CheckpointError::Truncated { .. })
                ),
                "cut at {cut}: {:?}",
                unframe(&file[..cut])
            );
        }
        let mut bad = file.clone();
        bad[0] = b'X';
        assert!(matches!(
            unframe(&bad),
            Err(CheckpointError::BadMagic { .. })
        ));
        assert_eq!(
            unframe(&frame(payload, OLDEST_FORMAT_VERSION)).unwrap(),
            payload
        );
        for old_or_new in [0, FORMAT_VERSION + 1] {
            assert!(matches!(
                unframe(&frame(payload, old_or_new)),
                Err(CheckpointError::UnsupportedVersion { .. })
            ));
        }
        let future = frame(payload, FORMAT_VERSION + 1);
        assert!(matches!(
            unframe(&future),
            Err(CheckpointError::UnsupportedVersion { found: 3, .. })
        ));
        for i in HEADER..file.len() {
            let mut flipped = file.clone();
            flipped[i] ^= 0x10;
            assert!(
                matches!(unframe(&flipped), Err(CheckpointError::CrcMismatch { .. })),
                "byte {i}"
            );
        }
        let mut long = file.clone();
        long.push(0);
        assert!(matches!(
            unframe(&long),
            Err(CheckpointError::TrailingBytes { extra: 1 })
        ));
        // A length field claiming more than the file holds is a truncation, not an allocation.
        let mut huge = file.clone();
        huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            unframe(&huge),
            Err(CheckpointError::Truncated { .. })
        ));
    }
}
