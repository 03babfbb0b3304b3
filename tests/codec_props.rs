//! MLLP framing properties: however a stream is split into reads, it decodes
//! to the same frames.

use bytes::BytesMut;
use hl7bridge::mllp::{frame, MllpCodec};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

fn payload() -> impl Strategy<Value = Vec<u8>> {
    // Any bytes except the framing bytes VT and FS.
    proptest::collection::vec(
        any::<u8>().prop_filter("no framing bytes", |b| *b != 0x0B && *b != 0x1C),
        0..300,
    )
}

proptest! {
    #[test]
    fn any_split_of_a_stream_decodes_to_the_same_frames(
        frames in proptest::collection::vec(payload(), 1..8),
        junk in proptest::collection::vec(any::<u8>().prop_filter("not VT", |b| *b != 0x0B), 0..20),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut stream = junk.clone();
        for f in &frames {
            stream.extend(frame(f));
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        points.dedup();

        let mut codec = MllpCodec::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for w in points.windows(2) {
            buf.extend_from_slice(&stream[w[0]..w[1]]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                got.push(f.to_vec());
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(codec.take_junk_bytes(), junk.len() as u64);
    }

    #[test]
    fn the_buffer_never_exceeds_the_limit_plus_one_read(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..512), 0..64)) {
        let limit = 2048;
        let mut codec = MllpCodec::new(limit);
        let mut buf = BytesMut::new();
        for c in chunks {
            buf.extend_from_slice(&c);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(_) => { buf.clear(); break }
                }
            }
            prop_assert!(buf.len() <= limit + 512);
        }
    }
}
