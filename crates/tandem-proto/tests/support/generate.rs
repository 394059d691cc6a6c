//! The one recipe that turns `proto/` into Rust: protox (a protobuf compiler in Rust, so no
//! `protoc` is needed) and tonic-prost-build. Used by `examples/regenerate.rs` and `tests/drift.rs`.

use std::path::{Path, PathBuf};

/// The schema files, relative to the repository's `proto/` folder.
pub const PROTOS: &[&str] = &[
    "tandem/replication/v1/replication.proto",
    "tandem/admin/v1/admin.proto",
];

pub fn proto_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto")
}

/// Writes one `<package>.rs` file per proto package into `out`.
pub fn generate(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = proto_root();
    let descriptors = protox::compile(PROTOS, [&root])?;
    std::fs::create_dir_all(out)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(out)
        .compile_fds(descriptors)?;
    Ok(())
}
