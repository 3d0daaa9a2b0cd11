//! `ossmount-gen` (man pages and completions from the clap definitions) covers every
//! visible subcommand and option: the expected set is read from `Cli::command()` itself, so
//! a subcommand added later is checked without editing this file. Pages are rendered by
//! man(1), the bash completion is sourced in bash and asked for completions.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use ossmount::cli::Cli;

/// Every visible command as (man page name, words after `ossmount`, the command).
fn commands() -> Vec<(String, Vec<String>, clap::Command)> {
    fn walk(
        cmd: &clap::Command,
        words: Vec<String>,
        out: &mut Vec<(String, Vec<String>, clap::Command)>,
    ) {
        let name = std::iter::once("ossmount".to_string())
            .chain(words.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        out.push((name, words.clone(), cmd.clone()));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut w = words.clone();
            w.push(sub.get_name().to_string());
            walk(sub, w, out);
        }
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, Vec::new(), &mut out);
    out
}

fn long_options(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

fn generate() -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_ossmount-gen"))
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    out
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_subcommand_has_a_man_page_that_man_renders() {
    let out = generate();
    let man = out.path().join("man");
    let cmds = commands();
    assert!(cmds.len() >= 10, "{} commands", cmds.len());
    let expected: BTreeSet<String> = cmds
        .iter()
        .map(|(n, _, _)| format!("{n}.1"))
        .chain(["mount.fuse.ossmount.8".to_string()])
        .collect();
    let found: BTreeSet<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(found, expected);
    let render = have("man");
    if !render {
        eprintln!("man(1) missing: checking the roff source only");
    }
    for (name, words, cmd) in &cmds {
        let page = man.join(format!("{name}.1"));
        let roff = std::fs::read_to_string(&page).unwrap();
        assert!(roff.contains(".TH"), "{name}: no title");
        let text = if render {
            // No justification or hyphenation: option names stay whole words.
            let o = Command::new("man")
                .args(["--nj", "--nh", "-l"])
                .arg(&page)
                .env("MANWIDTH", "200")
                .env("MANPAGER", "cat")
                .output()
                .unwrap();
            assert!(o.status.success(), "man -l {name}");
            String::from_utf8_lossy(&o.stdout).into_owned()
        } else {
            roff.replace("\\-", "-")
        };
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.contains(
                &format!("ossmount {}", words.join(" "))
                    .trim_end()
                    .to_string()
            ),
            "{name}: no synopsis"
        );
        if let Some(about) = cmd.get_about() {
            let first = about.to_string();
            let first = first
                .split_whitespace()
                .take(4)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(text.contains(&first), "{name}: lacks its about {first:?}");
        }
        for opt in long_options(cmd) {
            assert!(text.contains(&opt), "{name}: lacks {opt}");
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            assert!(
                text.contains(sub.get_name()),
                "{name}: lacks {}",
                sub.get_name()
            );
        }
    }
    let helper = std::fs::read_to_string(man.join("mount.fuse.ossmount.8")).unwrap();
    assert_eq!(helper.trim(), ".so man1/ossmount-mount.1");
}

/// Ask bash's completion function what completes `ossmount WORDS... CUR`.
fn bash_complete(script: &Path, words: &[String], cur: &str) -> Vec<String> {
    let mut all = vec!["ossmount".to_string()];
    all.extend(words.iter().cloned());
    all.push(cur.to_string());
    let quoted: Vec<String> = all.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}'\n\
         f=$(complete -p ossmount | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')\n\
         COMP_WORDS=({})\n\
         COMP_CWORD={}\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         \"$f\" ossmount '{cur}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        all.len() - 1,
        all[all.len() - 2],
    );
    let o = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &prog])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_every_subcommand_and_its_options() {
    let out = generate();
    let script = out.path().join("completions/ossmount.bash");
    for (name, words, cmd) in commands() {
        let subs: Vec<&str> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name())
            .collect();
        if !subs.is_empty() {
            let got = bash_complete(&script, &words, "");
            for s in &subs {
                assert!(got.iter().any(|g| g == s), "{name}: {s} not in {got:?}");
            }
        }
        let got = bash_complete(&script, &words, "--");
        for opt in long_options(&cmd) {
            assert!(got.contains(&opt), "{name}: {opt} not in {got:?}");
        }
    }
    // A prefix narrows: `ossmount mo<TAB>` is `mount`.
    assert_eq!(bash_complete(&script, &[], "mo"), ["mount"]);
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand_and_option() {
    let out = generate();
    let dir = out.path().join("completions");
    let zsh = std::fs::read_to_string(dir.join("_ossmount")).unwrap();
    let fish = std::fs::read_to_string(dir.join("ossmount.fish")).unwrap();
    assert!(zsh.starts_with("#compdef ossmount"));
    for (name, words, cmd) in commands() {
        if let Some(last) = words.last() {
            assert!(zsh.contains(&format!("'{last}:")), "zsh lacks {name}");
            assert!(
                fish.contains(&format!("-a \"{last}\"")),
                "fish lacks {name}"
            );
        }
        for opt in long_options(&cmd) {
            assert!(
                zsh.contains(&format!("{opt}[")) || zsh.contains(&format!("{opt}=[")),
                "zsh {name} lacks {opt}"
            );
            let l = opt.trim_start_matches("--");
            assert!(fish.contains(&format!("-l {l}")), "fish {name} lacks {opt}");
        }
    }
    // Syntax, where the shells are installed (CI has bash only).
    for (shell, file) in [("zsh", "_ossmount"), ("fish", "ossmount.fish")] {
        if have(shell) {
            let st = Command::new(shell)
                .arg("-n")
                .arg(dir.join(file))
                .status()
                .unwrap();
            assert!(st.success(), "{shell} -n {file}");
        } else {
            eprintln!("{shell} not installed: syntax not checked");
        }
    }
}
