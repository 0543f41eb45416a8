//! Any bytes as a WAV clip: the audio vector or an error, never a panic, and never a header
//! that sizes an allocation beyond the fuzzer's memory limit.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(v) = t0_media::audio::extract_wav(data) {
        assert_eq!(v.len(), t0_media::audio::AUDIO_DIM);
    }
});
