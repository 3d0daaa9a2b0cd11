//! `ossmount-gen OUT_DIR`: the man pages and shell completions of `ossmount`, generated from
//! its clap definitions (`ossmount::cli::Cli`) at package time, so a new option or
//! subcommand shows up in both without anyone editing a page by hand.
//!
//! Writes `OUT_DIR/man/` (`ossmount.1`, `ossmount-<sub>.1` for every visible subcommand,
//! nested ones as `ossmount-cache-status.1`, and `mount.fuse.ossmount.8`, which points at
//! `ossmount-mount(1)`: the helper takes the same options) and `OUT_DIR/completions/`
//! (`ossmount.bash`, `_ossmount` for zsh, `ossmount.fish`). A separate binary rather than
//! a hidden subcommand, so the installed `ossmount` carries no generators.
//! `scripts/package.sh` runs it; `tests/generate.rs` checks every subcommand is covered.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use ossmount::cli::Cli;

/// One page per visible command, as `clap_mangen::generate_to` does, but every page's
/// footer names the package and its version (not the subcommand's bare name).
fn man_pages(cmd: &clap::Command, source: &str, dir: &std::path::Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, source, dir)?;
    }
    clap_mangen::Man::new(cmd.clone())
        .source(source)
        .manual("ossmount manual")
        .generate_to(dir)?;
    Ok(())
}

fn generate(out: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let source = format!("ossmount {}", env!("CARGO_PKG_VERSION"));
    man_pages(&cmd, &source, &man)?;
    // mount(8) runs the helper; `man mount.fuse.ossmount` should land on its options.
    std::fs::write(
        man.join("mount.fuse.ossmount.8"),
        ".so man1/ossmount-mount.1\n",
    )?;
    let mut cmd = Cli::command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "ossmount", &completions)?;
    }
    let mut files = Vec::new();
    for dir in [&man, &completions] {
        for e in std::fs::read_dir(dir)? {
            files.push(e?.path());
        }
    }
    files.sort();
    Ok(files)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!("usage: ossmount-gen OUT_DIR  (writes OUT_DIR/man and OUT_DIR/completions)");
        return ExitCode::from(2);
    };
    match generate(std::path::Path::new(out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ossmount-gen: {out}: {e}");
            ExitCode::FAILURE
        }
    }
}
