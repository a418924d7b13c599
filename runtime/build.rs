//! Link settings for the `weir` binary.
//!
//! On Linux with glibc the binary is linked with packed relative relocations (DT_RELR). weir is
//! a position-independent executable with about 75,000 relative relocations; stored the classic
//! way (24 bytes each) they are a 1.8 MB table that the loader reads at every start and that then
//! stays resident. Packed they take 20 KB, and idle RSS drops by about 3.5 MB
//! (docs/benchmarks.md, the relay section: "R9: packed relocations").
//!
//! The binary then needs glibc 2.36 or newer where it runs (it already needs 2.34) and binutils
//! 2.38 or newer where it is linked. To build for an older system, set
//! `WEIR_PLAIN_RELOCATIONS=1`.
fn main() {
    println!("cargo:rerun-if-env-changed=WEIR_PLAIN_RELOCATIONS");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let plain = std::env::var_os("WEIR_PLAIN_RELOCATIONS").is_some_and(|v| v != "0" && !v.is_empty());
    if os == "linux" && env == "gnu" && !plain {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
