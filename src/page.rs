//! Pages of a job's kept output, as `worker_collect_output` returns them, wherever the bytes are
//! kept (the local pool's buffers or the fleet's copy of a remote job's output).

use crate::error::WorkerError;
use crate::protocol::{FileEncoding, StreamPage};

pub const DEFAULT_PAGE_BYTES: u64 = 64 * 1024;
/// Matches the schema's `maximum` on `max_bytes`.
pub const MAX_PAGE_BYTES: u64 = 16 * 1024 * 1024;

/// The page size a collect asked for, or the default.
pub fn page_size(max_bytes: Option<u64>) -> Result<u64, WorkerError> {
    let max = max_bytes.unwrap_or(DEFAULT_PAGE_BYTES);
    if !(1..=MAX_PAGE_BYTES).contains(&max) {
        return Err(WorkerError::invalid_params(
            "max_bytes",
            format!("must be between 1 and {MAX_PAGE_BYTES}"),
        ));
    }
    Ok(max)
}

/// A window of kept output bytes that stays on UTF-8 character boundaries when the text is
/// UTF-8; `total` counts what was written, kept or not.
pub fn page_of(kept: &[u8], total: u64, offset: u64, max: u64, ended: bool) -> StreamPage {
    let start = (offset as usize).min(kept.len());
    let end = start.saturating_add(max as usize).min(kept.len());
    let window = &kept[start..end];
    let (data, encoding, taken) = match std::str::from_utf8(window) {
        Ok(text) => (text.to_owned(), FileEncoding::Utf8, window.len()),
        // Cut in the middle of a character: stop before it, the next page starts there.
        Err(error) if error.error_len().is_none() && error.valid_up_to() > 0 => {
            let valid = &window[..error.valid_up_to()];
            (
                String::from_utf8_lossy(valid).into_owned(),
                FileEncoding::Utf8,
                valid.len(),
            )
        }
        Err(_) => {
            use base64::Engine;
            (
                base64::engine::general_purpose::STANDARD.encode(window),
                FileEncoding::Base64,
                window.len(),
            )
        }
    };
    let next = (start + taken) as u64;
    StreamPage {
        data,
        encoding,
        offset: start as u64,
        next_offset: next,
        kept_bytes: kept.len() as u64,
        total_bytes: total,
        truncated: total > kept.len() as u64,
        eof: ended && next == kept.len() as u64,
    }
}
