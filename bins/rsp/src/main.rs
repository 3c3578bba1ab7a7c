fn main() -> anyhow::Result<()> {
    rsp::main()
}
