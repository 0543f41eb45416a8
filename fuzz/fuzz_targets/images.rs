//! Any bytes as an image or an animation: the handcrafted vector and the frame statistics, or
//! an error; never a panic. Containers the image decoders do not know go to ffmpeg in the
//! stage, so they are left out here (a process per input would starve the fuzzer).
#![no_main]

use std::path::Path;

use t0_media::{image, video};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(img) = image::decode(data) {
        assert_eq!(image::handcrafted(&img).len(), image::HANDCRAFTED_DIM);
    }
    if ::image::guess_format(data).is_ok()
        && let Ok(frames) = video::frames(data, Path::new("fuzz.gif"))
    {
        assert!(frames.len() <= video::MAX_FRAMES);
        assert_eq!(video::stats(&frames).len(), video::STATS_DIM);
    }
});
