//! Regenerates `src/gen/` from `proto/` (run after editing a .proto file):
//! `cargo run -p tandem-proto --example regenerate`. `tests/drift.rs` fails while they disagree.

#[path = "../tests/support/generate.rs"]
mod generate;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gen");
    generate::generate(&out)?;
    println!("regenerated {}", out.display());
    Ok(())
}
