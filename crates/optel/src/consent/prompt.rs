//! The opt-in prompt: the question or one-time notice shown when the author's default was
//! reached ([`Asking`]), only on an interactive terminal and never in CI, with a sample of what
//! one run sends.

use std::collections::BTreeSet;
use std::io::{self, IsTerminal, Write};

use optel_wire::{Batch, Catalog, Event, EventType, Timestamp};

use super::{Asking, Consent, ConsentSource, Resolution, read_file};
use crate::builder::TelemetryBuilder;
use crate::identity::Epoch;

/// Opt-in question or notice, when the author's default was reached. `user_file` is the
/// tool's user config file, where the answer (or that the notice was shown) is kept.
/// With a catalog, a user who saw an earlier version's data categories and not all of the
/// current ones is asked again (opt-in) or shown the notice again (notice), on a terminal
/// only.
#[cold]
pub(crate) fn ask_or_tell(
    mut resolution: Resolution,
    builder: &TelemetryBuilder,
    (stdin_tty, stderr_tty): (bool, bool),
    ci: &dyn Fn() -> Option<String>,
    catalog: Option<&Catalog>,
) -> Resolution {
    let (tool, version, asking) = (&*builder.tool, &*builder.version, builder.asking);
    let user_file = builder.user_config_file();
    let Some(user_file) = user_file else {
        return resolution;
    };
    let file = read_file(&user_file).ok().flatten().unwrap_or_default();
    let notice_shown = file.notice_shown;
    let categories = catalog.map(Catalog::data_categories).unwrap_or_default();
    let seen: BTreeSet<String> = file.seen_categories.into_iter().collect();
    let unseen: Vec<&String> = categories.difference(&seen).collect();
    let decided_by_user = matches!(resolution.source, ConsentSource::UserConfig(_));
    if decided_by_user {
        // Asked again only when an opt-in user said yes and the catalog grew since.
        if asking != Asking::OptIn || resolution.consent != Consent::On || unseen.is_empty() {
            return resolution;
        }
        if !can_ask(stdin_tty, stderr_tty, || ci().is_some()) {
            return resolution;
        }
        let intro = new_categories(tool, &unseen);
        let answer = ask(
            tool,
            builder.epoch,
            &intro,
            &show_data(tool, version, catalog),
        );
        if let Err(e) = builder.save_user_choice(Some(answer), notice_shown, Some(&categories)) {
            resolution.note = Some(format!(
                "cannot keep your answer in {}: {e}; you will be asked again",
                user_file.display()
            ));
        }
        resolution.consent = answer;
        return resolution;
    }
    let can_ask = can_ask(stdin_tty, stderr_tty, || ci().is_some());
    match asking {
        Asking::OptIn if can_ask => {
            let answer = ask(tool, builder.epoch, "", &show_data(tool, version, catalog));
            if let Err(e) = builder.save_user_choice(Some(answer), notice_shown, Some(&categories))
            {
                resolution.note = Some(format!(
                    "cannot keep your answer in {}: {e}; you will be asked again",
                    user_file.display()
                ));
            } else {
                resolution.source = ConsentSource::UserConfig(user_file);
            }
            resolution.consent = answer;
        }
        Asking::OptIn => {
            resolution.note = Some(format!(
                "not asked (no interactive terminal, or CI): run `{} telemetry enable` to opt in",
                tool
            ));
        }
        Asking::Notice if can_ask && !notice_shown => {
            eprint!("{}", notice(tool));
            let _ = builder.save_user_choice(None, true, Some(&categories));
        }
        Asking::Notice if can_ask && !unseen.is_empty() => {
            eprint!("{}{}", new_categories(tool, &unseen), notice(tool));
            let _ = builder.save_user_choice(None, true, Some(&categories));
        }
        _ => {}
    }
    resolution
}

/// What "show me the data" prints: the catalog in plain words, if the tool declares one, and
/// a sample payload.
pub(crate) fn show_data(tool: &str, version: &str, catalog: Option<&Catalog>) -> String {
    let described = catalog
        .map(|c| format!("{}\n", crate::catalog::describe(tool, c)))
        .unwrap_or_default();
    format!(
        "{described}This is what one run sends (an example):\n{}",
        sample_payload(tool, version)
    )
}

