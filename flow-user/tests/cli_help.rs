//! The help stays whole and current: every command's one-line summary in `flow --help` is a
//! whole sentence, every option says what it does, and every value name listing choices
//! (`<a|b|c>`) lists exactly what the parser takes. No privileges: only `--help` is run.

mod support;

use std::process::Output;

use support::flow;

fn run(args: &[&str]) -> Output {
    flow().args(args).output().expect("flow runs")
}

fn help(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "flow {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// `(name, summary)` of each line of the `Commands:` section of `flow --help`.
fn commands() -> Vec<(String, String)> {
    let text = help(&["--help"]);
    let section = text
        .split("Commands:\n")
        .nth(1)
        .expect("`flow --help` has a Commands: section");
    section
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(|line| {
            assert!(
                line.starts_with("  ") && !line.starts_with("   "),
                "a summary continues on a second line (cut or wrapped): {line:?}"
            );
            let line = line.trim();
            let (name, summary) = line.split_once(' ').unwrap_or((line, ""));
            (name.to_string(), summary.trim().to_string())
        })
        .collect()
}

#[test]
fn every_command_summary_is_one_whole_sentence() {
    let commands = commands();
    let names: Vec<&str> = commands.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "top",
        "serve",
        "bandwidth",
        "stats",
        "history",
        "http",
        "connections",
    ] {
        assert!(
            names.contains(&expected),
            "`{expected}` missing from {names:?}"
        );
    }
    assert!(
        !names.contains(&"generate"),
        "the install-time generator is hidden"
    );
    for (name, summary) in &commands {
        if name == "help" {
            // clap's own line for its built-in `help` command.
            continue;
        }
        assert!(
            summary.ends_with('.') && !summary.ends_with(".."),
            "`flow {name}`: the summary is not a whole sentence: {summary:?}"
        );
        assert!(
            summary.chars().next().is_some_and(char::is_uppercase),
            "`flow {name}`: the summary does not start a sentence: {summary:?}"
        );
        // A sentence that stops where its object should be (`…then print each connection's.`)
        // has its period but is still cut.
        let last = summary
            .trim_end_matches('.')
            .rsplit(' ')
            .next()
            .unwrap_or_default();
        assert!(
            !last.ends_with("'s")
                && ![
                    "a", "an", "the", "of", "to", "and", "or", "with", "by", "for", "each",
                    "every", "its", "their", "per",
                ]
                .contains(&last.to_lowercase().as_str()),
            "`flow {name}`: the summary stops mid-sentence: {summary:?}"
        );
        assert!(
            summary.split_whitespace().count() >= 4,
            "`flow {name}`: the summary says too little: {summary:?}"
        );
        // `flow <name> --help` opens with the same sentence, so nothing was cut on the way.
        let own = help(&[name, "--help"]);
        assert_eq!(
            own.lines().next().unwrap_or_default(),
            summary,
            "`flow {name} --help` opens differently"
        );
    }
}

/// Every option of `flow --help` and of each command's `--help`: its heading line and its help.
fn options(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('-') && (2..=6).contains(&indent) {
            let help = lines.get(i + 1).map(|l| l.trim()).unwrap_or_default();
            found.push((trimmed.to_string(), help.to_string()));
        }
    }
    found
}

fn all_helps() -> Vec<(Vec<String>, String)> {
    let mut helps = vec![(vec![], help(&["--help"]))];
    for (name, _) in commands() {
        if name != "help" {
            let text = help(&[&name, "--help"]);
            helps.push((vec![name], text));
        }
    }
    helps
}

#[test]
fn every_option_says_what_it_does() {
    for (command, text) in all_helps() {
        let found = options(&text);
        assert!(
            !found.is_empty(),
            "flow {command:?} --help lists no options"
        );
        for (option, help) in found {
            assert!(
                !help.is_empty() && !help.starts_with('-') && !help.starts_with('['),
                "flow {command:?}: `{option}` has no help text"
            );
        }
    }
}

#[test]
fn listed_choices_are_exactly_what_the_parser_takes() {
    let mut checked = 0;
    for (command, text) in all_helps() {
        for (option, _) in options(&text) {
            // `--rung <fentry|tp_btf|kprobe|tracepoint>`
            let Some((flag, rest)) = option.split_once(" <") else {
                continue;
            };
            let Some(choices) = rest.split_once('>').map(|(v, _)| v) else {
                continue;
            };
            if !choices.contains('|') {
                continue;
            }
            let flag = flag.rsplit(' ').next().unwrap();
            let with = |value: &str| {
                let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
                // The value is parsed before `--help` is acted on: a refused value fails.
                args.extend([flag, value, "--help"]);
                run(&args)
            };
            for value in choices.split('|') {
                let out = with(value);
                assert!(
                    out.status.success(),
                    "flow {command:?}: `{flag} {value}` is listed but refused: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
            let out = with("no-such-choice");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "flow {command:?}: `{flag} no-such-choice` was taken"
            );
            assert!(
                stderr.contains("no-such-choice") && stderr.lines().count() == 1,
                "flow {command:?}: `{flag}` refuses in one line naming the value: {stderr}"
            );
            // The parser's own list (`… (expected a, b or c)`) names no value the help omits.
            if let Some(expected) = stderr.split("expected ").nth(1) {
                let expected = expected.split(')').next().unwrap_or_default();
                for word in expected
                    .split([',', ' '])
                    .filter(|w| !w.is_empty() && *w != "or")
                {
                    assert!(
                        choices.split('|').any(|c| c == word),
                        "flow {command:?}: `{flag}` takes `{word}`, which <{choices}> omits"
                    );
                }
            }
        }
    }
    // --mode and --rung, at least.
    assert!(checked >= 7, "only {checked} listed choices found");
}
