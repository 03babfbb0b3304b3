//! The MLLP source: framing only. What a frame means is `intake`'s business.
mod codec;

pub use codec::{frame, MllpCodec, MllpError, END, OVERSIZE_HEAD_BYTES, START, TRAILER};
