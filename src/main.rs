fn main() -> std::process::ExitCode {
    hl7bridge::cli::main()
}
