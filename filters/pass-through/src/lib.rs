//! Pass-through filter: keeps everything without looking. Measures the cost of the call
//! path itself (`cargo bench -p weir --bench module_call`).

use weir::{Message, Result};

#[weir::filter]
pub fn keep_all(_msg: &Message) -> Result<bool> {
    Ok(true)
}
