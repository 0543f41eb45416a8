//! Media decoding for `embed`, apart from the catalog and the neural runtime so that the
//! decoders of untrusted bytes (WAV headers, PNG/JPEG/GIF/WebP, animated frames) build in
//! seconds and are fuzzed on their own (`fuzz/`, issue 30). Each decoder answers a bad file
//! with an error naming what is wrong, never a panic, and refuses headers whose sizes would
//! exhaust memory.

pub mod audio;
pub mod image;
pub mod video;