/// The lines that tell a user which data categories are new since they were last asked.
fn new_categories(tool: &str, unseen: &[&String]) -> String {
    let mut text = format!(
        "\nThis version of {tool} records data you have not been shown yet; it is not sent \
         until you have seen it:\n"
    );
    for c in unseen {
        text.push_str(&format!("  - {}\n", category_in_words(c)));
    }
    text
}

/// `command:build:attribute:profile` → `the profile attribute of command build`.
fn category_in_words(category: &str) -> String {
    let parts: Vec<&str> = category.split(':').collect();
    match parts.as_slice() {
        ["measurement", name] => format!("the measurement {name}"),
        [kind, entry, "attribute", attr] => format!("the {attr} attribute of {kind} {entry}"),
        _ => category.to_owned(),
    }
}

/// An example of what one run sends, with this tool's name, version and platform.
pub(crate) fn sample_payload(tool: &str, version: &str) -> String {
    let mut batch = Batch::new(
        tool.to_owned(),
        version.to_owned(),
        "5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c",
        std::env::consts::OS,
        std::env::consts::ARCH,
    );
    let mut event = Event::new(
        "0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2b",
        EventType::Command,
        "build",
        Timestamp::now(),
        "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b",
    );
    event.duration_ms = Some(412);
    event.success = Some(false);
    event.error_code = Some("E_NO_MANIFEST".into());
    batch.events.push(event);
    serde_json::to_string_pretty(&batch).unwrap_or_default()
}

/// Whether the user can be asked: stdin and stderr are terminals and this is not CI. CI is
/// checked last, and only then: it reads many variables, and without a terminal it is moot.
pub(crate) fn can_ask(stdin_tty: bool, stderr_tty: bool, in_ci: impl FnOnce() -> bool) -> bool {
    stdin_tty && stderr_tty && !in_ci()
}

/// Whether stdin and stderr are both terminals.
pub(crate) fn interactive() -> (bool, bool) {
    (io::stdin().is_terminal(), io::stderr().is_terminal())
}

/// The opt-in question: what is collected, what never is, a real sample payload; yes / no /
/// show me the data, so that the user decides knowing exactly what is sent. Returns the answer;
/// anything unreadable means no.
pub(crate) fn ask(tool: &str, epoch: Epoch, intro: &str, data: &str) -> Consent {
    let stdin = io::stdin();
    let mut err = io::stderr().lock();
    let _ = write!(err, "{intro}{}", question(tool, epoch));
    loop {
        let _ = write!(
            err,
            "[y] yes, help improve {tool}  [n] no thanks  [s] show me the data: "
        );
        let _ = err.flush();
        let mut line = String::new();
        match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => return Consent::Off,
            Ok(_) => {}
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Consent::On,
            "n" | "no" | "" => return Consent::Off,
            "s" | "?" | "show" => {
                let _ = writeln!(err, "\n{data}\n");
            }
            _ => {}
        }
    }
}

/// The text of the opt-in question; it states how often the pseudonym really changes.
pub(crate) fn question(tool: &str, epoch: Epoch) -> String {
    let rotation = match epoch {
        Epoch::Monthly => "changes every month".to_owned(),
        Epoch::Weekly => "changes every week".to_owned(),
        Epoch::Never => format!("stays the same until you run `{tool} telemetry reset`"),
    };
    format!(
        "\n{tool} can send anonymous usage statistics to its authors, to learn which commands \
         are used and how often they fail.\n\
         Collected: command names, durations, success or an error code, the {tool} version, the \
         OS and CPU architecture, and a random pseudonym that {rotation}.\n\
         Never collected: arguments, file paths or contents, user names, host names, IP \
         addresses or environment variables.\n\
         Change your mind at any time with `{tool} telemetry disable` (or `local` to keep the \
         data on this machine only), or set DO_NOT_TRACK=1.\n"
    )
}

