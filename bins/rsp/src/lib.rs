//! The `rsp` command line, as a library so integration tests call the same code.

pub fn main() -> anyhow::Result<()> {
    Ok(())
}
