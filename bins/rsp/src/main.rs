fn main() -> std::process::ExitCode {
    rsp::main()
}