/// The notice of [`Asking::Notice`], printed once on stderr: telemetry is on, so the user is
/// told what is sent and how to turn it off.
pub(crate) fn notice(tool: &str) -> String {
    format!(
        "{tool} collects anonymous usage statistics (command names, durations, error codes, \
         version, OS): never arguments, paths or user data. See `{tool} telemetry preview`; \
         turn it off with `{tool} telemetry disable` or DO_NOT_TRACK=1. This notice is shown \
         once.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Telemetry;
    use crate::consent::user_config_path;

    fn author_default() -> Resolution {
        Resolution {
            consent: Consent::On,
            source: ConsentSource::AuthorDefault,
            note: None,
        }
    }

    #[test]
    fn notice_is_shown_once_on_a_terminal_and_never_in_ci() {
        let dir = tempfile::tempdir().unwrap();
        let file = user_config_path(dir.path(), "acme");
        let builder = Telemetry::builder("acme", "1.0.0")
            .config_dir(dir.path())
            .asking(Asking::Notice);
        let tell = |terminals: (bool, bool), ci: &dyn Fn() -> Option<String>| {
            ask_or_tell(author_default(), &builder, terminals, ci, None)
        };
        // CI on a terminal, or no terminal: nothing shown, so nothing recorded as shown.
        let r = tell((true, true), &|| Some("github-actions".into()));
        assert_eq!(r.consent, Consent::On);
        tell((false, true), &|| None);
        tell((true, false), &|| None);
        assert!(!file.exists());
        // A terminal outside CI: shown, and remembered.
        tell((true, true), &|| None);
        let f = read_file(&file).unwrap().unwrap();
        assert!(f.notice_shown);
        assert_eq!(f.telemetry, None, "showing the notice is not a choice");
    }

    #[test]
    fn a_notice_tool_shows_its_notice_again_when_the_catalog_grows() {
        let dir = tempfile::tempdir().unwrap();
        let file = user_config_path(dir.path(), "acme");
        let builder = Telemetry::builder("acme", "1.0.0")
            .config_dir(dir.path())
            .asking(Asking::Notice);
        let v1 = crate::CatalogBuilder::new()
            .command("build", "Builds.")
            .measurement("files", "Files.", optel_wire::catalog::Unit::Count)
            .build();
        let mut v2 = v1.clone();
        v2.commands[0]
            .attributes
            .push(optel_wire::catalog::AttributeSpec::new(
                "profile",
                "Debug or release.",
                optel_wire::catalog::AttributeKind::Bool,
            ));
        let seen = || read_file(&file).unwrap().unwrap().seen_categories;
        ask_or_tell(
            author_default(),
            &builder,
            (true, true),
            &|| None,
            Some(&v1),
        );
        assert_eq!(seen(), ["measurement:files"]);
        // Not on a terminal or in CI: nothing new is recorded as seen.
        ask_or_tell(
            author_default(),
            &builder,
            (false, false),
            &|| None,
            Some(&v2),
        );
        ask_or_tell(
            author_default(),
            &builder,
            (true, true),
            &|| Some("ci".into()),
            Some(&v2),
        );
        assert_eq!(seen(), ["measurement:files"]);
        // On a terminal the notice is shown again, and the new category is then seen.
        ask_or_tell(
            author_default(),
            &builder,
            (true, true),
            &|| None,
            Some(&v2),
        );
        assert_eq!(
            seen(),
            ["command:build:attribute:profile", "measurement:files"]
        );
    }

    #[test]
    fn opt_in_without_a_terminal_is_off_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = Telemetry::builder("acme", "1.0.0")
            .config_dir(dir.path())
            .asking(Asking::OptIn);
        let env = |_: &str| None;
        let r = b.resolve(&env);
        assert_eq!(
            (r.consent, r.source.layer()),
            (Consent::Off, "author_default")
        );
        let r = ask_or_tell(r, &b, (false, false), &|| None, None);
        assert_eq!(r.consent, Consent::Off);
        assert!(r.note.unwrap().contains("acme telemetry enable"));
        assert!(!dir.path().join("optel").exists());
    }

    #[test]
    fn the_question_states_the_real_pseudonym_rotation() {
        // Regression: it said "changes every month" whatever `pseudonym_epoch` was set to.
        let monthly = question("acme", Epoch::Monthly);
        assert!(
            monthly.contains("pseudonym that changes every month"),
            "{monthly}"
        );
        let weekly = question("acme", Epoch::Weekly);
        assert!(
            weekly.contains("pseudonym that changes every week"),
            "{weekly}"
        );
        assert!(!weekly.contains("month"), "{weekly}");
        let never = question("acme", Epoch::Never);
        assert!(
            never.contains("stays the same until you run `acme telemetry reset`"),
            "{never}"
        );
        assert!(!never.contains("changes every"), "{never}");
    }

    #[test]
    fn asking_needs_two_terminals_and_no_ci() {
        assert!(can_ask(true, true, || false));
        assert!(!can_ask(true, true, || true));
        let not_asked = || -> bool { panic!("CI detection ran without a terminal") };
        assert!(!can_ask(false, true, not_asked));
        assert!(!can_ask(true, false, not_asked));
    }
}
