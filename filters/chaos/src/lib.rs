//! Chaos: a filter that misbehaves on command, so tests can show weir survives it.
//! The payload says what to do: `trap` (panics, which traps), `loop` (spins until the
//! host's deadline stops it), `hog` (allocates without bound until the memory cap), and
//! anything else is kept. Config `fail_init = true` makes `init` fail.

use serde::Deserialize;
use weir::{Message, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub fail_init: bool,
}

#[weir::filter]
pub fn misbehave(msg: &Message, config: &Config) -> Result<bool> {
    if config.fail_init {
        return Err(weir::Error::msg("configured to fail"));
    }
    match msg.payload() {
        b"trap" => panic!("chaos: asked to trap"),
        b"loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        b"hog" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        _ => Ok(true),
    }
}
