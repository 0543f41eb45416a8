//! Shared by the record targets: the readers read files, so each input is written to one
//! file in this process's scratch directory and read to the end, every row's raw text taken.

use t0_source::Format;
use t0_source::reader::{Item, open};

pub fn read_all(data: &[u8], format: Format, name: &str) {
    let dir = std::env::temp_dir().join(format!("t0clip-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let file = dir.join(name);
    std::fs::write(&file, data).expect("scratch file");
    let wanted: Vec<String> = ["entity_id", "observed_at", "views", "a"].map(String::from).to_vec();
    // A file the reader refuses whole is an answer; only a panic is a finding.
    let Ok(mut records) = open(&file, format, &wanted, ',') else { return };
    let _ = records.columns();
    let _ = records.missing();
    while let Ok(Some(item)) = records.next_item() {
        if let Item::Row(rec) = item {
            assert_eq!(rec.fields.len(), wanted.len());
            let raw = records.raw(&rec);
            assert!(raw.len() <= 1024 + 3, "raw text is cut to 1 KiB");
        }
    }
}
