// mimalloc instead of glibc malloc: about a quarter of the instructions per
// message on the ingest path were malloc and free (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hl7bridge::cli::main()
}
