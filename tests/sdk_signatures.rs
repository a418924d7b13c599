//! A module function whose signature does not fit its `#[weir::…]` attribute is a compile
//! error that points at the signature (compiles `sdk-guest/tests/bad-signatures`).
#![allow(clippy::unwrap_used)]

use std::process::Command;

use weir_tests::repo_root;

#[test]
fn bad_signatures_are_compile_errors_at_the_signature() {
    let root = repo_root();
    let fixture = root.join("sdk-guest/tests/bad-signatures");
    let output = Command::new(env!("CARGO"))
        .args(["check", "--quiet", "--message-format", "short", "--target", "wasm32-wasip2"])
        .current_dir(&fixture)
        .env("CARGO_TARGET_DIR", root.join("filters/target"))
        .output()
        .unwrap();
    assert!(!output.status.success(), "the bad signatures compiled");
    let errors = String::from_utf8_lossy(&output.stderr);
    let expect = |line: u32, text: &str| {
        let location = format!("src/lib.rs:{line}:");
        assert!(errors.lines().any(|l| l.contains(&location) && l.contains(text)), "no error at line {line} containing `{text}`:\n{errors}");
    };
    expect(4, "it takes the message");
    expect(9, "it cannot be async");
    expect(14, "the message is taken by shared reference (&)");
    expect(19, "there is no third argument");
    expect(24, "mismatched types");
    expect(29, "#[weir::aggregate] goes on the accumulator type");
    expect(33, "NotAnAggregate: Aggregate` is not satisfied");
}
