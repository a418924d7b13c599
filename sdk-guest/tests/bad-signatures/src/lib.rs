use weir::{Message, Output, Result};

#[weir::filter]
fn takes_nothing() -> Result<bool> {
    Ok(true)
}

#[weir::filter]
async fn is_async(_msg: &Message) -> Result<bool> {
    Ok(true)
}

#[weir::map]
fn by_value(_msg: Message) -> Result<Output> {
    Ok(Output::bytes(Vec::new()))
}

#[weir::flat_map]
fn too_many(_msg: &Message, _a: &u8, _b: &u8) -> Result<Vec<Output>> {
    Ok(Vec::new())
}

#[weir::filter]
fn wrong_return(_msg: &Message) -> Result<String> {
    Ok(String::new())
}

#[weir::aggregate]
fn not_a_type() {}

#[weir::aggregate]
#[derive(Default)]
struct NotAnAggregate;
