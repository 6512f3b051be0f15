//! Where the repository, the Cargo target directory and the tools `make` builds are.

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The Cargo target directory of this build.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("target"))
}

/// A tool that `make <name>` builds into the repository's `target/tools` (helm, promlint,
/// promtool), wherever Cargo builds. Missing is a failure, never a skip.
pub fn tool(name: &str) -> PathBuf {
    let path = repository().join("target/tools").join(name);
    assert!(
        path.is_file(),
        "{name} is missing at {}: build it with `make {name}` (it builds {name} from tools/{name}/go.mod)",
        path.display()
    );
    path
}
