//! The binary containerd runs: `-v` is how containerd and people ask what it is.

use std::process::Command;

#[test]
fn the_shim_says_what_runtime_and_version_it_is() {
    let output = Command::new(env!("CARGO_BIN_EXE_containerd-shim-wasmbuild-v1"))
        .arg("-v")
        .output()
        .expect("run the shim");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("containerd-shim-wasmbuild-v1:\n"),
        "{text}"
    );
    assert!(text.contains("  Runtime: wasmbuild\n"), "{text}");
    assert!(
        text.contains(&format!("  Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}
