//! What commands print: the plan (for --dry-run) and the summary after a change.

use std::fmt::Write;

use crate::desired::ObjectNames;
use crate::engine::ContainerInfo;
use crate::gateway;
use crate::model::{HttpsMode, Model, GATEWAY};
use crate::plan::Plan;

/// `unknown_images`: images not pulled yet, whose declared volumes are not known.
pub(crate) fn plan_text(plan: &Plan, origin: &str, unknown_images: &[String]) -> String {
    let mut s = String::new();
    if plan.is_empty() {
        let _ = writeln!(s, "Nothing to change: the host already matches {origin}.");
    } else {
        let _ = writeln!(s, "Plan ({} steps, from {origin}):", plan.actions.len());
        for (i, a) in plan.actions.iter().enumerate() {
            let _ = writeln!(s, "  {:>2}. {a}", i + 1);
        }
    }
    for image in unknown_images {
        let _ = writeln!(
            s,
            "Note: {image} is not on this machine yet; any path it declares as a volume will be \
             mounted from its service's directory under /var/vol once it is pulled."
        );
    }
    let _ = writeln!(s, "Dry run: nothing was changed.");
    s
}

pub(crate) fn summary(
    done: &[String],
    model: &Model,
    names: &ObjectNames,
    states: &[ContainerInfo],
) -> String {
    let mut s = String::new();
    if done.is_empty() {
        let _ = writeln!(
            s,
            "Nothing changed: everything already matches the profile."
        );
    } else {
        let _ = writeln!(s, "Changed {} thing(s):", done.len());
        for d in done {
            let _ = writeln!(s, "  - {d}");
        }
    }
    let state_of = |svc: &str| {
        let name = names.object(svc);
        states
            .iter()
            .find(|c| c.name == name)
            .map_or("missing", |c| c.state.as_str())
    };
    let g = &model.gateway;
    let _ = writeln!(s, "\nServices:");
    let host = match g.bind {
        None => "*".to_string(),
        Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        Some(ip) => ip.to_string(),
    };
    let mut entry = format!("http://{host}:{}/", g.http_port);
    if g.https != HttpsMode::Off {
        entry.push_str(&format!(" and https://{host}:{}/", g.https_port));
    }
    let _ = writeln!(
        s,
        "  {:<16} {:<10} {entry} (routes by Host header)",
        GATEWAY,
        state_of(GATEWAY)
    );
    for svc in &model.services {
        let name = svc.name.as_str();
        let mut state = state_of(name);
        let urls: Vec<String> = svc.hosts().iter().map(|d| gateway::url(g, d)).collect();
        // A job serves nothing: its stopped container is the record that it ran.
        let answers = if svc.job.is_some() {
            let done = names.object(name);
            if states
                .iter()
                .any(|c| c.name == done && !c.running() && c.exit_code == Some(0))
            {
                state = "completed";
            }
            format!("a job (runs to completion; `pi-setup run-job {name}` runs it again)")
        } else if urls.is_empty() {
            format!("internal only: {}:{} on the network", svc.name, svc.port)
        } else {
            urls.join(" ")
        };
        let _ = writeln!(s, "  {name:<16} {state:<10} {answers}");
    }
    s
}

/// A size as people read it: `512 B`, `20.1 KiB`, `48.0 MiB` (binary units, one decimal).
pub(crate) fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// A duration as people read it: `40 ms` under a second, `2.3 s` under a minute, then `4m 05s`.
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::{human_bytes, human_duration, summary};
    use crate::desired::ObjectNames;
    use crate::engine::{ContainerInfo, ContainerState};
    use crate::input::source::Source;

    #[test]
    fn a_job_is_summed_up_as_a_job_not_as_an_address_on_the_network() {
        let profile = "[[service]]\nname = \"db\"\nimage = \"postgres:16\"\n\n\
                       [[job]]\nname = \"migrate\"\nimage = \"postgres:16\"\n";
        let model = crate::input::load(&Source::new("p.toml", profile), &[]).unwrap();
        let names = ObjectNames {
            instance: Some("t".into()),
        };
        let container = |name: &str, state, exit_code| ContainerInfo {
            id: format!("id-{name}"),
            name: names.object(name),
            image_id: "sha256:x".into(),
            state,
            health: None,
            exit_code,
            labels: HashMap::new(),
            volumes: Vec::new(),
        };
        let states = [
            container("db", ContainerState::Running, None),
            container("migrate", ContainerState::Exited, Some(0)),
        ];
        let text = summary(&[], &model, &names, &states);
        assert!(
            text.contains("\n  db               running    internal only: db:80 on the network\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\n  migrate          completed  a job (runs to completion; \
                 `pi-setup run-job migrate` runs it again)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn sizes_read_like_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(20_582), "20.1 KiB");
        assert_eq!(human_bytes(48 * 1024 * 1024), "48.0 MiB");
        assert_eq!(human_bytes(3 << 40), "3.0 TiB");
    }

    #[test]
    fn durations_read_like_durations() {
        assert_eq!(human_duration(Duration::ZERO), "0 ms");
        assert_eq!(human_duration(Duration::from_millis(42)), "42 ms");
        assert_eq!(human_duration(Duration::from_millis(999)), "999 ms");
        assert_eq!(human_duration(Duration::from_secs(1)), "1.0 s");
        assert_eq!(human_duration(Duration::from_millis(2345)), "2.3 s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m 05s");
    }
}
