//! The `pi-setup` binary: everything is in the library; this only returns its exit code.

fn main() -> std::process::ExitCode {
    pi_setup::run()
}
