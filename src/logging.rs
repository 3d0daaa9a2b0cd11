//! Logging setup: `tracing` to stderr or a file, level from `--debug` or `RUST_LOG`.

use std::path::Path;

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `log_file`: append there instead of stderr.
pub fn init(debug: bool, log_file: Option<&Path>) -> std::io::Result<()> {
    let default = if debug {
        "ossmount=debug,info"
    } else {
        "ossmount=info,warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => {
            use std::io::IsTerminal;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .init()
        }
    }
    Ok(())
}
