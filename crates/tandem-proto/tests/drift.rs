//! The checked-in generated code must be exactly what `proto/` generates today.
#![allow(clippy::unwrap_used)]

mod support {
    pub mod generate;
}

use support::generate;

#[test]
fn generated_code_matches_the_proto_files() {
    let fresh = tempfile::tempdir().unwrap();
    generate::generate(fresh.path()).unwrap();
    let checked_in = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gen");
    let mut names: Vec<_> = std::fs::read_dir(fresh.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        let want = std::fs::read_to_string(fresh.path().join(&name)).unwrap();
        let have = std::fs::read_to_string(checked_in.join(&name)).unwrap_or_default();
        assert!(
            want == have,
            "src/gen/{} is stale: run `cargo run -p tandem-proto --example regenerate`",
            name.to_string_lossy()
        );
    }
}
